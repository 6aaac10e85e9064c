from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.errors import ConfigError
from shared.hydra.naming import KeyNamingError, split_state_dict
from shared.training.model import ROLES, HydraBase, ModelConfig, PersonalHeads


@pytest.fixture(scope="module")
def base():
    return HydraBase(ModelConfig())


def test_shared_state_is_only_lora_trunks_shared_heads_editor_and_rating_head(base):
    state = base.shared_state()
    shared, personal = split_state_dict(state)
    assert personal == {} and len(shared) == len(state)
    kinds = {k.split(".")[2] for k in state}
    assert kinds == {"lora", "trunk", "shared_head", "editor", "rating"}
    from shared.hydra.style_model import N_RULES, N_STYLE_FEATURES

    # the learned style model travels with the editor (shapes fixed by the rule table, not by any user's data)
    assert tuple(state["base.adapter.editor.style_rule"].shape) == (N_RULES, N_STYLE_FEATURES)
    assert tuple(state["base.adapter.editor.style_shared"].shape) == (N_STYLE_FEATURES,)
    assert all("lora_A" in k or "lora_B" in k for k in state if ".lora." in k)
    assert sum(v.numel() * 4 for v in state.values()) < 500_000  # the upload budget at the default rank


def test_shared_state_round_trip_and_validation(base):
    state = base.shared_state()
    changed = {k: v + 0.5 for k, v in state.items()}
    base.load_shared_state(changed)
    after = base.shared_state()
    assert all(torch.allclose(after[k], changed[k]) for k in state)
    base.load_shared_state(state)
    with pytest.raises(KeyNamingError, match="unknown"):
        base.load_shared_state({**state, "base.adapter.extra": torch.zeros(1)})
    with pytest.raises(KeyNamingError, match="missing"):
        base.load_shared_state({k: v for k, v in list(state.items())[1:]})
    key = "base.reranker.trunk.weight"
    with pytest.raises(ConfigError, match="shape"):
        base.load_shared_state({**state, key: torch.zeros(3, 3)})


def test_lora_changes_embeddings_and_roles_are_independent(base):
    ids = torch.tensor([[101, 7592, 2088, 102]])
    mask = torch.ones_like(ids)
    before = {r: base.embed(r, ids, mask).detach().clone() for r in ROLES}
    state = base.shared_state()
    bumped = {k: (v + 0.05 if k.startswith("base.reranker.lora.") else v) for k, v in state.items()}
    base.load_shared_state(bumped)
    after = {r: base.embed(r, ids, mask).detach() for r in ROLES}
    assert not torch.allclose(before["reranker"], after["reranker"], atol=1e-4)
    assert torch.allclose(before["adapter"], after["adapter"], atol=1e-6)
    base.load_shared_state(state)


def test_personal_heads_start_as_the_shared_head(base):
    heads = PersonalHeads.from_shared(base)
    for r in ROLES:
        assert torch.equal(heads.heads[r].weight, base.roles[r].shared_head.weight)
    state = heads.state()
    assert all(k.startswith("head.") for k in state)
    other = PersonalHeads(base.config)
    other.load_state({k: np.asarray(v) for k, v in state.items()})
    assert torch.equal(other.heads["adapter"].bias, heads.heads["adapter"].bias)


def test_model_config_validation():
    with pytest.raises(ConfigError):
        ModelConfig(lora_rank=0)
    cfg = ModelConfig(lora_rank=8)
    assert ModelConfig.from_json(cfg.to_json()) == cfg
