"""The device runtime of a model bundle: ONNX encoders and scorers in onnxruntime, numpy elsewhere, no torch.

:class:`DeviceModels` loads a bundle (made by :func:`shared.hydra.export.export_bundle`), checks its manifest
and file hashes, embeds texts with the role's ONNX encoder (an in-memory cache keyed by text, so a user's
history is embedded once per bundle), and scores items with the shared scorer or a user's own scorer graph.
:func:`fit_head` fits a personal head in numpy on features computed by the frozen ONNX base.

Example::

    models = DeviceModels("store/alice/bundle", threads=2, quantized=True)
    models.embed("reranker", ["a text"]).shape            # (1, 384)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from shared.errors import FedHydraError
from shared.hydra.bundle import load_tensors
from shared.hydra.editor import InputEditor
from shared.hydra.examples import RoleExample
from shared.hydra.scorer_graph import ScorerWeights, build_scorer_model, numpy_hidden
from shared.hydra.spec import EDITOR_PREFIX, EMBED_DIM, N_EXTRA, ROLES, ModelConfig
from shared.hydra.tokenizer import TextTokenizer

__all__ = ["BundleInvalid", "DeviceModels", "OnnxScorer", "fit_head", "PERSONAL"]

PERSONAL = "personal"


class BundleInvalid(FedHydraError):
    """A model bundle is missing files, has a wrong hash, or another format version."""


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class DeviceModels:
    """Encoders, scorers, trunks, shared heads and the editor of one bundle."""

    def __init__(self, bundle_dir: str | Path, *, threads: int = 2, quantized: bool = True, verify: bool = True):
        from shared.hydra.export import BUNDLE_FORMAT, BUNDLE_VERSION

        self.dir = Path(bundle_dir)
        manifest_path = self.dir / "bundle.json"
        if not manifest_path.exists():
            raise BundleInvalid(f"{self.dir}: no bundle.json (not a FedHydra model bundle)")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise BundleInvalid(f"{manifest_path}: damaged ({exc})") from None
        if self.manifest.get("format") != BUNDLE_FORMAT or self.manifest.get("version") != BUNDLE_VERSION:
            raise BundleInvalid(f"{manifest_path}: format {self.manifest.get('format')!r} version "
                                f"{self.manifest.get('version')!r}; this FedHydra reads {BUNDLE_FORMAT} v{BUNDLE_VERSION}")
        if verify:
            for name, digest in self.manifest["files"].items():
                file = self.dir / name
                if not file.exists() or hashlib.sha256(file.read_bytes()).hexdigest() != digest:
                    raise BundleInvalid(f"{file}: missing or its hash does not match bundle.json")
        self.config = ModelConfig.from_json(json.dumps(self.manifest["model"]))
        self.id = str(self.manifest.get("content", ""))[:16] or \
            hashlib.sha256(json.dumps(self.manifest["files"], sort_keys=True).encode()).hexdigest()[:16]
        self.threads = threads
        self.quantized = quantized and all(f"encoder-{r}.int8.onnx" in self.manifest["files"] for r in ROLES)
        self.tokenizer = TextTokenizer(self.dir / "tokenizer.json", max_length=self.config.max_query_tokens)
        self._encoders = {r: _session(self.dir / f"encoder-{r}{'.int8' if self.quantized else ''}.onnx", threads)
                          for r in ROLES}
        self._scorers = {(r, None): _session(self.dir / f"scorer-{r}.onnx", threads) for r in ROLES}
        self.base, _ = load_tensors(self.dir / "base.safetensors", kind="base", model=self.config)
        self.editor = InputEditor.from_state({k[len(EDITOR_PREFIX):]: v for k, v in self.base.items()
                                              if k.startswith(EDITOR_PREFIX)})
        self._cache: dict[tuple[str, int, str], np.ndarray] = {}

    # -- embeddings -----------------------------------------------------------------------------------
    def embed(self, role: str, texts: Sequence[str], max_tokens: int | None = None, chunk: int = 32) -> np.ndarray:
        """Embeddings ``[len(texts), 384]``, cached by (role, token budget, text)."""
        limit = max_tokens or self.config.max_item_tokens
        missing = [t for t in dict.fromkeys(texts) if (role, limit, t) not in self._cache]
        for i in range(0, len(missing), chunk):
            part = missing[i: i + chunk]
            batch = self.tokenizer(part, limit)
            out = self._encoders[role].run(None, batch)[0]
            for t, e in zip(part, out):
                self._cache[(role, limit, t)] = e
        if not texts:
            return np.zeros((0, EMBED_DIM), np.float32)
        return np.stack([self._cache[(role, limit, t)] for t in texts]).astype(np.float32)

    # -- scoring ----------------------------------------------------------------------------------------
    def shared_weights(self, role: str) -> ScorerWeights:
        return ScorerWeights.from_state(self.base, self.base, role, head_prefix=f"base.{role}.shared_head.")

    def load_personal(self, role: str, head: Mapping[str, np.ndarray], path: Path) -> None:
        """Write and load a user's scorer graph for ``role`` (trunk from the bundle, head from ``head``)."""
        from shared.io import atomic_write_bytes

        weights = ScorerWeights.from_state(self.base, head, role)
        atomic_write_bytes(path, build_scorer_model(weights, EMBED_DIM, N_EXTRA[role]).SerializeToString())
        self._scorers[(role, PERSONAL)] = _session(path, self.threads)

    def has_personal(self, role: str) -> bool:
        return (role, PERSONAL) in self._scorers

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray:
        """Scores of the example's items; ``head`` is :data:`PERSONAL` or None (the shared head)."""
        q = self.embed(role, [example.query], self.config.max_query_tokens)
        items = self.embed(role, example.items, self.config.max_item_tokens)
        key = (role, PERSONAL if head == PERSONAL and self.has_personal(role) else None)
        out = self._scorers[key].run(None, {"query": q, "items": items,
                                            "extras": np.asarray(example.extras, np.float32)})[0]
        return np.asarray(out, np.float32)

    def head_inputs(self, role: str, example: RoleExample) -> np.ndarray:
        """The head's input ``[hidden, extras]`` of each item under the frozen base (for fitting)."""
        q = self.embed(role, [example.query], self.config.max_query_tokens)
        items = self.embed(role, example.items, self.config.max_item_tokens)
        return numpy_hidden(self.shared_weights(role), q, items, np.asarray(example.extras, np.float32))


class OnnxScorer:
    """:class:`shared.hydra.infer.Scorer` backed by :class:`DeviceModels`."""

    def __init__(self, models: DeviceModels):
        self.models = models

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray:
        return self.models.score(role, example, head)


def fit_head(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], w0: np.ndarray, b0: np.ndarray, *,
             steps: int = 200, lr: float = 0.05, l2: float = 0.05) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit a linear head ``z @ w.T + b`` by Adam on the softmax cross-entropy of each example's soft target,
    plus ``l2 * ||(w, b) - (w0, b0)||^2`` (the pull toward the shared head). Returns (w, b, final loss)."""
    w, b = w0.astype(np.float64).copy(), b0.astype(np.float64).copy()
    params = [w, b]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    n = len(inputs)
    loss = float("nan")
    for t in range(1, steps + 1):
        gw = np.zeros_like(w)
        gb = np.zeros_like(b)
        total = 0.0
        for z, y in zip(inputs, targets):
            s = z @ w[0] + b[0]
            s = s - s.max()
            p = np.exp(s) / np.exp(s).sum()
            total += float(-(y * np.log(p + 1e-12)).sum())
            g = p * y.sum() - y  # d CE / d scores
            gw[0] += g @ z
            gb[0] += g.sum()
        grads = [gw / n + 2 * l2 * (w - w0), gb / n + 2 * l2 * (b - b0)]
        loss = total / n
        for x, gx, mx, vx in zip(params, grads, m, v):
            mx *= 0.9
            mx += 0.1 * gx
            vx *= 0.999
            vx += 0.001 * gx * gx
            x -= lr * (mx / (1 - 0.9 ** t)) / (np.sqrt(vx / (1 - 0.999 ** t)) + 1e-8)
    return w.astype(np.float32), b.astype(np.float32), loss
