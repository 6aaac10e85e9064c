"""The aggregation strategy chosen by config: FedAvg, FedProx, FedAdam, FedMedian or FedTrimmedAvg (Flower's),
optionally wrapped for differential privacy (client-side clipping, server-side Gaussian noise).

Example:
    >>> from shared.config import RunConfig, default_mapping
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "strategy": "fedmedian"})
    >>> type(build_strategy(cfg.federation, n_train=4)[0]).__name__
    'FedMedian'
"""

from __future__ import annotations

import importlib.util

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
from shared.protocol import DP_WEIGHT_KEY

__all__ = ["build_strategy", "sampled_clients"]



def sampled_clients(fed: FederationConfig, n_train: int) -> int:
    """How many training clients a round samples (as Flower's FedAvg computes it)."""
    return min(n_train, max(int(n_train * fed.fraction_train), min(fed.min_train_nodes, n_train)))


def build_strategy(fed: FederationConfig, *, n_train: int) -> tuple[Strategy, object | None]:
    """(strategy, privacy accountant or None) for ``n_train`` training clients; evaluation is configured elsewhere."""
    per_round = sampled_clients(fed, n_train)
    dp = fed.dp_noise > 0
    common = dict(fraction_train=fed.fraction_train, fraction_evaluate=1.0, min_train_nodes=min(fed.min_train_nodes, n_train),
                  min_evaluate_nodes=1, min_available_nodes=1,
                  weighted_by_key=DP_WEIGHT_KEY if dp else "num-examples")
    name = fed.strategy
    if name == "fedavg":
        strategy: Strategy = FedAvg(**common)
    elif name == "fedprox":
        strategy = FedProx(**common, proximal_mu=fed.proximal_mu)
    elif name == "fedadam":
        strategy = FedAdam(**common, eta=fed.server_lr, eta_l=fed.server_lr)
    elif name == "fedmedian":
        strategy = FedMedian(**common)
    elif name == "fedtrimmedavg":
        strategy = FedTrimmedAvg(**common, beta=fed.trim_beta)
    else:
        raise ConfigError(f"unknown strategy {name!r}")
    if not dp:
        return strategy, None
    if fed.dp_clip <= 0:
        raise ConfigError(f"dp-clip must be > 0 with dp-noise > 0, got {fed.dp_clip}")
    accountant = None
    if importlib.util.find_spec("dp_accounting") is not None and isinstance(strategy, FedAvg) \
            and type(strategy).aggregate_train is FedAvg.aggregate_train:
        from flwr.serverapp import NeighboringRelation, PrivacyConfig, SamplingMethod
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        accountant = RdpAccountant(PrivacyConfig(target_delta=1.0 / (n_train * 10), population_size=n_train,
                                                 neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                                 sampling_method=SamplingMethod.NO_AMPLIFICATION))
    wrapped = DifferentialPrivacyClientSideFixedClipping(strategy, fed.dp_noise, fed.dp_clip, per_round,
                                                         accountant=accountant)
    return wrapped, accountant
