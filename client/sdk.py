"""The on-device SDK: personalize a black-box LLM for one user, with their data on the device only.

Answering needs neither torch nor Flower: BM25 over the user's history, the reranker and the adapter
run in onnxruntime from a model bundle, the LLM is any OpenAI-compatible endpoint (or the embedded one).

    >>> import tempfile
    >>> client = PersonalClient(tempfile.mkdtemp(), task="LaMP-3", llm="http://127.0.0.1:1/v1")
    >>> client.add_history([{"text": "Loved it", "score": "5"}, {"text": "Broke in a day", "score": "1"}])
    2
    >>> len(client.history)
    2

Typical use (needs a bundle from ``fedhydra export`` or a federated run, and an LLM)::

    client = PersonalClient("store/", task="LaMP-7", llm="http://127.0.0.1:8080/v1", bundle="bundle/")
    client.add_history([{"id": "1", "text": "omg cant wait 4 the game lol"}])
    client.fit()                                  # fit this user's heads on their history (base frozen)
    result = client.answer("Paraphrase the following tweet ...: I am excited about the game.")
    result.output, result.records, result.candidates
    client.close()                                # or `with PersonalClient(...) as client:`

Without ``llm`` the client resolves the endpoint (``FEDHYDRA_LLM_BASE_URL``, else the embedded server, started on
demand); an embedded server it started stops when the client closes or the program exits, unless
``keep_llm_server=True`` (then it says so, and ``fedhydra llm stop`` stops it).

The store (one folder per user, see :mod:`client.store`) holds the history, the LLM-labelled episodes,
the heads (safetensors and their ONNX scorer graphs), the current bundle, and the encoder's embeddings of
the history records: records never change once added, so they are encoded once (by ``add_history``,
``fit`` or ``update_base``, whichever comes first with a bundle installed) under the identity of the encoder
(:func:`client.device.embedding_id`; a new base makes them stale and they are encoded again), and answering
encodes only the query and the candidates. Every write is atomic.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from client.device import PERSONAL, DeviceModels, OnnxScorer, embedding_id, fit_head, read_manifest, uses_int8
from client.guard import check_heads
from client.store import UserStore, text_digest
from shared.errors import ConfigError, DataFormatError
from shared.hydra.context import UserContext
from shared.hydra.episodes import EpisodeConfig, build_user_episodes
from shared.hydra.examples import role_examples
from shared.hydra.infer import Answer, InferenceConfig, answer
from shared.hydra.spec import HISTORY_ROLE, ROLES
from shared.hydra.variants import Variant
from shared.ledger import cost_of
from shared.llm.client import LLMClient, LLMConfig
from shared.llm.resolver import LLMEndpoint, resolve_llm
from shared.tasks import TaskSpec, get_task

__all__ = ["PersonalClient", "FitReport", "Answer", "HISTORY_ROLE", "ONBOARDING_CALLS"]

ONBOARDING_CALLS = 20
"""Most LLM calls a new user's onboarding (the episodes that fit their heads) may cost by default."""



@dataclass
class FitReport:
    """What fitting the heads cost: LLM calls and time apart from the on-device compute."""

    examples: dict[str, int] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    llm_calls: int = 0
    llm_seconds: float = 0.0
    fit_seconds: float = 0.0


class PersonalClient:
    """One user's personalized assistant on a device (see the module docstring).

    ``llm`` is an :class:`LLMClient`, an :class:`LLMConfig` or a URL; None resolves one
    (:func:`shared.llm.resolver.resolve_llm`: ``FEDHYDRA_LLM_BASE_URL``, else the embedded server, started if none
    runs). An embedded server this client started is stopped by :meth:`close` (or leaving a ``with`` block, or the
    program's exit) unless ``keep_llm_server``; a kept one is logged with how to stop it (``fedhydra llm stop``).
    """

    def __init__(self, store_dir: str | Path, *, task: str | TaskSpec = "LaMP-7", user: str = "me", llm: Any = None,
                 bundle: str | Path | None = None, threads: int = 2, quantized: bool = True,
                 inference: InferenceConfig = InferenceConfig(), episodes: EpisodeConfig | None = None,
                 fit_steps: int = 200, fit_lr: float = 0.05, head_l2: float = 0.05, llm_timeout: float = 60.0,
                 llm_concurrency: int = 4, bundle_in_place: bool = False, keep_llm_server: bool = False):
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        self.store = UserStore(store_dir, user, task=self.task.name)
        self._llm_arg = llm
        self._llm: LLMClient | None = llm if isinstance(llm, LLMClient) else None
        self._endpoint: LLMEndpoint | None = None
        self.llm_timeout = llm_timeout
        self.llm_concurrency = llm_concurrency
        self.keep_llm_server = keep_llm_server
        self.threads = threads
        self.quantized = quantized
        self.inference = inference
        self.episode_config = episodes or EpisodeConfig(pool=inference.pool, rerank_m=inference.m,
                                                        pseudo_questions=2, calls_per_user=ONBOARDING_CALLS)
        self._guard = threading.RLock()
        self._fitting: Future | None = None
        self.fit_steps, self.fit_lr, self.head_l2 = fit_steps, fit_lr, head_l2
        self._models: DeviceModels | None = None
        self._ctx: tuple[tuple[int, ...] | None, UserContext] | None = None
        self._replay: tuple[tuple, UserContext] | None = None
        self._bundle_in_place: Path | None = None
        if bundle is not None and bundle_in_place:
            self._bundle_in_place = Path(bundle)  # a read-only bundle shared by several users (simulations)
        elif bundle is not None:
            self.update_base(bundle)

    # -- the LLM, lazily (answering from cache or building nothing needs no endpoint) ----------------------
    @property
    def llm(self) -> LLMClient:
        """The LLM client, resolved on first use (see the class docstring)."""
        if self._llm is None:
            arg = self._llm_arg
            self._endpoint = resolve_llm(arg if isinstance(arg, LLMConfig) else None,
                                         url=arg if isinstance(arg, str) else None, keep=self.keep_llm_server,
                                         timeout_s=self.llm_timeout, concurrency=self.llm_concurrency)
            self._llm = LLMClient(self._endpoint.config)
        return self._llm

    def close(self) -> None:
        """Wait for a background fit, then release the LLM endpoint this client resolved: an embedded server it
        started stops (unless ``keep_llm_server``: then it is logged that it stays). Idempotent; a later call that
        needs the LLM resolves it again."""
        fitting = self._fitting
        if fitting is not None:
            wait([fitting])
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            self._llm = None
            endpoint.close()

    def __enter__(self) -> "PersonalClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- history ----------------------------------------------------------------------------------------
    @property
    def history(self) -> list[dict[str, str]]:
        return self.store.read_history()

    def add_history(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Validate and append profile items (the task's fields, e.g. ``text`` and ``score``); returns the total.

        Raises:
            DataFormatError: naming the item's index and the field that is missing or not text.
        """
        current = self.history
        clean = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise DataFormatError("add_history", f"expected an object, got {type(item).__name__}", index=i)
            row: dict[str, str] = {}
            for name in self.task.profile_fields:
                if name not in item:
                    raise DataFormatError("add_history", "missing", index=i, field=name)
                value = item[name]
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise DataFormatError("add_history", f"expected text, got {type(value).__name__}", index=i, field=name)
                row[name] = str(value)
            row["id"] = str(item.get("id", f"h{len(current) + i}"))
            clean.append(row)
        if self.task.labels and self.task.item_output:
            for i, row in enumerate(clean):
                if self.task.item_output(row) not in self.task.labels:
                    field = next((f for f in self.task.profile_fields if row.get(f) == self.task.item_output(row)), None)
                    raise DataFormatError("add_history", f"{self.task.item_output(row)!r} is not one of {list(self.task.labels)}",
                                          index=i, field=field)
        self.store.write_history(current + clean)
        self._ctx = None
        if self._models is not None or self._has_bundle():
            self._sync_history(self.models, compute=True)
        return len(current) + len(clean)

    def _sync_history(self, models: DeviceModels, *, compute: bool) -> None:
        """Pin the history records' embeddings in ``models``: the ones the store has cached for this encoder as
        they are; with ``compute`` the others are encoded now and the cache is written back."""
        texts = list(dict.fromkeys(self.task.item_text(item) for item in self.history))
        if not texts:
            return
        ident = models.embedding_id(HISTORY_ROLE)
        stored = self.store.read_embeddings(ident)
        digests = {t: text_digest(t) for t in texts}
        known = [t for t in texts if digests[t] in stored]
        if known:
            models.pin_history(HISTORY_ROLE, known, np.stack([stored[digests[t]] for t in known]))
        missing = [t for t in texts if digests[t] not in stored]
        if compute and missing:
            vectors = models.pin_history(HISTORY_ROLE, missing)
            cache = {digests[t]: stored[digests[t]] for t in known}
            cache.update({digests[t]: v for t, v in zip(missing, vectors)})
            self.store.write_embeddings(ident, cache)

    # -- the model bundle ---------------------------------------------------------------------------------
    @property
    def bundle_dir(self) -> Path:
        return self._bundle_in_place or self.store.path / "bundle"

    def _has_bundle(self) -> bool:
        return (self.bundle_dir / "bundle.json").exists()

    @property
    def models(self) -> DeviceModels:
        if self._models is None:
            if not self._has_bundle():
                raise ConfigError(f"{self.store.path}: no model bundle yet; call update_base(bundle_dir)")
            self._models = DeviceModels(self.bundle_dir, threads=self.threads, quantized=self.quantized)
            self._load_heads()
            self._sync_history(self._models, compute=False)
        return self._models

    def update_base(self, bundle: str | Path) -> None:
        """Take a new global base: verify the bundle, swap it in atomically, drop the history embeddings made
        by another encoder, refit heads if the user has data (re-encoding the history), else re-encode it."""
        source = Path(bundle)
        manifest = read_manifest(source)  # verifies format, version and every file's hash before anything moves
        new_id = embedding_id(manifest, HISTORY_ROLE, uses_int8(manifest, self.quantized))
        staging = self.store.path / f".bundle-{uuid.uuid4().hex[:8]}"
        shutil.copytree(source, staging)
        old = self.store.path / f".bundle-old-{uuid.uuid4().hex[:8]}"
        if self.bundle_dir.exists():
            os.replace(self.bundle_dir, old)
        os.replace(staging, self.bundle_dir)
        shutil.rmtree(old, ignore_errors=True)
        self._models = None
        for role in ROLES:
            (self.store.path / f"scorer-{role}.onnx").unlink(missing_ok=True)
        if self.store.embeddings_model() != new_id:
            self.store.clear_embeddings()
        if self.store.read_episodes():
            self.fit()
        elif self.history:
            self._sync_history(self.models, compute=True)

    def _load_heads(self) -> None:
        assert self._models is not None
        heads = self.store.read_heads(self._models.config)
        if heads:
            for role in ROLES:
                if f"head.{role}.weight" in heads:
                    self._models.load_personal(role, heads, self.store.path / f"scorer-{role}.onnx")

    # -- fitting ------------------------------------------------------------------------------------------
    def fit(self) -> FitReport:
        """Fit this user's heads on data derived from their history only, with the base frozen (no torch)."""
        report = FitReport()
        history = self.history
        if len(history) < 2:
            raise ConfigError("fit needs at least two history items")
        episodes = self.store.read_episodes()
        if episodes is None:  # onboarding: the LLM labels data made from the history (answers go on meanwhile)
            episodes, built = build_user_episodes(self.task, self.store.user, history, [], self.llm,
                                                  self.episode_config)
            self.store.write_episodes(episodes)
            report.llm_calls, report.llm_seconds = built.llm_calls, built.llm_seconds
        with self._guard:  # the on-device part: answers wait for it (seconds), then use the new heads
            return self._fit_heads(history, episodes, report)

    def fit_in_background(self) -> Future:
        """Start :meth:`fit` in a thread and return its future (``.result()`` is the :class:`FitReport`).

        The user gets answers at once: until the fit is done they come from the shared heads, then from the
        user's own (``Answer.personal`` says which). Onboarding asks the LLM at most ``episodes.calls_per_user``
        times (20 by default).
        """
        with self._guard:
            if self._fitting is None or self._fitting.done():
                self._fitting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fit").submit(self.fit)
            return self._fitting

    def _fit_heads(self, history: list[dict[str, str]], episodes, report: FitReport) -> FitReport:
        started = time.perf_counter()
        models = self.models
        self._sync_history(models, compute=True)
        ctx = UserContext.build(self.task, history, embed=self._embed)
        examples = role_examples(self.task, self.store.user, episodes, ctx, models.editor)
        heads: dict[str, np.ndarray] = {}
        prior: dict[str, np.ndarray] = {}
        for role in ROLES:
            shared = models.shared_weights(role)
            w, b = shared.head_w, shared.head_b
            prior[f"head.{role}.weight"], prior[f"head.{role}.bias"] = w, b
            usable = [e for e in examples[role] if e.target is not None and len(e.items) > 1]
            report.examples[role] = len(usable)
            if usable:
                models.prefetch(role, usable)
                inputs = [models.head_inputs(role, e) for e in usable]
                w, b, report.losses[role] = fit_head(inputs, [e.target for e in usable], w, b, steps=self.fit_steps,
                                                     lr=self.fit_lr, l2=self.head_l2)
            heads[f"head.{role}.weight"], heads[f"head.{role}.bias"] = w, b
        check_heads(heads, prior)  # client/guard.py: DivergedRound, the last good heads stay
        self.store.write_heads(heads, models.config, bundle=models.id)
        for role in ROLES:
            models.load_personal(role, heads, self.store.path / f"scorer-{role}.onnx")
        report.fit_seconds = time.perf_counter() - started
        return report

    # -- answering ------------------------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """The history encoder, the contexts' ``embed`` (history records are pinned: only queries are encoded);
        the models load on first use (a rating model needs them, other tasks never call this)."""
        return self.models.embed(HISTORY_ROLE, list(texts))

    def _replay_context(self, history: Sequence[Mapping[str, str]]) -> UserContext:
        """The context of a given history, kept while the same history is asked again (one per question)."""
        key = tuple((item.get("id"), self.task.item_text(item)) for item in history)
        if self._replay is None or self._replay[0] != key:
            self._replay = (key, UserContext.build(self.task, list(history), embed=self._embed))
        return self._replay[1]

    def _context(self) -> UserContext:
        """The stored history's context (style, word counts, label prior), rebuilt only when the history file
        changed (every write replaces it: a new inode), not on every answer."""
        try:
            stat = (self.store.path / "history.json").stat()
            key: tuple[int, ...] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        if self._ctx is None or self._ctx[0] != key:
            self._ctx = (key, UserContext.build(self.task, self.history, embed=self._embed))
        return self._ctx[1]

    def answer(self, input: str, *, task: str | None = None, variant: str | Variant = "hydra",
               history: Sequence[Mapping[str, str]] | None = None) -> Answer:
        """Answer one query: the output, the records used (with reranker scores), every candidate's score and what
        the answer cost (``result.cost``: LLM answers used, requests sent, their seconds).

        ``variant`` names how to answer (:mod:`shared.hydra.variants`: ``"hydra"``, ``"hydra-shared-head"``,
        ``"hydra-calls-1"``, ...); before this user's heads are fitted, every variant answers with the shared heads.
        ``history`` answers as of that history instead of the stored one (replaying time-ordered data).
        """
        if task is not None and get_task(task).name != self.task.name:
            raise ConfigError(f"this client is for {self.task.name}, not {get_task(task).name}")
        models = self.models
        ctx = self._context() if history is None else self._replay_context(history)
        llm = self.llm
        started = time.perf_counter()
        with self._guard, llm.meter() as meter:
            heads = {r: PERSONAL for r in ROLES} if any(models.has_personal(r) for r in ROLES) else None
            result = answer(self.task, input, ctx, llm, OnnxScorer(models), models.editor, heads=heads,
                            config=self.inference, variant=variant, margin=models.margin, rating=models.rating,
                            anchor=models.anchor)
        result.cost = cost_of(meter, time.perf_counter() - started).as_dict()
        return result
