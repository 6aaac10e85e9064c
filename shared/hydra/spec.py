"""Architecture constants and :class:`ModelConfig`, importable without torch (the device side uses them).

Example:
    >>> ModelConfig.from_json(ModelConfig(lora_rank=8).to_json()).lora_rank
    8
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from shared.errors import ConfigError, check_minimums
from shared.hydra.naming import SHARED_PREFIX
from shared.settings import default_for

__all__ = ["ROLES", "EMBED_DIM", "N_EXTRA", "EDITOR_PREFIX", "RATING_PREFIX", "HISTORY_ROLE", "ModelConfig"]

ROLES = ("reranker", "adapter")
EMBED_DIM = 384
N_EXTRA = {"reranker": 4, "adapter": 14}
EDITOR_PREFIX = f"{SHARED_PREFIX}adapter.editor."
RATING_PREFIX = f"{SHARED_PREFIX}adapter.rating."
"""The shared rating head (:mod:`shared.hydra.rating_head`): the shared counterpart of a user's own rating model."""
HISTORY_ROLE = "reranker"
"""The role whose encoder embeds a user's history records (pinned on the device; the user's rating model's inputs)."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the shared base (must match between server and clients)."""

    lora_rank: int = default_for("model.lora_rank")
    lora_alpha: int = default_for("model.lora_alpha")
    lora_targets: tuple[str, ...] = ("query", "value")
    trunk_dim: int = default_for("model.trunk_dim")
    max_query_tokens: int = default_for("model.max_query_tokens")
    max_item_tokens: int = default_for("model.max_item_tokens")

    def __post_init__(self) -> None:
        if self.lora_rank < 1 or self.trunk_dim < 1:
            raise ConfigError(f"lora_rank and trunk_dim must be >= 1, got {self.lora_rank}, {self.trunk_dim}")
        if not self.lora_targets:
            raise ConfigError("lora_targets must name at least one module (query, key, value, dense)")
        check_minimums(self, {"lora_alpha": 1, "max_query_tokens": 8, "max_item_tokens": 8})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        data["lora_targets"] = tuple(data["lora_targets"])
        return cls(**data)
