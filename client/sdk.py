"""The on-device SDK: personalize a black-box LLM for one user, with their data on the device only.

Answering needs neither torch nor Flower: BM25 over the user's history, the reranker and the adapter
run in onnxruntime from a model bundle, the LLM is any OpenAI-compatible endpoint (or the embedded one).

    >>> import tempfile
    >>> client = PersonalClient(tempfile.mkdtemp(), task="LaMP-3", llm="http://127.0.0.1:1/v1")
    >>> client.device.threads
    2
    >>> client.add_history([{"text": "Loved it", "score": "5"}, {"text": "Broke in a day", "score": "1"}])
    2
    >>> len(client.history)
    2

Typical use (needs a bundle from ``fedhydra export`` or a federated run, and an LLM)::

    client = PersonalClient("store/", "bundle/", llm="http://127.0.0.1:8080/v1", task="LaMP-7",
                            device=DeviceConfig(threads=2, llm_concurrency=4))
    client.add_history([{"id": "1", "text": "omg cant wait 4 the game lol"}])
    client.fit()                                  # fit this user's heads on their history (base frozen)
    result = client.answer("Paraphrase the following tweet ...: I am excited about the game.")
    result.output, result.records, result.candidates
    client.close()                                # or `with PersonalClient(...) as client:`

Without ``llm`` the client resolves the endpoint (``FEDHYDRA_LLM_BASE_URL``, else the embedded server, started on
demand); an embedded server it started stops when the client closes or the program exits, unless
``DeviceConfig(keep_llm_server=True)`` (then it says so, and ``fedhydra llm stop`` stops it).

``store`` is a folder (this user's store is made in it, as user ``"me"``) or an open :class:`client.store.UserStore`
(an app that keeps several users in one folder opens each user's own); ``device`` holds every device-side knob
(:class:`client.device_config.DeviceConfig`: threads, int8 or float encoders, retrieval and pool sizes, onboarding's
LLM budget, the head fit, the LLM's deadline and concurrency).

The store (one folder per user, see :mod:`client.store`) holds the history, the LLM-labelled episodes,
the heads (safetensors; scored in numpy), the current bundle, and the encoder's embeddings of
the history records: records never change once added, so they are encoded once (by ``add_history``,
``fit`` or ``update_base``, whichever comes first with a bundle installed) under the identity of the encoder
(:func:`client.device.embedding_id`; a new base makes them stale and they are encoded again), and answering
encodes only the query and the candidates. Every write is atomic, and several processes may use one store at once
(``add_history`` appends in one transaction).

What the SDK does not trust: an onboarding whose LLM labels failed (an outage) is not stored as done: the episodes
that were labelled are kept and used, ``FitReport.failed`` counts the ones that failed, and the next :meth:`fit`
builds the onboarding again (the LLM cache serves what was answered); stored heads that do not load (non-finite,
out of range, another shape) are refused and removed, answers use the shared heads until the next :meth:`fit`;
``update_base`` installs a bundle only after it has loaded it and answered a probe question with it (no LLM).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from client.device import (
    PERSONAL,
    BundleInvalid,
    DeviceModels,
    OnnxScorer,
    embedding_id,
    fit_head,
    read_manifest,
    uses_int8,
)
from client.device_config import ONBOARDING_CALLS, DeviceConfig
from client.guard import check_heads
from client.store import StoreError, UserStore, text_digest
from shared.errors import ConfigError, DataFormatError
from shared.hydra.candidates import anchors_for
from shared.hydra.context import UserContext
from shared.hydra.decision import heads_needed
from shared.hydra.episodes import build_user_episodes
from shared.hydra.examples import role_examples
from shared.hydra.infer import Answer, answer
from shared.hydra.spec import HISTORY_ROLE, ROLES
from shared.hydra.variants import Variant
from shared.ledger import cost_of
from shared.llm.client import LLMClient, LLMConfig
from shared.llm.resolver import LLMEndpoint, resolve_llm
from shared.tasks import TaskSpec, get_task

__all__ = ["PersonalClient", "DeviceConfig", "FitReport", "Answer", "HISTORY_ROLE", "ONBOARDING_CALLS"]

_LOG = logging.getLogger("client.sdk")


@dataclass
class FitReport:
    """What fitting the heads cost: LLM calls and time apart from the on-device compute."""

    examples: dict[str, int] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    llm_calls: int = 0
    llm_seconds: float = 0.0
    fit_seconds: float = 0.0
    failed: int = 0
    """LLM labels this fit's onboarding lost to endpoint failures (not budget): the next :meth:`PersonalClient.fit`
    asks for them again. 0 when the onboarding is complete (or was not run)."""
    heads_needed: bool = True
    """False when the bundle's margin is ``inf`` (its cross-validation found that leaving the anchor never pays): no
    head can change an answer then, so the fit asked the LLM nothing and fitted nothing."""


class PersonalClient:
    """One user's personalized assistant on a device (see the module docstring).

    ``llm`` is an :class:`LLMClient`, an :class:`LLMConfig` or a URL; None resolves one
    (:func:`shared.llm.resolver.resolve_llm`: ``FEDHYDRA_LLM_BASE_URL``, else the embedded server, started if none
    runs). An embedded server this client started is stopped by :meth:`close` (or leaving a ``with`` block, or the
    program's exit) unless ``device.keep_llm_server``; a kept one is logged with how to stop it (``fedhydra llm
    stop``). ``bundle`` (a folder from ``fedhydra export`` or a federated run) is installed as by :meth:`update_base`;
    None answers with the bundle installed earlier.

    Raises:
        ConfigError: ``device`` is no :class:`DeviceConfig`, or ``store`` is a store of another task.
    """

    def __init__(
        self,
        store: str | Path | UserStore,
        bundle: str | Path | None = None,
        *,
        llm: Any = None,
        task: str | TaskSpec = "LaMP-7",
        device: DeviceConfig = DeviceConfig(),
    ):
        if not isinstance(device, DeviceConfig):
            raise ConfigError(f"device must be a DeviceConfig, got {type(device).__name__}")
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        self.device = device
        if isinstance(store, UserStore):
            if store.task != self.task.name:
                raise ConfigError(f"store is for {store.task}, this client for {self.task.name}")
            self.store = store
        else:
            self.store = UserStore(store, "me", task=self.task.name)
        self._llm_arg = llm
        self._llm: LLMClient | None = llm if isinstance(llm, LLMClient) else None
        self._endpoint: LLMEndpoint | None = None
        self._guard = threading.RLock()
        self._fitting: Future | None = None
        self._models: DeviceModels | None = None
        self._ctx: tuple[tuple[int, ...] | None, UserContext] | None = None
        if bundle is not None:
            self.update_base(bundle)

    # -- the LLM, lazily (answering from cache or building nothing needs no endpoint) ----------------------
    @property
    def llm(self) -> LLMClient:
        """The LLM client, resolved on first use (see the class docstring)."""
        if self._llm is None:
            arg = self._llm_arg
            self._endpoint = resolve_llm(
                arg if isinstance(arg, LLMConfig) else None,
                url=arg if isinstance(arg, str) else None,
                keep=self.device.keep_llm_server,
                timeout_s=self.device.llm_timeout,
                concurrency=self.device.llm_concurrency,
            )
            self._llm = LLMClient(self._endpoint.config)
        return self._llm

    def close(self) -> None:
        """Wait for a background fit, then release the LLM endpoint this client resolved: an embedded server it
        started stops (unless ``device.keep_llm_server``: then it is logged that it stays). Idempotent; a later call
        that needs the LLM resolves it again."""
        fitting = self._fitting
        if fitting is not None:
            wait([fitting])
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            self._llm = None
            endpoint.close()

    def __enter__(self) -> PersonalClient:
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
                    raise DataFormatError(
                        "add_history", f"expected text, got {type(value).__name__}", index=i, field=name
                    )
                row[name] = str(value)
            if "id" in item:
                row["id"] = str(item["id"])
            clean.append(row)  # without an id: ``h<position>``, given by the store as it appends
        if self.task.labels and self.task.item_output:
            for i, row in enumerate(clean):
                if self.task.item_output(row) not in self.task.labels:
                    field = next(
                        (f for f in self.task.profile_fields if row.get(f) == self.task.item_output(row)), None
                    )
                    raise DataFormatError(
                        "add_history",
                        f"{self.task.item_output(row)!r} is not one of {list(self.task.labels)}",
                        index=i,
                        field=field,
                    )
        total = self.store.append_history(clean)  # one transaction: another process's items are kept
        self._ctx = None
        if self._models is not None or self._has_bundle():
            self._sync_history(self.models, compute=True)
        return total

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

    def _adopt(self, models: DeviceModels) -> DeviceModels:
        """Make ``models`` this client's: the stored heads (if they load) and the cached history embeddings."""
        self._models = models
        self._load_heads()
        self._sync_history(models, compute=False)
        return models

    # -- the model bundle ---------------------------------------------------------------------------------
    @property
    def bundle_dir(self) -> Path:
        """The installed bundle: ``bundle`` in the store."""
        return self.store.path / "bundle"

    def _has_bundle(self) -> bool:
        return (self.bundle_dir / "bundle.json").exists()

    @property
    def models(self) -> DeviceModels:
        if self._models is None:
            if not self._has_bundle():
                raise ConfigError(f"{self.store.path}: no model bundle yet; call update_base(bundle_dir)")
            return self._adopt(
                DeviceModels(self.bundle_dir, threads=self.device.threads, quantized=self.device.quantized)
            )
        return self._models

    def update_base(self, bundle: str | Path) -> None:
        """Take a new global base: copy the bundle into a staging folder, verify it there (format, version, every
        file's hash), prove that it answers (:meth:`_prove`: it loads, its anchor and margin are usable, and it
        answers a probe question with finite scores, no LLM), then swap it in; drop the history embeddings made by
        another encoder, refit heads if the user has data (re-encoding the history), else re-encode it.

        Raises:
            BundleInvalid: the bundle is damaged or cannot answer; the installed bundle is untouched.
        """
        source = Path(bundle)
        read_manifest(source, verify=False)  # format and version, before anything is copied
        with self.store.writing():  # a process opening the store meanwhile leaves the staging folder alone
            staging = self.store.path / f".bundle-{uuid.uuid4().hex[:8]}"
            try:
                shutil.copytree(source, staging)
                manifest = read_manifest(staging)  # every file's hash, on the copy that will be installed
                models = self._prove(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            new_id = embedding_id(manifest, HISTORY_ROLE, uses_int8(manifest, self.device.quantized))
            old = self.store.path / f".bundle-old-{uuid.uuid4().hex[:8]}"
            with self._guard:
                if self.bundle_dir.exists():
                    os.replace(self.bundle_dir, old)
                os.replace(staging, self.bundle_dir)  # a kill before this: opening the store restores ``old``
                shutil.rmtree(old, ignore_errors=True)
                models.dir = self.bundle_dir
                self._models = None
                if self.store.embeddings_model() != new_id:
                    self.store.clear_embeddings()
                self._adopt(models)
        if self.store.read_episodes():
            self.fit()
        elif self.history:
            self._sync_history(self.models, compute=True)

    def _prove(self, folder: Path) -> DeviceModels:
        """Load the bundle in ``folder`` and answer a probe question with it, without an LLM: its anchor must be one
        of this task's, its margin a number (not NaN), and every score finite. Returns the loaded models.

        Raises:
            BundleInvalid: naming what failed (the bundle's model config unlike its base's, an unknown anchor, ...).
        """
        try:
            models = DeviceModels(folder, threads=self.device.threads, quantized=self.device.quantized, verify=False)
        except BundleInvalid:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime, safetensors and the base's checks raise several types
            raise BundleInvalid(
                f"the new bundle does not load: {type(exc).__name__}: {str(exc).replace(str(folder), 'bundle')[:300]}"
            ) from None
        if models.anchor not in anchors_for(self.task):
            raise BundleInvalid(f"the new bundle's anchor is none of {list(anchors_for(self.task))} ({self.task.name})")
        if models.margin is not None and math.isnan(models.margin):
            raise BundleInvalid("the new bundle's margin is NaN")
        items = self.history[:8] or [
            {**{f: f"probe record {i}" for f in self.task.profile_fields}, "id": str(i)} for i in range(2)
        ]
        question = self.task.pseudo_question(items[0])
        probe = question[0] if question is not None else self.task.instruction + self.task.item_text(items[0])
        try:
            ctx = UserContext.build(self.task, items, embed=lambda texts: models.embed(HISTORY_ROLE, list(texts)))
            result = answer(
                self.task,
                probe,
                ctx,
                None,
                OnnxScorer(models),
                models.editor,
                heads=None,
                config=self.device.inference,
                variant="hydra",
                margin=models.margin,
                rating=models.rating,
                anchor=models.anchor,
                llm_calls=models.llm_calls,
            )
        except Exception as exc:  # noqa: BLE001 - whatever fails here would fail every answer()
            raise BundleInvalid(f"the new bundle does not answer: {type(exc).__name__}") from None
        scores = [r["score"] for r in result.records] + [c["score"] for c in result.candidates]
        if not all(math.isfinite(float(s)) for s in scores):
            raise BundleInvalid("the new bundle answers with non-finite scores")
        models.clear_cache()  # the probe leaves no trace: no cached embedding, no count
        models.encoded = models.encoded_tokens = 0
        return models

    def _load_heads(self) -> None:
        """Load the stored heads into the models; heads that fail the store's checks or do not fit this base's
        shapes are refused (logged, removed: the next fit makes them again) and the shared heads answer."""
        assert self._models is not None
        try:
            heads = self.store.read_heads(self._models.config)
            if heads:
                for role in ROLES:
                    shared = self._models.shared_weights(role)
                    for key, want in ((f"head.{role}.weight", shared.head_w), (f"head.{role}.bias", shared.head_b)):
                        if key in heads and tuple(heads[key].shape) != tuple(np.shape(want)):
                            raise StoreError(
                                f"heads.safetensors: tensor {key!r} has shape "
                                f"{tuple(heads[key].shape)}, this base needs {tuple(np.shape(want))}"
                            )
        except StoreError as exc:
            _LOG.warning("stored heads refused, answering with the shared heads until the next fit: %s", exc)
            self.store.clear_heads()
            return
        if heads:
            for role in ROLES:
                if f"head.{role}.weight" in heads:
                    self._models.load_personal(role, heads)

    # -- fitting ------------------------------------------------------------------------------------------
    def fit(self) -> FitReport:
        """Fit this user's heads on data derived from their history only, with the base frozen (no torch).

        Under a bundle whose margin is ``inf`` (the cross-validation's choice where leaving the anchor never pays)
        the heads change no answer: the fit then costs nothing, asks the LLM nothing and says so
        (``FitReport.heads_needed`` False)."""
        report = FitReport()
        history = self.history
        if len(history) < 2:
            raise ConfigError("fit needs at least two history items")
        if not heads_needed(self.models.margin):  # the bundle never leaves its anchor: skip the LLM
            report.heads_needed = False
            return report
        episodes = self.store.read_episodes()
        failed_before = self.store.onboarding_failed()
        if episodes is None or failed_before:  # onboarding (again after an outage): the LLM labels the history's data
            stored = episodes or []
            episodes, built = build_user_episodes(
                self.task, self.store.user, history, [], self.llm, self.device.onboarding
            )
            if len(episodes) < len(stored):  # a retry during another outage (no cache): keep what was labelled
                episodes = stored
            self.store.write_episodes(episodes)
            self.store.update_meta(onboarding_failed=built.failed)
            report.llm_calls, report.llm_seconds, report.failed = built.llm_calls, built.llm_seconds, built.failed
            if built.failed:
                _LOG.warning("onboarding: %d LLM labels failed; the next fit() asks again", built.failed)
        with self._guard:  # the on-device part: answers wait for it (seconds), then use the new heads
            return self._fit_heads(history, episodes, report)

    def fit_in_background(self) -> Future:
        """Start :meth:`fit` in a thread and return its future (``.result()`` is the :class:`FitReport`).

        The user gets answers at once: until the fit is done they come from the shared heads, then from the
        user's own (``Answer.personal`` says which). Onboarding asks the LLM at most
        ``device.onboarding.calls_per_user`` times (20 by default).
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
                targets = [e.target for e in usable if e.target is not None]  # all of them: usable ones have one
                w, b, report.losses[role] = fit_head(
                    inputs, targets, w, b, steps=self.device.fit_steps, lr=self.device.fit_lr, l2=self.device.head_l2
                )
            heads[f"head.{role}.weight"], heads[f"head.{role}.bias"] = w, b
        check_heads(heads, prior)  # client/guard.py: DivergedRound, the last good heads stay
        with self.store.writing():
            self.store.write_heads(heads, models.config, bundle=models.id)
        for role in ROLES:
            models.load_personal(role, heads)
        report.fit_seconds = time.perf_counter() - started
        return report

    # -- answering ------------------------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """The history encoder, the contexts' ``embed`` (history records are pinned: only queries are encoded);
        the models load on first use (a rating model needs them, other tasks never call this)."""
        return self.models.embed(HISTORY_ROLE, list(texts))

    def _context(self) -> UserContext:
        """The stored history's context (style, word counts, label prior), rebuilt only when the stored history
        changed (:meth:`client.store.UserStore.history_version`), not on every answer."""
        key: tuple[int, ...] | None = self.store.history_version()
        if self._ctx is None or self._ctx[0] != key:
            self._ctx = (key, UserContext.build(self.task, self.history, embed=self._embed))
        return self._ctx[1]

    def answer(self, input: str, *, task: str | None = None, variant: str | Variant = "hydra") -> Answer:
        """Answer one query: the output, the records used (with reranker scores), every candidate's score and what
        the answer cost (``result.cost``: LLM answers used, requests sent, their seconds).

        ``variant`` names how to answer (:mod:`shared.hydra.variants`: ``"hydra"``, ``"hydra-shared-head"``,
        ``"hydra-calls-1"``, ...); before this user's heads are fitted, every variant answers with the shared heads.
        """
        if task is not None and get_task(task).name != self.task.name:
            raise ConfigError(f"this client is for {self.task.name}, not {get_task(task).name}")
        return self._answer(input, self._context, variant)

    def _answer(self, input: str, context: Callable[[], UserContext], variant: str | Variant) -> Answer:
        """Answer ``input`` with the user's context that ``context()`` gives (the stored history's, or in an
        evaluation the history as of a question: :mod:`client.evaluation`)."""
        models = self.models
        ctx = context()
        llm = self.llm
        started = time.perf_counter()
        with self._guard, llm.meter() as meter:
            heads = {r: PERSONAL for r in ROLES} if any(models.has_personal(r) for r in ROLES) else None
            result = answer(
                self.task,
                input,
                ctx,
                llm,
                OnnxScorer(models),
                models.editor,
                heads=heads,
                config=self.device.inference,
                variant=variant,
                margin=models.margin,
                rating=models.rating,
                anchor=models.anchor,
                llm_calls=models.llm_calls,
            )
        result.cost = cost_of(meter, time.perf_counter() - started).as_dict()
        return result
