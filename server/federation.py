"""The federated rounds on a Flower Grid: validated aggregation of the shared base, checkpoints, per-round figures.

- :class:`ValidatingStrategy` wraps any Flower strategy: every training reply is checked by
  :func:`server.validation.validate_update` (exactly the shared keys that were sent, right shapes and
  dtypes, finite values, a positive example count), and with three replies or more an update far larger
  than the median update (``norm_factor`` times) is dropped as scaled or poisoned; a bad reply or a client
  error is logged and dropped while the round goes on with the others. It also counts bytes per client.
- :class:`RoleGrid` shows a strategy only the training nodes (or only the test nodes) of the grid.
- :func:`run_rounds` asks every node its role (a string, nothing else), then runs the rounds: train on
  training nodes, aggregate, checkpoint the global base, evaluate on test nodes (their scalar metrics only).
  It writes one line per round to ``rounds.jsonl``; a fresh run starts that file anew, a resumed one keeps the
  lines of the rounds it resumes after.
- :func:`gather_margin` (after the last round, when the run has a margin rule) asks the training nodes that trained
  in the run (sampled in some round: all of them when every round samples all) for their
  per-margin counts and sums under the global base, checks and adds them up, and chooses the decision margin
  (:class:`shared.hydra.decision.MarginSums`); the final evaluation's config carries it to the test nodes.

Every round also sums the fault counters clients report (:data:`shared.protocol.FAULT_COUNTERS`: training
examples skipped and answers degraded because the LLM failed, LLM calls failed or retried) and keeps the reason
of every failed or rejected client, so that what a fault cost is in ``rounds.jsonl``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from server.checkpoint import save_checkpoint, save_server_state, strategy_state
from server.validation import InvalidUpdate, expected_spec, validate_update
from shared.hydra.candidates import anchors_for
from shared.hydra.decision import BASELINE_ANCHOR, MarginChoice, MarginSums
from shared.io import atomic_write_text, read_jsonl
from shared.protocol import (
    ANCHOR_KEY,
    ARRAYS_RECORD,
    ASK_KEY,
    ASK_MARGIN,
    ASK_ROLE,
    CONFIG_RECORD,
    FAULT_COUNTERS,
    FINAL_KEY,
    LLM_CALLS_KEY,
    MARGIN_KEY,
    MARGIN_RECORD,
    METHODS_HYDRA,
    METHODS_KEY,
    ROLE_KEY,
    SERVER_ROUND_KEY,
    TESTING_ROLES,
    TRAINING_ROLES,
    WEIGHT_KEY,
)
from shared.tasks import get_task

__all__ = [
    "ValidatingStrategy",
    "RoleGrid",
    "run_rounds",
    "RoundLog",
    "to_numpy",
    "discover_roles",
    "reset_round_log",
    "weighted_metrics",
    "gather_margin",
    "short_reason",
]


def short_reason(reason: object, limit: int = 300) -> str:
    """A failed client's error in one line: the error's type and its final message (Flower's are tracebacks)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(reason)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    kind = re.match(r"<class '([^']+)'>", lines[0])
    last = re.sub(r"^Exception \w+ occurred\. Message: ", "", lines[-1].removesuffix("'>"))
    if kind and len(lines) == 1:
        last = re.sub(r"^<class '[^']+'>:<'", "", last)
    return (f"{kind.group(1)}: {last}" if kind else last)[:limit]


def to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord as {key: numpy array}."""
    return {k: v.numpy() for k, v in record.items()}


def _nbytes(record: ArrayRecord) -> int:
    return int(sum(v.numpy().nbytes for v in record.values()))


class RoleGrid:
    """A view of a Grid that lists only some node ids (everything else is delegated)."""

    def __init__(self, grid: Grid, node_ids: Iterable[int]):
        self._grid = grid
        self._ids = list(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self._ids)

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


@dataclass
class RoundLog:
    """Figures of one round."""

    server_round: int
    accepted: int = 0
    rejected: list[str] = field(default_factory=list)
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    eval_failed: int = 0
    faults: dict[str, float] = field(default_factory=dict)
    bytes_down_per_client: int = 0
    bytes_up_per_client: list[int] = field(default_factory=list)
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    sampled: int = 0
    """Training clients the round sent the base to (the strategy's sample)."""
    timing: dict[str, float] = field(default_factory=dict)
    """Seconds of the round's server-side phases: ``train`` (sending the base until the last reply or the timeout),
    ``aggregate`` (validation and aggregation), ``checkpoint``, ``margin`` and ``evaluate`` (when they ran)."""
    privacy: dict[str, float] | None = None
    margin: dict | None = None
    """After the last round of a run with a margin rule: the chosen margin (:meth:`MarginChoice.as_dict`, whose
    ``margin`` None means ``inf``) with how many clients answered and the dropped ones; without a ``margin`` key
    when none answered validly (the test users then answer without a margin rule)."""

    def count_faults(self, msg: Message) -> None:
        """Add the fault counters of a reply (if it has metrics) to this round's."""
        if msg.has_error() or not msg.has_content():
            return
        for record in msg.content.metric_records.values():
            for key in FAULT_COUNTERS:
                value = record.get(key)
                if (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and np.isfinite(value)
                    and value >= 0
                ):
                    self.faults[key] = self.faults.get(key, 0) + value


class ValidatingStrategy(Strategy):
    """Drop invalid replies before the wrapped strategy aggregates (see the module docstring)."""

    def __init__(
        self,
        inner: Strategy,
        spec: Mapping[str, tuple[tuple[int, ...], str]],
        *,
        weight_key: str = WEIGHT_KEY,
        norm_factor: float = 10.0,
    ):
        self.inner = inner
        self.spec = dict(spec)
        self.weight_key = weight_key
        self.norm_factor = norm_factor
        self.current: RoundLog | None = None
        self._sent: dict[str, np.ndarray] = {}

    def summary(self) -> None:
        log(INFO, "\t├──> Validation of every reply: %d shared tensors", len(self.spec))
        self.inner.summary()

    def configure_train(self, server_round, arrays, config, grid):
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._sent = to_numpy(arrays)
        if self.current is not None:
            self.current.bytes_down_per_client = _nbytes(arrays)
        return messages

    def send_train(self, grid: Grid, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Send the round's training messages and return the replies (secure aggregation runs its protocol here:
        :class:`server.secure.SecureAggregation`)."""
        return grid.send_and_receive(messages, timeout=timeout)

    def aggregate_train(self, server_round, replies):
        valid: list[Message] = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                log(WARNING, "round %d: node %d failed: %s", server_round, node, msg.error.reason)
                if self.current is not None:
                    self.current.failed += 1
                    self.current.failures.append(f"node {node}: {short_reason(msg.error.reason)}")
                continue
            if self.current is not None:
                self.current.count_faults(msg)
            try:
                content = msg.content
                if len(content.array_records) != 1 or len(content.metric_records) != 1:
                    raise InvalidUpdate("a reply must hold one ArrayRecord and one MetricRecord")
                arrays = to_numpy(next(iter(content.array_records.values())))
                metrics = next(iter(content.metric_records.values()))
                validate_update(arrays, self.spec, num_examples=metrics.get(self.weight_key))
            except (InvalidUpdate, KeyError, TypeError, ValueError) as exc:
                log(WARNING, "round %d: rejected the reply of node %d: %s", server_round, node, exc)
                if self.current is not None:
                    self.current.rejected.append(f"node {node}: {exc}")
                continue
            valid.append(msg)
        valid = self._same_layout(server_round, valid, "train")
        valid = self._drop_outliers(server_round, valid)
        for msg in valid:
            if self.current is not None:
                self.current.accepted += 1
                record = next(iter(msg.content.array_records.values()))
                self.current.bytes_up_per_client.append(_nbytes(record))
        if not valid:
            log(WARNING, "round %d: no valid reply; the global base is unchanged", server_round)
            return None, None
        return self.inner.aggregate_train(server_round, valid)

    def _same_layout(self, server_round: int, replies: list[Message], stage: str) -> list[Message]:
        """Keep the replies laid out like most of the round's (record names, metric keys); reject the others.

        Flower's strategies refuse to aggregate replies whose records or metric keys differ, which would sink the
        whole round for one odd client; such a client is rejected instead (a tie goes to the earliest layout).
        """

        def layout(msg: Message) -> tuple:
            content = msg.content
            return (
                tuple(sorted(content.array_records)),
                tuple(sorted(content.metric_records)),
                tuple(sorted(k for r in content.metric_records.values() for k in r)),
            )

        if len(replies) < 2:
            return replies
        layouts = [layout(m) for m in replies]
        common = max(layouts, key=lambda lay: (layouts.count(lay), -layouts.index(lay)))
        kept = []
        for msg, lay in zip(replies, layouts):
            if lay == common:
                kept.append(msg)
                continue
            extra = sorted(set(lay[2]) - set(common[2]))
            missing = sorted(set(common[2]) - set(lay[2]))
            reason = (
                f"reply laid out unlike the round's others (records {list(lay[0] + lay[1])}; metric keys "
                f"extra {extra[:3]}, missing {missing[:3]})"
            )
            log(
                WARNING,
                "round %d: rejected the %s reply of node %d: %s",
                server_round,
                stage,
                msg.metadata.src_node_id,
                reason,
            )
            if self.current is not None:
                if stage == "train":
                    self.current.rejected.append(f"node {msg.metadata.src_node_id}: {reason}")
                else:
                    self.current.eval_failed += 1
                    self.current.failures.append(f"node {msg.metadata.src_node_id} (evaluate): {reason}")
        return kept

    def _drop_outliers(self, server_round: int, replies: list[Message]) -> list[Message]:
        """Reject updates whose size is more than ``norm_factor`` times the median size (scaled or poisoned)."""
        if self.norm_factor <= 0 or len(replies) < 3 or not self._sent:
            return replies
        norms = []
        for msg in replies:
            arrays = to_numpy(next(iter(msg.content.array_records.values())))
            norms.append(float(np.sqrt(sum(float(np.sum((arrays[k] - self._sent[k]) ** 2)) for k in self._sent))))
        median = float(np.median(norms))
        kept = []
        for msg, norm in zip(replies, norms):
            if median > 0 and norm > self.norm_factor * median:
                reason = f"update norm {norm:.3g} is over {self.norm_factor:g} x the median {median:.3g}"
                log(
                    WARNING,
                    "round %d: rejected the reply of node %d: %s",
                    server_round,
                    msg.metadata.src_node_id,
                    reason,
                )
                if self.current is not None:
                    self.current.rejected.append(f"node {msg.metadata.src_node_id}: {reason}")
                continue
            kept.append(msg)
        return kept

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies):
        ok = []
        for m in replies:
            node = m.metadata.src_node_id
            if m.has_error():
                reason = short_reason(m.error.reason)
            elif len(m.content.metric_records) != 1:
                reason = f"an evaluation reply must hold one MetricRecord, not {len(m.content.metric_records)}"
            else:
                if self.current is not None:
                    self.current.count_faults(m)
                ok.append(m)
                continue
            log(WARNING, "round %d: evaluation on node %d failed: %s", server_round, node, reason)
            if self.current is not None:
                self.current.eval_failed += 1
                self.current.failures.append(f"node {node} (evaluate): {reason}")
        ok = self._same_layout(server_round, ok, "evaluate")
        return weighted_metrics([next(iter(m.content.metric_records.values())) for m in ok]) if ok else None


ROOT_MEAN_SUFFIXES = ("RMSE",)
"""Metric names pooled as root mean squares by :func:`weighted_metrics`."""


def weighted_metrics(records: Sequence[Mapping[str, object]], weight_key: str = WEIGHT_KEY) -> MetricRecord:
    """The mean of each metric over the metric records of evaluation replies, weighted by their ``weight_key`` (questions answered),
    and the total of ``weight_key``.

    Evaluation is always weighted by the questions each test user answered, whatever key weighs the training
    updates (with DP every update weighs the same, and evaluation replies do not carry that key). A root-mean
    metric (a key ending in ``RMSE``) is pooled as the root of the weighted mean of its squares, which is the
    RMSE over all questions, not the mean of the users' RMSEs.

    >>> dict(weighted_metrics([{WEIGHT_KEY: 1, "mae": 0.0}, {WEIGHT_KEY: 3, "mae": 1.0}]))
    {'num-examples': 4.0, 'mae': 0.75}
    >>> dict(weighted_metrics([{WEIGHT_KEY: 1, "hydra/RMSE": 0.0}, {WEIGHT_KEY: 3, "hydra/RMSE": 2.0}]))
    {'num-examples': 4.0, 'hydra/RMSE': 1.7320508075688772}
    """
    sums: dict[str, float] = {}
    total = 0.0
    for record in records:
        weight = float(record.get(weight_key, 0))  # type: ignore[arg-type]
        if weight <= 0:
            continue
        total += weight
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                root = key.endswith(ROOT_MEAN_SUFFIXES)
                sums[key] = sums.get(key, 0.0) + weight * float(value) ** (2 if root else 1)
    means = {
        k: (v / total) ** (0.5 if k.endswith(ROOT_MEAN_SUFFIXES) else 1) for k, v in sums.items() if k != weight_key
    }
    return MetricRecord({weight_key: total, **means} if total else {})


def discover_roles(grid: Grid, expected: int, *, timeout: float = 600.0) -> dict[int, str]:
    """Wait for ``expected`` nodes, then ask each its role ("train", "test" or "both"); nodes that fail are left out."""
    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < expected and time.monotonic() < deadline:
        time.sleep(1)
    ids = list(grid.get_node_ids())
    messages = [
        Message(
            content=RecordDict({CONFIG_RECORD: ConfigRecord({ASK_KEY: ASK_ROLE})}),
            message_type=MessageType.QUERY,
            dst_node_id=n,
        )
        for n in ids
    ]
    roles: dict[int, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            log(WARNING, "node %d did not say its role: %s", reply.metadata.src_node_id, reply.error.reason)
            continue
        role = str(reply.content[CONFIG_RECORD].get(ROLE_KEY, ""))
        if role in TRAINING_ROLES + TESTING_ROLES:
            roles[reply.metadata.src_node_id] = role
    return roles


def gather_margin(
    grid: Grid,
    node_ids: Sequence[int],
    arrays: ArrayRecord,
    *,
    server_round: int = 0,
    timeout: float = 3600.0,
    anchors: Sequence[str] = (BASELINE_ANCHOR,),
) -> tuple[MarginChoice | None, dict]:
    """Ask the training nodes ``node_ids`` for their margin sums under the global base ``arrays`` (a query message),
    check each reply (:meth:`MarginSums.from_record`: the keys of the ``anchors`` x margins grid, finite numbers,
    whole non-negative counts), add up the valid ones and choose the margin and anchor.

    Returns the choice (None when no node answered validly: the run then answers without a margin rule) and a report
    ``{"clients": answered validly, "dropped": ["node N: reason", ...]}``; a failed or invalid reply is logged and
    dropped.
    """
    config = ConfigRecord({ASK_KEY: ASK_MARGIN, SERVER_ROUND_KEY: server_round})
    messages = [
        Message(
            content=RecordDict({CONFIG_RECORD: config, ARRAYS_RECORD: arrays}),
            message_type=MessageType.QUERY,
            dst_node_id=n,
        )
        for n in node_ids
    ]
    total: MarginSums | None = None
    report: dict = {"clients": 0, "dropped": []}
    replies = list(grid.send_and_receive(messages, timeout=timeout)) if messages else []
    for node in sorted(set(node_ids) - {r.metadata.src_node_id for r in replies}):
        log(WARNING, "margin: node %d did not answer", node)
        report["dropped"].append(f"node {node}: no reply")
    for reply in replies:
        node = reply.metadata.src_node_id
        try:
            if reply.has_error():
                raise ValueError(f"failed: {short_reason(reply.error.reason)}")
            records = reply.content.metric_records
            if set(reply.content.keys()) != {MARGIN_RECORD} or MARGIN_RECORD not in records:
                raise ValueError(
                    f"a margin reply must hold one metric record {MARGIN_RECORD!r}, not {sorted(reply.content.keys())}"
                )
            sums = MarginSums.from_record(dict(records[MARGIN_RECORD]), anchors=anchors)
        except ValueError as exc:
            log(WARNING, "margin: dropped the reply of node %d: %s", node, exc)
            report["dropped"].append(f"node {node}: {exc}")
            continue
        total = sums if total is None else total + sums
        report["clients"] += 1
    if total is None:
        log(WARNING, "margin: no training node answered validly; the test users answer without a margin rule")
        return None, report
    choice = total.choose()
    log(
        INFO,
        "margin %g (anchor %s) chosen over %d training clients: on %d held-out questions the adapter leaves the "
        "anchor %d times (%d helped, %d hurt)",
        choice.margin,
        choice.anchor,
        report["clients"],
        choice.points,
        choice.left,
        choice.helped,
        choice.hurt,
    )
    return choice, report


def run_rounds(
    grid: Grid,
    strategy: ValidatingStrategy,
    initial: ArrayRecord,
    *,
    num_rounds: int,
    start_round: int,
    roles: Mapping[int, str],
    out_dir: Path,
    checkpoint_dir: Path,
    model,
    task: str,
    accountant=None,
    final_methods: str = "",
    timeout: float = 3600.0,
    eval_every: int = 1,
    margin: bool = False,
    decisions: Sequence[str] | None = None,
) -> ArrayRecord:
    """Rounds ``start_round+1 .. num_rounds``; writes ``rounds.jsonl`` and a checkpoint per round.

    Test users evaluate after every ``eval_every``-th round and after the last (``eval_every=0``: the last only);
    ``timeout`` is how long one round's training, or its evaluation, waits for replies. With ``margin``, after the
    last round's training the training nodes that were sampled in some round of this run (not the whole federation:
    a node never sampled has no episodes yet) choose the decision margin (:func:`gather_margin`); it goes into the
    last round's line of ``rounds.jsonl`` and the final evaluation's config (:data:`MARGIN_KEY`, :data:`ANCHOR_KEY`,
    :data:`LLM_CALLS_KEY`), chosen among ``decisions`` (:func:`shared.hydra.candidates.decision_keys`; None: the
    task's anchors, each with the whole pool). Earlier evaluations answer without a margin rule (none is chosen yet).
    """
    train_grid = RoleGrid(grid, [n for n, r in roles.items() if r in TRAINING_ROLES])
    test_grid = RoleGrid(grid, [n for n, r in roles.items() if r in TESTING_ROLES])
    arrays = initial
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "rounds.jsonl"
    reset_round_log(log_path, start_round)
    participants: set[int] = set()  # training nodes sent the base in this run: the margin asks these only
    for rnd in range(start_round + 1, num_rounds + 1):
        started = time.perf_counter()
        record = RoundLog(server_round=rnd)
        strategy.current = record
        messages = list(strategy.configure_train(rnd, arrays, ConfigRecord({FINAL_KEY: False}), train_grid))
        record.sampled = len(messages)
        log(
            INFO,
            "[ROUND %d/%d] training on %d of %d clients",
            rnd,
            num_rounds,
            record.sampled,
            len(train_grid.get_node_ids()),
        )
        participants.update(m.metadata.dst_node_id for m in messages)
        phase = time.perf_counter()
        replies = strategy.send_train(grid, messages, timeout=timeout)
        phase = _lap(record, "train", phase)
        new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
        del replies  # the round's updates are not kept past aggregation
        if new_arrays is not None:
            arrays = new_arrays
        record.train_metrics = dict(train_metrics or {})
        phase = _lap(record, "aggregate", phase)
        ledger = {"privacy": json.dumps(accountant.state_dict())} if accountant is not None else {}
        moments = strategy_state(strategy)
        if moments:  # before the base checkpoint: a resumable round always has its optimizer's state
            save_server_state(checkpoint_dir, rnd, moments, model=model)
        save_checkpoint(checkpoint_dir, rnd, to_numpy(arrays), model=model, task=task, **ledger)
        phase = _lap(record, "checkpoint", phase)
        if accountant is not None and accountant.num_releases:
            spent = accountant.get_privacy_spent()
            record.privacy = {"epsilon": spent.epsilon, "delta": spent.delta, "releases": spent.num_releases}
        final = rnd == num_rounds
        chosen = None
        if final and margin:
            # the nodes that trained in this run (every training node when each round samples all of them): a node
            # never sampled would build its episodes (LLM calls) only to answer this query
            asked = [n for n in train_grid.get_node_ids() if n in participants]
            chosen, margin_report = gather_margin(
                grid,
                asked,
                arrays,
                server_round=rnd,
                timeout=timeout,
                anchors=tuple(decisions or anchors_for(get_task(task))),
            )
            record.margin = {**(chosen.as_dict() if chosen is not None else {}), **margin_report}
            phase = _lap(record, "margin", phase)
        if test_grid.get_node_ids() and (final or (eval_every > 0 and rnd % eval_every == 0)):
            cfg = ConfigRecord(
                {
                    FINAL_KEY: final,
                    METHODS_KEY: final_methods if final else METHODS_HYDRA,
                    **({MARGIN_KEY: float(chosen.margin), ANCHOR_KEY: chosen.anchor} if chosen is not None else {}),
                    **(
                        {LLM_CALLS_KEY: int(chosen.llm_calls)}
                        if chosen is not None and chosen.llm_calls is not None
                        else {}
                    ),
                }
            )
            eval_messages = strategy.configure_evaluate(rnd, arrays, cfg, test_grid)
            eval_replies = grid.send_and_receive(eval_messages, timeout=timeout)
            record.eval_metrics = dict(strategy.aggregate_evaluate(rnd, eval_replies) or {})
            phase = _lap(record, "evaluate", phase)
        record.seconds = time.perf_counter() - started
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record.__dict__) + "\n")
        quality = {k: round(v, 4) for k, v in record.eval_metrics.items() if k.startswith("hydra/")}
        log(
            INFO,
            "[ROUND %d/%d] accepted %d, rejected %d, failed %d; up %s B/client; %s; %.1f s%s",
            rnd,
            num_rounds,
            record.accepted,
            len(record.rejected),
            record.failed,
            max(record.bytes_up_per_client, default=0),
            quality,
            record.seconds,
            "; faults " + json.dumps({k: v for k, v in record.faults.items() if v})
            if any(record.faults.values())
            else "",
        )
    return arrays


def _lap(record: RoundLog, phase: str, since: float) -> float:
    """Add the seconds since ``since`` to ``record.timing[phase]``; returns now."""
    now = time.perf_counter()
    record.timing[phase] = round(record.timing.get(phase, 0.0) + now - since, 4)
    return now


def reset_round_log(path: Path, start_round: int) -> list[dict]:
    """Keep the lines of ``rounds.jsonl`` for rounds up to ``start_round`` (none for a fresh run); return them.

    A resumed run continues the file of the run it resumes; a fresh run in the same folder does not inherit the
    rounds of an earlier one. A line cut short by a crash is dropped.
    """
    kept: list[dict] = []
    for row in read_jsonl(path):  # split at "\n" only: a separator inside a reason does not cut its line
        if isinstance(row, dict) and isinstance(row.get("server_round"), int) and row["server_round"] <= start_round:
            kept.append(row)
    if path.exists() or kept:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def expected_from(initial: ArrayRecord) -> dict[str, tuple[tuple[int, ...], str]]:
    return expected_spec(to_numpy(initial))
