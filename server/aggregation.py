"""How a round's training replies become the next global base: one registry, chosen by ``secagg.enabled``.

| name | config | the server sees | built by |
|---|---|---|---|
| ``plain`` | ``secagg.enabled = false`` | every update: each validated (:mod:`server.validation`), outliers dropped, then the configured strategy (and DP wrapper) | :func:`build_plain` |
| ``secagg+`` | ``secagg.enabled = true`` | the round's masked sum only (Flower's SecAgg+), then the configured strategy; central DP on the sum | :func:`server.secure.build_secure` |

Both return a :class:`server.federation.ValidatingStrategy` (the secure one a subclass) that
:func:`server.federation.run_rounds` drives the same way, and the run's privacy accountant (None without DP). What the
secure path cannot combine with is refused when the config is read (:func:`shared.config.secure_aggregation_conflicts`).

Example:
    >>> from shared.config import RunConfig, default_mapping
    >>> aggregation_name(RunConfig.from_mapping({**default_mapping(), "secagg.enabled": True,
    ...                                          "federation.outlier-norm-factor": 0.0}).federation)
    'secagg+'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord

from server.federation import ValidatingStrategy, expected_from
from shared.config import FederationConfig, RunConfig
from shared.protocol import DP_WEIGHT_KEY, WEIGHT_KEY

if TYPE_CHECKING:
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

__all__ = ["AGGREGATIONS", "aggregation_name", "build_aggregation", "build_plain"]


def build_plain(
    cfg: RunConfig, *, n_train: int, initial: ArrayRecord
) -> tuple[ValidatingStrategy, RdpAccountant | None]:
    """Every reply validated and the outlier filter, around the configured strategy (with DP: Flower's wrapper)."""
    from server.strategies import build_strategy

    fed = cfg.federation
    strategy, accountant = build_strategy(fed, n_train=n_train)
    return ValidatingStrategy(
        strategy,
        expected_from(initial),
        weight_key=DP_WEIGHT_KEY if fed.dp_noise > 0 else WEIGHT_KEY,
        norm_factor=fed.outlier_norm_factor,
    ), accountant


def _build_secure(cfg: RunConfig, *, n_train: int, initial: ArrayRecord):
    from server.secure import build_secure

    return build_secure(cfg, n_train=n_train, initial=initial)


AGGREGATIONS: dict[str, Callable[..., tuple[ValidatingStrategy, RdpAccountant | None]]] = {
    "plain": build_plain,
    "secagg+": _build_secure,
}
"""Aggregation name -> ``builder(cfg, n_train=..., initial=...)``: (the strategy run_rounds drives, accountant)."""


def aggregation_name(fed: FederationConfig) -> str:
    """The registry's name for this run's aggregation."""
    return "secagg+" if fed.secure_aggregation else "plain"


def build_aggregation(
    cfg: RunConfig, *, n_train: int, initial: ArrayRecord
) -> tuple[ValidatingStrategy, RdpAccountant | None]:
    """The aggregation of a run with ``n_train`` training clients starting from ``initial``, and its accountant."""
    return AGGREGATIONS[aggregation_name(cfg.federation)](cfg, n_train=n_train, initial=initial)
