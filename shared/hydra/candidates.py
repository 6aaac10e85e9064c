"""The candidate pool the adapter chooses from, and the LLM calls that fill it.

For label tasks (LaMP-1/2/2N/3) the pool is the label set itself; the LLM's greedy answer and samples,
asked with the retrieved records in the prompt, become votes (a feature of each label). For generation
tasks the pool is the LLM's greedy answer and samples; for rewrite tasks (LaMP-7) also the input itself,
the input written the user's way (:class:`shared.style.StyleHabits`: the informal spellings the shared style model
chooses from the user's own rule counts, :class:`shared.hydra.style_model.StyleModel`; their first-letter case and
final period; also followed by their sign-off, if any), and edits of it by the
:class:`~shared.hydra.editor.InputEditor` (a few levels), each also written the user's way. The editor may drop
fillers only (:func:`shared.readability.droppable_words`), and no candidate that
:func:`shared.readability.is_broken` judges broken enters the pool, the LLM's included: whatever the adapter
chooses is a whole sentence. Duplicates (the same words, spaces aside) keep their first source; two candidates that
differ only in case or punctuation are both kept, so a user's lowercase or no-period habit reaches the answer.

The pool's *anchor* is the answer the adapter must beat by the margin to leave (:mod:`shared.hydra.decision`): the
strongest non-LLM answer (``baseline``: :func:`baseline_output`), or for rewrite tasks the input written the user's
way, one of the editor's fixed edits of the input, or such an edit written the user's way (:func:`anchors_for`), as
chosen on training users.

Example:
    >>> from shared.tasks import get_task
    >>> from shared.hydra.context import UserContext
    >>> t = get_task("LaMP-3")
    >>> pool = build_pool(t, UserContext.build(t, []), "nice", greedy="5", samples=["4", "x"], editor=None)
    >>> pool.texts, pool.sources[0]
    (['1', '2', '3', '4', '5'], 'label')
    >>> anchors_for(t)
    ('baseline',)
    >>> anchors_for(get_task("LaMP-7"))  # doctest: +NORMALIZE_WHITESPACE
    ('baseline', 'style', 'edit-0.6', 'edit-0.8', 'edit-1', 'style-edit-0.6', 'style-edit-0.8', 'style-edit-1')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from shared.errors import ConfigError, LLMError, check_minimums
from shared.hydra.context import UserContext
from shared.hydra.decision import BASELINE_ANCHOR, decision_key
from shared.hydra.editor import InputEditor, f1_optimal_keep
from shared.hydra.features import adapter_extras
from shared.llm.client import CallBudget, LLMCall, LLMClient
from shared.prompts import PROMPT_STYLES, PromptBudget, build_messages
from shared.readability import droppable_words, is_broken
from shared.style import StyleHabits
from shared.tasks import TaskKind, TaskSpec

__all__ = [
    "PoolConfig",
    "Pool",
    "build_pool",
    "llm_answers",
    "pool_calls",
    "parse_pool_answers",
    "EDIT_LEVELS",
    "baseline_output",
    "anchors_for",
    "STYLE_ANCHOR",
    "filler_edit",
    "personal_habits",
    "call_choices",
    "decision_keys",
]

EDIT_LEVELS = (0.6, 0.8, 1.0)
"""Expected gold length, as a fraction of the input's length, of the editor's candidates."""


STYLE_ANCHOR = "style"
"""The anchor of rewrite tasks that is the input written the user's way (:meth:`shared.style.StyleHabits.apply`)."""


def anchors_for(task: TaskSpec) -> tuple[str, ...]:
    """The answers the margin rule may keep, in order of preference on ties: the baseline, then for rewrite tasks the
    input written the user's way (``style``), the editor's edit at each of :data:`EDIT_LEVELS` (``edit-<level>``) and
    that edit written the user's way (``style-edit-<level>``); all cost no LLM call."""
    if not task.rewrite:
        return (BASELINE_ANCHOR,)
    edits = tuple(_edit_anchor(level) for level in EDIT_LEVELS)
    return (BASELINE_ANCHOR, STYLE_ANCHOR, *edits, *(_styled(name) for name in edits))


def call_choices(config: PoolConfig) -> tuple[int, ...]:
    """How many of the pool's LLM requests an answer may ask for, as the margin's cross-validation tries them: none,
    the greedy answer, ..., the whole pool (greedy + ``n_samples``).

    >>> call_choices(PoolConfig(n_samples=1))
    (0, 1, 2)
    """
    return tuple(range(config.n_samples + 2))


def decision_keys(task: TaskSpec, config: PoolConfig) -> tuple[str, ...]:
    """Every decision the margin's cross-validation chooses among: each anchor (:func:`anchors_for`) with each count
    of LLM answers (:func:`call_choices`), fewer calls first (:func:`shared.hydra.decision.decision_key`).

    >>> from shared.tasks import get_task
    >>> decision_keys(get_task("LaMP-3"), PoolConfig(n_samples=1))
    ('baseline@0', 'baseline@1', 'baseline@2')
    """
    return tuple(decision_key(a, c) for c in call_choices(config) for a in anchors_for(task))


def filler_edit(editor: InputEditor, words: Sequence[str], counts: Mapping[str, int], level: float) -> str:
    """The editor's edit of ``words`` at ``level`` (:data:`EDIT_LEVELS`) that may drop fillers only
    (:func:`shared.readability.droppable_words`): the words the editor would drop, among those whose loss keeps a
    sentence whole (every other word is kept as if certain).

    An edit that the readability check still calls broken (a drop that leaves a preposition dangling: "slides for
    #barcamp." -> "slides for") is no edit: the words come back whole, so an anchor written from it is the input's.

    >>> filler_edit(InputEditor(bias=-2.0), "I really love it".split(), {}, 0.6)
    'I love it'
    >>> filler_edit(InputEditor(bias=-2.0), "time to make slides for #barcamp.".split(), {}, 0.6)
    'time to make slides for #barcamp.'
    """
    p = np.where(droppable_words(words), editor.keep_probabilities(words, counts), 1.0)
    edited = f1_optimal_keep(words, p, level * len(words))
    source = " ".join(words)
    return source if edited != source and is_broken(edited, source) else edited


def personal_habits(ctx: UserContext, editor: InputEditor | None) -> StyleHabits:
    """How HYDRA writes for this user: their case, period and sign-off habits (``ctx.habits``) with the informal
    rewrites that the shared style model (``editor.style``, :class:`shared.hydra.style_model.StyleModel`) says pay
    for their own rule counts; without an editor (a task with no rewrite), no rewrite.

    >>> from shared.tasks import get_task
    >>> personal_habits(UserContext.build(get_task("LaMP-7"), [{"text": "u r great"}]), InputEditor()).rules
    ()
    """
    if editor is None or not ctx.rule_counts:
        return replace(ctx.habits, rules=())
    return replace(ctx.habits, rules=editor.style.rules(ctx.rule_counts))


def _edit_anchor(level: float) -> str:
    return f"edit-{level:g}"


def _styled(anchor: str) -> str:
    return f"{STYLE_ANCHOR}-{anchor}"


@dataclass(frozen=True)
class PoolConfig:
    """How many LLM answers make a pool, and how they are sampled."""

    n_samples: int = 3
    temperature: float = 0.7
    k: int = 4
    style: str = "turns"
    seed: int = 0

    def __post_init__(self) -> None:
        check_minimums(self, {"n_samples": 0, "k": 1})
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ConfigError(f"PoolConfig.temperature must be > 0, got {self.temperature!r}")
        if self.style not in PROMPT_STYLES:
            raise ConfigError(f"PoolConfig.style must be one of {PROMPT_STYLES}, got {self.style!r}")


@dataclass
class Pool:
    """Candidates of one query with their sources and adapter features."""

    texts: list[str]
    sources: list[str]
    extras: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 12), np.float32))
    greedy: str | None = None
    llm: list[str] = field(default_factory=list)
    baseline: int | None = None
    """Index of the anchor (the strongest non-LLM answer, :func:`baseline_output`, unless another anchor was asked
    and is a candidate) among ``texts``, if it is a candidate."""
    anchors: dict[str, int] = field(default_factory=dict)
    """Index among ``texts`` of each anchor of :func:`anchors_for` that is a candidate."""


def baseline_output(task: TaskSpec, ctx: UserContext, query: str) -> str:
    """The strongest non-LLM answer: the input for rewrite tasks (and the query for other generation tasks); for
    ratings the user's own rating model's score for this item, rounded (:meth:`UserContext.predicted_score`: a ridge
    on the user's rated history, whose penalty, chosen by leave-one-out, shrinks it to the user's mean where the text
    says nothing), or the user's mean score rounded without a model; the user's most frequent label for other
    label tasks.

    On LaMP-3's 240 timeline questions the user's own ridge has MAE .417 against .496 for the rounded mean (paired
    gain [+.029, +.129], docs/lab-notebook.md), so for ratings it is the answer the adapter must beat to leave."""
    if task.kind is TaskKind.RATING:
        own = ctx.predicted_score(query)
        score = own if own is not None else ctx.mean_score
        if score is not None:
            return str(int(min(5, max(1, score + 0.5))))
    if task.labels:
        return (
            max(task.labels, key=lambda label: ctx.label_prior.get(label, 0.0)) if ctx.label_prior else task.labels[-1]
        )
    return query


def pool_calls(
    task: TaskSpec,
    input_text: str,
    records: Sequence[Mapping[str, str]],
    config: PoolConfig,
    *,
    prompt_budget: PromptBudget = PromptBudget(),
) -> list[LLMCall]:
    """The requests that fill a pool: the greedy answer, then ``n_samples`` samples seeded ``seed, seed+1, ...``."""
    messages = build_messages(task, input_text, records, style=config.style, budget=prompt_budget)
    calls = [LLMCall(messages, 0.0, task.max_new_tokens)]
    calls += [
        LLMCall(messages, config.temperature, task.max_new_tokens, config.seed + i) for i in range(config.n_samples)
    ]
    return calls


def parse_pool_answers(task: TaskSpec, answers: Sequence[str | LLMError]) -> tuple[str, list[str]]:
    """``(greedy, samples)`` parsed from the answers to :func:`pool_calls`; raises the first failure."""
    failed = next((a for a in answers if isinstance(a, LLMError)), None)
    if failed is not None:
        raise failed
    parsed = [task.parse_answer(str(a)) for a in answers]
    return parsed[0], parsed[1:]


def llm_answers(
    task: TaskSpec,
    input_text: str,
    records: Sequence[Mapping[str, str]],
    llm: LLMClient,
    config: PoolConfig,
    *,
    budget: CallBudget | None = None,
    prompt_budget: PromptBudget = PromptBudget(),
) -> tuple[str, list[str]]:
    """The parsed greedy answer and ``n_samples`` parsed samples, with ``records`` in the prompt (sent at once)."""
    calls = pool_calls(task, input_text, records, config, prompt_budget=prompt_budget)
    return parse_pool_answers(task, llm.complete_many(calls, budget=budget))


def _key(text: str) -> tuple[str, ...]:
    """Candidates with the same words (case and punctuation included) are one: "Home." and "home" are two."""
    return tuple(text.split())


def build_pool(
    task: TaskSpec,
    ctx: UserContext,
    query: str,
    *,
    greedy: str | None,
    samples: Sequence[str],
    editor: InputEditor | None,
    record_answers: Sequence[str] = (),
    record_weights: Sequence[float] | None = None,
    anchor: str = BASELINE_ANCHOR,
) -> Pool:
    """Assemble the candidates of one query and compute their adapter features; ``pool.baseline`` is ``anchor``'s
    index (one of :func:`anchors_for`)."""
    if anchor not in anchors_for(task):
        raise ConfigError(f"anchor {anchor!r} is not one of {task.name}'s anchors {anchors_for(task)}")
    texts: list[str] = []
    sources: list[str] = []
    strength: list[float] = []
    styled: list[bool] = []
    seen: set[tuple[str, ...]] = set()
    anchor_texts = {BASELINE_ANCHOR: baseline_output(task, ctx, query)}

    def add(text: str, source: str, removed: float = 0.0, is_styled: bool = False) -> None:
        key = _key(text)
        if not text.strip() or key in seen or (task.rewrite and text != query and is_broken(text, query)):
            return
        seen.add(key)
        texts.append(text)
        sources.append(source)
        strength.append(removed)
        styled.append(is_styled)

    if task.labels:
        for label in task.labels:
            add(label, "label")
    else:
        if task.rewrite:
            add(query, "input")
            habits = personal_habits(ctx, editor)
            styled_input = habits.apply(query)
            add(styled_input, "input", 0.0, True)
            anchor_texts[STYLE_ANCHOR] = styled_input
            words = query.split()
            if editor is not None and words:  # the editor may drop fillers only: no edit breaks a sentence
                for level in EDIT_LEVELS:
                    edited = filler_edit(editor, words, ctx.counts, level)
                    removed = 1.0 - len(edited.split()) / len(words)
                    styled_edit = habits.apply(edited)
                    add(edited, "edit", removed)
                    add(styled_edit, "edit", removed, True)
                    anchor_texts[_edit_anchor(level)] = edited
                    anchor_texts[_styled(_edit_anchor(level))] = styled_edit
            if habits.signature:
                add(habits.apply(query, sign=True), "input", 0.0, True)
        if greedy is not None:
            add(greedy, "llm")
        for s in samples:
            add(s, "llm")
    answers = [a for a in ([greedy] if greedy is not None else []) + list(samples)]
    extras = adapter_extras(
        task,
        query,
        texts,
        sources,
        llm_answers=answers,
        greedy=greedy,
        record_answers=record_answers,
        record_weights=record_weights,
        edit_strength=strength,
        styled=styled,
        own_score=ctx.predicted_score(query) if task.kind is TaskKind.RATING else None,
    )
    keys = [_key(t) for t in texts]
    anchors = {
        name: keys.index(_key(text))
        for name, text in anchor_texts.items()
        if (task.labels or task.rewrite) and _key(text) in keys
    }
    baseline = anchors.get(anchor, anchors.get(BASELINE_ANCHOR))
    return Pool(
        texts=texts, sources=sources, extras=extras, greedy=greedy, llm=answers, baseline=baseline, anchors=anchors
    )
