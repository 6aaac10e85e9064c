"""HYDRA's stages as plain functions, shared by the centralized reference and the federated clients.

- :func:`train_stage`: train the shared base (the editor, then each role) together with the training users'
  personal heads.
- :func:`fit_stage`: a new user's heads, fitted on examples from their history only, base frozen.
- :class:`TorchScorer`: the trainer as the :class:`~shared.hydra.infer.Scorer` used to answer.

Example:
    >>> StageReport().examples
    {}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from shared.hydra.context import UserContext
from shared.hydra.episodes import Episode
from shared.hydra.examples import RoleExample, editor_examples, role_examples
from shared.hydra.model import ROLES, PersonalHeads
from shared.hydra.train import Trainer
from shared.tasks import TaskSpec

__all__ = ["train_stage", "fit_stage", "TorchScorer", "StageReport"]


@dataclass
class StageReport:
    """Losses and example counts of a stage."""

    examples: dict[str, int] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    editor_loss: float | None = None


def train_stage(trainer: Trainer, task: TaskSpec, users: Mapping[str, tuple[UserContext, Sequence[Episode]]],
                heads: Mapping[str, PersonalHeads], *, epochs: int | None = None, train_editor: bool = True,
                proximal_mu: float = 0.0, progress: Callable[[str], None] | None = None) -> StageReport:
    """Train the shared base with these users' heads on their episodes (centralized, or one client locally)."""
    report = StageReport()
    base = trainer.base
    if train_editor and task.rewrite:
        data = [x for ctx, eps in users.values() for x in editor_examples(task, eps, ctx)]
        if data:
            report.editor_loss = base.editor.fit(data)
    examples: dict[str, list[RoleExample]] = {r: [] for r in ROLES}
    for user, (ctx, eps) in users.items():
        for role, exs in role_examples(task, user, eps, ctx, base.editor).items():
            examples[role].extend(exs)
    for role in ROLES:
        report.examples[role] = len(examples[role])
        say = (lambda e, n, l, r=role: progress(f"{r} epoch {e}/{n}: loss {l:.4f}")) if progress else None
        report.losses[role] = trainer.train_role(role, examples[role], heads, epochs=epochs, proximal_mu=proximal_mu,
                                                 progress=say)
    return report


def fit_stage(trainer: Trainer, task: TaskSpec, user: str, ctx: UserContext, episodes: Sequence[Episode]) -> tuple[PersonalHeads, StageReport]:
    """Fresh heads for a new user, fitted on examples from their own history only (base frozen)."""
    heads = PersonalHeads.from_shared(trainer.base)
    examples = role_examples(task, user, episodes, ctx, trainer.base.editor)
    report = StageReport(examples={r: len(v) for r, v in examples.items()})
    losses = trainer.fit_heads(heads, examples)
    report.losses = {r: [v] for r, v in losses.items()}
    return heads, report


class TorchScorer:
    """Scores with the torch trainer (frozen base); ``head`` is an ``nn.Linear`` or None (shared head)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray:
        return self.trainer.scores(role, example, head)  # type: ignore[arg-type]
