"""Secure aggregation of the shared-base updates with Flower's SecAgg+ (``secagg.enabled = true``).

The server learns only each round's weighted sum of the clients' shared bases, never one of them. FedHydra writes no
cryptography: the protocol is Flower's :class:`flwr.server.workflow.SecAggPlusWorkflow` here and
``flwr.client.mod.secaggplus_mod`` on the clients (:mod:`client.secagg`). In Flower 1.41 both exist only on the legacy
path (a ``LegacyContext`` with a legacy strategy and client manager, tensors in the ``fitins`` / ``fitres`` layout),
so :class:`SecureAggregation` drives the workflow for one round at a time from :func:`server.federation.run_rounds`,
which keeps everything else of a run as it is: the roles, checkpoints, the evaluation of test clients, the decision
margin and ``rounds.jsonl``.

One round (:meth:`SecureAggregation.configure_train`, :meth:`~SecureAggregation.send_train`,
:meth:`~SecureAggregation.aggregate_train`):

1. the configured strategy (FedAvg, FedProx or FedAdam, Message API) samples the round's clients and builds their
   config as in a plain run; with DP the sample is :class:`server.central_dp.CentralDP`'s (Poisson) instead;
2. SecAgg+'s four stages run over those clients: setup (each sends two public keys), share keys (each sends its
   encrypted key shares), collect masked vectors (each trains on the base, checks its own update, quantizes it, scales
   it by its weight and masks it), unmask (the survivors send the shares that remove the masks). The base travels by
   the names in its config (:data:`shared.protocol.SECAGG_KEYS`). A client that fails or goes silent after sharing its
   keys is left out: its pairwise masks are rebuilt from its neighbours' shares, as long as every client keeps
   ``secagg.threshold`` of its shares alive; below that the round is dropped and the base stays;
3. the unmasked result is the weighted mean of the survivors' bases (weights: ``num-examples``, capped at
   ``secagg.max-weight``; under DP all 1), within :func:`quantization_error_bound` of the exact one;
4. with DP, :meth:`CentralDP.release` adds the noise to it and the round is accounted; the mean is checked
   (:func:`server.validation.validate_update`: shared keys, shapes, float32, finite, within 1e4) and handed to the
   configured strategy as one reply, so FedAvg and FedProx take it as it is and FedAdam steps toward it (its moments
   are checkpointed as in a plain run).

What the server still sees per client: its role, the metrics of its training reply (``num-examples``, ``train-loss``,
the counters; in clear in ``fitres.metrics``), its public keys, encrypted shares and masked vector, whether and when it
answered, and the margin sums after the last round (docs/privacy.md). What it can no longer do: validate an update,
filter outliers, aggregate robustly (refused at start: :func:`shared.config.secure_aggregation_conflicts`); each client
checks its own update instead (:func:`client.guard.check_secure_update`).

Bytes per client are counted over the four stages (tensors and byte strings in the records: keys, shares, the masked
vector), both ways.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from logging import INFO, WARNING
from typing import TYPE_CHECKING, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import FitIns, FitRes, log, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from server.central_dp import CentralDP, quantization_slack
from server.federation import RoleGrid, ValidatingStrategy, expected_from, short_reason, to_numpy, weighted_metrics
from server.validation import InvalidUpdate, validate_update
from shared.config import SECAGG_MODULUS, RunConfig, SecureAggregationConfig
from shared.errors import SecureAggregationConflict
from shared.protocol import (
    ARRAYS_RECORD,
    CONFIG_RECORD,
    DP_WEIGHT_KEY,
    FAULT_COUNTERS,
    METRICS_RECORD,
    SECAGG_KEYS,
    SERVER_ROUND_KEY,
    WEIGHT_KEY,
)

if TYPE_CHECKING:
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

__all__ = ["SecureAggregation", "build_secure", "quantization_error_bound", "payload_bytes", "check_population"]

FITRES_METRICS = "fitres.metrics"
"""The record of a legacy training reply that carries its metrics (in clear)."""


def payload_bytes(content: RecordDict) -> int:
    """The payload of a message's content: the bytes of its tensors and of its byte strings (keys, ciphertexts,
    shares, masked vectors); numbers and names are not counted."""
    total = 0
    for record in content.array_records.values():
        total += sum(len(a.data) for a in record.values())
    for config in content.config_records.values():
        for value in config.values():
            if isinstance(value, bytes):
                total += len(value)
            elif isinstance(value, list):
                total += sum(len(v) for v in value if isinstance(v, bytes))
    return total


def quantization_error_bound(
    weights: Sequence[float], *, largest: float, secagg: SecureAggregationConfig, max_weight: float | None = None
) -> float:
    """The most one value of SecAgg+'s aggregate can differ from the exact weighted mean of the same updates.

    Client ``i`` scales its values by ``r_i = w_i / W`` (``W`` = ``max_weight``, default ``secagg.max_weight``) rounded
    to ``1 / L`` (``L`` = quantization levels) and rounds each scaled value stochastically to a step of ``2 R / L``
    (``R`` = clipping range): an error under one step per client, and the weights themselves off by at most
    ``1 / (2 L)``. With ``n`` clients, the sum of weights ``w``, and ``largest`` the largest magnitude of any value
    of the updates, the mean is off by less than ``n (2 R + largest) W / (L w)``.

    >>> cfg = SecureAggregationConfig()  # range 16, 2^23 levels, largest weight 200
    >>> f"{quantization_error_bound([50, 50, 50, 50], largest=1.0, secagg=cfg):.2e}"
    '1.57e-05'
    """
    w_max = secagg.max_weight if max_weight is None else max_weight
    n, total = len(weights), float(sum(min(float(w), w_max) for w in weights))
    if n == 0 or total <= 0:
        return math.inf
    levels = secagg.quantization_range
    return n * (2 * secagg.clipping_range + largest) * w_max / (levels * total)


def check_population(secagg: SecureAggregationConfig, clients: int, *, most: int | None = None) -> None:
    """Refuse (:class:`SecureAggregationConflict`) rounds that SecAgg+ cannot sum: ``clients`` a round (expected) below
    2 (the sum of one update is that update), or ``most`` (default ``clients``) so many that the masked sum would wrap
    around the modulus.

    >>> check_population(SecureAggregationConfig(), 1)
    Traceback (most recent call last):
    ...
    shared.errors.SecureAggregationConflict: secure aggregation needs at least 2 training clients a round, this run has 1
    """
    if clients < 2:
        raise SecureAggregationConflict(
            f"secure aggregation needs at least 2 training clients a round, this run has {clients}"
        )
    most = clients if most is None else most
    if most > secagg.max_clients:
        raise SecureAggregationConflict(
            f"secure aggregation sums at most {secagg.max_clients} clients a round at secagg.quantization-range = "
            f"{secagg.quantization_range} (2^32 / levels), this run may have {most}: lower the quantization range"
        )


class _RoundStrategy(LegacyStrategy):
    """The legacy strategy SecAgg+'s workflow asks for one round: it hands out the fit instructions already made from
    the configured strategy's messages, and keeps the unmasked result (every result then carries the aggregate)."""

    def __init__(self, instructions: list[tuple[GridClientProxy, FitIns]]):
        super().__init__()
        self.instructions = instructions
        self.results: list[tuple[int, FitRes]] = []
        self.aggregate: list[np.ndarray] | None = None

    def initialize_parameters(self, client_manager):
        return None

    def configure_fit(self, server_round, parameters, client_manager):
        return list(self.instructions)

    def aggregate_fit(self, server_round, results, failures):
        self.results = [(proxy.node_id, res) for proxy, res in results]
        if not results:
            return None, {}
        self.aggregate = parameters_to_ndarrays(results[0][1].parameters)
        return results[0][1].parameters, {}

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class _MeteredGrid:
    """A grid for the workflow: delegates, and counts each node's payload both ways and its first failure."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.down: dict[int, int] = {}
        self.up: dict[int, int] = {}
        self.failures: dict[int, str] = {}
        self.collected: list[Message] = []
        """The replies of the stage that trains (each client's masked vector and metrics), errors included."""

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        stages = {}
        for msg in messages:
            node = msg.metadata.dst_node_id
            self.down[node] = self.down.get(node, 0) + payload_bytes(msg.content)
            config = msg.content.config_records.get(RECORD_KEY_CONFIGS)
            stages[node] = str(config.get(Key.STAGE, "")) if config is not None else ""
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        answered = set()
        for reply in replies:
            node = reply.metadata.src_node_id
            answered.add(node)
            stage = stages.get(node, "")
            if reply.has_error():
                self.failures.setdefault(node, f"{stage}: {short_reason(reply.error.reason)}")
            else:
                self.up[node] = self.up.get(node, 0) + payload_bytes(reply.content)
            if stage == Stage.COLLECT_MASKED_VECTORS:
                self.collected.append(reply)
        for node, stage in stages.items():
            if node not in answered:
                self.failures.setdefault(node, f"{stage}: no reply within the round's timeout")
        return replies


class SecureAggregation(ValidatingStrategy):
    """One round of SecAgg+ over the configured strategy's sample (see the module docstring).

    ``inner`` is the configured Message API strategy (FedAvg, FedProx or FedAdam; built without DP), ``spec`` the
    shared tensors' shapes and dtypes, ``dp`` the central DP of a run with ``dp.noise`` > 0 (else None).
    """

    def __init__(
        self, inner, spec, *, secagg: SecureAggregationConfig, dp: CentralDP | None = None, timeout: float | None = None
    ):
        super().__init__(inner, spec, weight_key=DP_WEIGHT_KEY if dp is not None else WEIGHT_KEY, norm_factor=0.0)
        self.secagg = secagg
        self.dp = dp
        self.timeout = timeout
        self._messages: list[Message] = []
        self._round: _RoundStrategy | None = None
        self._grid: _MeteredGrid | None = None
        self.max_weight = 1.0 if dp is not None else secagg.max_weight
        """The weight SecAgg+ scales each update by (under DP every weight is 1, so 1 keeps full precision)."""

    def summary(self) -> None:
        s = self.secagg
        log(
            INFO,
            "\t├──> Secure aggregation (SecAgg+): %s shares a client, threshold %g, clipping range %g, "
            "%d levels, max weight %g%s",
            "all" if s.num_shares == 0 else s.num_shares,
            s.threshold,
            s.clipping_range,
            s.quantization_range,
            self.max_weight,
            ""
            if self.dp is None
            else f"; central DP: noise {self.dp.noise:g}, clip {self.dp.clip:g}, Poisson sampling q = {self.dp.q:g}",
        )
        self.inner.summary()

    def configure_train(self, server_round, arrays, config, grid):
        if self.dp is not None:
            sample = self.dp.sample(list(grid.get_node_ids()))
            self.dp.account()  # every round counts, also one that releases nothing (conservative)
            if len(sample) < 2:
                log(
                    WARNING,
                    "round %d: %d training clients sampled, SecAgg+ needs 2; the base stays",
                    server_round,
                    len(sample),
                )
                self._messages = []
                return []
            grid = RoleGrid(grid, sample)
            config[KEY_CLIPPING_NORM] = self.dp.clip
        self._messages = list(super().configure_train(server_round, arrays, config, grid))
        return self._messages

    def send_train(self, grid, messages, *, timeout: float | None = None) -> list[Message]:
        """Run SecAgg+'s four stages over the clients of ``messages`` (made by :meth:`configure_train`); returns the
        replies of the stage that trains (masked vectors, metrics in clear), failed ones included."""
        messages = list(messages)
        self._round, self._grid = None, None
        if not messages:
            return []
        keys = list(to_numpy(messages[0].content[ARRAYS_RECORD]))
        proxies, instructions = {}, []
        for msg in messages:
            node = msg.metadata.dst_node_id
            proxies[node] = GridClientProxy(node, grid, msg.metadata.run_id)
            arrays = to_numpy(msg.content[ARRAYS_RECORD])
            config = {**dict(msg.content[CONFIG_RECORD]), SECAGG_KEYS: keys}
            instructions.append((proxies[node], FitIns(ndarrays_to_parameters([arrays[k] for k in keys]), config)))
        manager = SimpleClientManager()
        for proxy in proxies.values():
            manager.register(proxy)
        self._round = _RoundStrategy(instructions)
        context = LegacyContext(
            Context(run_id=messages[0].metadata.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            strategy=self._round,
            client_manager=manager,
        )
        server_round = int(messages[0].content[CONFIG_RECORD].get(SERVER_ROUND_KEY, 0))
        context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: server_round})
        context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()
        s = self.secagg
        workflow = SecAggPlusWorkflow(
            num_shares=1.0 if s.num_shares == 0 else s.num_shares,
            reconstruction_threshold=float(s.threshold),
            max_weight=self.max_weight,
            clipping_range=float(s.clipping_range),
            quantization_range=s.quantization_range,
            modulus_range=SECAGG_MODULUS,
            timeout=timeout if timeout is not None else self.timeout,
        )
        self._grid = _MeteredGrid(grid)
        try:
            workflow(cast(Grid, self._grid), context)  # a Grid in all but name: it delegates to one
        except Exception as exc:  # noqa: BLE001 - a malformed masked vector, a share that does not decode: the round, not the run
            log(WARNING, "round %d: SecAgg+ failed: %s", server_round, short_reason(exc))
            self._round.aggregate = None
            self._grid.failures.setdefault(-1, f"SecAgg+ failed: {short_reason(exc)}")
        return list(self._grid.collected)

    def aggregate_train(self, server_round, replies):
        round_, metered = self._round, self._grid
        record = self.current
        if round_ is None or metered is None:
            if self.dp is None or self._messages:
                log(WARNING, "round %d: no client trained; the global base is unchanged", server_round)
            return None, None
        summed = {node for node, _ in round_.results} if round_.aggregate is not None else set()
        if record is not None:
            record.bytes_down_per_client = max(metered.down.values(), default=0)
            for node, reason in sorted(metered.failures.items()):
                if node < 0:  # the workflow itself failed
                    record.failures.append(reason)
                elif node not in summed:
                    record.failed += 1
                    record.failures.append(f"node {node}: {reason}")
            for node, res in round_.results:
                if node in summed:
                    record.accepted += 1
                    record.bytes_up_per_client.append(metered.up.get(node, 0))
                for key in FAULT_COUNTERS:
                    value = res.metrics.get(key)
                    if (
                        isinstance(value, (int, float))
                        and not isinstance(value, bool)
                        and np.isfinite(value)
                        and value >= 0
                    ):
                        record.faults[key] = record.faults.get(key, 0) + value
        if round_.aggregate is None:
            log(
                WARNING,
                "round %d: SecAgg+ did not complete (%d of %d clients failed; it needs %g of each client's "
                "shares); the global base is unchanged",
                server_round,
                len([n for n in metered.failures if n >= 0]),
                len(self._messages),
                self.secagg.threshold,
            )
            return None, None
        keys = list(to_numpy(self._messages[0].content.array_records[ARRAYS_RECORD]))
        if len(round_.aggregate) != len(keys):
            return self._reject(server_round, f"the aggregate has {len(round_.aggregate)} tensors, not {len(keys)}")
        mean = dict(zip(keys, round_.aggregate))
        released = mean if self.dp is None else self.dp.release(self._sent, mean, contributors=len(summed))
        released = {k: np.asarray(v, dtype=np.float32) for k, v in released.items()}
        try:
            validate_update(released, self.spec, num_examples=1)
        except InvalidUpdate as exc:
            return self._reject(server_round, f"the aggregate: {exc}")
        reply = Message(
            RecordDict(
                {
                    ARRAYS_RECORD: ArrayRecord({k: Array(v) for k, v in released.items()}),
                    METRICS_RECORD: MetricRecord({WEIGHT_KEY: 1}),
                }
            ),
            reply_to=self._messages[0],
        )
        arrays, _ = self.inner.aggregate_train(server_round, [reply])
        metrics = weighted_metrics([dict(res.metrics) for _, res in round_.results], weight_key=self.weight_key)
        log(INFO, "round %d: SecAgg+ summed %d of %d clients", server_round, len(summed), len(self._messages))
        return arrays, MetricRecord({k: v for k, v in metrics.items() if k != self.weight_key})

    def _reject(self, server_round: int, reason: str):
        log(WARNING, "round %d: rejected %s; the global base is unchanged", server_round, reason)
        if self.current is not None:
            self.current.rejected.append(reason)
        return None, None


def build_secure(
    cfg: RunConfig, *, n_train: int, initial: ArrayRecord
) -> tuple[SecureAggregation, RdpAccountant | None]:
    """The secure aggregation of a run (and its privacy accountant under DP); refuses a federation it cannot sum."""
    from server.strategies import build_strategy, sampled_clients

    fed = cfg.federation
    expected = sampled_clients(fed, n_train)
    check_population(fed.secagg, expected, most=n_train if fed.dp_noise > 0 else expected)  # Poisson: up to all
    dp = None
    plain = replace(fed, secure_aggregation=False, dp_noise=0.0)
    if fed.dp_noise > 0:
        if fed.dp_clip <= 0:
            raise SecureAggregationConflict(f"dp.clip must be > 0 with dp.noise > 0, got {fed.dp_clip}")
        spec = to_numpy(initial)
        dimension = int(sum(v.size for v in spec.values()))
        dp = CentralDP(
            noise=fed.dp_noise,
            clip=fed.dp_clip,
            expected=expected,
            population=n_train,
            dimension=dimension,
            slack=quantization_slack(
                dimension, clipping_range=fed.secagg.clipping_range, quantization_range=fed.secagg.quantization_range
            ),
        )
        plain = replace(plain, fraction_train=1.0, min_train_nodes=1)  # the sample is CentralDP's
    inner, _ = build_strategy(plain, n_train=n_train)
    aggregation = SecureAggregation(inner, expected_from(initial), secagg=fed.secagg, dp=dp, timeout=fed.round_timeout)
    return aggregation, (dp.accountant if dp is not None else None)
