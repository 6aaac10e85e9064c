"""Validation of a client's reply before it may touch the global base (Flower-free).

A reply is accepted only if its tensors are exactly the shared keys the server sent (no unknown key, no
personal ``head.`` key, none missing), each with the expected shape and dtype, all finite, and its example
count is a positive number. Anything else is rejected with a reason that names the key.

Example:
    >>> import numpy as np
    >>> spec = expected_spec({"base.a": np.zeros((2, 2), np.float32)})
    >>> validate_update({"base.a": np.ones((2, 2), np.float32)}, spec, num_examples=3)
    >>> validate_update({"head.a": np.ones(1, np.float32)}, spec, num_examples=3)
    Traceback (most recent call last):
    ...
    server.validation.InvalidUpdate: personal key 'head.a' in a reply
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shared.errors import FedHydraError
from shared.hydra.naming import is_personal_key, is_shared_key

__all__ = ["InvalidUpdate", "TensorSpec", "expected_spec", "validate_update"]

TensorSpec = Mapping[str, tuple[tuple[int, ...], str]]


class InvalidUpdate(FedHydraError):
    """A client's reply that the server refuses to aggregate."""


def expected_spec(arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype of every tensor the server sent."""
    return {k: (tuple(np.asarray(v).shape), str(np.asarray(v).dtype)) for k, v in arrays.items()}


def validate_update(
    arrays: Mapping[str, np.ndarray], spec: TensorSpec, *, num_examples: object, max_abs: float = 1e4
) -> None:
    """Raise :class:`InvalidUpdate` unless the reply is a well-formed shared-base update."""
    for key in arrays:
        if is_personal_key(key):
            raise InvalidUpdate(f"personal key {key!r} in a reply")
        if not is_shared_key(key) or key not in spec:
            raise InvalidUpdate(f"unknown key {key!r} in a reply")
    missing = [k for k in spec if k not in arrays]
    if missing:
        raise InvalidUpdate(f"reply lacks {len(missing)} shared tensors, e.g. {missing[0]!r}")
    for key, (shape, dtype) in spec.items():
        value = np.asarray(arrays[key])
        if tuple(value.shape) != tuple(shape):
            raise InvalidUpdate(f"tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        if str(value.dtype) != dtype:
            raise InvalidUpdate(f"tensor {key!r} has dtype {value.dtype}, expected {dtype}")
        if not np.all(np.isfinite(value)):
            raise InvalidUpdate(f"tensor {key!r} holds NaN or Inf")
        if value.size and float(np.max(np.abs(value))) > max_abs:
            raise InvalidUpdate(
                f"tensor {key!r} has a value of magnitude {float(np.max(np.abs(value))):.3g} > {max_abs:g}"
            )
    if (
        isinstance(num_examples, bool)
        or not isinstance(num_examples, (int, float))
        or not np.isfinite(num_examples)
        or num_examples <= 0
    ):
        raise InvalidUpdate(f"num-examples must be a positive number, got {num_examples!r}")
