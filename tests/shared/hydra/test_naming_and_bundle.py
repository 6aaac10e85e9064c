from __future__ import annotations

import numpy as np
import pytest

from shared.hydra.bundle import FORMAT_VERSION, BundleError, load_tensors, save_tensors
from shared.hydra.naming import KeyNamingError, is_personal_key, is_shared_key, shared_only, split_state_dict
from shared.training.model import ModelConfig


def test_split_is_exhaustive_and_rejects_strangers():
    state = {"base.reranker.lora.x": 1, "base.adapter.trunk.weight": 2, "head.reranker.weight": 3}
    shared, personal = split_state_dict(state)
    assert set(shared) == {"base.reranker.lora.x", "base.adapter.trunk.weight"}
    assert set(personal) == {"head.reranker.weight"}
    for bad in ("heads.x", "Base.x", "x.base.y", "", "lora.x"):
        with pytest.raises(KeyNamingError):
            split_state_dict({bad: 0})
    assert is_shared_key("base.a") and not is_shared_key("head.a") and is_personal_key("head.a")
    assert shared_only({"base.a": 1}) == {"base.a": 1}


def test_bundle_round_trip_and_checks(tmp_path):
    cfg = ModelConfig()
    tensors = {"base.adapter.trunk.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = save_tensors(tmp_path / "b.safetensors", tensors, kind="base", model=cfg, round=3)
    loaded, meta = load_tensors(path, kind="base", model=cfg)
    np.testing.assert_array_equal(loaded["base.adapter.trunk.weight"], tensors["base.adapter.trunk.weight"])
    assert meta["round"] == "3" and meta["version"] == FORMAT_VERSION == "4"
    with pytest.raises(BundleError, match="format 'fedhydra-base', expected 'fedhydra-heads'"):
        load_tensors(path, kind="heads")
    with pytest.raises(BundleError, match="architecture"):
        load_tensors(path, kind="base", model=ModelConfig(lora_rank=8))
    with pytest.raises(BundleError, match="may not hold"):
        save_tensors(tmp_path / "x.safetensors", {"head.a": np.zeros(1)}, kind="base", model=cfg)
    (tmp_path / "broken.safetensors").write_bytes(path.read_bytes()[:50])
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_tensors(tmp_path / "broken.safetensors", kind="base")
