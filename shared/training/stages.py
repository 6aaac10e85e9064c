"""HYDRA's training stage as a plain function, shared by the centralized reference and the federated clients.

:func:`train_stage` trains the shared base (the editor and its style model, then each role, then for ratings the shared rating head:
:mod:`shared.hydra.rating_head`, in closed form on the base's final history embeddings) together with the
training users' personal heads.

A new user's heads are fitted on the device (:meth:`client.sdk.PersonalClient.fit`), in numpy on features of
the frozen ONNX base; :meth:`shared.training.train.Trainer.fit_heads` is the same fit in torch.

Example:
    >>> StageReport().examples
    {}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.hydra.context import MIN_RATED, UserContext
from shared.hydra.episodes import Episode
from shared.hydra.examples import RoleExample, editor_examples, role_examples, style_training_examples
from shared.hydra.rating_head import SharedRatingHead
from shared.tasks import TaskKind, TaskSpec
from shared.training.model import ROLES, PersonalHeads
from shared.training.train import Trainer

__all__ = ["train_stage", "StageReport"]


@dataclass
class StageReport:
    """Losses and example counts of a stage."""

    examples: dict[str, int] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    editor_loss: float | None = None
    style_loss: float | None = None
    """The style model's final log loss (:mod:`shared.hydra.style_model`), None where it was not trained."""
    rated_items: int = 0
    """Rated history items the shared rating head was fitted on (0: not fitted)."""


def train_stage(
    trainer: Trainer,
    task: TaskSpec,
    users: Mapping[str, tuple[UserContext, Sequence[Episode]]],
    heads: Mapping[str, PersonalHeads],
    *,
    epochs: int | None = None,
    head_epochs: int | None = None,
    train_editor: bool = True,
    roles: Sequence[str] = ROLES,
    rating_head: bool = True,
    proximal_mu: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> StageReport:
    """Train the shared base with these users' heads on their episodes (centralized, or one client locally).

    ``epochs`` and ``head_epochs`` override the trainer's config (a client's round trains less than a whole run);
    ``roles`` limits the roles trained (the margin's cross-validation needs the adapter only, and no shared rating
    head: ``rating_head=False`` skips embedding every user's rated history for it).
    """
    report = StageReport()
    base = trainer.base
    if train_editor and task.rewrite:
        data = [x for ctx, eps in users.values() for x in editor_examples(task, eps, ctx)]
        if data:
            report.editor_loss = base.editor.fit(data)
        style = [x for ctx, eps in users.values() for x in style_training_examples(task, eps, ctx)]
        if style:
            report.style_loss = base.editor.style.fit(style)
    examples: dict[str, list[RoleExample]] = {r: [] for r in ROLES}
    for user, (ctx, eps) in users.items():
        for role, exs in role_examples(task, user, eps, ctx, base.editor).items():
            examples[role].extend(exs)
    for role in roles:
        report.examples[role] = len(examples[role])
        say = (lambda e, n, loss, r=role: progress(f"{r} epoch {e}/{n}: loss {loss:.4f}")) if progress else None
        report.losses[role] = trainer.train_role(
            role, examples[role], heads, epochs=epochs, head_epochs=head_epochs, proximal_mu=proximal_mu, progress=say
        )
    if train_editor and rating_head and task.kind is TaskKind.RATING:
        texts: list[str] = []
        scores: list[np.ndarray] = []
        for ctx, _ in users.values():
            t, y = ctx.rated()
            texts.extend(t)
            scores.append(y)
        if len(texts) >= MIN_RATED:  # on the base as trained: the embeddings the devices will make
            base.rating = SharedRatingHead.fit(trainer.history_embed(texts), np.concatenate(scores))
            report.rated_items = len(texts)
    return report
