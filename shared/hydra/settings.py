"""The optimization settings of training (:class:`TrainConfig`), apart from the training code: the run's config
(:mod:`shared.config`) builds them without torch, which a device lacks; :mod:`shared.training.train` uses them.

Example:
    >>> TrainConfig().epochs, TrainConfig(epochs=3).head_epochs
    (2, 40)
    >>> TrainConfig(lr=0.0)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: learning rates must be > 0 and head_l2 >= 0
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigError
from shared.settings import default_for

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of base training and head fitting; each default is its key's declared one
    (:mod:`shared.settings`)."""

    epochs: int = default_for("train.epochs")
    head_epochs: int = default_for("train.head_epochs")
    batch_size: int = default_for("train.batch_size")
    lr: float = default_for("train.lr")
    lora_lr: float = default_for("train.lora_lr")
    train_lora: bool = default_for("train.train_lora")
    fit_steps: int = default_for("train.fit_steps")
    fit_lr: float = default_for("train.fit_lr")
    head_l2: float = default_for("train.head_l2")
    seed: int = default_for("train.seed")

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.head_epochs < 0 or self.batch_size < 1 or self.fit_steps < 0:
            raise ConfigError("epochs, head_epochs and fit_steps must be >= 0 and batch_size >= 1")
        if self.lr <= 0 or self.lora_lr <= 0 or self.fit_lr <= 0 or self.head_l2 < 0:
            raise ConfigError("learning rates must be > 0 and head_l2 >= 0")
