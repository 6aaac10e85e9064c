"""Versioned safetensors files for the shared base and personal heads.

A file holds named float32 tensors plus string metadata: ``format`` ("fedhydra-base", "fedhydra-heads" or
"fedhydra-server-state"), ``version`` (:data:`FORMAT_VERSION`), the model architecture as JSON (``model``),
and free fields (the round, the task). Loading checks the format, the version, the naming rule (a base file
holds only ``base.`` keys, a heads file only ``head.`` keys, a server-state file only a server optimizer's
moments of shared tensors, ``m_t.base.*`` and ``v_t.base.*``) and the architecture. Writes are atomic.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from shared.hydra.spec import ModelConfig
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "h.safetensors"
    >>> _ = save_tensors(p, {"head.adapter.bias": np.zeros(1, np.float32)}, kind="heads", model=ModelConfig())
    >>> tensors, meta = load_tensors(p, kind="heads")
    >>> list(tensors), meta["format"]
    (['head.adapter.bias'], 'fedhydra-heads')
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shared.errors import FedHydraError
from shared.hydra.naming import is_personal_key, is_shared_key
from shared.io import atomic_write_bytes

__all__ = [
    "FORMAT_VERSION",
    "BundleError",
    "save_tensors",
    "load_tensors",
    "SERVER_STATE_SLOTS",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
]

BUNDLE_FORMAT = "fedhydra-bundle"
"""The ``format`` of a device bundle's manifest (``bundle.json``, written by :func:`shared.training.export.export_bundle`)."""
BUNDLE_VERSION = "2"
"""The ``version`` of that manifest the device reads (:func:`client.device.read_manifest`)."""

FORMAT_VERSION = "4"
"""4: the base holds the learned style model (``base.adapter.editor.style_shared``, ``style_rule``:
:mod:`shared.hydra.style_model`; older bases are refused, never read with a fixed rule table); 3: the base holds the
shared rating head (``base.adapter.rating.*``); 2: the adapter has 14 features."""
SERVER_STATE_SLOTS = ("m_t.", "v_t.")
"""Prefixes of a server optimizer's per-tensor state (FedAdam's moments) before a shared key."""


def _is_server_state_key(key: str) -> bool:
    return any(key.startswith(slot) and is_shared_key(key[len(slot) :]) for slot in SERVER_STATE_SLOTS)


_FORMATS = {
    "base": ("fedhydra-base", is_shared_key),
    "heads": ("fedhydra-heads", is_personal_key),
    "server-state": ("fedhydra-server-state", _is_server_state_key),
}


class BundleError(FedHydraError):
    """A model file is not what it should be (format, version, keys or architecture)."""


def save_tensors(path: str | Path, tensors: Mapping[str, object], *, kind: str, model, **meta: object) -> Path:
    """Write ``tensors`` (numpy arrays or torch tensors) as a ``kind`` file ("base", "heads" or "server-state")."""
    from safetensors.numpy import save

    name, rule = _FORMATS[kind]
    bad = [k for k in tensors if not rule(k)]
    if bad:
        raise BundleError(f"{path}: a {kind} file may not hold {bad[:3]}")
    arrays = {k: np.ascontiguousarray(_numpy(v), dtype=np.float32) for k, v in tensors.items()}
    metadata = {
        "format": name,
        "version": FORMAT_VERSION,
        "model": model.to_json(),
        **{k: str(v) for k, v in meta.items()},
    }
    return atomic_write_bytes(path, save(arrays, metadata=metadata))


def load_tensors(path: str | Path, *, kind: str, model=None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a ``kind`` file; with ``model`` its architecture must match."""
    from safetensors import safe_open

    name, rule = _FORMATS[kind]
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: not found")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - a safetensors handle, not a dict
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise BundleError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != name:
        raise BundleError(f"{path}: format {meta.get('format')!r}, expected {name!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise BundleError(f"{path}: version {meta.get('version')!r}, this FedHydra reads version {FORMAT_VERSION}")
    bad = [k for k in tensors if not rule(k)]
    if bad:
        raise BundleError(f"{path}: unexpected keys {bad[:3]}")
    if model is not None and meta.get("model") != model.to_json():
        raise BundleError(f"{path}: model architecture {meta.get('model')} differs from {model.to_json()}")
    return tensors, meta


def _numpy(value: object) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
