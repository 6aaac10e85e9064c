"""Training episodes built from one user's own data through the black-box LLM.

An :class:`Episode` is one (pseudo-)question of a user: its input, its gold, the records it may use
(the profile, minus the item a pseudo-question was made from), the BM25 top records, and what the LLM
answered: with each top record alone (the reranker's labels) and with the top ``k`` records in the prompt
(greedy plus samples: the adapter's LLM candidates). Only LLM answers are stored; features and candidate
pools are rebuilt from them (edits change as the shared editor learns, and cost no LLM call).

Pseudo-questions follow HYDRA: a profile item becomes a question, the rest of the profile its corpus.
For tasks whose items have an input side (LaMP-2/2N/3/4/5/6) the registry makes the question; for LaMP-7,
whose items are bare tweets, the LLM writes the formal paraphrase that serves as the input (as LaMP-7's
inputs were made).

Every LLM call goes through the cached client and a per-user :class:`~shared.llm.CallBudget`; when a call
fails or the budget is spent, the example is skipped and counted, never invented (``BuildReport.failed`` counts
those the endpoint failed, apart from the budget: asking again later may get them). ``free_questions`` more
pseudo-questions get neither record labels nor LLM candidates: the adapter learns from the candidates that cost
no call (the label pool; for rewrite tasks the input and its edits), as it must answer when the LLM is down.
For tasks whose items have an input side they cost nothing; for rewrite tasks each costs its paraphrase.

Example:
    >>> from shared.tasks import get_task
    >>> ep = Episode(qid="q", input="x", query="x", gold="5", corpus=(), top=[], bm25=[])
    >>> Episode.from_json(ep.to_json()) == ep
    True
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from shared.errors import LLMError, check_minimums
from shared.hydra.candidates import PoolConfig, parse_pool_answers, pool_calls
from shared.llm.client import BudgetExhausted, CallBudget, LLMCall, LLMClient, LLMMeter
from shared.prompts import PromptBudget, build_messages
from shared.retrieval import bm25_scores
from shared.settings import default_for
from shared.tasks import TaskSpec

__all__ = [
    "Episode",
    "EpisodeConfig",
    "BuildReport",
    "free_user_config",
    "top_records",
    "make_pseudo_questions",
    "build_user_episodes",
    "label_episodes",
    "episode_calls",
    "round_sample",
    "PARAPHRASE_PROMPT",
]

PARAPHRASE_PROMPT = (
    "Rewrite this tweet as one formal, complete sentence, without any explanation before or after it: {text}"
)


@dataclass(frozen=True)
class EpisodeConfig:
    """How much LLM work one user's training data may take; each default is its key's declared one
    (:mod:`shared.settings`)."""

    pseudo_questions: int = default_for("episodes.pseudo_questions")
    free_questions: int = default_for("episodes.free_questions")
    rerank_m: int = default_for("episodes.rerank_m")
    label_records: int = default_for("episodes.label_records")
    pool: PoolConfig = PoolConfig()
    calls_per_user: int = default_for("episodes.calls_per_user")
    seed: int = default_for("episodes.seed")
    label_questions: bool = True
    """Whether real questions get record labels and LLM candidates; ``False``: they cost no call, like free
    questions (a free training user's, see ``data.free-train-users``)."""

    def __post_init__(self) -> None:
        check_minimums(
            self, {"pseudo_questions": 0, "free_questions": 0, "rerank_m": 1, "label_records": 1, "calls_per_user": 0}
        )


def free_user_config(config: EpisodeConfig) -> EpisodeConfig:
    """How a free training user's episodes are built (``data.free-train-users``; with no LLM client): their real
    questions without record labels or LLM candidates, no pseudo-question that needs labels; the free questions that
    cost no call stay. The centralized run and a federated free training node both use it.

    >>> c = free_user_config(EpisodeConfig(pseudo_questions=4, free_questions=6))
    >>> c.pseudo_questions, c.free_questions, c.label_questions
    (0, 6, False)
    """
    return replace(config, pseudo_questions=0, label_questions=False)


@dataclass
class Episode:
    """One (pseudo-)question with the LLM's answers (see the module docstring)."""

    qid: str
    input: str
    query: str
    gold: str | None
    corpus: tuple[Mapping[str, str], ...]
    top: list[int]
    bm25: list[float]
    rerank_answers: list[str | None] = field(default_factory=list)
    greedy: str | None = None
    samples: list[str] = field(default_factory=list)
    pseudo: bool = False

    def to_json(self) -> str:
        data = asdict(self)
        data["corpus"] = [dict(c) for c in self.corpus]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Episode:
        data = json.loads(text)
        data["corpus"] = tuple(data["corpus"])
        return cls(**data)


def round_sample(episodes: Sequence[Episode], k: int, *, seed: int, server_round: int, user: str) -> list[Episode]:
    """At most ``k`` of a user's episodes for one federated round (``k`` 0: all), drawn afresh each round and the
    same for the same (seed, round, user) in any process; the drawn ones keep their order.

    Example:
        >>> eps = [Episode(qid=str(i), input="x", query="x", gold=None, corpus=(), top=[], bm25=[]) for i in range(6)]
        >>> one = [e.qid for e in round_sample(eps, 3, seed=0, server_round=1, user="u")]
        >>> len(one), one == sorted(one), one == [e.qid for e in round_sample(eps, 3, seed=0, server_round=1, user="u")]
        (3, True, True)
        >>> len(round_sample(eps, 0, seed=0, server_round=1, user="u")), len(round_sample(eps, 9, seed=0, server_round=1, user="u"))
        (6, 6)
    """
    if k <= 0 or len(episodes) <= k:
        return list(episodes)
    chosen = random.Random(f"{seed}/{server_round}/{user}").sample(range(len(episodes)), k)
    return [episodes[i] for i in sorted(chosen)]


@dataclass
class BuildReport:
    """What building a user's episodes cost (LLM requests sent, answers used incl. cache hits, the requests'
    seconds) and skipped; ``failed``: how many of the skipped ones an endpoint failure cost (not the budget, not a
    missing client): a later build may get them."""

    episodes: int = 0
    skipped: int = 0
    failed: int = 0
    llm_calls: int = 0
    llm_asked: int = 0
    llm_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def top_records(
    task: TaskSpec, query: str, corpus: Sequence[Mapping[str, str]], m: int
) -> tuple[list[int], list[float]]:
    """BM25 top-``m`` indices of ``corpus`` and their scores, best first."""
    scores = bm25_scores(query, [task.item_text(c) for c in corpus])
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:m]
    return order, [scores[i] for i in order]


def make_pseudo_questions(
    task: TaskSpec,
    items: Sequence[Mapping[str, str]],
    *,
    n: int,
    seed: int,
    user: str,
    llm: LLMClient | None,
    budget: CallBudget | None,
    report: BuildReport,
) -> list[tuple[int, str, str]]:
    """Up to ``n`` (item index, input, gold) triples from the profile, chosen by a seeded shuffle.

    Items whose question needs the LLM (a rewrite task's paraphrase) are asked in batches: as many as are still
    missing, in shuffled order; a failed one is skipped and the next items fill its place.
    """
    if n <= 0 or len(items) < 2:
        return []
    rng = random.Random(f"{seed}:{user}")
    order = list(range(len(items)))
    rng.shuffle(order)
    made: dict[int, tuple[str, str]] = {}
    pos = 0
    while len(made) < n and pos < len(order):
        wave = order[pos : pos + n - len(made)]
        pos += len(wave)
        ask: list[int] = []
        for idx in wave:
            free = task.pseudo_question(items[idx])
            if free is not None:
                made[idx] = free
            elif task.rewrite and llm is not None:
                ask.append(idx)
        if not ask or llm is None:  # ask holds items only when there is an LLM
            continue
        prompts = [
            LLMCall(
                [{"role": "user", "content": PARAPHRASE_PROMPT.format(text=task.item_text(items[i]))}],
                max_tokens=task.max_new_tokens,
            )
            for i in ask
        ]
        for idx, answer in zip(ask, llm.complete_many(prompts, budget=budget)):
            if isinstance(answer, LLMError):
                report.skipped += 1
                report.failed += not isinstance(answer, BudgetExhausted)
                report.errors.append(f"paraphrase: {answer}")
                continue
            paraphrase = task.parse_answer(answer)
            if paraphrase:
                made[idx] = (task.instruction + paraphrase, task.item_text(items[idx]))
    return [(idx, *made[idx]) for idx in order if idx in made][:n]


def episode_calls(
    task: TaskSpec,
    episode: Episode,
    config: EpisodeConfig,
    *,
    with_reranker: bool = True,
    prompt_budget: PromptBudget = PromptBudget(),
) -> list[LLMCall]:
    """What an episode asks the LLM: each top record alone (the reranker's labels), then the pool's requests."""
    calls = []
    if with_reranker:
        for i in episode.top[: config.label_records]:
            calls.append(
                LLMCall(
                    build_messages(
                        task, episode.input, [episode.corpus[i]], style=config.pool.style, budget=prompt_budget
                    ),
                    max_tokens=task.max_new_tokens,
                )
            )
    records = [episode.corpus[i] for i in episode.top[: config.pool.k]]
    return calls + pool_calls(task, episode.input, records, config.pool, prompt_budget=prompt_budget)


def label_episodes(
    task: TaskSpec,
    episodes: Sequence[Episode],
    llm: LLMClient,
    config: EpisodeConfig,
    *,
    budget: CallBudget | None,
    report: BuildReport,
    with_reranker: bool = True,
    prompt_budget: PromptBudget = PromptBudget(),
) -> list[Episode]:
    """Ask the LLM what the episodes need, all at once; returns those whose calls all succeeded (the rest are
    counted as skipped)."""
    plans = [
        episode_calls(task, ep, config, with_reranker=with_reranker, prompt_budget=prompt_budget) for ep in episodes
    ]
    answers = llm.complete_many([c for plan in plans for c in plan], budget=budget)
    labelled, at = [], 0
    for ep, plan in zip(episodes, plans):
        mine, at = answers[at : at + len(plan)], at + len(plan)
        failed = next((a for a in mine if isinstance(a, LLMError)), None)
        if failed is not None:
            report.skipped += 1
            report.failed += not all(isinstance(a, BudgetExhausted) for a in mine if isinstance(a, LLMError))
            report.errors.append(f"{ep.qid}: {failed}")
            continue
        n_rerank = len(plan) - 1 - config.pool.n_samples
        ep.rerank_answers = [task.parse_answer(str(a)) for a in mine[:n_rerank]] if with_reranker else []
        ep.greedy, ep.samples = parse_pool_answers(task, mine[n_rerank:])
        labelled.append(ep)
    return labelled


def build_user_episodes(
    task: TaskSpec,
    user: str,
    items: Sequence[Mapping[str, str]],
    questions: Sequence[tuple[str, str, str]],
    llm: LLMClient | None,
    config: EpisodeConfig,
    *,
    with_reranker: bool = True,
) -> tuple[list[Episode], BuildReport]:
    """A user's episodes: their real questions with golds (training users only) and pseudo-questions.

    ``questions`` are (id, input, gold) triples; pass none for a new user, whose data is their history only.
    The LLM is asked in two batches (the paraphrases that make pseudo-questions, then every episode's labels
    and candidates), each sent with the client's concurrency; the budget is spent in that order.
    """
    budget = CallBudget(config.calls_per_user)
    report = BuildReport()
    with llm.meter() if llm is not None else contextlib.nullcontext(LLMMeter()) as meter:
        asked: list[Episode] = []
        free_eps: list[Episode] = []
        for qid, text, gold in questions:
            query = task.extract_query(text)
            top, scores = top_records(task, query, items, config.rerank_m)
            (asked if config.label_questions else free_eps).append(
                Episode(qid=qid, input=text, query=query, gold=gold, corpus=tuple(items), top=top, bm25=scores)
            )
        free = config.free_questions if (task.item_input is not None or task.rewrite) else 0
        made = make_pseudo_questions(
            task,
            items,
            n=config.pseudo_questions + free,
            seed=config.seed,
            user=user,
            llm=llm,
            budget=budget,
            report=report,
        )
        for k, (idx, text, gold) in enumerate(made):
            corpus = tuple(it for j, it in enumerate(items) if j != idx)
            query = task.extract_query(text)
            top, scores = top_records(task, query, corpus, config.rerank_m)
            ep = Episode(
                qid=f"{user}#p{idx}",
                input=text,
                query=query,
                gold=gold,
                corpus=corpus,
                top=top,
                bm25=scores,
                pseudo=True,
            )
            # past the LLM-labelled ones, pseudo-questions cost no call: the adapter learns from its label pool alone
            (free_eps if k >= config.pseudo_questions else asked).append(ep)
        if llm is None:
            labelled = []
            report.skipped += len(asked)
        else:
            labelled = label_episodes(
                task, asked, llm, config, budget=budget, report=report, with_reranker=with_reranker
            )
    episodes = labelled + free_eps
    report.episodes = len(episodes)
    report.llm_calls = meter.requests
    report.llm_asked = meter.requests + meter.cache_hits
    report.llm_seconds = meter.seconds
    return episodes, report
