"""The aggregation strategy chosen by config: FedAvg, FedProx, FedAdam, FedMedian or FedTrimmedAvg (Flower's),
optionally wrapped for differential privacy (client-side clipping, server-side Gaussian noise).

:data:`BUILDERS` builds each strategy by its name in :data:`shared.config.STRATEGIES` (the names and what they do,
which the config checks against); ``tests/server/test_checkpoint_and_strategies.py`` checks that the two name the same
strategies.

Example:
    >>> from shared.config import RunConfig, default_mapping
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "federation.strategy": "fedmedian"})
    >>> type(build_strategy(cfg.federation, n_train=4)[0]).__name__
    'FedMedian'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Strategy,
)

from shared.config import FederationConfig
from shared.errors import ConfigError
from shared.protocol import DP_WEIGHT_KEY, WEIGHT_KEY

if TYPE_CHECKING:
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

__all__ = ["build_strategy", "sampled_clients", "BUILDERS"]


BUILDERS: dict[str, Callable[[dict[str, Any], FederationConfig], Strategy]] = {
    "fedavg": lambda common, fed: FedAvg(**common),
    "fedprox": lambda common, fed: FedProx(**common, proximal_mu=fed.proximal_mu),
    "fedadam": lambda common, fed: FedAdam(**common, eta=fed.server_lr, eta_l=fed.server_lr),
    "fedmedian": lambda common, fed: FedMedian(**common),
    "fedtrimmedavg": lambda common, fed: FedTrimmedAvg(**common, beta=fed.trim_beta),
}
"""Strategy name (:data:`shared.config.STRATEGIES`) -> ``builder(common, fed)``: the Flower strategy, from the
arguments every strategy takes (``common``) and the strategy's own settings in ``fed``."""


def sampled_clients(fed: FederationConfig, n_train: int) -> int:
    """How many training clients a round samples (as Flower's FedAvg computes it)."""
    return min(n_train, max(int(n_train * fed.fraction_train), min(fed.min_train_nodes, n_train)))


def build_strategy(fed: FederationConfig, *, n_train: int) -> tuple[Strategy, RdpAccountant | None]:
    """(strategy, privacy accountant or None) for ``n_train`` training clients; evaluation is configured elsewhere."""
    per_round = sampled_clients(fed, n_train)
    dp = fed.dp_noise > 0
    common = dict(
        fraction_train=fed.fraction_train,
        fraction_evaluate=1.0,
        min_train_nodes=min(fed.min_train_nodes, n_train),
        min_evaluate_nodes=1,
        min_available_nodes=1,
        weighted_by_key=DP_WEIGHT_KEY if dp else WEIGHT_KEY,
    )
    builder = BUILDERS.get(fed.strategy)
    if builder is None:  # FederationConfig checks the name against STRATEGIES; a builder missing is a bug here
        raise ConfigError(f"unknown strategy {fed.strategy!r}; this server builds {', '.join(BUILDERS)}")
    strategy = builder(common, fed)
    if not dp:
        return strategy, None
    if fed.dp_clip <= 0:
        raise ConfigError(f"dp.clip must be > 0 with dp.noise > 0, got {fed.dp_clip}")
    accountant = None
    if (
        importlib.util.find_spec("dp_accounting") is not None
        and isinstance(strategy, FedAvg)
        and type(strategy).aggregate_train is FedAvg.aggregate_train
    ):
        from flwr.serverapp import NeighboringRelation, PrivacyConfig, SamplingMethod
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=1.0 / (n_train * 10),
                population_size=n_train,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
    wrapped = DifferentialPrivacyClientSideFixedClipping(
        strategy, fed.dp_noise, fed.dp_clip, per_round, accountant=accountant
    )
    return wrapped, accountant
