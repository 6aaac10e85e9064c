"""The device-side knobs of the SDK (:class:`client.sdk.PersonalClient`), as one frozen, validated dataclass.

Every field has a default a phone or a laptop can run with; a value outside its range is refused when the config is
made (:class:`shared.errors.ConfigError` naming the field and the range), before a client opens a store.

Example:
    >>> DeviceConfig().threads, DeviceConfig(llm_concurrency=32).llm_concurrency
    (2, 32)
    >>> DeviceConfig().onboarding.calls_per_user == ONBOARDING_CALLS
    True
    >>> DeviceConfig(threads=0)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: DeviceConfig.threads must be an integer in 1..1024, got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from shared.errors import ConfigError
from shared.hydra.episodes import EpisodeConfig
from shared.hydra.infer import InferenceConfig
from shared.settings import BOUNDS, setting

__all__ = ["DeviceConfig", "ONBOARDING_CALLS"]

ONBOARDING_CALLS = 20
"""Most LLM calls a new user's onboarding (the episodes that fit their heads) may cost by default."""

_KEYS: dict[str, str] = {
    "quantized": "device.quantized",
    "fit_steps": "train.fit-steps",
    "fit_lr": "train.fit-lr",
    "head_l2": "train.head-l2",
    "llm_timeout": "llm.timeout",
    "llm_concurrency": "llm.concurrency",
}
"""The fields that are a run config key's device side: each takes that key's declared default and range
(:mod:`shared.settings`, which the device imports; not :mod:`shared.config`, which names the training methods), so a
run's settings always make a valid device config."""

_RANGES: dict[str, tuple[int, int] | tuple[float, float]] = {
    "threads": (1, 1024),
    **{name: BOUNDS[key] for name, key in _KEYS.items() if key in BOUNDS},
}
"""The range of every numeric field, both ends inclusive (int ends: an integer field)."""


@dataclass(frozen=True)
class DeviceConfig:
    """How the SDK runs on the device: threads and model precision, retrieval and pool sizes, onboarding's LLM budget,
    the on-device head fit, and the LLM endpoint's deadline and concurrency."""

    threads: int = 2
    """onnxruntime threads per model."""
    quantized: bool = setting(_KEYS["quantized"]).default
    """Use the bundle's int8 encoders where it has them (float32 otherwise)."""
    inference: InferenceConfig = InferenceConfig()
    """Retrieval and candidate-pool sizes when answering."""
    episodes: EpisodeConfig | None = None
    """What onboarding (the LLM-labelled data that fits the user's heads) may cost; None: :attr:`onboarding`'s
    default, sized from ``inference``."""
    fit_steps: int = setting(_KEYS["fit_steps"]).default
    """Gradient steps of the on-device head fit (numpy, base frozen)."""
    fit_lr: float = setting(_KEYS["fit_lr"]).default
    """Its learning rate."""
    head_l2: float = setting(_KEYS["head_l2"]).default
    """Its pull towards the shared heads."""
    llm_timeout: float = setting(_KEYS["llm_timeout"]).default
    """Seconds per LLM request (the whole request: connecting, headers and body)."""
    llm_concurrency: int = setting(_KEYS["llm_concurrency"]).default
    """Most LLM requests in flight (the embedded server serves 4 at once; raise it for a remote endpoint)."""
    keep_llm_server: bool = False
    """Leave an embedded LLM server this client started running when it closes (``fedhydra llm stop`` stops it)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _RANGES:
                _check_number(f.name, value, *_RANGES[f.name])
            elif f.name in ("quantized", "keep_llm_server") and not isinstance(value, bool):
                raise ConfigError(f"DeviceConfig.{f.name} must be true or false, got {type(value).__name__}")
        if not isinstance(self.inference, InferenceConfig):
            raise ConfigError(f"DeviceConfig.inference must be an InferenceConfig, got {type(self.inference).__name__}")
        if self.episodes is not None and not isinstance(self.episodes, EpisodeConfig):
            raise ConfigError(
                f"DeviceConfig.episodes must be an EpisodeConfig or None, got {type(self.episodes).__name__}"
            )

    @property
    def onboarding(self) -> EpisodeConfig:
        """``episodes``, else the default onboarding: two pseudo-questions per history and no free question, the
        inference's pool and reranking size, at most :data:`ONBOARDING_CALLS` LLM calls."""
        if self.episodes is not None:
            return self.episodes
        return EpisodeConfig(
            pool=self.inference.pool,
            rerank_m=self.inference.m,
            pseudo_questions=2,
            free_questions=0,
            calls_per_user=ONBOARDING_CALLS,
        )


def _check_number(name: str, value: object, low: float, high: float) -> None:
    """Refuse ``value`` unless it is a number of the field's kind in ``low..high`` (a bool is no number)."""
    integer = isinstance(low, int)
    kind = f"an integer in {low}..{high}" if integer else f"a number in {low:g}..{high:g}"
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(float(value))  # type: ignore[arg-type]
    if not ok or not low <= value <= high:  # type: ignore[operator]
        shown = (
            repr(value)[:40]
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else type(value).__name__
        )
        raise ConfigError(f"DeviceConfig.{name} must be {kind}, got {shown}")
