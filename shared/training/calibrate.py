"""Choosing the decision margin by cross-validation over the training users (torch; training side).

The margin (:mod:`shared.hydra.decision`) says how large the adapter's predicted advantage over the strongest
non-LLM answer must be before HYDRA leaves that answer. It is chosen on training users only:

1. the training users are split into ``folds`` groups (a seeded shuffle);
2. for each group, a fresh base (the run's initial state, its encoder without LoRA) learns the editor and the
   trunks and shared heads from the *other* groups' examples (``train.head-epochs`` cheap epochs on frozen embeddings);
3. each held-out user plays a new user: their adapter examples are split in two halves; a personal head fitted
   (base frozen, as on a device) on one half scores the other, and the other way round; a user with a single
   example is scored by the fold's shared head; only examples whose baseline is a candidate count;
4. each scored example gives, for each anchor (:func:`~shared.hydra.candidates.anchors_for`: the baseline, and
   for rewrite tasks the editor's fixed edits), a :class:`~shared.hydra.decision.CalibrationPoint`: the predicted
   advantage of the adapter's choice over the anchor, what taking it gains by the gold, and what the anchor
   itself gains over the baseline;
5. given ``calls`` (how many of the LLM's answers an answer may ask for: :func:`~shared.hydra.candidates.call_choices`),
   each scored example is scored again with its pool holding only the first ``c`` LLM answers, by the same head,
   for each ``c``, and each (anchor, ``c``) pair is a decision (:func:`~shared.hydra.decision.decision_key`);
6. :func:`~shared.hydra.decision.choose_margin` picks the (decision, margin) pair with the largest total gain.

Step 3 is :func:`held_out_points`, one user against a frozen base. A federated run has no folds: after its last
round each training client runs the same function on its own user against the global base and sends only the
per-margin counts and sums (:func:`user_margin_sums`); the server adds them up and chooses
(:class:`~shared.hydra.decision.MarginSums`). The global base has trained on those clients' examples (only the
personal heads are cross-fitted), so its held-out advantages are less honest than the folds' here; docs/design.md
says what that means for the margin.

The LoRA of the final base is not refitted per fold (it trains through the encoder, minutes per fold), so the
folds' advantages come from a slightly weaker model than the one that answers: the chosen margin errs on the
side of keeping the baseline.

Example::

    choice = cross_validate_margin(task, {"u1": (ctx1, eps1), "u2": (ctx2, eps2)}, model_cfg, train_cfg, folds=2)
    choice.anchor, choice.margin, choice.left, choice.helped
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from shared.errors import ConfigError
from shared.hydra.candidates import anchors_for
from shared.hydra.context import UserContext
from shared.hydra.decision import (
    MARGIN_GRID,
    CalibrationPoint,
    MarginChoice,
    MarginSums,
    advantage,
    anchor_margin_sums,
    choose_margin,
    decide,
    decision_key,
)
from shared.hydra.episodes import Episode
from shared.hydra.examples import RoleExample, adapter_example
from shared.tasks import TaskSpec

__all__ = [
    "cross_validate_margin",
    "fold_users",
    "calibration_points",
    "adapter_examples",
    "held_out_points",
    "user_margin_sums",
]

Users = Mapping[str, tuple[UserContext, Sequence[Episode]]]


def fold_users(users: Sequence[str], folds: int, seed: int) -> list[list[str]]:
    """``folds`` disjoint groups of users (a seeded shuffle, sizes differing by at most one).

    >>> fold_users(["a", "b", "c", "d", "e"], 2, seed=0)
    [['c', 'a', 'b'], ['d', 'e']]
    """
    if folds < 2:
        raise ConfigError(
            f"pool.margin-folds: {folds}; cross-validation needs at least 2 folds (0 turns the margin off)"
        )
    order = sorted(users)
    random.Random(f"margin:{seed}").shuffle(order)
    return [group for group in (order[i::folds] for i in range(folds)) if group]


def adapter_examples(
    task: TaskSpec, user: str, episodes: Sequence[Episode], ctx: UserContext, editor
) -> list[tuple[RoleExample, dict[str, str]]]:
    """The adapter's examples of a user's labelled episodes (as :func:`~shared.hydra.examples.role_examples` makes
    them) with each one's anchors' texts (``{anchor: text}``); only examples where every anchor is a candidate."""
    return [(ex, anchors) for _, _, ex, anchors in _usable(task, user, episodes, ctx, editor)]


def _usable(
    task: TaskSpec, user: str, episodes: Sequence[Episode], ctx: UserContext, editor
) -> list[tuple[Episode, UserContext, RoleExample, dict[str, str]]]:
    """(episode, its context, example, anchors' texts) of each labelled episode of :func:`adapter_examples`."""
    names = anchors_for(task)
    out = []
    for ep in episodes:
        if ep.gold is None:
            continue
        ep_ctx = ctx.without_items(ep.corpus) if ep.pseudo else ctx
        ex, pool = adapter_example(task, user, ep, ep_ctx, editor)
        if ex.target is not None and len(ex.items) > 1 and all(a in pool.anchors for a in names):
            out.append((ep, ep_ctx, ex, {a: pool.texts[pool.anchors[a]] for a in names}))
    return out


def _llm_answers(ep: Episode) -> int:
    return (ep.greedy is not None) + len(ep.samples)


def _first_answers(ep: Episode, count: int) -> Episode:
    """``ep`` with only its first ``count`` LLM answers (the pool's requests: the greedy answer, then samples)."""
    if ep.greedy is None:
        return replace(ep, samples=list(ep.samples)[:count])
    return replace(ep, greedy=ep.greedy if count >= 1 else None, samples=list(ep.samples)[: max(0, count - 1)])


def calibration_points(
    task: TaskSpec, examples: Sequence[RoleExample], anchors: Sequence[Mapping[str, str]], scores: Sequence[np.ndarray]
) -> dict[str, list[CalibrationPoint]]:
    """``{anchor: points}``: one point per example and anchor (predicted advantage over the anchor, gain by the gold,
    and the anchor's own gain over the baseline); only examples with every anchor among their candidates."""
    points: dict[str, list[CalibrationPoint]] = {a: [] for a in anchors_for(task)}
    for ex, texts, s in zip(examples, anchors, scores):
        if ex.utilities is None or any(texts.get(a) not in ex.items for a in points):
            continue
        choice = decide(task, ex.items, s)
        utility = {t: float(ex.utilities[ex.items.index(t)]) for t in (choice, *texts.values())}
        base = texts[next(iter(points))]
        for a in points:
            points[a].append(
                CalibrationPoint(
                    advantage(task, ex.items, s, choice, texts[a]),
                    utility[choice] - utility[texts[a]],
                    utility[texts[a]] - utility[base],
                )
            )
    return points


def held_out_points(
    task: TaskSpec,
    trainer,
    user: str,
    ctx: UserContext,
    episodes: Sequence[Episode],
    *,
    calls: Sequence[int] | None = None,
) -> dict[str, list[CalibrationPoint]]:
    """One user playing a new user against ``trainer``'s base (frozen): their adapter examples are split in two halves
    (even and odd positions), a personal head fitted on one half scores the other and the other way round (a user
    with a single example is scored by the shared head); ``{anchor: points}``, one point per anchor and scored
    example whose anchors are all candidates. With ``calls``, ``{decision: points}``: each example is scored again
    for each count ``c`` of LLM answers, with only the first ``c`` in its pool, by the same head
    (:func:`~shared.hydra.decision.decision_key` names each (anchor, ``c``) pair).

    The centralized cross-validation calls it for each held-out user with its fold's base; a federated training
    client calls it for its own user with the global base (:func:`user_margin_sums`).
    """
    from shared.training.model import PersonalHeads

    base = trainer.base
    usable = _usable(task, user, episodes, ctx, base.editor)
    examples, anchors = [ex for _, _, ex, _ in usable], [a for _, _, _, a in usable]
    heads_of: list[object | None] = [None] * len(examples)
    halves = [list(range(0, len(examples), 2)), list(range(1, len(examples), 2))]
    if len(examples) >= 2:
        for fit_on, score_on in (halves, halves[::-1]):
            heads = PersonalHeads.from_shared(base)
            trainer.fit_heads(heads, {"adapter": [examples[i] for i in fit_on]})
            for i in score_on:
                heads_of[i] = heads.heads["adapter"]

    def score(ex: RoleExample, head) -> np.ndarray:
        return trainer.scores("adapter", ex, head) if head is not None else trainer.scores("adapter", ex)

    scores = [score(ex, head) for ex, head in zip(examples, heads_of)]
    if calls is None:
        return calibration_points(task, examples, anchors, scores)
    out: dict[str, list[CalibrationPoint]] = {}
    for c in calls:
        exs, sc = [], []
        for (ep, ep_ctx, ex, _), head, full in zip(usable, heads_of, scores):
            if c >= _llm_answers(ep):  # the whole pool: the example and its scores above
                exs.append(ex)
                sc.append(full)
            else:
                truncated, _ = adapter_example(task, user, _first_answers(ep, c), ep_ctx, base.editor)
                exs.append(truncated)
                sc.append(score(truncated, head))
        for anchor, points in calibration_points(task, exs, anchors, sc).items():
            out[decision_key(anchor, c)] = points
    return out


def user_margin_sums(
    task: TaskSpec,
    trainer,
    user: str,
    ctx: UserContext,
    episodes: Sequence[Episode],
    grid: Sequence[float] = MARGIN_GRID,
    *,
    calls: Sequence[int] | None = None,
) -> MarginSums:
    """What a federated training client contributes to the margin: the :class:`~shared.hydra.decision.MarginSums`
    of its own :func:`held_out_points` under ``trainer``'s base (the global base, frozen). Only counts and sums."""
    return anchor_margin_sums(held_out_points(task, trainer, user, ctx, episodes, calls=calls), grid)


def cross_validate_margin(
    task: TaskSpec,
    users: Users,
    model_config,
    train_config,
    *,
    folds: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
    calls: Sequence[int] | None = None,
) -> MarginChoice:
    """The margin chosen over ``users`` (training users only) by ``folds``-fold cross-validation (module docstring);
    with ``calls``, also how many LLM answers an answer asks for (:attr:`MarginChoice.llm_calls`)."""
    import torch

    from shared.training.model import HydraBase
    from shared.training.stages import train_stage
    from shared.training.train import Trainer

    groups = fold_users(list(users), folds, seed)
    keys = anchors_for(task) if calls is None else tuple(decision_key(a, c) for c in calls for a in anchors_for(task))
    points: dict[str, list[CalibrationPoint]] = {a: [] for a in keys}
    for f, held_out in enumerate(groups, start=1):
        rest = {u: users[u] for u in users if u not in held_out}
        torch.manual_seed(seed)
        base = HydraBase(model_config)
        trainer = Trainer(base, replace(train_config, train_lora=False))
        train_stage(trainer, task, rest, {}, epochs=0, roles=("adapter",), rating_head=False)
        n_before = len(next(iter(points.values())))
        for user in held_out:
            ctx, episodes = users[user]
            for a, user_points in held_out_points(task, trainer, user, ctx, episodes, calls=calls).items():
                points[a] += user_points
        if progress:
            progress(
                f"margin fold {f}/{len(groups)}: {len(held_out)} held-out users, "
                f"{len(next(iter(points.values()))) - n_before} points"
            )
    return choose_margin(points)
