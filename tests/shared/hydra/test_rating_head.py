"""The shared rating head: fitted on training users' rated history, the ``hydra-shared-head`` variant's rating model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.hydra.context import UserContext
from shared.hydra.infer import answer
from shared.hydra.rating_head import SharedRatingHead
from shared.hydra.settings import TrainConfig
from shared.hydra.spec import EMBED_DIM, RATING_PREFIX
from shared.tasks import get_task
from shared.training.model import HydraBase, ModelConfig
from shared.training.stages import train_stage
from shared.training.train import Trainer

TASK = get_task("LaMP-3")
WORDS = ("awful", "poor", "fine", "good", "great")


def embed(texts):
    """One coordinate per sentiment word (padded to the encoder's width)."""
    out = np.zeros((len(texts), EMBED_DIM))
    for i, t in enumerate(texts):
        out[i, : len(WORDS)] = [float(w in t) for w in WORDS]
    return out


def profile(n: int, reverse: bool = False):
    """Reviews whose score follows the sentiment word, or (``reverse``) runs against it."""
    return [
        {"id": str(i), "text": f"a {WORDS[i % 5]} product", "score": str(5 - i % 5 if reverse else i % 5 + 1)}
        for i in range(n)
    ]


class ZeroScorer:
    """Every candidate scores alike: the answer is the strongest non-LLM one."""

    def score(self, role, example, head):
        return np.zeros(len(example.items))


def ask(ctx: UserContext, variant: str, rating: SharedRatingHead) -> str:
    return answer(
        TASK,
        "a great blender",
        ctx,
        None,
        ZeroScorer(),
        None,
        heads=None,
        variant=variant,
        margin=float("inf"),
        rating=rating,
    ).output


def test_the_shared_head_variant_rates_with_the_shared_head_and_hydra_with_the_users_own_model():
    everyone = UserContext.build(TASK, profile(40), embed=embed)
    head = SharedRatingHead.fit(embed(everyone.rated()[0]), everyone.rated()[1])
    contrarian = UserContext.build(TASK, profile(20, reverse=True), embed=embed)
    assert ask(contrarian, "hydra", head) == "1"  # their own model learned that "great" means 1 for them
    assert ask(contrarian, "hydra-shared-head", head) == "5"  # the shared head knows only what "great" means to most
    assert ask(contrarian, "hydra-shared-head", SharedRatingHead()) == "1"  # unfitted: no shared model to use


def test_a_rating_heads_state_round_trips_and_zeros_mean_unfitted():
    x = np.random.default_rng(0).normal(size=(30, EMBED_DIM))
    head = SharedRatingHead.fit(x, 3.0 + x[:, 1])
    again = SharedRatingHead.from_state(head.state())
    assert np.array_equal(again.weight, head.weight) and np.array_equal(again.bias, head.bias)
    assert again.state()["weight"].dtype == np.float32 and SharedRatingHead().model() is None


def test_train_stage_fits_the_shared_rating_head_on_every_training_users_rated_items_and_only_for_ratings():
    torch.manual_seed(0)
    trainer = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1, batch_size=8))
    users = {
        u: (UserContext.build(TASK, profile(15 + 5 * i), embed=trainer.history_embed), [])
        for i, u in enumerate(("a", "b"))
    }
    assert trainer.base.rating.model() is None
    report = train_stage(trainer, TASK, users, {}, epochs=0)
    assert report.rated_items == 15 + 20
    state = trainer.base.shared_state()
    assert {k for k in state if k.startswith(RATING_PREFIX)} == {f"{RATING_PREFIX}weight", f"{RATING_PREFIX}bias"}
    model = trainer.base.rating.model()
    great, awful = trainer.history_embed(["a great product", "an awful product"])
    assert model.predict(great[None])[0] > model.predict(awful[None])[0] + 1.0
    # a federated round carries it like any shared tensor; other tasks leave it unfitted
    other = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1))
    other.base.load_shared_state(state)
    assert other.base.rating.model() is not None
    lamp7 = get_task("LaMP-7")
    fresh = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1))
    texts = [{"id": str(i), "text": "hello there"} for i in range(12)]
    assert (
        train_stage(
            fresh, lamp7, {"a": (UserContext.build(lamp7, texts, embed=fresh.history_embed), [])}, {}, epochs=0
        ).rated_items
        == 0
    )
    assert fresh.base.rating.model() is None


@pytest.mark.parametrize("n", [0, 3])
def test_too_few_rated_items_leave_the_head_unfitted(n):
    trainer = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1))
    users = {"a": (UserContext.build(TASK, profile(n), embed=trainer.history_embed), [])}
    assert train_stage(trainer, TASK, users, {}, epochs=0).rated_items == 0 and trainer.base.rating.model() is None


def test_an_infinite_margin_asks_the_llm_nothing_and_a_finite_one_asks():
    from lab.faulty_llm_stub import StubLLM
    from shared.llm.client import LLMClient, LLMConfig

    ctx = UserContext.build(TASK, profile(20), embed=embed)
    with StubLLM(["ok"] * 100) as stub:  # a real HTTP endpoint that answers
        llm = LLMClient(LLMConfig(base_url=stub.url, model="stub", cache_path="", max_retries=1, backoff_s=0.0))
        kept = answer(TASK, "a great blender", ctx, llm, ZeroScorer(), None, heads=None, margin=float("inf"))
        assert llm.stats.calls == 0 and kept.output == kept.baseline == "5"
        answer(TASK, "a great blender", ctx, llm, ZeroScorer(), None, heads=None, margin=0.5)
        assert llm.stats.calls >= 1


def test_the_margins_cross_validation_fits_no_shared_rating_head():
    trainer = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1))
    users = {"a": (UserContext.build(TASK, profile(20), embed=trainer.history_embed), [])}
    assert train_stage(trainer, TASK, users, {}, epochs=0, rating_head=False).rated_items == 0
    assert trainer.base.rating.model() is None
