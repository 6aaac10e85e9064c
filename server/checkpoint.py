"""Checkpoints of the global base: one versioned safetensors file per round, written atomically (Flower-free).

``<dir>/round-0007.safetensors`` holds the shared tensors after round 7 and, as metadata, the round, the
run's task and (differential privacy runs) the privacy accountant's ledger; :func:`latest_checkpoint` finds the
newest readable one so that a run can resume (a damaged newer one is skipped with a warning; when there are
checkpoints but none can be read, a resume is refused: :class:`UnreadableCheckpoints`), :func:`checkpoint_meta`
reads its metadata. A server optimizer
with state of its own (FedAdam's moments) writes ``round-0007.server-state.safetensors`` beside it first
(:func:`save_server_state`, :func:`load_server_state`), so that a resumed run continues the same optimization.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from shared.training.model import ModelConfig
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = save_checkpoint(d, 2, {"base.a": np.ones(2, np.float32)}, model=ModelConfig(), task="LaMP-7")
    >>> rnd, arrays = latest_checkpoint(d, model=ModelConfig())
    >>> rnd, arrays["base.a"].tolist()
    (2, [1.0, 1.0])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shared.hydra.bundle import SERVER_STATE_SLOTS, BundleError, load_tensors, save_tensors

__all__ = [
    "save_checkpoint",
    "latest_checkpoint",
    "UnreadableCheckpoints",
    "checkpoint_path",
    "checkpoint_meta",
    "save_server_state",
    "load_server_state",
    "keeps_state",
    "strategy_state",
    "restore_strategy_state",
]

_NAME = re.compile(r"^round-(\d{4,})\.safetensors$")
_log = logging.getLogger(__name__)


class UnreadableCheckpoints(BundleError):
    """A run asked to resume from a checkpoint folder whose checkpoints all fail to load: it is refused rather than
    started again from round 0 over them. ``folder`` is the checkpoint folder, ``count`` how many there are."""

    def __init__(self, folder: Path, count: int, newest: str, reason: str):
        self.folder = folder
        self.count = count
        super().__init__(
            f"resume = true, but none of the {count} checkpoints in {folder} can be read (the newest, "
            f"{newest}: {reason}); to start afresh, set resume = false or move that folder away"
        )


def checkpoint_path(directory: str | Path, server_round: int) -> Path:
    return Path(directory) / f"round-{server_round:04d}.safetensors"


def save_checkpoint(
    directory: str | Path, server_round: int, arrays: Mapping[str, np.ndarray], *, model, **meta: object
) -> Path:
    """Write the global base after ``server_round`` (atomic: a crash leaves the previous files intact)."""
    return save_tensors(
        checkpoint_path(directory, server_round), arrays, kind="base", model=model, round=server_round, **meta
    )


def latest_checkpoint(
    directory: str | Path, *, model=None, strict: bool = False
) -> tuple[int, dict[str, np.ndarray]] | None:
    """(round, arrays) of the newest readable checkpoint, or None when there is none.

    A damaged checkpoint (a crash in the middle of its write) is skipped with a warning, for the one before it.
    With ``strict``, a folder that holds checkpoints none of which can be read raises
    :class:`UnreadableCheckpoints` instead of returning None (which a resume would take for "start at round 0").
    """
    folder = Path(directory)
    if not folder.is_dir():
        return None
    rounds = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    first_error: BundleError | None = None
    for rnd, path in reversed(rounds):
        try:
            arrays, _ = load_tensors(path, kind="base", model=model)
        except BundleError as exc:
            _log.warning(
                "checkpoint %s cannot be read (%s); trying the one before",
                path.name,
                str(exc).removeprefix(f"{path}: "),
            )
            first_error = first_error or exc
            continue  # a damaged file: fall back to the one before
        return rnd, arrays
    if strict and rounds:
        newest = rounds[-1][1]
        raise UnreadableCheckpoints(folder, len(rounds), newest.name, str(first_error).removeprefix(f"{newest}: "))
    return None


def checkpoint_meta(directory: str | Path, server_round: int, *, model=None) -> dict[str, str]:
    """The metadata of the checkpoint of ``server_round`` (raises BundleError if it is missing or damaged)."""
    return load_tensors(checkpoint_path(directory, server_round), kind="base", model=model)[1]


def _state_path(directory: str | Path, server_round: int) -> Path:
    return Path(directory) / f"round-{server_round:04d}.server-state.safetensors"


def save_server_state(directory: str | Path, server_round: int, tensors: Mapping[str, np.ndarray], *, model) -> Path:
    """Write a server optimizer's state after ``server_round`` (keys ``m_t.base.*`` / ``v_t.base.*``; atomic)."""
    return save_tensors(
        _state_path(directory, server_round), tensors, kind="server-state", model=model, round=server_round
    )


def load_server_state(directory: str | Path, server_round: int, *, model=None) -> dict[str, np.ndarray] | None:
    """The server optimizer's state saved with the checkpoint of ``server_round``, or None if there is none."""
    path = _state_path(directory, server_round)
    if not path.exists():
        return None
    return load_tensors(path, kind="server-state", model=model)[0]


def _stateful(strategy: object) -> object | None:
    """The innermost strategy (through validating and DP wrappers) that keeps optimizer moments, if any."""
    seen = 0
    while strategy is not None and seen < 8:
        if hasattr(strategy, "m_t") and hasattr(strategy, "v_t"):
            return strategy
        strategy = getattr(strategy, "inner", None) or getattr(strategy, "strategy", None)
        seen += 1
    return None


def keeps_state(strategy: object) -> bool:
    """True when the strategy (or the one it wraps) keeps optimizer moments across rounds (FedAdam)."""
    return _stateful(strategy) is not None


def strategy_state(strategy: object) -> dict[str, np.ndarray]:
    """A server optimizer's moments as ``{"m_t.<key>": array, "v_t.<key>": array}`` (empty for stateless ones).

    >>> class Adam: m_t = {"base.a": np.ones(1)}; v_t = None
    >>> sorted(strategy_state(Adam()))
    ['m_t.base.a']
    """
    inner = _stateful(strategy)
    if inner is None:
        return {}
    out: dict[str, np.ndarray] = {}
    for slot in SERVER_STATE_SLOTS:
        for key, value in (getattr(inner, slot.rstrip(".")) or {}).items():
            out[slot + key] = np.asarray(value, dtype=np.float32)
    return out


def restore_strategy_state(strategy: object, tensors: Mapping[str, np.ndarray]) -> bool:
    """Give a stateful server optimizer the moments of :func:`strategy_state`; False if it keeps none."""
    inner = _stateful(strategy)
    if inner is None:
        return False
    for slot in SERVER_STATE_SLOTS:
        part = {k[len(slot) :]: np.asarray(v) for k, v in tensors.items() if k.startswith(slot)}
        setattr(inner, slot.rstrip("."), part or None)
    return True
