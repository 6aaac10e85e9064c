"""The optimization settings of training (:class:`TrainConfig`), apart from the training code: the run's config
(:mod:`shared.config`) builds them without torch, which a device lacks; :mod:`shared.training.train` uses them.

Example:
    >>> TrainConfig(epochs=2).head_epochs
    40
    >>> TrainConfig(lr=0.0)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: learning rates must be > 0 and head_l2 >= 0
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigError

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of base training and head fitting."""

    epochs: int = 3
    head_epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    lora_lr: float = 1e-3
    train_lora: bool = True
    fit_steps: int = 200
    fit_lr: float = 0.05
    head_l2: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.head_epochs < 0 or self.batch_size < 1 or self.fit_steps < 0:
            raise ConfigError("epochs, head_epochs and fit_steps must be >= 0 and batch_size >= 1")
        if self.lr <= 0 or self.lora_lr <= 0 or self.fit_lr <= 0 or self.head_l2 < 0:
            raise ConfigError("learning rates must be > 0 and head_l2 >= 0")
