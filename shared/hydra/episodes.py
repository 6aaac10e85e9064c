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
fails or the budget is spent, the example is skipped and counted, never invented. For tasks whose pool is the
label set, ``free_questions`` more pseudo-questions cost no LLM call at all: the adapter learns from them
without the LLM's votes (as it must answer when the LLM is down).

Example:
    >>> from shared.tasks import get_task
    >>> ep = Episode(qid="q", input="x", query="x", gold="5", corpus=(), top=[], bm25=[])
    >>> Episode.from_json(ep.to_json()) == ep
    True
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from shared.errors import LLMError
from shared.hydra.candidates import PoolConfig, llm_answers
from shared.llm.client import CallBudget, LLMClient
from shared.prompts import PromptBudget, build_messages
from shared.retrieval import bm25_scores
from shared.tasks import TaskSpec

__all__ = ["Episode", "EpisodeConfig", "BuildReport", "top_records", "make_pseudo_questions", "label_episode",
           "build_user_episodes",
           "PARAPHRASE_PROMPT"]

PARAPHRASE_PROMPT = ("Rewrite this tweet as one formal, complete sentence, without any explanation before or "
                     "after it: {text}")


@dataclass(frozen=True)
class EpisodeConfig:
    """How much LLM work one user's training data may take."""

    pseudo_questions: int = 4
    free_questions: int = 0
    rerank_m: int = 5
    label_records: int = 4
    pool: PoolConfig = PoolConfig()
    calls_per_user: int = 60
    seed: int = 0


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
    def from_json(cls, text: str) -> "Episode":
        data = json.loads(text)
        data["corpus"] = tuple(data["corpus"])
        return cls(**data)


@dataclass
class BuildReport:
    """What building a user's episodes cost and skipped."""

    episodes: int = 0
    skipped: int = 0
    llm_calls: int = 0
    errors: list[str] = field(default_factory=list)


def top_records(task: TaskSpec, query: str, corpus: Sequence[Mapping[str, str]], m: int) -> tuple[list[int], list[float]]:
    """BM25 top-``m`` indices of ``corpus`` and their scores, best first."""
    scores = bm25_scores(query, [task.item_text(c) for c in corpus])
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:m]
    return order, [scores[i] for i in order]


def make_pseudo_questions(task: TaskSpec, items: Sequence[Mapping[str, str]], *, n: int, seed: int, user: str,
                          llm: LLMClient | None, budget: CallBudget | None,
                          report: BuildReport) -> list[tuple[int, str, str]]:
    """Up to ``n`` (item index, input, gold) triples from the profile, chosen by a seeded shuffle."""
    if n <= 0 or len(items) < 2:
        return []
    rng = random.Random(f"{seed}:{user}")
    order = list(range(len(items)))
    rng.shuffle(order)
    out = []
    for idx in order:
        if len(out) >= n:
            break
        made = task.pseudo_question(items[idx])
        if made is None and task.rewrite and llm is not None:
            tweet = task.item_text(items[idx])
            try:
                answer = llm.complete([{"role": "user", "content": PARAPHRASE_PROMPT.format(text=tweet)}],
                                      max_tokens=task.max_new_tokens, budget=budget)
            except LLMError as exc:
                report.skipped += 1
                report.errors.append(f"paraphrase: {exc}")
                continue
            paraphrase = task.parse_answer(answer)
            made = (task.instruction + paraphrase, tweet) if paraphrase else None
        if made is None:
            continue
        out.append((idx, made[0], made[1]))
    return out


def label_episode(task: TaskSpec, episode: Episode, llm: LLMClient, config: EpisodeConfig, *,
                  budget: CallBudget | None, report: BuildReport, with_reranker: bool = True,
                  prompt_budget: PromptBudget = PromptBudget()) -> bool:
    """Ask the LLM what the episode needs; False (and counted as skipped) if a call failed."""
    try:
        if with_reranker:
            answers: list[str | None] = []
            for i in episode.top[: config.label_records]:
                messages = build_messages(task, episode.input, [episode.corpus[i]], style=config.pool.style,
                                          budget=prompt_budget)
                answers.append(task.parse_answer(llm.complete(messages, max_tokens=task.max_new_tokens, budget=budget)))
            episode.rerank_answers = answers
        records = [episode.corpus[i] for i in episode.top[: config.pool.k]]
        episode.greedy, episode.samples = llm_answers(task, episode.input, records, llm, config.pool, budget=budget,
                                                      prompt_budget=prompt_budget)
    except LLMError as exc:
        report.skipped += 1
        report.errors.append(f"{episode.qid}: {exc}")
        return False
    return True


def build_user_episodes(task: TaskSpec, user: str, items: Sequence[Mapping[str, str]],
                        questions: Sequence[tuple[str, str, str]], llm: LLMClient | None, config: EpisodeConfig, *,
                        with_reranker: bool = True) -> tuple[list[Episode], BuildReport]:
    """A user's episodes: their real questions with golds (training users only) and pseudo-questions.

    ``questions`` are (id, input, gold) triples; pass none for a new user, whose data is their history only.
    """
    budget = CallBudget(config.calls_per_user)
    report = BuildReport()
    before = llm.stats.calls if llm is not None else 0
    episodes: list[Episode] = []
    for qid, text, gold in questions:
        query = task.extract_query(text)
        top, scores = top_records(task, query, items, config.rerank_m)
        ep = Episode(qid=qid, input=text, query=query, gold=gold, corpus=tuple(items), top=top, bm25=scores)
        if label_episode(task, ep, llm, config, budget=budget, report=report, with_reranker=with_reranker):
            episodes.append(ep)
    free = config.free_questions if task.item_input is not None else 0
    made = make_pseudo_questions(task, items, n=config.pseudo_questions + free, seed=config.seed, user=user, llm=llm,
                                 budget=budget, report=report)
    for k, (idx, text, gold) in enumerate(made):
        corpus = tuple(it for j, it in enumerate(items) if j != idx)
        query = task.extract_query(text)
        top, scores = top_records(task, query, corpus, config.rerank_m)
        ep = Episode(qid=f"{user}#p{idx}", input=text, query=query, gold=gold, corpus=corpus, top=top, bm25=scores,
                     pseudo=True)
        if k >= config.pseudo_questions:  # an LLM-free example: the adapter learns from its label pool alone
            episodes.append(ep)
        elif label_episode(task, ep, llm, config, budget=budget, report=report, with_reranker=with_reranker):
            episodes.append(ep)
    report.episodes = len(episodes)
    report.llm_calls = (llm.stats.calls - before) if llm is not None else 0
    return episodes, report
