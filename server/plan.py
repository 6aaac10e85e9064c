"""What the server starts from (Flower-free): the initial global base, or the latest checkpoint to resume.

Example:
    >>> from shared.config import RunConfig, default_mapping
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "out-dir": "/tmp/fh-plan-doc"})
    >>> str(paths(cfg)[1])
    '/tmp/fh-plan-doc/checkpoints'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from server.checkpoint import latest_checkpoint
from shared.config import RunConfig
from shared.paths import fedhydra_home

__all__ = ["paths", "starting_point"]


def paths(cfg: RunConfig) -> tuple[Path, Path]:
    """(output directory, checkpoint directory) of the server."""
    out = Path(cfg.federation.out_dir) if cfg.federation.out_dir else fedhydra_home() / "server"
    ckpt = Path(cfg.federation.checkpoint_dir) if cfg.federation.checkpoint_dir else out / "checkpoints"
    return out, ckpt


def starting_point(cfg: RunConfig) -> tuple[int, dict[str, np.ndarray]]:
    """(rounds already done, global base): the latest checkpoint when resuming, else the seeded initial base."""
    from shared.hydra.model import initial_shared_state

    _, ckpt = paths(cfg)
    if cfg.federation.resume:
        found = latest_checkpoint(ckpt, model=cfg.model)
        if found is not None:
            return found
    return 0, initial_shared_state(cfg.model, cfg.seed)
