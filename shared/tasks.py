"""The LaMP task registry: one table maps a task to everything task-specific.

Each :class:`TaskSpec` says how to pull the retrieval query out of a question's ``input``, how a
profile item becomes text (for BM25 and the encoders), how an item becomes a demonstration in a
prompt and a pseudo-question for training, the label set, the official metric, and how to turn a
raw LLM answer into a prediction. Nothing else in FedHydra branches on a task's name.

Example:
    >>> from shared.tasks import get_task
    >>> spec = get_task("lamp7")
    >>> spec.name, spec.kind.value, spec.metric
    ('LaMP-7', 'generation', 'rouge')
    >>> spec.extract_query("Paraphrase the following tweet without any explanation before or after it: hi there")
    'hi there'
    >>> get_task("LaMP-3").parse_answer("I would say 4 stars.")
    '4'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from shared.errors import UnknownTaskError

__all__ = [
    "TaskKind",
    "TaskSpec",
    "TASKS",
    "get_task",
    "task_names",
    "MOVIE_TAGS",
    "NEWS_CATEGORIES",
]


class TaskKind(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() of a kind
    """What kind of answer a task expects; decides the candidate pool and the metric family."""

    CLASSIFICATION = "classification"
    RATING = "rating"
    GENERATION = "generation"


# Label sets exactly as in the official eval/evaluation.py (order matters: it is the index mapping).
CITATION_LABELS = ("[1]", "[2]")
MOVIE_TAGS = (
    "sci-fi",
    "based on a book",
    "comedy",
    "action",
    "twist ending",
    "dystopia",
    "dark comedy",
    "classic",
    "psychology",
    "fantasy",
    "romance",
    "thought-provoking",
    "social commentary",
    "violence",
    "true story",
)
NEWS_CATEGORIES = (
    "food & drink",
    "sports",
    "education",
    "parents",
    "religion",
    "travel",
    "business",
    "crime",
    "science & technology",
    "culture & arts",
    "entertainment",
    "politics",
    "women",
    "style & beauty",
    "healthy living",
)
RATING_LABELS = ("1", "2", "3", "4", "5")


def _after(marker: str) -> Callable[[str], str]:
    """Official ``extract_after_*``: the stripped text after the first ``marker``."""

    def extract(text: str) -> str:
        at = text.find(marker)
        return text.strip() if at == -1 else text[at + len(marker) :].strip()

    return extract


def _between_quotes(text: str) -> list[str]:
    """Official ``extract_strings_between_quotes``: every "..." span, in order."""
    return re.findall(r'"([^"]*)"', text)


def _citation_query(text: str) -> str:
    """LaMP-1: the two candidate reference titles (quoted strings 2 and 3), as the official code does."""
    spans = _between_quotes(text)
    return " ".join(spans[1:3]) if len(spans) >= 3 else text.strip()


_ANSWER_PREFIX = re.compile(
    r"^(?:paraphrased tweet|paraphrase|tweet|title|headline|subject|answer|output|score|rating|category|tag)\s*:\s*",
    re.I,
)


def _strip_answer(text: str) -> str:
    """Trim an LLM answer: its first non-empty line, without a leading 'Answer:' or wrapping quotes."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    answer = _ANSWER_PREFIX.sub("", lines[0]) if lines else ""
    if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "\"'":
        answer = answer[1:-1].strip()
    return answer


def _label_parser(labels: tuple[str, ...]) -> Callable[[str], str]:
    """Map a raw answer to a label: exact match, then a case-insensitive match, then the first label mentioned."""
    lowered = {label.lower(): label for label in labels}

    def parse(text: str) -> str:
        answer = _strip_answer(text)
        if answer in labels:
            return answer
        key = answer.lower().strip(" .!")
        if key in lowered:
            return lowered[key]
        first: tuple[int, int, str] | None = None
        for label in labels:
            for m in re.finditer(re.escape(label.lower()), answer.lower()):
                cand = (m.start(), -len(label), label)  # earliest; longest wins a tie
                if first is None or cand < first:
                    first = cand
                break
        return first[2] if first else answer

    return parse


def _rating_parser(text: str) -> str:
    """The first standalone 1-5 in the answer ("4", "4.", "4.0"), else the stripped answer (scored as the metric does)."""
    m = re.search(r"(?<![\d.])([1-5])(?:\.0+)?(?!\.?\d)", text)
    return m.group(1) if m else text.strip()


def _field(name: str) -> Callable[[Mapping[str, str]], str]:
    return lambda item: str(item[name])


def _join(*names: str) -> Callable[[Mapping[str, str]], str]:
    return lambda item: " ".join(str(item[n]) for n in names)


@dataclass(frozen=True)
class TaskSpec:
    """Everything FedHydra needs to know about one LaMP task.

    Attributes:
        name: canonical name, e.g. ``"LaMP-7"``.
        official_id: the ``task`` value of the official outputs file, e.g. ``"LaMP_7"``.
        kind: classification, rating or generation.
        profile_fields: fields every profile item must carry (``id`` is optional in the official data).
        labels: the official label list (empty for generation); its order is the metric's index mapping.
        metric: key of the official metric family in :mod:`shared.metrics`.
        instruction: the official input prefix; a pseudo-question is ``instruction + item input``.
        max_new_tokens: generation budget for the LLM's answer.
        rewrite: True when the input is itself a draft of the answer (LaMP-7), so returning it is a baseline.
    """

    name: str
    official_id: str
    kind: TaskKind
    description: str
    profile_fields: tuple[str, ...]
    metric: str
    instruction: str
    max_new_tokens: int
    extract_query: Callable[[str], str] = field(repr=False)
    item_text: Callable[[Mapping[str, str]], str] = field(repr=False)
    item_input: Callable[[Mapping[str, str]], str] | None = field(repr=False, default=None)
    item_output: Callable[[Mapping[str, str]], str] | None = field(repr=False, default=None)
    labels: tuple[str, ...] = ()
    rewrite: bool = False
    aliases: tuple[str, ...] = ()

    def parse_answer(self, text: str) -> str:
        """Turn a raw LLM answer into a prediction in the task's output space (labels where there are labels)."""
        if self.kind is TaskKind.RATING:
            return _rating_parser(text)
        if self.kind is TaskKind.CLASSIFICATION:
            return _label_parser(self.labels)(text)
        return _strip_answer(text)

    def pseudo_question(self, item: Mapping[str, str]) -> tuple[str, str] | None:
        """A (input, gold) pair made from one profile item, or None when the item has no input side.

        Used to label training data from a user's own history (HYDRA's pseudo-queries).
        """
        if self.item_input is None or self.item_output is None:
            return None
        return self.instruction + self.item_input(item), self.item_output(item)

    def demonstration(self, item: Mapping[str, str]) -> tuple[str, str]:
        """A profile item as an earlier (user, assistant) chat turn, for retrieval-augmented prompts."""
        pseudo = self.pseudo_question(item)
        if pseudo is not None:
            return pseudo
        return self.demo_request, self.item_text(item)

    @property
    def demo_request(self) -> str:
        """The user turn that precedes a demonstration which has no input side (LaMP-7: a past tweet)."""
        return "Write a tweet." if self.rewrite else "Write an example."


_LAMP = [
    TaskSpec(
        name="LaMP-1",
        official_id="LaMP_1",
        kind=TaskKind.CLASSIFICATION,
        description="personalized citation identification",
        profile_fields=("title", "abstract"),
        metric="classification",
        instruction="",
        max_new_tokens=4,
        labels=CITATION_LABELS,
        extract_query=_citation_query,
        item_text=_join("title", "abstract"),
        aliases=("lamp1", "citation"),
    ),
    TaskSpec(
        name="LaMP-2",
        official_id="LaMP_2",
        kind=TaskKind.CLASSIFICATION,
        description="personalized movie tagging",
        profile_fields=("description", "tag"),
        metric="classification",
        instruction=(
            "Which tag does this movie relate to among the following tags? Just answer with the tag "
            f"name without further explanation. tags: [{', '.join(MOVIE_TAGS)}] description: "
        ),
        max_new_tokens=8,
        labels=MOVIE_TAGS,
        extract_query=_after("description:"),
        item_text=_field("description"),
        item_input=_field("description"),
        item_output=_field("tag"),
        aliases=("lamp2", "lamp2m", "movies"),
    ),
    TaskSpec(
        name="LaMP-2N",
        official_id="LaMP_2",
        kind=TaskKind.CLASSIFICATION,
        description="personalized news categorization (the first LaMP-2)",
        profile_fields=("title", "text", "category"),
        metric="classification",
        instruction=(
            "Which category does this article relate to among the following categories? Just answer "
            f"with the category name without further explanation. categories: [{', '.join(NEWS_CATEGORIES)}] article: "
        ),
        max_new_tokens=8,
        labels=NEWS_CATEGORIES,
        extract_query=_after("article:"),
        item_text=_join("title", "text"),
        item_input=_field("text"),
        item_output=_field("category"),
        aliases=("lamp2n", "lamp-2-old", "news"),
    ),
    TaskSpec(
        name="LaMP-3",
        official_id="LaMP_3",
        kind=TaskKind.RATING,
        description="personalized product rating",
        profile_fields=("text", "score"),
        metric="rating",
        instruction=(
            "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, "
            "4, or 5 without further explanation. review: "
        ),
        max_new_tokens=4,
        labels=RATING_LABELS,
        extract_query=_after("review:"),
        item_text=_field("text"),
        item_input=_field("text"),
        item_output=_field("score"),
        aliases=("lamp3", "rating"),
    ),
    TaskSpec(
        name="LaMP-4",
        official_id="LaMP_4",
        kind=TaskKind.GENERATION,
        description="personalized news headline generation",
        profile_fields=("title", "text"),
        metric="rouge",
        instruction="Generate a headline for the following article: ",
        max_new_tokens=32,
        extract_query=_after("article:"),
        item_text=_join("title", "text"),
        item_input=_field("text"),
        item_output=_field("title"),
        aliases=("lamp4", "headline"),
    ),
    TaskSpec(
        name="LaMP-5",
        official_id="LaMP_5",
        kind=TaskKind.GENERATION,
        description="personalized scholarly title generation",
        profile_fields=("title", "abstract"),
        metric="rouge",
        instruction="Generate a title for the following abstract of a paper: ",
        max_new_tokens=32,
        extract_query=_after("paper:"),
        item_text=_join("title", "abstract"),
        item_input=_field("abstract"),
        item_output=_field("title"),
        aliases=("lamp5", "title"),
    ),
    TaskSpec(
        name="LaMP-6",
        official_id="LaMP_6",
        kind=TaskKind.GENERATION,
        description="personalized email subject generation",
        profile_fields=("text", "title"),
        metric="rouge",
        instruction="Generate a subject for the following email: ",
        max_new_tokens=24,
        extract_query=_after(":"),
        item_text=_field("text"),
        item_input=_field("text"),
        item_output=_field("title"),
        aliases=("lamp6", "email"),
    ),
    TaskSpec(
        name="LaMP-7",
        official_id="LaMP_7",
        kind=TaskKind.GENERATION,
        description="personalized tweet paraphrasing",
        profile_fields=("text",),
        metric="rouge",
        instruction="Paraphrase the following tweet without any explanation before or after it: ",
        max_new_tokens=48,
        extract_query=_after(":"),
        item_text=_field("text"),
        rewrite=True,
        aliases=("lamp7", "tweet"),
    ),
]

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _LAMP}
_ALIASES: dict[str, str] = {}
for _spec in _LAMP:
    for _key in (_spec.name, _spec.name.replace("-", "_"), *_spec.aliases):
        _ALIASES[_key.lower()] = _spec.name


def task_names() -> list[str]:
    """The canonical task names, in registry order.

    >>> task_names()[:3]
    ['LaMP-1', 'LaMP-2', 'LaMP-2N']
    """
    return list(TASKS)


def get_task(name: str) -> TaskSpec:
    """Look a task up by its name or an alias (case-insensitive: ``LaMP-7``, ``LaMP_7``, ``lamp7``).

    ``LaMP_2`` (the official outputs id) means the movie task; use ``LaMP-2N`` for news.

    >>> get_task("LaMP_3").name
    'LaMP-3'

    Raises:
        UnknownTaskError: the name matches no task; the message lists the known ones.
    """
    key = str(name).strip().lower()
    if key in _ALIASES:
        return TASKS[_ALIASES[key]]
    raise UnknownTaskError(str(name), task_names())
