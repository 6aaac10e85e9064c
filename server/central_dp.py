"""Central differential privacy on a securely aggregated round (numpy and Flower's RDP accountant; no messages).

Under SecAgg+ the server never holds a client's update, only the mean of the round's (clipped) updates, so Flower's
DP strategy wrappers, which work on the replies and sample a fixed number of clients, do not apply. :class:`CentralDP`
does their job on that mean, with client sampling accounted for (DP-FedAvg, McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models"):

1. **sampling** (:meth:`CentralDP.sample`): each of the ``population`` training clients joins a round independently
   with probability ``q = expected / population`` (Poisson sampling; ``expected`` is how many clients a round samples
   without DP, :func:`server.strategies.sampled_clients`), drawn from the operating system's entropy, not the run's
   seed: the amplification by sampling holds only if nobody can predict the sample;
2. **clipping**: every client clips its update to L2 norm ``clip`` (``dp.clip``; Flower's ``fixedclipping_mod``
   on the client) before SecAgg+ masks it; every update weighs 1;
3. **release** (:meth:`CentralDP.release`): the new base is ``base + (S + N(0, (z * clip)^2 I)) / expected``, where
   ``S`` is the sum of the clipped updates that reached the sum (``contributors * (mean - base)``, exact since every
   weight is 1) and ``z`` the noise multiplier (``dp.noise``). The denominator is the expected sample size, fixed: a
   client that drops out counts as a zero update, so the guarantee does not depend on who answered;
4. **accounting** (:meth:`CentralDP.account`): every round is one Poisson-subsampled Gaussian release of that sum
   (Flower's :class:`RdpAccountant`, add-or-remove-one client, ``q``, ``delta = 1 / (10 population)``), also a round
   that released nothing (fewer than two clients sampled, or the round failed): counting it is conservative. The
   noise multiplier accounted is ``z * clip / (clip + slack)``: SecAgg+'s stochastic rounding moves each value of a
   clipped update by less than one quantization step, so one client can move the quantized sum by up to
   ``clip + slack`` in L2, ``slack = sqrt(d) * 2 * clipping_range / levels`` for ``d`` values (0.0013 at the
   defaults: d = 115,631 values, range 16, 2^23 levels).

With ``q = 1`` (``federation.fraction-train = 1``, the default) every client joins every round and the accounting is the
plain Gaussian mechanism's, as in the plain DP path (:func:`server.strategies.build_strategy`, which Flower allows only
without amplification).

Example:
    >>> import numpy as np
    >>> dp = CentralDP(noise=1.0, clip=1.0, expected=2, population=4, dimension=10, rng=np.random.default_rng(0))
    >>> dp.q, round(dp.accounted_noise, 6)
    (0.5, 1.0)
    >>> base, mean = {"a": np.zeros(10)}, {"a": np.full(10, 0.1)}
    >>> out = CentralDP(noise=1e-12, clip=1.0, expected=2, population=4).release(base, mean, contributors=2)
    >>> np.round(out["a"][:3], 6).tolist()  # (2 * 0.1 + ~0) / 2
    [0.1, 0.1, 0.1]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["CentralDP", "quantization_slack"]


def quantization_slack(dimension: int, *, clipping_range: float, quantization_range: int) -> float:
    """How far, in L2, SecAgg+'s stochastic rounding can move an update of ``dimension`` values: less than one step
    (``2 * clipping_range / quantization_range``) per value.

    >>> round(quantization_slack(115_631, clipping_range=16.0, quantization_range=2 ** 23), 5)
    0.0013
    """
    return math.sqrt(dimension) * 2.0 * clipping_range / quantization_range


class CentralDP:
    """Poisson client sampling, Gaussian noise on the securely aggregated mean and its accounting (module docstring).

    ``noise`` is the noise multiplier ``z``, ``clip`` the clients' clipping norm, ``expected`` the expected clients a
    round, ``population`` the training clients, ``dimension`` the values of one update and ``slack`` the quantization's
    L2 slack (:func:`quantization_slack`). ``rng`` defaults to one seeded from the operating system.
    """

    def __init__(
        self,
        *,
        noise: float,
        clip: float,
        expected: int,
        population: int,
        dimension: int = 0,
        slack: float = 0.0,
        rng: np.random.Generator | None = None,
    ):
        if not noise > 0 or not clip > 0:
            raise ValueError(f"central DP needs a noise multiplier and a clipping norm > 0, got {noise} and {clip}")
        if not 1 <= expected <= population:
            raise ValueError(f"expected clients a round must be in [1, {population}], got {expected}")
        self.noise = float(noise)
        self.clip = float(clip)
        self.expected = int(expected)
        self.population = int(population)
        self.dimension = int(dimension)
        self.slack = float(slack)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.accountant = self._accountant()

    @property
    def q(self) -> float:
        """The probability that a client joins a round."""
        return self.expected / self.population

    @property
    def accounted_noise(self) -> float:
        """The noise multiplier the accountant composes: the noise's standard deviation over the L2 sensitivity of the
        quantized sum (``clip + slack``)."""
        return self.noise * self.clip / (self.clip + self.slack)

    @property
    def stdv(self) -> float:
        """Standard deviation of the noise added to each value of the released base (``z * clip / expected``)."""
        return self.noise * self.clip / self.expected

    def _accountant(self):
        from flwr.serverapp import NeighboringRelation, PrivacyConfig, SamplingMethod
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        return RdpAccountant(
            PrivacyConfig(
                target_delta=1.0 / (10 * self.population),
                population_size=self.population,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.POISSON,
            )
        )

    def sample(self, node_ids: Sequence[int]) -> list[int]:
        """The clients of one round: each of ``node_ids`` with probability :attr:`q` (all of them when ``q = 1``)."""
        if self.q >= 1:
            return list(node_ids)
        keep = self.rng.random(len(node_ids)) < self.q
        return [n for n, k in zip(node_ids, keep) if k]

    def account(self) -> None:
        """Compose one round's release into the accountant."""
        from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

        self.accountant.compose(
            GaussianPrivacyEvent(
                noise_multiplier=self.accounted_noise, sample_size=self.expected, population_size=self.population
            )
        )

    def release(
        self, base: Mapping[str, np.ndarray], mean: Mapping[str, np.ndarray], *, contributors: int
    ) -> dict[str, np.ndarray]:
        """The noisy new base from the round's ``base`` and the securely aggregated ``mean`` of ``contributors``
        clipped client bases (every weight 1): ``base + (contributors * (mean - base) + noise) / expected``."""
        out = {}
        for key, sent in base.items():
            sent64 = np.asarray(sent, np.float64)
            total = contributors * (np.asarray(mean[key], np.float64) - sent64)
            out[key] = sent64 + (total + self.rng.normal(0.0, self.noise * self.clip, sent64.shape)) / self.expected
        return out

    def report(self) -> dict:
        """How the privacy spent is accounted (for the run's summary)."""
        return {
            "sampling": "poisson",
            "q": self.q,
            "neighbouring": "add-or-remove-one client",
            "noise_multiplier": self.noise,
            "accounted_noise_multiplier": self.accounted_noise,
            "clip": self.clip,
            "expected_clients": self.expected,
            "population": self.population,
            "quantization_slack": self.slack,
        }
