"""What the server starts from (Flower-free): the initial global base, or the latest checkpoint to resume.

Example:
    >>> from shared.config import RunConfig, default_mapping
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "run.out-dir": "/tmp/fh-plan-doc"})
    >>> str(paths(cfg)[1])
    '/tmp/fh-plan-doc/checkpoints'
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from server.checkpoint import checkpoint_meta, keeps_state, latest_checkpoint, load_server_state, restore_strategy_state
from shared.config import RunConfig
from shared.paths import fedhydra_home

__all__ = ["paths", "starting_point", "restore_accountant", "restore_server_state"]


def paths(cfg: RunConfig) -> tuple[Path, Path]:
    """(output directory, checkpoint directory) of the server."""
    out = Path(cfg.federation.out_dir) if cfg.federation.out_dir else fedhydra_home() / "server"
    ckpt = Path(cfg.federation.checkpoint_dir) if cfg.federation.checkpoint_dir else out / "checkpoints"
    return out, ckpt


def starting_point(cfg: RunConfig) -> tuple[int, dict[str, np.ndarray]]:
    """(rounds already done, global base): the latest checkpoint when resuming, else the seeded initial base.

    Raises:
        UnreadableCheckpoints: resuming, and the checkpoint folder holds checkpoints but none can be read (a run
            that silently started again from round 0 would overwrite them); the message says how to start afresh.
    """
    from shared.training.model import initial_shared_state

    _, ckpt = paths(cfg)
    if cfg.federation.resume:
        found = latest_checkpoint(ckpt, model=cfg.model, strict=True)
        if found is not None:
            return found
    return 0, initial_shared_state(cfg.model, cfg.seed)


def restore_accountant(cfg: RunConfig, done: int, accountant) -> bool:
    """Give a resumed DP run's accountant the ledger of the rounds before ``done`` (saved in their checkpoint).

    Returns False when there is nothing to restore (a fresh run, no accountant, or a checkpoint without a
    ledger, in which case the reported epsilon covers the resumed rounds only and the caller should say so).
    """
    if not done or accountant is None:
        return False
    _, ckpt = paths(cfg)
    ledger = checkpoint_meta(ckpt, done, model=cfg.model).get("privacy")
    if not ledger:
        return False
    accountant.load_state_dict(json.loads(ledger))
    return True


def restore_server_state(cfg: RunConfig, done: int, strategy) -> bool:
    """Give a resumed run's server optimizer (FedAdam) the moments saved after round ``done``.

    True when there is nothing to restore (a stateless strategy such as FedAvg) or it was restored; False when
    the strategy keeps moments but the checkpoint of round ``done`` has none (the caller should say so).
    """
    if not done or not keeps_state(strategy):
        return True
    _, ckpt = paths(cfg)
    tensors = load_server_state(ckpt, done, model=cfg.model)
    if tensors is None:
        return False
    return restore_strategy_state(strategy, tensors)
