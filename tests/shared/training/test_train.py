"""Training and fitting on examples whose best item depends on the user (no LLM needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.hydra.examples import RoleExample
from shared.hydra.settings import TrainConfig
from shared.training.model import N_EXTRA, HydraBase, ModelConfig, PersonalHeads
from shared.training.train import Trainer

ANIMALS = ["a photo of my cat", "a photo of my dog"]


def examples(user: str, likes: int, n: int, seed: int) -> list[RoleExample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        order = rng.permutation(2)
        items = [ANIMALS[j] for j in order]
        target = np.array([1.0 if j == likes else 0.0 for j in order], dtype=np.float32)
        extras = rng.normal(size=(2, N_EXTRA["adapter"])).astype(np.float32) * 0.01
        out.append(RoleExample(user=user, query=f"what do I like {i % 3}", items=items, extras=extras, target=target))
    return out


@pytest.fixture(scope="module")
def trainer():
    torch.manual_seed(0)
    return Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=4, batch_size=8, lr=5e-3, lora_lr=2e-3, fit_steps=150))


def accuracy(trainer, head, exs):
    hits = [int(np.argmax(trainer.scores("adapter", e, head)) == int(np.argmax(e.target))) for e in exs]
    return sum(hits) / len(hits)


def test_personal_heads_learn_what_the_shared_head_cannot(trainer):
    data = examples("cat-lover", 0, 24, 1) + examples("dog-lover", 1, 24, 2)
    heads = {u: PersonalHeads.from_shared(trainer.base) for u in ("cat-lover", "dog-lover")}
    before = trainer.base.shared_state()
    losses = trainer.train_role("adapter", data, heads)
    after = trainer.base.shared_state()
    assert losses[-1] < losses[0]
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(".lora." in k for k in changed) and any("trunk" in k for k in changed)
    assert not any(k.startswith("base.reranker.") for k in changed)  # only the trained role moved
    cats, dogs = examples("cat-lover", 0, 10, 3), examples("dog-lover", 1, 10, 4)
    assert accuracy(trainer, heads["cat-lover"].heads["adapter"], cats) >= 0.9
    assert accuracy(trainer, heads["dog-lover"].heads["adapter"], dogs) >= 0.9
    assert accuracy(trainer, heads["cat-lover"].heads["adapter"], dogs) <= 0.1
    shared = trainer.base.roles["adapter"].shared_head
    assert min(accuracy(trainer, shared, cats), accuracy(trainer, shared, dogs)) <= 0.6


def test_fit_moves_only_the_new_users_head(trainer):
    before = trainer.base.shared_state()
    heads = PersonalHeads.from_shared(trainer.base)
    new_user = examples("new", 1, 16, 5)
    losses = trainer.fit_heads(heads, {"adapter": new_user})
    after = trainer.base.shared_state()
    assert all(torch.equal(before[k], after[k]) for k in before)  # base frozen
    assert not torch.equal(heads.heads["adapter"].weight, trainer.base.roles["adapter"].shared_head.weight)
    assert torch.equal(heads.heads["reranker"].weight, trainer.base.roles["reranker"].shared_head.weight)
    assert losses["adapter"] < 0.3
    assert accuracy(trainer, heads.heads["adapter"], examples("new", 1, 10, 6)) >= 0.9
