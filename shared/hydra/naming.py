"""The shared/personal split of HYDRA's weights: a naming rule and one function.

Every tensor of a FedHydra model has a key that starts with ``base.`` (the shared base: LoRA adapters
of the encoders, the shared trunks and the shared head; what a server may ever see) or ``head.`` (a
user's personal heads; never leaves the device). Nothing else is allowed, so a new tensor cannot be
shared or kept by accident.

Example:
    >>> shared, personal = split_state_dict({"base.reranker.trunk.weight": 1, "head.adapter.weight": 2})
    >>> list(shared), list(personal)
    (['base.reranker.trunk.weight'], ['head.adapter.weight'])
    >>> split_state_dict({"encoder.weight": 0})
    Traceback (most recent call last):
    ...
    shared.hydra.naming.KeyNamingError: key 'encoder.weight' is neither shared ('base.') nor personal ('head.')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from shared.errors import FedHydraError

__all__ = [
    "SHARED_PREFIX",
    "PERSONAL_PREFIX",
    "KeyNamingError",
    "is_shared_key",
    "is_personal_key",
    "split_state_dict",
    "shared_only",
]

SHARED_PREFIX = "base."
PERSONAL_PREFIX = "head."

V = TypeVar("V")


class KeyNamingError(FedHydraError, KeyError):
    """A tensor key that follows neither naming rule."""

    def __str__(self) -> str:
        return str(self.args[0])


def is_shared_key(key: str) -> bool:
    """True for keys of the shared base."""
    return key.startswith(SHARED_PREFIX)


def is_personal_key(key: str) -> bool:
    """True for keys of a personal head."""
    return key.startswith(PERSONAL_PREFIX)


def split_state_dict(state: Mapping[str, V]) -> tuple[dict[str, V], dict[str, V]]:
    """Split a state dict into (shared, personal); any other key raises :class:`KeyNamingError`."""
    shared: dict[str, V] = {}
    personal: dict[str, V] = {}
    for key, value in state.items():
        if is_shared_key(key):
            shared[key] = value
        elif is_personal_key(key):
            personal[key] = value
        else:
            raise KeyNamingError(
                f"key {key!r} is neither shared ({SHARED_PREFIX!r}) nor personal ({PERSONAL_PREFIX!r})"
            )
    return shared, personal


def shared_only(state: Mapping[str, V]) -> dict[str, V]:
    """The shared part of a state dict (validating every key)."""
    return split_state_dict(state)[0]
