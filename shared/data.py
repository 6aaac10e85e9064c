"""Read and validate LaMP data in the official layout.

A split is a pair of files: ``{split}_questions.json`` (a list of ``{"id", "input", "profile"}``;
time-based files add ``user_id``) and ``{split}_outputs.json`` (``{"task", "golds": [{"id", "output"}]}``).

The split name ``timeline`` is a protocol over ``user_histories.json`` instead (a list of
``{"user", "items": [{"id", "text", "score"}, ...]}``, each user's items oldest first; see
:func:`load_timeline`): the last ``timeline_questions`` items of each user are that user's questions, each
question's profile is the user's items strictly before it (a slice of one shared tuple: nothing is copied
or written), its gold is the item's output. The user's training part, the profile of their first
question, is what the ``history`` protocol of :mod:`shared.users` trains on.

Every malformed input raises :class:`~shared.errors.DataFormatError` naming the file, the item's
index and the field.

Example:
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "dev_questions.json").write_text(json.dumps([{"id": "1", "input": "Paraphrase the following tweet without any explanation before or after it: hi", "profile": [{"id": "p", "text": "yo"}]}]))
    >>> _ = (d / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_7", "golds": [{"id": "1", "output": "hey"}]}))
    >>> ds = load_split(d, "LaMP-7")
    >>> ds.questions[0].query, ds.golds["1"]
    ('hi', 'hey')
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import DataFormatError
from shared.tasks import TaskKind, TaskSpec, get_task

__all__ = [
    "Question",
    "Dataset",
    "load_questions",
    "load_outputs",
    "load_split",
    "find_split_files",
    "write_outputs",
    "read_json",
    "group_by_user",
    "load_timeline",
    "TIMELINE_SPLIT",
    "TIMELINE_FILE",
]

TIMELINE_SPLIT = "timeline"
"""The split name that selects :func:`load_timeline` (``split = "timeline"`` in the run config)."""
TIMELINE_FILE = "user_histories.json"
"""The file the timeline split reads, in the data directory."""

MAX_INPUT_CHARS = 20_000
"""Inputs and profile texts longer than this are truncated on load (documented in the README)."""


@dataclass(frozen=True)
class Question:
    """One LaMP question: the official ``input``, the user's ``profile`` and, when known, the user's id."""

    id: str
    input: str
    profile: tuple[Mapping[str, str], ...]
    user_id: str
    query: str

    def profile_texts(self, task: TaskSpec) -> list[str]:
        """The retrieval text of each profile item."""
        return [task.item_text(item) for item in self.profile]


@dataclass(frozen=True)
class Dataset:
    """Questions of one task with their golds (``golds`` may be empty when no outputs file exists)."""

    task: TaskSpec
    questions: tuple[Question, ...]
    golds: Mapping[str, str]

    def users(self) -> list[str]:
        """User ids in order of first appearance."""
        return list(group_by_user(self.questions))


def read_json(path: str | Path) -> Any:
    """Read a JSON file, raising :class:`DataFormatError` (naming the file) when it is not valid UTF-8 JSON."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer beyond Python's digit limit; nesting too deep
        raise DataFormatError(path, f"invalid JSON: {str(exc).split(';')[0]}") from None


def _string(value: Any, path: Path, index: int, field: str, *, allow_number: bool = False) -> str:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a JSON escape of a lone surrogate, e.g. "\ud800"
            raise DataFormatError(
                path,
                f"not valid Unicode: unpaired surrogate {value[exc.start]!r} at character {exc.start}",
                index=index,
                field=field,
            ) from None
        return value[:MAX_INPUT_CHARS]
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataFormatError(path, f"expected a string, got {type(value).__name__}", index=index, field=field)


def _profile(raw: Any, task: TaskSpec, path: Path, index: int, field: str = "profile") -> tuple[dict[str, str], ...]:
    if not isinstance(raw, list):
        raise DataFormatError(path, f"expected a list, got {type(raw).__name__}", index=index, field=field)
    items = []
    for j, item in enumerate(raw):
        where = f"{field}[{j}]"
        if not isinstance(item, dict):
            raise DataFormatError(path, f"expected an object, got {type(item).__name__}", index=index, field=where)
        clean: dict[str, str] = {}
        for name in task.profile_fields:
            if name not in item:
                raise DataFormatError(
                    path,
                    f"missing (a {task.name} profile item needs {', '.join(task.profile_fields)})",
                    index=index,
                    field=f"{where}.{name}",
                )
            clean[name] = _string(item[name], path, index, f"{where}.{name}", allow_number=True)
            if task.kind is TaskKind.RATING and name == "score" and clean[name] not in task.labels:
                raise DataFormatError(
                    path, f"{clean[name]!r} is not one of {list(task.labels)}", index=index, field=f"{where}.{name}"
                )
        for name, value in item.items():
            if name not in clean and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                clean[name] = str(value)[:MAX_INPUT_CHARS]
        clean.setdefault("id", f"{j}")
        items.append(clean)
    return tuple(items)


def load_questions(path: str | Path, task: TaskSpec | str) -> list[Question]:
    """Load and validate a ``*_questions.json`` file.

    Ids must be unique strings (integers are accepted and turned into strings). A question's user is its
    ``user_id`` (or ``user``) field when present, else the question's own id (the user-based splits have
    one question per user).

    Raises:
        DataFormatError: naming the file, the item's index and the field that is wrong.
    """
    path = Path(path)
    spec = get_task(task) if isinstance(task, str) else task
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, f"expected a JSON list of questions, got {type(data).__name__}")
    seen: dict[str, int] = {}
    questions = []
    for i, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise DataFormatError(path, f"expected an object, got {type(raw).__name__}", index=i)
        for name in ("id", "input", "profile"):
            if name not in raw:
                raise DataFormatError(path, "missing", index=i, field=name)
        qid = _string(raw["id"], path, i, "id", allow_number=True)
        if qid in seen:
            raise DataFormatError(path, f"duplicate id {qid!r} (first at item {seen[qid]})", index=i, field="id")
        seen[qid] = i
        text = _string(raw["input"], path, i, "input")
        user = raw.get("user_id", raw.get("user", qid))
        user = _string(user, path, i, "user_id", allow_number=True)
        profile = _profile(raw["profile"], spec, path, i)
        questions.append(Question(id=qid, input=text, profile=profile, user_id=user, query=spec.extract_query(text)))
    return questions


def load_outputs(path: str | Path) -> tuple[str | None, dict[str, str]]:
    """Load a ``*_outputs.json`` file (golds or predictions): returns (task id, {question id: output}).

    Raises:
        DataFormatError: naming the file, the index in ``golds`` and the field.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, f'expected an object {{"task", "golds"}}, got {type(data).__name__}')
    if "golds" not in data:
        raise DataFormatError(path, "missing", field="golds")
    golds = data["golds"]
    if not isinstance(golds, list):
        raise DataFormatError(path, f"expected a list, got {type(golds).__name__}", field="golds")
    task = data.get("task")
    if task is not None and not isinstance(task, str):
        raise DataFormatError(path, f"expected a string, got {type(task).__name__}", field="task")
    out: OrderedDict[str, str] = OrderedDict()
    for i, raw in enumerate(golds):
        if not isinstance(raw, dict):
            raise DataFormatError(path, f"expected an object, got {type(raw).__name__}", index=i, field="golds")
        for name in ("id", "output"):
            if name not in raw:
                raise DataFormatError(path, "missing", index=i, field=name)
        qid = _string(raw["id"], path, i, "id", allow_number=True)
        if qid in out:
            raise DataFormatError(path, f"duplicate id {qid!r}", index=i, field="id")
        out[qid] = _string(raw["output"], path, i, "output", allow_number=True)
    return task, dict(out)


def find_split_files(directory: str | Path, split: str | None = None) -> tuple[Path, Path | None]:
    """Find ``{split}_questions.json`` and its ``{split}_outputs.json`` in a directory.

    With ``split=None`` the directory must hold exactly one ``*_questions.json``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(directory, "not a directory")
    if split is not None:
        q = directory / f"{split}_questions.json"
        if not q.exists():
            raise DataFormatError(q, "file not found")
    else:
        found = sorted(directory.glob("*_questions.json"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise DataFormatError(
                directory, f"expected exactly one *_questions.json (found {names}); pass the split name"
            )
        q = found[0]
    o = q.with_name(q.name.replace("_questions.json", "_outputs.json"))
    return q, (o if o.exists() else None)


def load_split(
    directory: str | Path, task: TaskSpec | str, split: str | None = None, *, timeline_questions: int = 40
) -> Dataset:
    """Load questions and golds of one split, checking that golds cover exactly the question ids.

    ``split="timeline"`` builds the split from ``user_histories.json`` with ``timeline_questions`` questions
    per user (:func:`load_timeline`).
    """
    spec = get_task(task) if isinstance(task, str) else task
    if split == TIMELINE_SPLIT:
        directory = Path(directory)
        if not directory.is_dir():
            raise DataFormatError(directory, "not a directory")
        return load_timeline(directory / TIMELINE_FILE, spec, timeline_questions)
    qpath, opath = find_split_files(directory, split)
    questions = load_questions(qpath, spec)
    golds: dict[str, str] = {}
    if opath is not None:
        task_id, golds = load_outputs(opath)
        if task_id is not None and task_id != spec.official_id:
            raise DataFormatError(
                opath, f"task is {task_id!r} but {spec.official_id!r} was expected for {spec.name}", field="task"
            )
        ids = {q.id for q in questions}
        missing = [q.id for q in questions if q.id not in golds]
        extra = [g for g in golds if g not in ids]
        if missing or extra:
            raise DataFormatError(
                opath,
                f"golds do not match the questions: {len(missing)} missing "
                f"(e.g. {missing[:3]}), {len(extra)} unknown (e.g. {extra[:3]})",
            )
    return Dataset(task=spec, questions=tuple(questions), golds=golds)


def load_timeline(path: str | Path, task: TaskSpec | str, questions_per_user: int = 40) -> Dataset:
    """The time-based split over a user-histories file: each user's last ``questions_per_user`` items are questions.

    The file is ``[{"user", "items": [{"id", "text", "score"}, ...]}, ...]`` (items oldest first; other
    fields such as ``n_items`` and ``source_question_id`` are optional; ``n_items``, when present, must equal
    the number of items). For user ``u`` with items ``x[0..n-1]`` and ``Q = questions_per_user``, question
    ``i`` (``n-Q <= i < n``) has the id ``{source_question_id or user}_q{i}``, the official input
    (the task's instruction followed by ``x[i]``'s text, as in LaMP), the profile ``x[0..i-1]`` (a slice of
    one tuple shared by all of ``u``'s questions) and the gold ``x[i]``'s output (its score). A user needs at
    least ``Q + 2`` items, so that the training part ``x[0..n-Q-1]`` holds two.

    Raises:
        DataFormatError: naming the file, the user's index and the field (a missing file, a user with too
            few items, an item without text, a score that is not a label, duplicate users).
        ConfigError: ``questions_per_user`` < 1, or a task whose items carry no output.

    Example:
        >>> import json, tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "user_histories.json"
        >>> items = [{"id": f"h{i}", "text": f"review {i}", "score": str(1 + i % 5)} for i in range(5)]
        >>> _ = f.write_text(json.dumps([{"user": "u1", "items": items}]))
        >>> ds = load_timeline(f, "LaMP-3", questions_per_user=2)
        >>> [(q.id, q.query, len(q.profile), ds.golds[q.id]) for q in ds.questions]
        [('u1_q3', 'review 3', 3, '4'), ('u1_q4', 'review 4', 4, '5')]
    """
    from shared.errors import ConfigError

    path = Path(path)
    spec = get_task(task) if isinstance(task, str) else task
    if isinstance(questions_per_user, bool) or not isinstance(questions_per_user, int) or questions_per_user < 1:
        raise ConfigError(f"config key 'data.timeline-questions' must be an integer >= 1, got {questions_per_user!r}")
    if spec.item_input is None or spec.item_output is None:
        raise ConfigError(
            f"the timeline split needs a task whose profile items carry the answer (e.g. LaMP-3), not {spec.name}"
        )
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(path, f"expected a JSON list of users, got {type(data).__name__}")
    questions: list[Question] = []
    golds: dict[str, str] = {}
    seen: dict[str, int] = {}
    for u, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise DataFormatError(path, f"expected an object, got {type(raw).__name__}", index=u)
        for name in ("user", "items"):
            if name not in raw:
                raise DataFormatError(path, "missing", index=u, field=name)
        user = _string(raw["user"], path, u, "user", allow_number=True)
        if user in seen:
            raise DataFormatError(path, f"duplicate user {user!r} (first at item {seen[user]})", index=u, field="user")
        seen[user] = u
        items = _profile(raw["items"], spec, path, u, field="items")
        n = len(items)
        if "n_items" in raw and raw["n_items"] != n:
            raise DataFormatError(path, f"n_items is {raw['n_items']!r} but items holds {n}", index=u, field="n_items")
        if n < questions_per_user + 2:
            raise DataFormatError(
                path,
                f"user {user!r} has {n} items; data.timeline-questions={questions_per_user} needs "
                f"at least {questions_per_user + 2}",
                index=u,
                field="items",
            )
        prefix = _string(raw.get("source_question_id", user), path, u, "source_question_id", allow_number=True)
        for i in range(n - questions_per_user, n):
            qid = f"{prefix}_q{i}"
            if qid in golds:
                raise DataFormatError(path, f"question id {qid!r} is not unique", index=u, field="source_question_id")
            text = (spec.instruction + spec.item_input(items[i]))[:MAX_INPUT_CHARS]
            questions.append(
                Question(id=qid, input=text, profile=items[:i], user_id=user, query=spec.extract_query(text))
            )
            golds[qid] = spec.item_output(items[i])
    return Dataset(task=spec, questions=tuple(questions), golds=golds)


def group_by_user(questions: Sequence[Question]) -> OrderedDict[str, list[Question]]:
    """Questions grouped by user, users in order of first appearance."""
    groups: OrderedDict[str, list[Question]] = OrderedDict()
    for q in questions:
        groups.setdefault(q.user_id, []).append(q)
    return groups


def write_outputs(path: str | Path, task: TaskSpec, predictions: Mapping[str, str]) -> Path:
    """Write predictions in the official outputs layout, atomically (a partial file never appears)."""
    from shared.io import atomic_write_text

    payload = {"task": task.official_id, "golds": [{"id": k, "output": v} for k, v in predictions.items()]}
    return atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=1))
