"""The device runtime of a model bundle: ONNX encoders and shared scorers in onnxruntime, numpy elsewhere; no torch,
no onnx.

:class:`DeviceModels` loads a bundle (made by :func:`shared.training.export.export_bundle`), checks its manifest
and file hashes, embeds texts with the role's ONNX encoder, and scores items with the bundle's shared scorer or,
in numpy (:func:`shared.hydra.scorer_graph.numpy_scores`), with the bundle's trunk and a user's own head.
:func:`fit_head` fits a personal head in numpy on features computed by the frozen ONNX base.

Embeddings are cached in memory under (role, token ids after truncation), so a text embedded as a query
and again as an item within both token budgets (LaMP-7's input, which is also a candidate) is encoded once:

- a user's history records are *pinned* (:meth:`DeviceModels.pin_history`): kept for as long as the models
  live, and persisted in the user's store by the SDK (:meth:`client.store.UserStore.write_embeddings`, keyed
  by :func:`embedding_id`), so that answering only encodes the query and the candidates;
- every other text (queries, candidates) goes to a bounded LRU of :data:`LRU_SIZE` entries.

Texts to encode are sorted by length and split into batches that minimize padded tokens plus a fixed
per-run cost (:func:`length_batches`). The sessions' threads sleep when idle rather than spin (see
:func:`_session`): a device's cores are shared with other apps. Loading verifies the hashes of the files it
loads, read in blocks (:func:`read_manifest`).

Example::

    models = DeviceModels("store/alice/bundle", threads=2, quantized=True)
    models.embed("reranker", ["a text"]).shape            # (1, 384)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from shared.errors import FedHydraError
from shared.hydra.adam import Adam
from shared.hydra.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, load_tensors
from shared.hydra.decision import BASELINE_ANCHOR
from shared.hydra.editor import InputEditor
from shared.hydra.examples import RoleExample
from shared.hydra.rating_head import SharedRatingHead
from shared.hydra.scorer_graph import ScorerWeights, numpy_hidden, numpy_scores
from shared.hydra.spec import EDITOR_PREFIX, EMBED_DIM, RATING_PREFIX, ROLES, ModelConfig
from shared.hydra.tokenizer import TextTokenizer

__all__ = [
    "BundleInvalid",
    "DeviceModels",
    "OnnxScorer",
    "fit_head",
    "PERSONAL",
    "LRU_SIZE",
    "embedding_id",
    "uses_int8",
    "length_batches",
    "read_manifest",
]

PERSONAL = "personal"
LRU_SIZE = 4096
MAX_LLM_CALLS = 64
"""The most LLM answers per answer a bundle may ask for (its ``llm_calls``; the config's pool is smaller)."""
"""Most embeddings of non-history texts (queries, candidates) kept in memory (1.5 kB each)."""
RUN_COST_TOKENS = 16
"""The fixed cost of one encoder run, in padded tokens (CPU, a MiniLM: about the time of 16 tokens)."""
MAX_BATCH = 32

Key = tuple[str, bytes]


class BundleInvalid(FedHydraError):
    """A model bundle is missing files, has a wrong hash, or another format version."""


def _session(path: Path, threads: int, spin: bool = False):
    """An onnxruntime CPU session. Without ``spin`` its idle threads sleep instead of spin-waiting for work: on a
    device whose cores other processes share, spinning threads fight them (and each other) for the cores; on 2
    shared cores, rerank 10 + score 8 took about 4x longer with spinning (``scripts/bench_sdk.py`` measures both)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _file_sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MB blocks (no copy of a 90 MB encoder in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle_dir: str | Path, *, verify: bool = True, only: Sequence[str] | None = None) -> dict:
    """A bundle's manifest (``bundle.json``), checked: its format and version, and with ``verify`` the SHA-256
    of every file it lists, or of those named in ``only`` (read in blocks: checking a bundle loads no model).

    Raises:
        BundleInvalid: no or a damaged manifest, another format or version, a file missing or altered.
    """
    folder = Path(bundle_dir)
    path = folder / "bundle.json"
    if not path.exists():
        raise BundleInvalid(f"{folder}: no bundle.json (not a FedHydra model bundle)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise BundleInvalid(f"{path}: damaged ({exc})") from None
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
        raise BundleInvalid(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}; this FedHydra reads {BUNDLE_FORMAT} v{BUNDLE_VERSION}"
        )
    if verify:
        for name, digest in manifest["files"].items():
            if only is not None and name not in only:
                continue
            file = folder / name
            if not file.exists() or _file_sha256(file) != digest:
                raise BundleInvalid(f"{file}: missing or its hash does not match bundle.json")
    return manifest


def uses_int8(manifest: Mapping[str, object], quantized: bool) -> bool:
    """Whether models asked for ``quantized`` ones run the int8 encoders (the bundle must have them)."""
    files = manifest["files"]
    assert isinstance(files, Mapping)
    return quantized and all(f"encoder-{r}.int8.onnx" in files for r in ROLES)


def embedding_id(manifest: Mapping[str, object], role: str, quantized: bool) -> str:
    """The identity of a role's embeddings under a bundle: the digest of the encoder file that makes them,
    the tokenizer and the token budgets. Cached embeddings made under another id are stale."""
    files = manifest["files"]
    model = manifest["model"]
    assert isinstance(files, Mapping) and isinstance(model, Mapping)
    name = f"encoder-{role}{'.int8' if quantized else ''}.onnx"
    parts = [
        name,
        files.get(name),
        files.get("tokenizer.json"),
        model.get("max_query_tokens"),
        model.get("max_item_tokens"),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def length_batches(
    lengths: Sequence[int], *, run_cost: int = RUN_COST_TOKENS, max_batch: int = MAX_BATCH
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, shortest first, minimizing the padded tokens of every batch
    (its size times its longest sequence) plus ``run_cost`` per batch (an exact dynamic programme).

    >>> length_batches([30, 5, 6, 29])
    [[1, 2], [3, 0]]
    >>> length_batches([10, 12, 11])
    [[0, 2, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = lengths[order[end - 1]]
        for start in range(max(0, end - max_batch), end):
            cost = best[start] + run_cost + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches = []
    end = n
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


class DeviceModels:
    """Encoders, scorers, trunks, shared heads and the editor of one bundle."""

    def __init__(
        self,
        bundle_dir: str | Path,
        *,
        threads: int = 2,
        quantized: bool = True,
        verify: bool = True,
        lru_size: int = LRU_SIZE,
        spin: bool = False,
    ):
        self.dir = Path(bundle_dir)
        self.manifest = read_manifest(self.dir, verify=False)
        self.quantized = uses_int8(self.manifest, quantized)
        encoders = {r: f"encoder-{r}{'.int8' if self.quantized else ''}.onnx" for r in ROLES}
        if verify:  # the files these models load (the other variant's encoders are not read)
            read_manifest(
                self.dir,
                only=[*encoders.values(), *(f"scorer-{r}.onnx" for r in ROLES), "base.safetensors", "tokenizer.json"],
            )
        self.config = ModelConfig.from_json(json.dumps(self.manifest["model"]))
        self.id = (
            str(self.manifest.get("content", ""))[:16]
            or hashlib.sha256(json.dumps(self.manifest["files"], sort_keys=True).encode()).hexdigest()[:16]
        )
        self.threads = threads
        self.spin = spin
        self.tokenizer = TextTokenizer(self.dir / "tokenizer.json", max_length=self.config.max_query_tokens)
        self._encoders = {r: _session(self.dir / name, threads, spin) for r, name in encoders.items()}
        self._scorers = {r: _session(self.dir / f"scorer-{r}.onnx", threads, spin) for r in ROLES}
        self._personal: dict[str, ScorerWeights] = {}
        self.base, _ = load_tensors(self.dir / "base.safetensors", kind="base", model=self.config)
        self.editor = InputEditor.from_state(
            {k[len(EDITOR_PREFIX) :]: v for k, v in self.base.items() if k.startswith(EDITOR_PREFIX)}
        )
        self.rating = SharedRatingHead.from_state(
            {k[len(RATING_PREFIX) :]: v for k, v in self.base.items() if k.startswith(RATING_PREFIX)}
        )
        """The shared rating head (:mod:`shared.hydra.rating_head`), zeros unless the task rates."""
        try:
            self.margin: float | None = float(self.manifest["margin"]) if "margin" in self.manifest else None
        except (TypeError, ValueError):
            raise BundleInvalid("bundle.json: field 'margin' is no number") from None
        """The decision margin chosen on training users (:mod:`shared.hydra.decision`); None: no margin rule."""
        if self.margin is not None and math.isnan(self.margin):
            raise BundleInvalid("bundle.json: field 'margin' is NaN")
        self.anchor: str = str(self.manifest.get("anchor", BASELINE_ANCHOR))
        """The answer the margin rule keeps (chosen with the margin; :func:`shared.hydra.candidates.anchors_for`)."""
        calls = self.manifest.get("llm_calls")
        if calls is not None and (
            isinstance(calls, bool) or not isinstance(calls, int) or not 0 <= calls <= MAX_LLM_CALLS
        ):
            raise BundleInvalid(f"bundle.json: field 'llm_calls' is no whole number in [0, {MAX_LLM_CALLS}]")
        self.llm_calls: int | None = calls
        """How many LLM answers an answer asks for (chosen with the margin); None: the whole pool's."""
        self.lru_size = lru_size
        self._history: dict[Key, np.ndarray] = {}
        self._recent: OrderedDict[Key, np.ndarray] = OrderedDict()
        self.encoded = 0
        """How many texts the encoders have encoded (for tests and benchmarks)."""
        self.encoded_tokens = 0
        """How many tokens, padding included, the encoders have run on."""

    # -- embeddings -----------------------------------------------------------------------------------
    def embedding_id(self, role: str) -> str:
        """See :func:`embedding_id`."""
        return embedding_id(self.manifest, role, self.quantized)

    def _keys(self, role: str, texts: Sequence[str], limit: int) -> list[Key]:
        if not texts:
            return []
        batch = self.tokenizer(list(texts), limit)
        lengths = batch["attention_mask"].sum(axis=1)
        return [(role, batch["input_ids"][i, :n].tobytes()) for i, n in enumerate(lengths)]

    def _cached(self, key: Key) -> np.ndarray | None:
        hit = self._history.get(key)
        if hit is None:
            hit = self._recent.get(key)
            if hit is not None:
                self._recent.move_to_end(key)
        return hit

    def _vectors(self, keys: Sequence[Key]) -> np.ndarray:
        """Embeddings of token-id keys (one role), encoding the ones not cached."""
        found: dict[Key, np.ndarray] = {}
        missing: list[Key] = []
        for key in dict.fromkeys(keys):
            hit = self._cached(key)
            if hit is None:
                missing.append(key)
            else:
                found[key] = hit
        if missing:
            ids = [np.frombuffer(k[1], dtype=np.int64) for k in missing]
            for batch in length_batches([len(x) for x in ids]):
                width = max(len(ids[i]) for i in batch)
                input_ids = np.zeros((len(batch), width), np.int64)
                mask = np.zeros((len(batch), width), np.int64)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = ids[i]
                    mask[row, : len(ids[i])] = 1
                out = self._encoders[missing[0][0]].run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
                self.encoded_tokens += input_ids.size
                for row, i in enumerate(batch):
                    found[missing[i]] = np.asarray(out[row], np.float32)
            self.encoded += len(missing)
            for key in missing:
                self._recent[key] = found[key]
            while len(self._recent) > self.lru_size:
                self._recent.popitem(last=False)
        if not keys:
            return np.zeros((0, EMBED_DIM), np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def embed(self, role: str, texts: Sequence[str], max_tokens: int | None = None) -> np.ndarray:
        """Embeddings ``[len(texts), 384]`` of texts cut to ``max_tokens`` (default: the item budget)."""
        return self._vectors(self._keys(role, texts, max_tokens or self.config.max_item_tokens))

    def _query_and_items(self, role: str, query: str, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The query's and the items' embeddings, encoded together (one set of batches)."""
        q = self._keys(role, [query], self.config.max_query_tokens)
        c = self._keys(role, items, self.config.max_item_tokens)
        vectors = self._vectors(q + c)
        return vectors[:1], vectors[1:]

    def prefetch(self, role: str, examples: Sequence[RoleExample]) -> None:
        """Encode every query and item of ``examples`` not cached yet, in as few batches as possible."""
        keys = self._keys(role, [e.query for e in examples], self.config.max_query_tokens)
        keys += self._keys(role, [t for e in examples for t in e.items], self.config.max_item_tokens)
        self._vectors(keys)

    def pin_history(self, role: str, texts: Sequence[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """Keep the item embeddings of a user's history records for as long as these models live.

        With ``vectors`` (read back from the user's store, made under :meth:`embedding_id`) they are taken as
        they are; otherwise the texts not cached yet are encoded. Returns the embeddings ``[len(texts), 384]``.
        """
        keys = self._keys(role, texts, self.config.max_item_tokens)
        if vectors is None:
            vectors = self._vectors(keys)
        vectors = np.asarray(vectors, np.float32).reshape(len(keys), EMBED_DIM)
        for key, vector in zip(keys, vectors):
            self._history[key] = vector
            self._recent.pop(key, None)
        return vectors

    def clear_cache(self, *, history: bool = True) -> None:
        """Forget cached embeddings: queries and candidates, and the pinned history records too if ``history``."""
        self._recent.clear()
        if history:
            self._history.clear()

    # -- scoring ----------------------------------------------------------------------------------------
    def shared_weights(self, role: str) -> ScorerWeights:
        return ScorerWeights.from_state(self.base, self.base, role, head_prefix=f"base.{role}.shared_head.")

    def load_personal(self, role: str, head: Mapping[str, np.ndarray]) -> None:
        """Score ``role`` with a user's own head (``head.<role>.*`` of ``head``) on the bundle's trunk, in numpy."""
        self._personal[role] = ScorerWeights.from_state(self.base, head, role)

    def has_personal(self, role: str) -> bool:
        return role in self._personal

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray:
        """Scores of the example's items; ``head`` is :data:`PERSONAL` (the user's head, if loaded) or None (the
        shared head, the bundle's ONNX scorer)."""
        q, items = self._query_and_items(role, example.query, example.items)
        extras = np.asarray(example.extras, np.float32)
        personal = self._personal.get(role) if head == PERSONAL else None
        if personal is not None:
            return numpy_scores(personal, q, items, extras).astype(np.float32, copy=False)
        out = self._scorers[role].run(None, {"query": q, "items": items, "extras": extras})[0]
        return np.asarray(out, np.float32)

    def head_inputs(self, role: str, example: RoleExample) -> np.ndarray:
        """The head's input ``[hidden, extras]`` of each item under the frozen base (for fitting)."""
        q, items = self._query_and_items(role, example.query, example.items)
        return numpy_hidden(self.shared_weights(role), q, items, np.asarray(example.extras, np.float32))


class OnnxScorer:
    """:class:`shared.hydra.infer.Scorer` backed by :class:`DeviceModels`."""

    def __init__(self, models: DeviceModels):
        self.models = models

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray:
        return self.models.score(role, example, head)


def fit_head(
    inputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    w0: np.ndarray,
    b0: np.ndarray,
    *,
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit a linear head ``z @ w.T + b`` by Adam on the softmax cross-entropy of each example's soft target,
    plus ``l2 * ||(w, b) - (w0, b0)||^2`` (the pull toward the shared head). Returns (w, b, final loss)."""
    w, b = w0.astype(np.float64).copy(), b0.astype(np.float64).copy()
    adam = Adam([w, b], lr)
    n = len(inputs)
    loss = float("nan")
    for _ in range(steps):
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
        adam.step(grads)
    return w.astype(np.float32), b.astype(np.float32), loss
