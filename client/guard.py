"""What a device accepts from a server, and what a round may leave in its store (Flower-free, numpy only).

The server checks every reply (:mod:`server.validation`); a device checks what it receives as strictly, so that a
broken or hostile server cannot damage it. :class:`client.node.ClientNode` runs :meth:`Guard.check_base` on every
message that carries a global base (train, evaluate, the margin query) before the base reaches a model, an export
or the store. The rules, in the order they are checked (defaults in :class:`Limits`):

1. **size**: no more tensors than the device's own base has, and no more bytes than that base would take in float64
   (8 bytes per element), counted before any value is read. A packed message (:mod:`shared.packing`) is checked on
   its layout and the byte length of its flat arrays before anything is unpacked (:func:`client.packing.check_packed`: the
   tensor count, bytes, dtypes and shapes the layout names, whatever its ``same-as`` entries repeat), then unpacked
   into views of the bytes that came and checked by every rule below before any copy is made
   (:func:`client.packing.make_packing_mod`): what a message makes the device allocate is bounded by its own base,
   whatever the layout says (``scripts/bench_hostile_memory.py`` measures it);
2. **keys**: exactly the shared keys of the device's own model: no personal ``head.`` key, none unknown, none
   missing;
3. **shapes and dtypes**: the device's shapes; float32 (the protocol's dtype) or float64 (Flower's FedAdam returns
   its global base in float64), cast to float32 once checked; nothing else (no integers, no float16, no objects);
4. **values**: all finite, none of magnitude above ``max_abs`` (1e4, the bound the server puts on every reply:
   :func:`server.validation.validate_update`);
5. **norm**: the L2 norm of the whole base at most ``max_norm`` (1e3) and, once this device has accepted a base
   (its norm is kept in the store, ``accepted_base.json``), at most ``growth`` (10) times that norm, or times
   ``floor`` (1.0) if that is larger. For scale: the initial base of the default model has norm 7.0, and the
   default simulation's global base after rounds 1, 2 and 3 had 8.1, 9.2 and 10.3 (``runs/main``); the server's
   outlier filter uses the same factor 10 on replies.

A refused base raises :class:`shared.errors.UnsafeBase` naming the rule and the tensor; the reason is logged (logger
``client.guard``) and :mod:`client.replies` turns the exception into the client's error reply (code 101 and a fixed
reason, never the rule's text), so the round goes on without this device and the server logs and counts it as
failed. Nothing of the base was read into a model or written: the store
is byte for byte as it was (``tests/client/test_hostile_server.py``).

After local training, :meth:`Guard.check_round` checks what the round would keep and send before anything is
written: the personal heads (:func:`check_heads`: the same keys and shapes as before the round, finite, within
``max_abs`` and ``max_norm``, and a norm at most ``growth`` times what it was before the round, or times ``floor``)
and the shared tensors of the reply (:func:`check_update`: finite, within ``max_abs``). A failure raises
:class:`shared.errors.DivergedRound`: the last good heads stay and nothing is sent. The SDK checks the heads it fits
for a new user the same way before storing them. Only once a message's work is done does :meth:`Guard.accept`
record the base's norm as the next reference, so a refused base never moves it.

Under secure aggregation (:mod:`client.secagg`) the server sees only the round's masked sum, so the checks it made on
every reply move here: :func:`check_secure_update` refuses to mask an update whose keys or shapes differ from the base
received, that is not finite or within ``max_abs``, whose weight is no positive number, or a value of which SecAgg+'s
quantization would clip (:class:`shared.errors.UnsafeUpdate`: the client leaves the round; a weight above SecAgg+'s
largest is capped).

What the guard cannot stop: a base that is well formed and of plausible size but bad (trained to mislead, a
sign-flipped copy of a good one) passes; it can cost answer quality, not the stored data. The relative rule compares
with the last base this device accepted, whatever run it came from: a device that last saw a fresh base and is then
sent a far longer-trained one (norm over 10 times larger) refuses it; deleting ``accepted_base.json`` from its store
resets the reference.

Example:
    >>> import numpy as np
    >>> spec = {"base.a": (2,)}
    >>> arrays, norm = check_base({"base.a": np.array([3.0, 4.0])}, spec)
    >>> arrays["base.a"].dtype, norm
    (dtype('float32'), 5.0)
    >>> check_base({"base.a": np.array([60.0, 80.0], np.float32)}, spec, reference=5.0)
    Traceback (most recent call last):
    ...
    shared.errors.UnsafeBase: the global base has norm 100, over 10 x the norm 5 of the last base this device accepted
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from client.store import StoreError, UserStore
from shared.errors import DivergedRound, GuardError, UnsafeBase, UnsafeUpdate
from shared.hydra.naming import is_personal_key, is_shared_key

__all__ = [
    "Limits",
    "LIMITS",
    "ACCEPTED_DTYPES",
    "TensorShapes",
    "Guard",
    "check_base",
    "check_declared",
    "base_budget",
    "check_heads",
    "check_update",
    "check_secure_update",
    "l2_norm",
]

_LOG = logging.getLogger("client.guard")

TensorShapes = Mapping[str, tuple[int, ...]]
"""The shape of every shared tensor of the device's own model, by key."""

ACCEPTED_DTYPES = ("float32", "float64")
"""The dtypes a global base may come in (float64: Flower's FedAdam); the device casts them to float32."""


@dataclass(frozen=True)
class Limits:
    """The bounds of the guard's rules (see the module docstring)."""

    max_abs: float = 1e4
    """Largest magnitude of any value received, kept or sent (the server's bound on replies)."""
    max_norm: float = 1e3
    """Largest L2 norm of a whole global base, or of a user's heads."""
    growth: float = 10.0
    """How many times the reference norm (the last accepted base; the heads before the round) a norm may reach."""
    floor: float = 1.0
    """The smallest reference norm the growth rule multiplies (a reference near zero allows this much times growth)."""
    bytes_per_element: int = 8
    """Most bytes per element of the device's base a message may hold (float64)."""

    def __post_init__(self) -> None:
        for name in ("max_abs", "max_norm", "growth", "floor", "bytes_per_element"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"guard limit {name} must be a positive number, got {value!r}")


LIMITS = Limits()
"""The defaults every node uses."""


def l2_norm(arrays: Mapping[str, Any]) -> float:
    """The L2 norm of all these tensors together (in float64)."""
    return float(math.sqrt(sum(float(np.sum(np.square(np.asarray(v, np.float64)))) for v in arrays.values())))


_REFUSED = {UnsafeBase: "refused the global base", DivergedRound: "round discarded", UnsafeUpdate: "update not sent"}


def _refuse(error: type[GuardError], reason: str, key: str | None = None) -> NoReturn:
    _LOG.warning("%s: %s", _REFUSED.get(error, "refused"), reason)
    raise error(reason, key=key)


def _bound(reference: float | None, limits: Limits) -> float:
    return limits.max_norm if reference is None else min(limits.max_norm, limits.growth * max(reference, limits.floor))


def _values(error: type[GuardError], what: str, key: str, value: np.ndarray, limits: Limits) -> None:
    if not np.all(np.isfinite(value)):
        _refuse(error, f"{what} tensor {key!r} holds NaN or Inf", key)
    if value.size and float(np.max(np.abs(value))) > limits.max_abs:
        _refuse(
            error,
            f"{what} tensor {key!r} has a value of magnitude {float(np.max(np.abs(value))):.3g} > {limits.max_abs:g}",
            key,
        )


def base_budget(spec: TensorShapes, limits: Limits = LIMITS) -> int:
    """The most bytes of tensors a message may hold: the device's base at ``bytes_per_element`` per element."""
    return limits.bytes_per_element * sum(math.prod(shape) for shape in spec.values())


def _itemsize(key: str, dtype: str) -> int:
    if dtype not in ACCEPTED_DTYPES:
        _refuse(UnsafeBase, f"tensor {key!r} has dtype {dtype}, expected one of {', '.join(ACCEPTED_DTYPES)}", key)
    return np.dtype(dtype).itemsize


def check_declared(
    tensors: Mapping[str, tuple[Sequence[int], str]], spec: TensorShapes, *, limits: Limits = LIMITS
) -> None:
    """The rules of a global base that need no value (count, bytes, keys, shapes, dtypes), on what a message says
    its tensors are: ``{key: (shape, dtype name)}``; raises :class:`UnsafeBase`. Nothing here reads a value or
    allocates more than the names."""
    if len(tensors) > len(spec):
        _refuse(UnsafeBase, f"the message holds {len(tensors)} tensors; this device's base has {len(spec)}")
    budget = base_budget(spec, limits)
    size = sum(
        math.prod(shape) * (np.dtype(dtype).itemsize if dtype in np.sctypeDict else 8)
        for shape, dtype in tensors.values()
    )
    if size > budget:
        _refuse(UnsafeBase, f"the message holds {size:,} bytes of tensors; this device's base takes at most {budget:,}")
    for key in tensors:
        if is_personal_key(key):
            _refuse(UnsafeBase, f"personal key {key!r} in a global base", key)
        if not is_shared_key(key) or key not in spec:
            _refuse(UnsafeBase, f"unknown key {key!r} in a global base", key)
    missing = [k for k in spec if k not in tensors]
    if missing:
        _refuse(UnsafeBase, f"the global base lacks {len(missing)} shared tensors, e.g. {missing[0]!r}", missing[0])
    for key, shape in spec.items():
        got, dtype = tensors[key]
        if tuple(got) != tuple(shape):
            _refuse(UnsafeBase, f"tensor {key!r} has shape {tuple(got)}, expected {tuple(shape)}", key)
        _itemsize(key, dtype)


def check_base(
    arrays: Mapping[str, Any],
    spec: TensorShapes,
    *,
    reference: float | None = None,
    limits: Limits = LIMITS,
    copy: bool = True,
) -> tuple[dict[str, np.ndarray], float]:
    """Check a received global base against the device's own shapes ``spec`` and the norm ``reference`` of the last
    base it accepted (None: none yet); returns (the base as float32, its norm) or raises :class:`UnsafeBase`.
    The tensors may be read-only views of the message's bytes: they are copied (once, as float32) only after every
    rule has passed (``copy=False``: the check alone, an empty dict for the base)."""
    check_declared({k: (tuple(np.shape(v)), str(np.asarray(v).dtype)) for k, v in arrays.items()}, spec, limits=limits)
    for key in spec:
        _values(UnsafeBase, "received", key, np.asarray(arrays[key]), limits)
    norm = l2_norm({k: arrays[k] for k in spec})
    if norm > limits.max_norm:
        _refuse(UnsafeBase, f"the global base has norm {norm:.3g}, over the bound {limits.max_norm:g}")
    if reference is not None and norm > _bound(reference, limits):
        _refuse(
            UnsafeBase,
            f"the global base has norm {norm:.3g}, over {limits.growth:g} x the norm {reference:.3g} "
            f"of the last base this device accepted",
        )
    return ({key: np.array(arrays[key], dtype=np.float32) for key in spec} if copy else {}), norm


def check_heads(after: Mapping[str, Any], before: Mapping[str, Any], *, limits: Limits = LIMITS) -> None:
    """Raise :class:`DivergedRound` unless the heads a round would store (``after``) have the keys and shapes of the
    heads it started from (``before``), are finite and bounded, and did not grow past ``growth`` times their norm."""
    if set(after) != set(before):
        _refuse(DivergedRound, f"the round's heads have keys {sorted(set(after) ^ set(before))[:3]} unlike before")
    values = {k: np.asarray(v) for k, v in after.items()}
    for key, value in values.items():
        if tuple(value.shape) != tuple(np.asarray(before[key]).shape):
            _refuse(
                DivergedRound,
                f"head {key!r} has shape {tuple(value.shape)}, was {tuple(np.asarray(before[key]).shape)}",
                key,
            )
        _values(DivergedRound, "trained head", key, value, limits)
    norm, start = l2_norm(values), l2_norm(before)
    if norm > _bound(start, limits):
        _refuse(
            DivergedRound,
            f"the round's heads have norm {norm:.3g}, over {limits.growth:g} x their norm "
            f"{start:.3g} before the round (or the bound {limits.max_norm:g})",
        )


def check_update(arrays: Mapping[str, Any], *, limits: Limits = LIMITS) -> None:
    """Raise :class:`DivergedRound` unless the shared tensors a round would send are finite and within ``max_abs``
    (the server would refuse them anyway; checking here keeps the round's heads out of the store too)."""
    for key, value in arrays.items():
        _values(DivergedRound, "trained shared", key, np.asarray(value), limits)


def check_secure_update(
    arrays: Mapping[str, Any],
    keys: Sequence[str],
    shapes: TensorShapes,
    weight: object,
    *,
    clipping_range: float,
    max_weight: float,
    limits: Limits = LIMITS,
) -> tuple[list[np.ndarray], float]:
    """What a client checks on its own update before SecAgg+ masks it, since the server can no longer check it
    (:func:`server.validation.validate_update` and the outlier filter need the update in clear).

    The update must have exactly the ``keys`` of the base received and its ``shapes``, be finite and within
    ``max_abs``; its ``weight`` must be a positive number (capped at ``max_weight``, logged); and no value times
    ``weight / max_weight`` may lie beyond ``clipping_range``, where SecAgg+'s quantization would clip it and silently
    corrupt the round's sum. Returns the tensors as float32 in the order of ``keys`` and the weight; otherwise raises
    :class:`UnsafeUpdate` (logged) and nothing is sent: the round goes on without this client.

    >>> import numpy as np
    >>> tensors, w = check_secure_update({"base.a": np.ones(2)}, ["base.a"], {"base.a": (2,)}, 2000,
    ...                                  clipping_range=8.0, max_weight=1000.0)
    >>> tensors[0].dtype, w
    (dtype('float32'), 1000.0)
    >>> check_secure_update({"base.a": np.full(2, 9.0)}, ["base.a"], {"base.a": (2,)}, 10, clipping_range=8.0,
    ...                     max_weight=10.0)
    Traceback (most recent call last):
    ...
    shared.errors.UnsafeUpdate: the update's largest value 9 times its weight 10 / 10 is beyond SecAgg+'s clipping range 8: the quantization would clip it
    """
    if set(arrays) != set(keys):
        odd = sorted(set(arrays) ^ set(keys))
        _refuse(
            UnsafeUpdate,
            f"the update's keys differ from the base received ({len(odd)} differ, e.g. {odd[0]!r})",
            odd[0],
        )
    out = []
    for key in keys:
        value = np.asarray(arrays[key])
        if tuple(value.shape) != tuple(shapes[key]):
            _refuse(
                UnsafeUpdate,
                f"update tensor {key!r} has shape {tuple(value.shape)}, the base's is {tuple(shapes[key])}",
                key,
            )
        _values(UnsafeUpdate, "update", key, value, limits)
        out.append(np.ascontiguousarray(value, dtype=np.float32))
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        _refuse(UnsafeUpdate, f"the update's weight must be a positive number, got {weight!r}")
    if weight > max_weight:
        _LOG.warning("update weight %g capped at SecAgg+'s largest weight %g", weight, max_weight)
        weight = float(max_weight)
    peak = max((float(np.max(np.abs(v))) for v in out if v.size), default=0.0)
    if peak * weight / max_weight > clipping_range:
        _refuse(
            UnsafeUpdate,
            f"the update's largest value {peak:g} times its weight {weight:g} / {max_weight:g} is "
            f"beyond SecAgg+'s clipping range {clipping_range:g}: the quantization would clip it",
        )
    return out, weight


class Guard:
    """One user's guard on one node: :meth:`check_base`, then :meth:`check_round` (training), then :meth:`accept`.

    ``spec`` is the shape of every shared tensor of the device's own model; ``root`` and ``user`` name its store,
    where the norm of the last accepted base is kept (read without creating a store that does not exist yet).
    """

    def __init__(self, spec: TensorShapes, root: str | Path, user: str, *, task: str, limits: Limits = LIMITS):
        self.spec = dict(spec)
        self.root = Path(root)
        self.user = user
        self.task = task
        self.limits = limits
        self.norm: float | None = None
        """The norm of the base :meth:`check_base` last let through."""

    def reference(self) -> float | None:
        """The norm of the last global base this device accepted, or None (none yet)."""
        if not UserStore.exists(self.root, self.user):
            return None
        store = UserStore(self.root, self.user, task=self.task)
        record = store.read_accepted_base()
        if record is None:
            return None
        norm = record.get("norm") if isinstance(record, dict) else None
        if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not math.isfinite(norm) or norm < 0:
            raise StoreError(f"{store.path / 'accepted_base.json'}: damaged (norm {norm!r})")
        return float(norm)

    def check_base(self, arrays: Mapping[str, Any], *, copy: bool = True) -> dict[str, np.ndarray]:
        """The received base as float32 once every rule passes (``copy=False``: only checked, an empty dict); raises
        :class:`UnsafeBase` (logged) otherwise."""
        out, self.norm = check_base(arrays, self.spec, reference=self.reference(), limits=self.limits, copy=copy)
        return out

    def check_round(
        self, heads_after: Mapping[str, Any], heads_before: Mapping[str, Any], update: Mapping[str, Any]
    ) -> None:
        """Raise :class:`DivergedRound` (logged) unless the round's heads and reply may be kept and sent."""
        check_heads(heads_after, heads_before, limits=self.limits)
        check_update(update, limits=self.limits)

    def accept(self) -> None:
        """Record the norm of the base the message was done with as the reference of the next one."""
        if self.norm is None:
            raise RuntimeError("Guard.accept() before a base passed check_base()")
        UserStore(self.root, self.user, task=self.task).write_accepted_base({"norm": self.norm})
