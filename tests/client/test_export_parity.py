"""ONNX export against torch: fp32 scores within 1e-4, int8 rankings mostly the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from client.device import PERSONAL, BundleInvalid, DeviceModels, fit_head
from shared.hydra.examples import RoleExample
from shared.hydra.settings import TrainConfig
from shared.hydra.spec import N_EXTRA, ROLES
from shared.training.model import HydraBase, ModelConfig, PersonalHeads
from shared.training.train import Trainer

TEXTS = [
    "I love my new coffee maker",
    "the battery died after two days",
    "great story, weak ending",
    "shipping was fast and the box was nice",
    "would not buy again",
    "my kids play this game every day",
    "the hotel was clean and quiet",
    "lol cant wait 4 the concert",
    "the plot was predictable",
    "perfect gift for my dad",
    "the strap broke",
    "meh",
]


def examples(n: int, seed: int) -> list[RoleExample]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        items = list(rng.choice(TEXTS, 8, replace=False))
        out.append(
            RoleExample(
                user="u",
                query=str(rng.choice(TEXTS)),
                items=items,
                extras=rng.normal(size=(8, max(N_EXTRA.values()))).astype(np.float32),
            )
        )
    return out


@pytest.fixture(scope="module")
def torch_side(trained_state):
    base = HydraBase(ModelConfig())
    base.load_shared_state(trained_state)
    return Trainer(base, TrainConfig())


def _extras(example: RoleExample, role: str) -> RoleExample:
    return RoleExample(example.user, example.query, example.items, example.extras[:, : N_EXTRA[role]])


@pytest.mark.slow
def test_fp32_scores_match_torch_within_1e4(bundle, torch_side):
    models = DeviceModels(bundle, threads=2, quantized=False)
    heads = PersonalHeads.from_shared(torch_side.base)
    with torch.no_grad():
        for r in ROLES:
            heads.heads[r].weight.add_(0.3)
    models_heads = {k: v.numpy() for k, v in heads.state().items()}
    for role in ROLES:
        models.load_personal(role, models_heads)
        for ex in examples(5, 1):
            ex = _extras(ex, role)
            shared_t = torch_side.scores(role, ex, None)
            shared_o = models.score(role, ex, None)
            personal_t = torch_side.scores(role, ex, heads.heads[role])
            personal_o = models.score(role, ex, PERSONAL)
            assert np.abs(shared_t - shared_o).max() < 1e-4
            assert np.abs(personal_t - personal_o).max() < 1e-4
            assert np.abs(personal_t - shared_t).max() > 1e-3  # the personal head really differs


def test_numpy_personal_scores_equal_the_onnx_scorer_graph(bundle, tmp_path):
    """The device scores a user's head in numpy; the ONNX scorer graph of the same trunk and head (as the device
    built per user before) gives the same scores within float32 rounding."""
    import onnxruntime as ort

    from shared.hydra.scorer_graph import ScorerWeights
    from shared.hydra.spec import EMBED_DIM
    from shared.training.export import build_scorer_model

    models = DeviceModels(bundle, threads=1, quantized=True)
    rng = np.random.default_rng(7)
    for role in ROLES:
        shared = models.shared_weights(role)
        head = {
            f"head.{role}.weight": shared.head_w + rng.normal(0, 0.3, shared.head_w.shape).astype(np.float32),
            f"head.{role}.bias": shared.head_b + np.float32(0.1),
        }
        models.load_personal(role, head)
        graph = build_scorer_model(ScorerWeights.from_state(models.base, head, role), EMBED_DIM, N_EXTRA[role])
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        for ex in examples(5, 4):
            ex = _extras(ex, role)
            q, items = models.embed(role, [ex.query], models.config.max_query_tokens), models.embed(role, ex.items)
            onnx_scores = session.run(None, {"query": q, "items": items, "extras": ex.extras})[0]
            numpy_scores = models.score(role, ex, PERSONAL)
            assert numpy_scores.dtype == np.float32 and numpy_scores.shape == onnx_scores.shape
            np.testing.assert_allclose(numpy_scores, onnx_scores, rtol=1e-5, atol=1e-5)
            assert np.abs(numpy_scores - models.score(role, ex, None)).max() > 1e-3  # the personal head differs


@pytest.mark.slow
def test_int8_keeps_rankings(bundle, torch_side):
    """Stated bound: the int8 encoder picks the same top item as torch in at least 90% of examples."""
    models = DeviceModels(bundle, threads=2, quantized=True)
    assert models.quantized
    agree = []
    for role in ROLES:
        for ex in examples(20, 2):
            ex = _extras(ex, role)
            agree.append(int(np.argmax(torch_side.scores(role, ex, None)) == np.argmax(models.score(role, ex, None))))
    assert np.mean(agree) >= 0.9


@pytest.mark.slow
def test_numpy_head_fit_matches_torch_fit(bundle, torch_side):
    models = DeviceModels(bundle, threads=2, quantized=False)
    rng = np.random.default_rng(3)
    exs = []
    for ex in examples(6, 3):
        ex = _extras(ex, "adapter")
        ex.target = np.eye(8, dtype=np.float32)[rng.integers(8)]
        exs.append(ex)
    heads = PersonalHeads.from_shared(torch_side.base)
    torch_side.fit_heads(heads, {"adapter": exs}, steps=100)
    shared = models.shared_weights("adapter")
    w, b, _ = fit_head(
        [models.head_inputs("adapter", e) for e in exs],
        [e.target for e in exs],
        shared.head_w,
        shared.head_b,
        steps=100,
        lr=0.05,
        l2=0.05,
    )
    assert np.abs(w - heads.heads["adapter"].weight.detach().numpy()).max() < 2e-3
    assert np.abs(b - heads.heads["adapter"].bias.detach().numpy()).max() < 2e-3


def test_the_device_reads_the_shared_rating_head_from_the_bundle(bundle, trained_state):
    from shared.hydra.spec import RATING_PREFIX

    rating = DeviceModels(bundle, threads=1, quantized=False).rating
    assert rating.model() is not None
    assert np.array_equal(rating.weight, trained_state[f"{RATING_PREFIX}weight"])
    assert np.array_equal(rating.bias, trained_state[f"{RATING_PREFIX}bias"])


def test_the_device_reads_the_style_model_from_the_bundle(bundle, trained_state):
    from shared.hydra.spec import EDITOR_PREFIX

    style = DeviceModels(bundle, threads=1, quantized=False).editor.style
    assert np.array_equal(style.rule, trained_state[f"{EDITOR_PREFIX}style_rule"])
    assert np.array_equal(style.shared, trained_state[f"{EDITOR_PREFIX}style_shared"])
    assert np.abs(style.rule).max() > 0  # the fixture's base is not all zeros here


def test_bundle_is_verified(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    DeviceModels(copy, threads=1, quantized=False)
    with open(copy / "scorer-adapter.onnx", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(BundleInvalid, match="hash does not match"):
        DeviceModels(copy, threads=1)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["version"] = "99"
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleInvalid, match="version '99'"):
        DeviceModels(copy, threads=1)
    with pytest.raises(BundleInvalid, match="no bundle.json"):
        DeviceModels(tmp_path, threads=1)
