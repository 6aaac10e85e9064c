"""The centralized run's trained base, kept in its output folder so that a rerun of the same run skips training.

Training the shared base is the longest part of a large centralized run that is not an LLM call, and the LLM
cache does not carry it across sessions. After training, :func:`simulations.hydra_run.run_central` writes
``<out>/trained/``: ``base.safetensors`` (the shared base, a ``base`` file of :mod:`shared.hydra.bundle`) and
``trained.json`` (the format version, the run's training fingerprint, the stage report and, once chosen, the
decision margin). With ``resume = true`` a rerun into the same ``--out`` loads them instead of training, when the
fingerprint matches: the same task, model, training settings, seed, margin folds and training episodes (which hold
the training users, their golds and the LLM's answers). Code changes are not in the fingerprint: delete the folder
after changing how training works.

Example:
    >>> import tempfile
    >>> from shared.hydra.spec import ModelConfig
    >>> out = Path(tempfile.mkdtemp())
    >>> save_trained(out, "abc", {"base.adapter.rating.bias": np.ones(1, np.float32)}, {"examples": {}}, ModelConfig())
    >>> load_trained(out, "abc", ModelConfig()).report, load_trained(out, "other", ModelConfig())
    ({'examples': {}}, None)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.hydra.bundle import BundleError, load_tensors, save_tensors
from shared.io import atomic_write_text

if TYPE_CHECKING:
    from shared.hydra.episodes import Episode

__all__ = ["TRAINED_VERSION", "Trained", "training_fingerprint", "save_trained", "save_margin", "load_trained"]

TRAINED_VERSION = 1
"""Version of ``trained.json``."""


@dataclass(frozen=True)
class Trained:
    """A run's trained base and what training reported (``margin``: the margin choice's dict, if one was made)."""

    base: dict[str, np.ndarray]
    report: dict[str, Any]
    margin: dict[str, Any] | None = None


def _folder(out: Path) -> Path:
    return Path(out) / "trained"


def training_fingerprint(cfg, episodes: Mapping[str, Sequence[Episode]]) -> str:
    """A hash of what determines the trained base and its margin: task, model, training settings, seed, margin
    folds and every training user's episodes."""
    settings = {
        "task": cfg.task,
        "model": asdict(cfg.model),
        "train": asdict(cfg.train),
        "seed": cfg.seed,
        "margin_folds": cfg.margin_folds,
        "protocol": cfg.protocol,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for user in sorted(episodes):
        digest.update(user.encode())
        for ep in episodes[user]:  # the corpus by its items' ids (a long profile is the same in many episodes)
            fields = {
                k: getattr(ep, k)
                for k in (
                    "qid",
                    "input",
                    "query",
                    "gold",
                    "top",
                    "bm25",
                    "rerank_answers",
                    "greedy",
                    "samples",
                    "pseudo",
                )
            }
            fields["corpus"] = [str(item.get("id")) for item in ep.corpus]
            digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def save_trained(out: Path, fingerprint: str, base: Mapping[str, object], report: Mapping[str, Any], model) -> None:
    """Write the trained base and the stage report (atomically; the margin comes later, :func:`save_margin`)."""
    folder = _folder(out)
    save_tensors(folder / "base.safetensors", base, kind="base", model=model, fingerprint=fingerprint)
    atomic_write_text(
        folder / "trained.json",
        json.dumps(
            {"version": TRAINED_VERSION, "fingerprint": fingerprint, "report": dict(report), "margin": None}, indent=1
        ),
    )


def save_margin(out: Path, fingerprint: str, margin: Mapping[str, Any]) -> None:
    """Add the chosen margin (:meth:`shared.hydra.decision.MarginChoice.as_dict`) to a saved training."""
    path = _folder(out) / "trained.json"
    data = json.loads(path.read_text())
    if data.get("fingerprint") == fingerprint:
        atomic_write_text(path, json.dumps({**data, "margin": dict(margin)}, indent=1))


def load_trained(out: Path, fingerprint: str, model) -> Trained | None:
    """The saved training of this fingerprint, or None (nothing saved, another run's, or an unreadable file)."""
    folder = _folder(out)
    try:
        data = json.loads((folder / "trained.json").read_text())
        if data.get("version") != TRAINED_VERSION or data.get("fingerprint") != fingerprint:
            return None
        base, meta = load_tensors(folder / "base.safetensors", kind="base", model=model)
    except (OSError, ValueError, BundleError):
        return None
    if meta.get("fingerprint") != fingerprint:
        return None
    return Trained(base=base, report=data["report"], margin=data.get("margin"))
