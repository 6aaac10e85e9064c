"""Read and validate LaMP data in the official layout.

A split is a pair of files: ``{split}_questions.json`` (a list of ``{"id", "input", "profile"}``;
time-based files add ``user_id``) and ``{split}_outputs.json`` (``{"task", "golds": [{"id", "output"}]}``).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

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
]

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
        raise DataFormatError(path, f"not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None
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
            raise DataFormatError(path, f"not valid Unicode: unpaired surrogate {value[exc.start]!r} at character "
                                        f"{exc.start}", index=index, field=field) from None
        return value[:MAX_INPUT_CHARS]
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataFormatError(path, f"expected a string, got {type(value).__name__}", index=index, field=field)


def _profile(raw: Any, task: TaskSpec, path: Path, index: int) -> tuple[dict[str, str], ...]:
    if not isinstance(raw, list):
        raise DataFormatError(path, f"expected a list, got {type(raw).__name__}", index=index, field="profile")
    items = []
    for j, item in enumerate(raw):
        where = f"profile[{j}]"
        if not isinstance(item, dict):
            raise DataFormatError(path, f"expected an object, got {type(item).__name__}", index=index, field=where)
        clean: dict[str, str] = {}
        for name in task.profile_fields:
            if name not in item:
                raise DataFormatError(path, f"missing (a {task.name} profile item needs {', '.join(task.profile_fields)})",
                                      index=index, field=f"{where}.{name}")
            clean[name] = _string(item[name], path, index, f"{where}.{name}", allow_number=True)
            if task.kind is TaskKind.RATING and name == "score" and clean[name] not in task.labels:
                raise DataFormatError(path, f"{clean[name]!r} is not one of {list(task.labels)}", index=index,
                                      field=f"{where}.{name}")
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
    out: "OrderedDict[str, str]" = OrderedDict()
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
            raise DataFormatError(directory, f"expected exactly one *_questions.json (found {names}); pass the split name")
        q = found[0]
    o = q.with_name(q.name.replace("_questions.json", "_outputs.json"))
    return q, (o if o.exists() else None)


def load_split(directory: str | Path, task: TaskSpec | str, split: str | None = None) -> Dataset:
    """Load questions and golds of one split, checking that golds cover exactly the question ids."""
    spec = get_task(task) if isinstance(task, str) else task
    qpath, opath = find_split_files(directory, split)
    questions = load_questions(qpath, spec)
    golds: dict[str, str] = {}
    if opath is not None:
        task_id, golds = load_outputs(opath)
        if task_id is not None and task_id != spec.official_id:
            raise DataFormatError(opath, f"task is {task_id!r} but {spec.official_id!r} was expected for {spec.name}",
                                  field="task")
        ids = {q.id for q in questions}
        missing = [q.id for q in questions if q.id not in golds]
        extra = [g for g in golds if g not in ids]
        if missing or extra:
            raise DataFormatError(opath, f"golds do not match the questions: {len(missing)} missing "
                                         f"(e.g. {missing[:3]}), {len(extra)} unknown (e.g. {extra[:3]})")
    return Dataset(task=spec, questions=tuple(questions), golds=golds)


def group_by_user(questions: Sequence[Question]) -> "OrderedDict[str, list[Question]]":
    """Questions grouped by user, users in order of first appearance."""
    groups: "OrderedDict[str, list[Question]]" = OrderedDict()
    for q in questions:
        groups.setdefault(q.user_id, []).append(q)
    return groups


def write_outputs(path: str | Path, task: TaskSpec, predictions: Mapping[str, str]) -> Path:
    """Write predictions in the official outputs layout, atomically (a partial file never appears)."""
    from shared.io import atomic_write_text

    payload = {"task": task.official_id, "golds": [{"id": k, "output": v} for k, v in predictions.items()]}
    return atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=1))
