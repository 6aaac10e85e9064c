"""On synthetic users, a user's own head learns that user's planted structure (no LLM: label pools only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.hydra.context import UserContext
from shared.hydra.decision import decide
from shared.hydra.episodes import EpisodeConfig, build_user_episodes
from shared.hydra.examples import role_examples
from shared.hydra.settings import TrainConfig
from shared.synthetic import generate
from shared.tasks import get_task
from shared.training.model import HydraBase, ModelConfig, PersonalHeads
from shared.training.train import Trainer

TASK = get_task("LaMP-3")


def user_examples(profile, user: str, n: int, seed: int):
    cfg = EpisodeConfig(pseudo_questions=0, free_questions=n, seed=seed)
    episodes, _ = build_user_episodes(TASK, user, profile, [], None, cfg)
    return role_examples(TASK, user, episodes, UserContext.build(TASK, profile), None)["adapter"]


def mae(trainer: Trainer, head, examples) -> float:
    errors = []
    for e in examples:
        choice = decide(TASK, e.items, trainer.scores("adapter", e, head))
        gold = e.items[int(np.argmax(e.target))]
        errors.append(abs(int(choice) - int(gold)))
    return float(np.mean(errors))


@pytest.mark.slow
def test_own_head_beats_the_shared_head_on_its_user_and_not_on_others():
    questions, _, truth = generate("LaMP-3", n_users=20, items_per_user=120, seed=11, clarity=0.9)
    users = {q["user_id"]: q["profile"] for q in questions}
    ids = list(users)
    train_ids, test_ids = ids[:10], ids[10:]
    torch.manual_seed(0)
    trainer = Trainer(
        HydraBase(ModelConfig()),
        TrainConfig(epochs=1, head_epochs=100, batch_size=16, lr=5e-3, train_lora=False, fit_steps=300, head_l2=0.05),
    )
    heads = {u: PersonalHeads.from_shared(trainer.base) for u in train_ids}
    trainer.train_role("adapter", [e for u in train_ids for e in user_examples(users[u][:80], u, 60, 0)], heads)

    fitted, held_out = {}, {}
    for u in test_ids:  # new users: base frozen, heads fitted on the first 80 history items only
        fitted[u] = PersonalHeads.from_shared(trainer.base)
        trainer.fit_heads(fitted[u], {"adapter": user_examples(users[u][:80], u, 60, 1)})
        held_out[u] = user_examples(users[u][80:], u, 40, 2)  # questions from items the fit never saw
    shared = trainer.base.roles["adapter"].shared_head
    base_mae = np.array([mae(trainer, shared, held_out[v]) for v in test_ids])
    gain = np.array(
        [
            [base_mae[j] - mae(trainer, fitted[u].heads["adapter"], held_out[v]) for j, v in enumerate(test_ids)]
            for u in test_ids
        ]
    )  # gain[i, j]: head of i on user j
    own, foreign = np.diag(gain), gain[~np.eye(len(test_ids), dtype=bool)]
    print(
        "shared-head MAE per user:",
        base_mae.round(3),
        "own-head gain:",
        own.round(3),
        "mean foreign-head gain:",
        round(float(foreign.mean()), 3),
        [truth["users"][u] for u in test_ids],
    )
    assert own.mean() > 0.02  # a user's own head beats the shared head on that user
    assert foreign.mean() <= 0.01  # another user's head does not (0.01 MAE: noise of 40 questions per user)
    assert own.mean() - foreign.mean() > 0.03
