"""Typed exceptions shared by every FedHydra package.

Every error raised on bad input names the place it comes from (a file, an item's index, a field, a
value), so that a user can fix the input without reading the code.

Example:
    >>> from shared.errors import DataFormatError
    >>> str(DataFormatError("q.json", "expected a string", index=3, field="input"))
    "q.json: item 3, field 'input': expected a string"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real

__all__ = [
    "FedHydraError",
    "ConfigError",
    "OutOfRange",
    "WrongRole",
    "DataFormatError",
    "UnknownTaskError",
    "LLMError",
    "LLMConnectionError",
    "LLMTimeoutError",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMRetriesExhausted",
    "LLMUnavailable",
    "LLMServerError",
    "GuardError",
    "UnsafeBase",
    "DivergedRound",
    "UnsafeUpdate",
    "SecureAggregationConflict",
    "PackingError",
    "check_minimums",
]


class FedHydraError(Exception):
    """Base class of every error FedHydra raises on purpose."""


class ConfigError(FedHydraError, ValueError):
    """A configuration value is missing, of the wrong type or out of range (names the key)."""


class OutOfRange(ConfigError):
    """A config value outside its documented range (:data:`shared.config.BOUNDS`), or not a number: names the key and
    the bound (``key``, ``low``, ``high``); a device's own cap (node config ``cap-<key>``) lowers ``high``.

    >>> str(OutOfRange("train.lr", float("nan"), 0.0, 10.0))
    "config key 'train.lr' must be >= 0 and <= 10, got nan"
    """

    def __init__(
        self, key: str, value: object, low: float, high: float, *, capped: bool = False, kind: str | None = None
    ):
        self.key, self.low, self.high = key, low, high
        shown = (repr(value) if isinstance(value, (str, bytes)) else str(value))[:40]
        if kind is not None:  # not a number of the key's kind at all
            super().__init__(f"config key {key!r} must be {kind}, got {shown}")
            return
        by = " (capped by this device's node config)" if capped else ""
        super().__init__(f"config key {key!r} must be >= {_bound(low)} and <= {_bound(high)}{by}, got {shown}")


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else f"{value:g}"


class WrongRole(ConfigError):
    """A node asked for work its role does not do (a test user asked to train or for margin sums)."""


def check_minimums(config: object, minimums: Mapping[str, float], *, name: Callable[[str], str] | None = None) -> None:
    """Check, in order, that each named field of ``config`` (a config dataclass, from its ``__post_init__``) is a
    number (not a bool) and at least its minimum; else raise :class:`ConfigError` naming the field and its value.
    ``name`` turns a field into the name the user knows (default ``Class.field``; a run's config: its key).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Pool:
    ...     k: int
    >>> check_minimums(Pool(4), {"k": 1})
    >>> check_minimums(Pool(0), {"k": 1})
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: Pool.k must be >= 1, got 0
    >>> check_minimums(Pool("4"), {"k": 1}, name=lambda f: f"config key {f!r}")
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'k' must be a number, got '4'
    """
    for field, minimum in minimums.items():
        value = getattr(config, field)
        label = name(field) if name is not None else f"{type(config).__name__}.{field}"
        if not isinstance(value, Real) or isinstance(value, bool):
            raise ConfigError(f"{label} must be a number, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{label} must be >= {minimum}, got {value}")


class DataFormatError(FedHydraError, ValueError):
    """An input file does not follow the expected layout.

    The message names the file, and where known the item's index and the field.
    """

    def __init__(self, path: object, message: str, *, index: int | None = None, field: str | None = None):
        self.path = str(path)
        self.index = index
        self.field = field
        self.reason = message
        where = []
        if index is not None:
            where.append(f"item {index}")
        if field is not None:
            where.append(f"field {field!r}")
        place = f"{self.path}: {', '.join(where)}" if where else self.path
        super().__init__(f"{place}: {message}")


class UnknownTaskError(FedHydraError, KeyError):
    """A task name that the registry does not know."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class LLMError(FedHydraError):
    """Base class of errors talking to the black-box LLM."""


class LLMConnectionError(LLMError):
    """The endpoint could not be reached (refused, reset, DNS)."""


class LLMTimeoutError(LLMError):
    """The endpoint did not answer within the timeout."""


class LLMHTTPError(LLMError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, status: int, body: str):
        self.status = status
        self.body = body
        super().__init__(f"LLM endpoint answered HTTP {status}: {body[:200]}")


class LLMResponseError(LLMError):
    """The endpoint answered 200 but the body is not a usable chat completion."""


class LLMRetriesExhausted(LLMError):
    """Every retry of a retryable failure failed; ``last`` is the final error."""

    def __init__(self, attempts: int, last: LLMError):
        self.attempts = attempts
        self.last = last
        super().__init__(f"LLM call failed after {attempts} attempts: {last}")


class LLMUnavailable(LLMError):
    """The client stopped calling an endpoint that kept failing (circuit breaker open); try again later."""


class LLMServerError(LLMError):
    """The embedded LLM server could not be started, found or stopped."""


class GuardError(FedHydraError):
    """A device's guard (:mod:`client.guard`) stopped a round before it could damage the device.

    ``key`` names the tensor at fault (None when the rule is about the whole message), ``reason`` says which rule.
    """

    def __init__(self, reason: str, *, key: str | None = None):
        self.reason = reason
        self.key = key
        super().__init__(reason)


class UnsafeBase(GuardError):
    """A device refused the global base a server sent (wrong keys, shapes or dtypes, non-finite values, implausible
    norms, an oversized message): nothing was read into a model or written to the store."""


class DivergedRound(GuardError):
    """A round's training left non-finite or diverged values: the device kept its last good heads and sent nothing."""


class UnsafeUpdate(GuardError):
    """Under secure aggregation a device refused to mask and send its own update (keys or shapes unlike the base it
    received, non-finite values, a weight that is no positive number, or a value SecAgg+'s quantization would clip):
    the server could no longer tell, so the device checks itself and leaves the round instead."""


class SecureAggregationConflict(ConfigError):
    """``secagg.enabled = true`` with a setting that needs every single update (robust aggregation, the outlier
    filter) or a round of one client: refused at start, naming each setting and why."""


class PackingError(FedHydraError, ValueError):
    """A packed message (:mod:`shared.packing`) whose layout does not describe its arrays: names the field or the
    tensor that does not fit."""
