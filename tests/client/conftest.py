from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def trained_state():
    """A shared base with non-trivial LoRA, trunks and heads (random but fixed), as numpy."""
    from shared.training.model import ModelConfig, initial_shared_state

    rng = np.random.default_rng(0)
    state = initial_shared_state(ModelConfig(), 0)
    return {
        k: (
            v + rng.normal(scale=0.02, size=v.shape).astype(np.float32)
            if ("lora_B" in k or "head" in k or ".rating." in k or ".editor.style" in k)
            else v
        )
        for k, v in state.items()
    }


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, trained_state):
    from shared.training.export import export_bundle, template_encoder
    from shared.training.model import ModelConfig

    folder = tmp_path_factory.mktemp("bundle")
    template = template_encoder(tmp_path_factory.mktemp("onnx-cache"))
    return export_bundle(trained_state, ModelConfig(), folder / "b", template=template)
