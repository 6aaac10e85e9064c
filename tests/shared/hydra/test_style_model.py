"""The learned style model (shared/hydra/style_model.py): trained from (input, gold) pairs, part of the shared base,
read from a bundle, applied in the pool with numpy, and a function of rule counts only (no user string)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.hydra.candidates import build_pool, personal_habits
from shared.hydra.context import UserContext
from shared.hydra.editor import InputEditor
from shared.hydra.spec import EDITOR_PREFIX
from shared.hydra.style_model import N_RULES, N_STYLE_FEATURES, StyleModel, style_examples
from shared.style import RULE_NAMES, rule_counts
from shared.tasks import get_task

LAMP7 = get_task("LaMP-7")


def _pairs(history_word: str) -> list[tuple[str, str, list[str]]]:
    """Users who write "u" in their history and whose gold writes it; the same users, whose gold keeps "love" though
    their history writes "luv" half the time."""
    users = []
    for k in range(12):
        history = [f"see u {history_word}{k}", "u rock", "i luv it", "i love it"]
        users.append((f"I love you {k}", f"love u {history_word}{k}", history))
    return users


def _examples(history_word: str):
    return [x for q, g, h in _pairs(history_word) for x in style_examples(q, g, rule_counts(h))]


def test_a_rule_the_gold_adopts_gets_a_higher_probability_than_one_it_never_adopts():
    model = StyleModel()
    loss = model.fit(_examples("zq"))
    assert loss < 0.69
    p = model.probabilities(rule_counts(["see u", "u rock", "i luv it", "i love it"]))
    u, luv = RULE_NAMES.index("u"), RULE_NAMES.index("luv")
    assert p[u] > 0.5 > p[luv]
    assert (model.shared + model.rule[u])[0] > (model.shared + model.rule[luv])[0]  # the per-rule bias, learned
    # personal: the same shared model, another user's counts
    assert "u" not in model.rules(rule_counts(["see you", "you rock", "love you"]))


def test_the_model_is_a_function_of_rule_counts_only():
    """Privacy: two sets of users with different words but the same rule counts train the same weights; the tensors'
    shapes do not depend on the data; nothing but rule indices and counts enters an example."""
    a, b = StyleModel(), StyleModel()
    ea, eb = _examples("zqxjunique"), _examples("other")
    assert ea == eb and all(isinstance(v, int) for x in ea for v in x)
    a.fit(ea)
    b.fit(eb)
    assert all(np.array_equal(a.state()[k], b.state()[k]) for k in a.state())
    assert a.rule.shape == (N_RULES, N_STYLE_FEATURES) and a.shared.shape == (N_STYLE_FEATURES,)
    assert all(v.dtype == np.float32 for v in a.state().values())


def test_the_editor_carries_the_style_model_in_its_state():
    editor = InputEditor()
    editor.style.fit(_examples("w"))
    state = editor.state()
    assert {"style_shared", "style_rule"} <= set(state)
    again = InputEditor.from_state(state)
    assert np.array_equal(again.style.rule, editor.style.rule) and np.array_equal(
        again.style.shared, editor.style.shared
    )
    with pytest.raises(KeyError):  # a state of the old format lacks the tensors (its file is refused by version first)
        InputEditor.from_state({k: v for k, v in state.items() if not k.startswith("style")})


def test_the_pool_writes_with_the_learned_rules_not_the_history_majority():
    history = [{"text": t} for t in ["see u there", "u rock", "i luv it so much", "luv this", "love it"]]
    ctx = UserContext.build(LAMP7, history)
    assert ctx.habits.rules == () and ctx.rule_counts[RULE_NAMES.index("u")] == (0, 2)
    untrained = InputEditor()  # P = 1/2 for every rule: none applies, though the majority would apply "u" and "luv"
    assert personal_habits(ctx, untrained).rules == ()
    pool = build_pool(LAMP7, ctx, "I love you so much", greedy=None, samples=[], editor=untrained)
    assert "I love you so much" in pool.texts and not any(" u " in f" {t} " for t in pool.texts)
    trained = InputEditor()
    trained.style.fit(_examples("w"))
    assert personal_habits(ctx, trained).rules == ("u",)
    pool = build_pool(LAMP7, ctx, "I love you so much", greedy=None, samples=[], editor=trained)
    assert "I love u so much" in pool.texts  # the learned "u"; "love" kept, as the gold keeps it


def test_the_style_tensors_are_in_the_shared_base_and_the_bundle_format(tmp_path):
    from shared.hydra.bundle import load_tensors, save_tensors
    from shared.hydra.spec import ModelConfig

    editor = InputEditor()
    editor.style.fit(_examples("w"))
    state = {f"{EDITOR_PREFIX}{k}": v for k, v in editor.state().items()}
    assert f"{EDITOR_PREFIX}style_rule" in state and f"{EDITOR_PREFIX}style_shared" in state
    path = save_tensors(tmp_path / "base.safetensors", state, kind="base", model=ModelConfig())
    tensors, meta = load_tensors(path, kind="base", model=ModelConfig())
    device = InputEditor.from_state({k[len(EDITOR_PREFIX) :]: v for k, v in tensors.items()})  # as the device reads it
    assert np.array_equal(device.style.rule, editor.style.rule) and meta["version"] == "4"


@pytest.mark.parametrize(
    "shared, rule",
    [(np.zeros(2), None), (None, np.zeros((3, 3))), (np.array([np.nan, 0, 0]), None)],
)
def test_a_style_model_of_the_wrong_shape_or_not_finite_is_refused(shared, rule):
    from shared.errors import DataFormatError

    with pytest.raises(DataFormatError, match="style"):
        StyleModel(shared, rule)
