"""Training HYDRA's base with the training users' heads, fitting a new user's heads, and scoring (torch).

- :meth:`Trainer.train_role` trains a role's shared base (its LoRA, trunk and shared head) together with
  the personal heads of the training users: each example's loss is the cross-entropy of its user's head
  plus that of the shared head, against the example's target distribution. A few epochs go through the
  encoder (LoRA), then many cheap ones train trunk and heads on cached embeddings.
- :meth:`Trainer.fit_heads` fits a new user's heads with the base frozen: embeddings are computed once
  (cached), and only the head's weights move, pulled toward the shared head by an L2 penalty (so few
  examples give a cautious head, many a personal one).
- :meth:`Trainer.scores` scores an example's items with a given head (the user's or the shared one).

Example:
    >>> cross_entropy(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])).item() < 0.2
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from shared.hydra.examples import RoleExample
from shared.hydra.settings import TrainConfig
from shared.hydra.spec import HISTORY_ROLE
from shared.hydra.tokenizer import TextTokenizer
from shared.training.model import ROLES, HydraBase, PersonalHeads, pair_features

__all__ = ["Trainer", "cross_entropy"]


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a soft target distribution over one example's items."""
    return -(target * torch.log_softmax(logits, dim=-1)).sum()


class Trainer:
    """Holds the base, the tokenizer and a cache of frozen-base embeddings."""

    def __init__(self, base: HydraBase, config: TrainConfig = TrainConfig(), tokenizer: TextTokenizer | None = None):
        self.base = base
        self.config = config
        self.tokenizer = tokenizer or TextTokenizer()
        self._cache: dict[tuple[str, int, str], torch.Tensor] = {}

    # -- embeddings ---------------------------------------------------------------------------------
    def _embed(self, role: str, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
        batch = self.tokenizer(list(texts), max_tokens)
        return self.base.embed(role, torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"]))

    def embed_frozen(self, role: str, texts: Sequence[str], max_tokens: int, chunk: int = 64) -> torch.Tensor:
        """Embeddings without gradient, cached per (role, length budget, text) until the base changes."""
        missing = [t for t in dict.fromkeys(texts) if (role, max_tokens, t) not in self._cache]
        if missing:
            self.base.eval()
            with torch.no_grad():
                for i in range(0, len(missing), chunk):
                    part = missing[i : i + chunk]
                    for t, e in zip(part, self._embed(role, part, max_tokens)):
                        self._cache[(role, max_tokens, t)] = e
        return torch.stack([self._cache[(role, max_tokens, t)] for t in texts]) if texts else torch.zeros(0, 384)

    def history_embed(self, texts) -> np.ndarray:
        """History records' embeddings as the device makes them (the :data:`~shared.hydra.spec.HISTORY_ROLE`
        encoder, the item budget): the ``embed`` of a training user's :class:`~shared.hydra.context.UserContext`."""
        return self.embed_frozen(HISTORY_ROLE, list(texts), self.base.config.max_item_tokens).numpy()

    def invalidate(self) -> None:
        """Forget cached embeddings (call after the base changed)."""
        self._cache.clear()

    def _limits(self) -> tuple[int, int]:
        return self.base.config.max_query_tokens, self.base.config.max_item_tokens

    # -- scoring ------------------------------------------------------------------------------------
    def _hidden(
        self, role: str, q: torch.Tensor, items: torch.Tensor, extras: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.asarray(extras, dtype=np.float32))
        h = self.base.roles[role].hidden(pair_features(q.unsqueeze(0), items, x))  # type: ignore[operator]  # torch types a submodule as Tensor | Module
        return torch.cat([h, x], dim=-1), x

    def scores(self, role: str, example: RoleExample, head: nn.Linear | None = None) -> np.ndarray:
        """Scores of the example's items under ``head`` (default: the shared head), base frozen."""
        ql, il = self._limits()
        with torch.no_grad():
            q = self.embed_frozen(role, [example.query], ql)[0]
            items = self.embed_frozen(role, example.items, il)
            z, _ = self._hidden(role, q, items, example.extras)
            layer = head if head is not None else self.base.roles[role].shared_head
            return layer(z).squeeze(-1).numpy()  # type: ignore[operator]  # torch types a submodule as Tensor | Module

    # -- base training ------------------------------------------------------------------------------
    def train_role(
        self,
        role: str,
        examples: Sequence[RoleExample],
        heads: Mapping[str, PersonalHeads],
        *,
        epochs: int | None = None,
        head_epochs: int | None = None,
        proximal_mu: float = 0.0,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> list[float]:
        """Train a role's base and the given users' heads jointly; returns the mean loss of each epoch.

        First ``epochs`` epochs through the encoder (its LoRA trains when ``train_lora``), then ``head_epochs``
        cheap epochs of the trunk and heads on cached embeddings of the encoder as it now is.
        ``proximal_mu`` > 0 adds FedProx's ``mu/2 * ||w - w_start||^2`` over the role's base parameters.
        """
        examples = [e for e in examples if e.target is not None and len(e.items) > 1]
        if not examples:
            return []
        cfg = self.config
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.base.use_role(role)
        role_base = self.base.roles[role]
        lora = [p for k, p in self.base._shared_params().items() if k.startswith(f"base.{role}.lora.")]
        users = sorted({e.user for e in examples})
        head_params = [p for u in users if u in heads for p in heads[u].heads[role].parameters()]
        anchor_params = list(role_base.parameters()) + (lora if cfg.train_lora else [])
        anchor = [p.detach().clone() for p in anchor_params] if proximal_mu > 0 else []
        total_epochs = (cfg.epochs if epochs is None else epochs) + (
            cfg.head_epochs if head_epochs is None else head_epochs
        )
        losses: list[float] = []
        for through_encoder, n in (
            (cfg.train_lora, cfg.epochs if epochs is None else epochs),
            (False, cfg.head_epochs if head_epochs is None else head_epochs),
        ):
            if n <= 0:
                continue
            for p in lora:
                p.requires_grad_(through_encoder)
            groups = [{"params": list(role_base.parameters()), "lr": cfg.lr}]
            if through_encoder:
                groups.append({"params": lora, "lr": cfg.lora_lr})
            if head_params:
                groups.append({"params": head_params, "lr": cfg.lr})
            optimizer = torch.optim.Adam(groups)
            self.invalidate()
            for _ in range(n):
                losses.append(
                    self._epoch(
                        role,
                        examples,
                        heads,
                        optimizer,
                        rng,
                        through_encoder=through_encoder,
                        anchor=list(zip(anchor_params, anchor)),
                        proximal_mu=proximal_mu,
                    )
                )
                if progress:
                    progress(len(losses), total_epochs, losses[-1])
        for p in lora:
            p.requires_grad_(False)
        self.base.eval()
        self.invalidate()
        return losses

    def _epoch(
        self,
        role: str,
        examples: Sequence[RoleExample],
        heads: Mapping[str, PersonalHeads],
        optimizer,
        rng: random.Random,
        *,
        through_encoder: bool,
        anchor,
        proximal_mu: float,
    ) -> float:
        cfg = self.config
        role_base = self.base.roles[role]
        ql, il = self._limits()
        order = list(range(len(examples)))
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            batch = [examples[i] for i in order[start : start + cfg.batch_size]]
            queries = list(dict.fromkeys(e.query for e in batch))
            texts = list(dict.fromkeys(t for e in batch for t in e.items))
            if through_encoder:
                self.base.train()
                qe, ie = self._embed(role, queries, ql), self._embed(role, texts, il)
            else:
                qe, ie = self.embed_frozen(role, queries, ql), self.embed_frozen(role, texts, il)
            q_index = {t: i for i, t in enumerate(queries)}
            i_index = {t: i for i, t in enumerate(texts)}
            loss = torch.zeros(())
            for e in batch:
                z, _ = self._hidden(role, qe[q_index[e.query]], ie[[i_index[t] for t in e.items]], e.extras)
                target = torch.from_numpy(e.target)
                loss = loss + cross_entropy(role_base.shared_head(z).squeeze(-1), target)  # type: ignore[operator]  # torch types a submodule as Tensor | Module
                if e.user in heads:
                    loss = loss + cross_entropy(heads[e.user].heads[role](z).squeeze(-1), target)
            loss = loss / len(batch)
            if anchor:
                loss = loss + proximal_mu / 2 * sum(((p - a) ** 2).sum() for p, a in anchor)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        return total / len(examples)

    # -- fitting a new user's heads -------------------------------------------------------------------
    def fit_heads(
        self, heads: PersonalHeads, examples: Mapping[str, Sequence[RoleExample]], *, steps: int | None = None
    ) -> dict[str, float]:
        """Fit the heads of one user on their examples, base frozen; returns each role's final loss."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        ql, il = self._limits()
        losses = {}
        for role in ROLES:
            usable = [e for e in examples.get(role, []) if e.target is not None and len(e.items) > 1]
            if not usable:
                continue
            with torch.no_grad():
                qs = self.embed_frozen(role, [e.query for e in usable], ql)
                feats = []
                for e, q in zip(usable, qs):
                    z, _ = self._hidden(role, q, self.embed_frozen(role, e.items, il), e.extras)
                    feats.append((z, torch.from_numpy(e.target)))
            head = heads.heads[role]
            prior = [p.detach().clone() for p in self.base.roles[role].shared_head.parameters()]  # type: ignore[union-attr]  # torch types a submodule as Tensor | Module
            optimizer = torch.optim.Adam(head.parameters(), lr=cfg.fit_lr)
            loss = torch.zeros(())
            for _ in range(cfg.fit_steps if steps is None else steps):
                loss = cast(torch.Tensor, sum(cross_entropy(head(z).squeeze(-1), t) for z, t in feats) / len(feats))
                penalty = sum(((p - p0) ** 2).sum() for p, p0 in zip(head.parameters(), prior))
                optimizer.zero_grad()
                (loss + cfg.head_l2 * penalty).backward()
                optimizer.step()
            losses[role] = float(loss.detach())
        return losses
