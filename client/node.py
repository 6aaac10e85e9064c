"""What one FedHydra client does, without Flower: the ClientApp only translates messages into these calls.

A *training* client builds its episodes through the LLM on first contact (kept in its store), loads the
received shared base, trains it together with its personal heads on its own data, keeps the heads, and
returns the shared tensors and its example count (a *free* training client, ``data.free-train-users``, builds its
episodes without any LLM call, as the centralized run's free users do). After the last round it returns its
per-margin counts and sums under the global base (:meth:`ClientNode.margin_sums`). A *test* client (a new user)
fits fresh heads on its history with the received base frozen, answers its questions (with the decision margin the
server sends, if any; under a margin of ``inf`` no head can change an answer, so it builds no onboarding and asks the
LLM nothing for it), keeps its predictions locally and returns only scalar metrics (or nothing but a count when
metric reporting is off).

The node's role (:class:`shared.protocol.NodeRole`) comes from the run's user split or the node's config.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.store import UserStore
from shared.config import RunConfig
from shared.errors import ConfigError, WrongRole
from shared.hydra.variants import is_hydra_method
from shared.paths import fedhydra_home
from shared.protocol import WEIGHT_KEY, NodeRole
from shared.users import get_protocol

__all__ = [
    "ClientNode",
    "resolve_user",
    "is_free_node",
    "make_llm",
    "shared_base",
    "store_root",
    "device_bundle",
    "llm_faults",
    "offlabel_answers",
    "node_dataset",
    "base_shapes",
    "check_margin",
    "check_anchor",
    "check_llm_calls",
    "MAX_MARGIN",
    "KEPT_BUNDLES",
]


_BASES: dict[str, Any] = {}
_DATASETS: dict[tuple[str, str, str, int], Any] = {}


def shared_base(model_config):
    """The process's HydraBase for this architecture (loading MiniLM once per process, not per message)."""
    from shared.training.model import HydraBase

    key = model_config.to_json()
    if key not in _BASES:
        _BASES[key] = HydraBase(model_config)
    return _BASES[key]


def base_shapes(model_config) -> dict[str, tuple[int, ...]]:
    """The shape of every shared tensor of this node's own model: what a received global base must match
    (:mod:`client.guard`)."""
    return {k: tuple(v.shape) for k, v in shared_base(model_config).shared_state().items()}


def store_root(cfg: RunConfig) -> Path:
    return Path(cfg.store_dir) if cfg.store_dir else fedhydra_home() / "clients"


def node_dataset(cfg: RunConfig):
    """The node's dataset (:func:`shared.run_data.load_run_data`), loaded once per process; a node needs
    ``data.dir``."""
    from shared.run_data import load_run_data

    if not cfg.data:
        raise ConfigError("a client needs `data` (a LaMP-format directory) in its run or node config")
    key = (cfg.data, cfg.task, cfg.split, cfg.timeline_questions)
    if key not in _DATASETS:
        _DATASETS[key] = load_run_data(cfg)[0]
    return _DATASETS[key]


def resolve_user(cfg: RunConfig, node_config: Mapping[str, Any]):
    """This node's user and role: ``partition-id`` (simulation: the run's user split) or ``user-id`` + ``role``."""
    from shared.users import find_user, node_users, split_users

    dataset = node_dataset(cfg)
    if "user-id" in node_config:  # a device: its own user, found in its own data (which may hold only that user)
        wanted = str(node_config["user-id"])
        role = NodeRole(str(node_config.get("role", "test")))
        user = find_user(
            dataset, wanted, with_golds=role is NodeRole.TRAIN and not get_protocol(cfg.protocol).same_users
        )
        if user is None:
            raise ConfigError(f"node config user-id {wanted!r} is not a user of {cfg.data}")
        return user, role
    train, test = split_users(
        dataset,
        train_users=cfg.train_users,
        test_users=cfg.test_users,
        protocol=cfg.protocol,
        offset=cfg.user_offset,
        free_train_users=cfg.free_train_users,
    )
    index = int(node_config.get("partition-id", -1))
    history = get_protocol(cfg.protocol).same_users
    users = node_users(train, test, cfg.protocol)
    if not 0 <= index < len(users):
        raise ConfigError(f"partition-id {index} is outside the {len(users)} users of this run")
    return users[index], (NodeRole.BOTH if history else NodeRole.from_index(index, train_users=len(train)))


def is_free_node(cfg: RunConfig, node_config: Mapping[str, Any]) -> bool:
    """Whether this node is a free training user's (no LLM call: ``data.free-train-users``): by its ``partition-id`` in
    a simulation, by ``free-train = true`` in a device's node config."""
    from shared.users import is_free_train_node

    if "user-id" in node_config:
        return bool(node_config.get("free-train", False))
    return is_free_train_node(
        cfg.protocol,
        int(node_config.get("partition-id", -1)),
        train_users=cfg.train_users,
        free_train_users=cfg.free_train_users,
    )


def make_llm(cfg: RunConfig):
    """The device's LLM client (:func:`shared.llm.resolver.resolve_llm`): the configured endpoint, else
    FEDHYDRA_LLM_BASE_URL, else the embedded server. An embedded server started here serves the node's later
    messages too: it is kept running (and logged so, with how to stop it)."""
    from shared.llm.client import LLMClient
    from shared.llm.resolver import resolve_llm

    endpoint = resolve_llm(
        url=cfg.llm_url or None,
        model=cfg.llm_model or None,
        keep=True,
        timeout_s=cfg.llm_timeout,
        concurrency=cfg.llm_concurrency,
    )
    return LLMClient(endpoint.config)


@dataclass
class ClientNode:
    """A client's work for one message (see the module docstring)."""

    cfg: RunConfig
    user: Any
    role: NodeRole
    llm: Any
    free: bool = False
    """A free training user's node: its episodes cost no LLM call (see :func:`is_free_node`)."""

    @property
    def task(self):
        from shared.tasks import get_task

        return get_task(self.cfg.task)

    @property
    def store(self) -> UserStore:
        return UserStore(store_root(self.cfg), self.user.user_id, task=self.task.name)

    def guard(self):
        """This user's :class:`client.guard.Guard`: every received base is checked before it touches anything."""
        from client.guard import Guard

        return Guard(base_shapes(self.cfg.model), store_root(self.cfg), self.user.user_id, task=self.task.name)

    def episodes(self) -> tuple[list, dict[str, int]]:
        """The user's labelled episodes: from the store, or built through the LLM on first contact."""
        from shared.hydra.episodes import build_user_episodes, free_user_config

        store = self.store
        cached = store.read_episodes()
        failed_before = store.onboarding_failed() if cached is not None else 0
        if cached is not None and not failed_before:  # an onboarding an outage cut short is built again
            return cached, {"llm_calls": 0, "skipped": 0, "offlabel": 0}
        questions = self.user.training_questions() if self.role is NodeRole.TRAIN else []  # golds never for test users
        free = self.free and self.role is NodeRole.TRAIN  # as the centralized run's free users: no LLM at all
        episodes, report = build_user_episodes(
            self.task,
            self.user.user_id,
            self.user.history,
            questions,
            None if free else self.llm,
            free_user_config(self.cfg.episodes) if free else self.cfg.episodes,
        )
        offlabel = offlabel_answers(self.task, episodes)
        store.write_history(self.user.history)
        store.write_episodes(episodes)
        store.update_meta(
            episodes=len(episodes),
            episode_llm_calls=report.llm_calls,
            skipped=report.skipped,
            offlabel_answers=offlabel,
            episode_llm_asked=report.llm_asked,
            episode_llm_seconds=round(report.llm_seconds, 3),
            role=self.role.value,
            onboarding_failed=report.failed,
        )
        return episodes, {"llm_calls": report.llm_calls, "skipped": report.skipped, "offlabel": offlabel}

    def skip_onboarding(self) -> dict[str, int]:
        """A new user under a margin of ``inf``: their heads change no answer, so no episode is built and the LLM is
        asked nothing (as :meth:`client.sdk.PersonalClient.fit`); the store gets the history and an onboarding that
        cost 0."""
        self.store.write_history(self.user.history)
        self.store.update_meta(
            episodes=0, episode_llm_calls=0, episode_llm_asked=0, episode_llm_seconds=0.0, role=self.role.value
        )
        return {"llm_calls": 0, "skipped": 0, "offlabel": 0}

    def _trainer(self, arrays: Mapping[str, np.ndarray]):
        from shared.training.train import Trainer

        base = shared_base(self.cfg.model)
        base.load_shared_state(arrays)
        return Trainer(base, self.cfg.train)

    def train(
        self, arrays: Mapping[str, np.ndarray], *, proximal_mu: float = 0.0, server_round: int = 0
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Local training on this user's data (at most ``federation.local-episodes`` of its episodes, drawn for
        ``server_round``); returns (shared tensors, metrics with ``num-examples``)."""
        from shared.hydra.context import UserContext
        from shared.hydra.episodes import round_sample
        from shared.training.model import PersonalHeads
        from shared.training.stages import train_stage

        if self.role is NodeRole.TEST:
            raise WrongRole(f"user {self.user.user_id} is a test user and does not train")
        guard = self.guard()
        arrays = guard.check_base(arrays)  # UnsafeBase: refused before anything reads it or touches the store
        started = time.perf_counter()
        calls0 = self.llm.stats.calls
        faults0 = llm_faults(self.llm)
        episodes, built = self.episodes()
        episodes = round_sample(
            episodes,
            self.cfg.federation.local_episodes,
            seed=self.cfg.train.seed,
            server_round=server_round,
            user=self.user.user_id,
        )
        trainer = self._trainer(arrays)
        heads = PersonalHeads.from_shared(trainer.base)
        stored = self.store.read_heads(self.cfg.model)
        if stored is not None:
            heads.load_state(stored)
        before = heads.state()
        ctx = UserContext.build(self.task, self.user.history, embed=trainer.history_embed)
        report = train_stage(
            trainer,
            self.task,
            {self.user.user_id: (ctx, episodes)},
            {self.user.user_id: heads},
            epochs=self.cfg.federation.local_epochs,
            head_epochs=self.cfg.federation.local_head_epochs,
            proximal_mu=proximal_mu,
        )
        out = {k: v.numpy().astype(np.float32) for k, v in trainer.base.shared_state().items()}
        guard.check_round(heads.state(), before, out)  # DivergedRound: the last good heads stay, nothing is sent
        self.store.write_heads(heads.state(), self.cfg.model)
        guard.accept()
        n = sum(report.examples.values())
        losses = [curve[-1] for curve in report.losses.values() if curve]
        metrics = {
            WEIGHT_KEY: max(n, 1) if n else 0,
            "train-loss": float(np.mean(losses)) if losses else 0.0,
            "llm-calls": self.llm.stats.calls - calls0,
            "seconds": time.perf_counter() - started,
            "skipped-examples": built["skipped"],
            "offlabel-answers": built["offlabel"],
            **_delta(llm_faults(self.llm), faults0),
        }
        return out, metrics

    def margin_sums(self, arrays: Mapping[str, np.ndarray]) -> dict[str, int | float]:
        """This training user's contribution to the decision margin under the global base ``arrays`` (frozen):
        personal heads cross-fitted on halves of its own adapter examples score the other halves
        (:func:`shared.training.calibrate.user_margin_sums`); returns only the per-margin counts and sums as a flat
        record (:meth:`shared.hydra.decision.MarginSums.to_record`). The stored heads are left as they are."""
        from shared.hydra.candidates import call_choices
        from shared.hydra.context import UserContext
        from shared.protocol import TRAINING_ROLES
        from shared.training.calibrate import user_margin_sums

        if self.role.value not in TRAINING_ROLES:
            raise WrongRole(f"user {self.user.user_id} is a test user and has no training data for the margin")
        arrays = self.guard().check_base(arrays)
        episodes, _ = self.episodes()
        trainer = self._trainer(arrays)
        ctx = UserContext.build(self.task, self.user.history, embed=trainer.history_embed)
        return user_margin_sums(
            self.task, trainer, self.user.user_id, ctx, episodes, calls=call_choices(self.cfg.pool)
        ).to_record()

    def evaluate(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        methods: list[str] | None,
        golds: Mapping[str, str],
        margin: float | None = None,
        anchor: str | None = None,
        llm_calls: int | None = None,
    ) -> dict[str, float]:
        """Fit fresh heads (base frozen) and answer every question through the on-device SDK; keep the
        predictions in the store; return scalar metrics.

        ``methods`` None answers with every method of the centralized run (baselines and HYDRA variants).
        ``margin`` is the decision margin the server chose on training users (it goes into the device bundle, as in
        the centralized run); None: no margin rule. ``anchor`` is the answer the margin rule keeps, chosen with it,
        and ``llm_calls`` how many LLM answers an answer asks for (None: the whole pool's).
        """
        from client.evaluation import evaluate_user
        from shared.hydra.decision import heads_needed
        from shared.metrics import evaluate

        margin = None if margin is None else check_margin(margin)  # before any use: the bundle's name and manifest
        anchor = None if anchor is None else check_anchor(anchor, self.task)
        llm_calls = None if llm_calls is None else check_llm_calls(llm_calls, self.cfg.pool)
        guard = self.guard()
        arrays = guard.check_base(arrays)  # UnsafeBase: refused before any export or store write
        started = time.perf_counter()
        calls0 = self.llm.stats.calls
        faults0 = llm_faults(self.llm)
        if self.role is NodeRole.TEST and not heads_needed(margin) and self.store.read_episodes() is None:
            built = self.skip_onboarding()  # no head can change an answer: as the SDK, ask the LLM nothing
        else:
            _, built = self.episodes()
        bundle = device_bundle(arrays, self.cfg, margin=margin, anchor=anchor, llm_calls=llm_calls)
        preds = evaluate_user(
            self.task, self.user, bundle, self.cfg, self.llm, store_root(self.cfg), golds, methods=methods
        )
        self.store.write_predictions(
            {
                "by_method": preds.by_method,
                "oracle": preds.oracle,
                "seconds": preds.seconds,
                "calls": preds.calls,
                "failures": preds.failures,
                "asked": preds.asked,
                "llm_seconds": preds.llm_seconds,
                "baselines": preds.baselines,
            }
        )
        guard.accept()
        metrics: dict[str, float] = {WEIGHT_KEY: len(self.user.questions)}
        mine = {q.id: golds[q.id] for q in self.user.questions if q.id in golds}
        if mine:
            for method, predictions in preds.by_method.items():
                for name, value in evaluate(self.task, predictions, mine).items():
                    metrics[f"{method}/{name}"] = float(value)
        metrics["llm-calls"] = self.llm.stats.calls - calls0
        metrics["seconds"] = time.perf_counter() - started
        # what the LLM's faults cost here: HYDRA answers made without the LLM's candidates (a non-personalized
        # fallback), baseline answers left empty, examples of the user's history skipped
        metrics["degraded-answers"] = sum(n for m, n in preds.failures.items() if is_hydra_method(m))
        metrics["failed-answers"] = sum(n for m, n in preds.failures.items() if not is_hydra_method(m))
        metrics["skipped-examples"] = built["skipped"]
        metrics.update(_delta(llm_faults(self.llm), faults0))
        return metrics


def llm_faults(llm) -> dict[str, int]:
    """The LLM client's fault counters: calls that failed for good, retries, calls refused by the circuit breaker."""
    stats = getattr(llm, "stats", None)
    if stats is None:
        return {"llm-failures": 0, "llm-retries": 0, "llm-refused": 0}
    return {"llm-failures": stats.failures, "llm-retries": stats.retries, "llm-refused": stats.refused}


def _delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: int(after[k] - before.get(k, 0)) for k in after}


def offlabel_answers(task, episodes) -> int:
    """LLM answers kept in ``episodes`` that are outside the task's label set (0 for tasks without labels).

    They are kept as the LLM gave them: an answer outside the labels is a vote for no label and a reranker label
    of "wrong", never mapped onto a label.
    """
    if not task.labels:
        return 0
    labels = set(task.labels)
    answers = [a for ep in episodes for a in [*ep.rerank_answers, ep.greedy, *ep.samples] if a is not None]
    return sum(str(a) not in labels for a in answers)


MAX_MARGIN = 1.0
"""The largest finite decision margin a server may send (the margins it chooses among are
:data:`shared.hydra.decision.MARGIN_GRID`, at most 0.75, and ``inf``)."""

KEPT_BUNDLES = 2
"""Device bundles kept under ``<store>/bundles``: the current one and the one before it."""


def check_margin(margin: object) -> float:
    """The decision margin a server sent, once it is a number in ``[0, MAX_MARGIN]`` or ``inf`` (keep the anchor:
    :data:`shared.protocol.MARGIN_KEY`); else :class:`ConfigError` naming the bound (never NaN, never negative).

    >>> check_margin(0.1), check_margin(float("inf"))
    (0.1, inf)
    >>> check_margin(float("nan"))
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: message config key 'margin' must be a number in [0, 1] or inf
    """
    if (
        not isinstance(margin, (int, float))
        or isinstance(margin, bool)
        or not (0.0 <= float(margin) <= MAX_MARGIN or float(margin) == float("inf"))
    ):
        raise ConfigError(f"message config key 'margin' must be a number in [0, {MAX_MARGIN:g}] or inf")
    return float(margin)


def check_anchor(anchor: object, task) -> str:
    """The anchor a server sent, once it is one of the task's anchors (:func:`shared.hydra.candidates.anchors_for`,
    the registry); else :class:`ConfigError` (the server's text is not repeated)."""
    from shared.hydra.candidates import anchors_for

    known = anchors_for(task)
    if not isinstance(anchor, str) or anchor not in known:
        raise ConfigError(f"message config key 'anchor' must be one of {', '.join(known)} for {task.name}")
    return anchor


def check_llm_calls(llm_calls: object, pool) -> int:
    """How many LLM answers a server said an answer asks for, once it is a whole number from 0 to the pool's requests
    (the greedy answer and ``pool.n_samples`` samples: :data:`shared.protocol.LLM_CALLS_KEY`); else
    :class:`ConfigError`.

    >>> from shared.hydra.candidates import PoolConfig
    >>> check_llm_calls(0, PoolConfig(n_samples=3))
    0
    >>> check_llm_calls(99, PoolConfig(n_samples=3))
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: message config key 'llm-calls' must be a whole number in [0, 4]
    """
    top = pool.n_samples + 1
    if not isinstance(llm_calls, (int, np.integer)) or isinstance(llm_calls, bool) or not 0 <= int(llm_calls) <= top:
        raise ConfigError(f"message config key 'llm-calls' must be a whole number in [0, {top}]")
    return int(llm_calls)


def device_bundle(
    arrays: Mapping[str, np.ndarray],
    cfg: RunConfig,
    *,
    margin: float | None = None,
    anchor: str | None = None,
    llm_calls: int | None = None,
) -> Path:
    """The device bundle of this global base (and decision margin and anchor), exported once per node and base (kept
    under the store root, in a folder named by a digest of all three: no text of the server's is part of the path).

    ``margin`` and ``anchor`` must have passed :func:`check_margin` and :func:`check_anchor` (checked again here).
    Only the :data:`KEPT_BUNDLES` most recently used bundles are kept: the older ones, and staging folders an
    interrupted export left over an hour ago, are removed after each call."""
    import hashlib
    import shutil
    import uuid

    from shared.hydra.decision import BASELINE_ANCHOR
    from shared.training.export import content_id, export_bundle

    if margin is not None:
        margin = check_margin(margin)
    if anchor is not None:
        from shared.tasks import get_task

        anchor = check_anchor(anchor, get_task(cfg.task))
    if anchor == BASELINE_ANCHOR:
        anchor = None
    if llm_calls is not None:
        llm_calls = check_llm_calls(llm_calls, cfg.pool)
    tag = hashlib.sha256(
        repr((margin, anchor) if llm_calls is None else (margin, anchor, llm_calls)).encode()
    ).hexdigest()[:12]
    root = store_root(cfg) / "bundles"
    folder = root / f"{content_id(arrays)[:16]}-{tag}"
    if not (folder / "bundle.json").exists():
        staging = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}")
        export_bundle(
            arrays, cfg.model, staging, quantize=cfg.device_quantized, margin=margin, anchor=anchor, llm_calls=llm_calls
        )
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished the same export first
            shutil.rmtree(staging, ignore_errors=True)
    os.utime(folder)  # the most recently used: kept
    _prune_bundles(root, keep=folder)
    return folder


_STALE_STAGING_S = 3600.0


def _prune_bundles(root: Path, *, keep: Path) -> None:
    """Remove every bundle under ``root`` but ``keep`` and the most recently used other one, and staging folders
    older than an hour (an export that was killed); a folder another process removes first is skipped."""
    import shutil

    bundles, now = [], time.time()
    for entry in root.iterdir():
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        if entry.name.startswith("."):
            if now - mtime > _STALE_STAGING_S:
                shutil.rmtree(entry, ignore_errors=True)
        elif entry != keep and entry.is_dir():
            bundles.append((mtime, entry))
    for _, old in sorted(bundles, reverse=True)[KEPT_BUNDLES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
