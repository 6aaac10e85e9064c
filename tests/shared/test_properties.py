"""Property-based tests (hypothesis) of the input-facing code: loader, tasks, retrieval, prompts, metrics.

Each property states what must hold for *every* input of a family (random unicode, random sizes,
empty profiles, numeric ids, single corruptions), so that a counter-example is a real bug. They need
no network and no LLM; temporary files are made inside each example (not with ``tmp_path``) so that
every example starts from a fresh directory.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import shared.data
from shared.data import MAX_INPUT_CHARS, load_outputs, load_questions, write_outputs
from shared.errors import DataFormatError, UnknownTaskError
from shared.metrics import evaluate, example_score, rating_value
from shared.prompts import PROMPT_STYLES, PromptBudget, build_messages, truncate
from shared.retrieval import bm25_scores, bm25_top_k, tokenize
from shared.tasks import TASKS, TaskKind, get_task, task_names

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
SLOW = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

TASK_NAMES = task_names()
LABEL_TASKS = [n for n in TASK_NAMES if TASKS[n].labels]
ALIASES = {k.lower() for spec in TASKS.values() for k in (spec.name, spec.name.replace("-", "_"), *spec.aliases)}

# -- strategies ----------------------------------------------------------------------------------------
texts = st.text(max_size=40)
words = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=8)
sentences = st.lists(st.one_of(words, st.sampled_from(["the", "cat", "dog", "news", "a", "42"])), max_size=10).map(
    " ".join
)
# JSON numbers that the loader turns into strings (floats round-trip through json as repr == str)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=False, allow_infinity=False)
)
id_values = st.one_of(st.text(max_size=12), numbers)
field_values = st.one_of(texts, numbers)
extra_values = st.one_of(texts, numbers, st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


def _label_field(spec) -> str | None:
    """The profile field that holds a label (the last one: tag, category, score), for tasks that have one."""
    return spec.profile_fields[-1] if spec.labels and spec.item_output is not None else None


def _profile_item(task_name: str):
    spec = get_task(task_name)
    label_values = st.sampled_from(spec.labels)
    if spec.kind is TaskKind.RATING:
        label_values = st.one_of(label_values, st.integers(1, 5))  # the official data has both "4" and 4
    required = st.fixed_dictionaries(
        {name: label_values if name == _label_field(spec) else field_values for name in spec.profile_fields}
    )
    extras = st.dictionaries(st.sampled_from(["id", "date", "extra", "user"]), extra_values, max_size=3)
    return st.tuples(required, extras).map(lambda t: {**t[1], **t[0]})


@st.composite
def question_files(draw, task_name: str | None = None, min_size: int = 0):
    """(task name, list of well-formed raw questions) with unique ids (unique as strings)."""
    task_name = task_name or draw(st.sampled_from(TASK_NAMES))
    ids = draw(st.lists(id_values, min_size=min_size, max_size=6, unique_by=lambda v: str(v)))
    questions = []
    for qid in ids:
        q = {
            "id": qid,
            "input": draw(
                st.one_of(
                    texts,
                    st.builds(lambda a, b: a + b, st.sampled_from([s.instruction for s in TASKS.values()]), texts),
                )
            ),
            "profile": draw(st.lists(_profile_item(task_name), max_size=4)),
        }
        if draw(st.booleans()):
            q["user_id"] = draw(id_values)
        questions.append(q)
    return task_name, questions


def _dump(payload, *, ascii_: bool, bom: bool) -> bytes:
    raw = json.dumps(payload, ensure_ascii=ascii_).encode("utf-8")
    return (b"\xef\xbb\xbf" + raw) if bom else raw


def _expected_value(value) -> str:
    return value if isinstance(value, str) else str(value)


# -- loader ---------------------------------------------------------------------------------------------
@FAST
@given(case=question_files(), limit=st.integers(min_value=12, max_value=45), ascii_=st.booleans(), bom=st.booleans())
def test_well_formed_questions_round_trip_through_a_file(case, limit, ascii_, bom):
    """Ids become strings (preserved), texts are cut to MAX_INPUT_CHARS, extras kept, profile order kept.

    MAX_INPUT_CHARS is patched down (ids are at most 12 characters, so only texts are cut) so that random
    texts cross it; the real limit is checked once below.
    """
    task_name, raw = case
    spec = get_task(task_name)
    with tempfile.TemporaryDirectory() as d, mock.patch.object(shared.data, "MAX_INPUT_CHARS", limit):
        path = Path(d) / "x_questions.json"
        path.write_bytes(_dump(raw, ascii_=ascii_, bom=bom))
        loaded = load_questions(path, task_name)
    assert [q.id for q in loaded] == [
        _expected_value(r["id"])[:limit] if isinstance(r["id"], str) else str(r["id"]) for r in raw
    ]
    for q, r in zip(loaded, raw):
        assert q.input == r["input"][:limit]
        assert len(q.input) <= limit
        assert q.query == spec.extract_query(r["input"][:limit])
        if "user_id" in r:
            user = r["user_id"]
            assert q.user_id == (user[:limit] if isinstance(user, str) else str(user))
        else:  # one question per user: the question's own id
            assert q.user_id == q.id[:limit]
        assert len(q.profile) == len(r["profile"])
        for j, (item, raw_item) in enumerate(zip(q.profile, r["profile"])):
            for name in spec.profile_fields:  # required fields: strings, numbers turned into strings
                value = raw_item[name]
                assert item[name] == (value[:limit] if isinstance(value, str) else str(value))
            for name, value in raw_item.items():  # extra scalars are kept as (truncated) strings, others dropped
                if name in spec.profile_fields:
                    continue
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    assert item[name] == str(value)[:limit]
                elif name != "id":
                    assert name not in item
            raw_id = raw_item.get("id")
            if not isinstance(raw_id, (str, int, float)) or isinstance(raw_id, bool):
                assert item["id"] == str(j)  # no usable id: the item's position
            assert all(isinstance(v, str) for v in item.values())
            assert spec.item_text(item) == q.profile_texts(spec)[j]


def test_real_limit_truncates_a_huge_input_and_profile_text():
    """The same property with the real (documented) MAX_INPUT_CHARS, once, on huge texts."""
    raw = [{"id": 7, "input": "é" * (MAX_INPUT_CHARS + 5), "profile": [{"text": "x" * (3 * MAX_INPUT_CHARS)}]}]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "q_questions.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        (q,) = load_questions(path, "LaMP-7")
    assert q.id == "7" and q.input == "é" * MAX_INPUT_CHARS and len(q.profile[0]["text"]) == MAX_INPUT_CHARS


BAD_TYPES = st.one_of(
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.none(),
    st.booleans(),
)
BAD_TEXT = st.one_of(BAD_TYPES, st.integers(), st.floats(allow_nan=False))  # "input" must be a string, not a number
CORRUPTIONS = [
    "drop",
    "input-type",
    "id-type",
    "profile-type",
    "not-object",
    "duplicate",
    "profile-missing",
    "profile-type-field",
    "profile-not-object",
]


@FAST
@given(case=question_files(min_size=1), data=st.data(), kind=st.sampled_from(CORRUPTIONS))
def test_any_single_corruption_names_file_item_and_field(case, data, kind):
    task_name, raw = case
    spec = get_task(task_name)
    i = data.draw(st.integers(0, len(raw) - 1), label="item")
    item = raw[i]
    index, field = i, None
    if kind == "drop":
        field = data.draw(st.sampled_from(["id", "input", "profile"]))
        del item[field]
    elif kind == "input-type":
        field, item["input"] = "input", data.draw(BAD_TEXT)
    elif kind == "id-type":
        field, item["id"] = "id", data.draw(BAD_TYPES)
    elif kind == "profile-type":
        field, item["profile"] = (
            "profile",
            data.draw(
                st.one_of(
                    st.text(max_size=3), st.integers(), st.none(), st.dictionaries(st.text(max_size=3), st.integers())
                )
            ),
        )
    elif kind == "not-object":
        raw[i] = data.draw(
            st.one_of(st.text(max_size=3), st.integers(), st.none(), st.lists(st.integers(), max_size=2))
        )
    elif kind == "duplicate":
        assume(i > 0)
        j = data.draw(st.integers(0, i - 1))
        field, item["id"] = "id", raw[j]["id"]
    else:
        if not item["profile"]:
            item["profile"].append(
                {name: spec.labels[0] if name == _label_field(spec) else "x" for name in spec.profile_fields}
            )
        j = data.draw(st.integers(0, len(item["profile"]) - 1))
        name = data.draw(st.sampled_from(spec.profile_fields))
        if kind == "profile-missing":
            del item["profile"][j][name]
            field = f"profile[{j}].{name}"
        elif kind == "profile-type-field":
            item["profile"][j][name] = data.draw(BAD_TYPES)
            field = f"profile[{j}].{name}"
        else:
            item["profile"][j] = data.draw(st.one_of(st.text(max_size=3), st.integers(), st.none()))
            field = f"profile[{j}]"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad_questions.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        with pytest.raises(DataFormatError) as err:
            load_questions(path, spec)
    message = str(err.value)
    assert message.startswith(str(path) + ": ")
    assert err.value.path == str(path) and err.value.index == index and err.value.field == field
    assert f"item {index}" in message
    if field is not None:
        assert f"field {field!r}" in message
    assert "\n" not in message


@FAST
@given(case=question_files(min_size=1), data=st.data(), ascii_=st.booleans())
def test_non_utf8_or_truncated_files_name_the_file(case, data, ascii_):
    _, raw = case
    blob = json.dumps(raw, ensure_ascii=ascii_).encode("utf-8")
    if data.draw(st.booleans(), label="invalid byte"):
        at = data.draw(st.integers(0, len(blob)))
        bad = data.draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\xc1", b"\xf8"]))  # never valid in UTF-8
        blob, needle = blob[:at] + bad + blob[at:], ("not UTF-8",)
    else:
        blob, needle = blob[: data.draw(st.integers(0, len(blob) - 1))], ("invalid JSON", "not UTF-8")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "dev_questions.json"
        path.write_bytes(blob)
        with pytest.raises(DataFormatError) as err:
            load_questions(path, "LaMP-7")
    assert str(err.value).startswith(str(path) + ": ")
    assert any(n in str(err.value) for n in needle)


@FAST
@given(
    preds=st.dictionaries(st.text(max_size=15), st.text(max_size=40), max_size=8), task_name=st.sampled_from(TASK_NAMES)
)
def test_write_outputs_then_load_outputs_round_trips(preds, task_name):
    spec = get_task(task_name)
    with tempfile.TemporaryDirectory() as d:
        path = write_outputs(Path(d) / "sub" / "p_outputs.json", spec, preds)
        task_id, loaded = load_outputs(path)
        assert os.listdir(path.parent) == ["p_outputs.json"]  # no temporary file left
    assert task_id == spec.official_id
    assert loaded == preds and list(loaded) == list(preds)


@FAST
@given(
    golds=st.lists(
        st.tuples(st.text(max_size=8), st.text(max_size=8)), min_size=1, max_size=5, unique_by=lambda t: t[0]
    ),
    data=st.data(),
    kind=st.sampled_from(["drop-id", "drop-output", "id-type", "output-type", "not-object", "duplicate"]),
)
def test_any_single_corruption_of_an_outputs_file_names_the_place(golds, data, kind):
    rows = [{"id": k, "output": v} for k, v in golds]
    i = data.draw(st.integers(0, len(rows) - 1))
    field = {
        "drop-id": "id",
        "drop-output": "output",
        "id-type": "id",
        "output-type": "output",
        "not-object": "golds",
        "duplicate": "id",
    }[kind]
    if kind.startswith("drop"):
        del rows[i][field]
    elif kind.endswith("type"):
        rows[i][field] = data.draw(BAD_TYPES)
    elif kind == "not-object":
        rows[i] = data.draw(st.one_of(st.text(max_size=3), st.integers(), st.none()))
    else:
        assume(i > 0)
        rows[i]["id"] = rows[data.draw(st.integers(0, i - 1))]["id"]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g_outputs.json"
        path.write_text(json.dumps({"task": "LaMP_7", "golds": rows}), encoding="utf-8")
        with pytest.raises(DataFormatError) as err:
            load_outputs(path)
    assert str(err.value).startswith(f"{path}: item {i}, field {field!r}: ")
    assert (err.value.index, err.value.field) == (i, field)


# -- the task registry ----------------------------------------------------------------------------------
@FAST
@given(name=st.text(max_size=12))
def test_unknown_task_names_raise_a_clear_error_listing_known_tasks(name):
    if name.strip().lower() in ALIASES:
        assert get_task(name).name in TASK_NAMES
        return
    with pytest.raises(UnknownTaskError) as err:
        get_task(name)
    message = str(err.value)
    assert message.startswith(f"unknown task {name!r}; known tasks: ")
    assert all(t in message for t in TASK_NAMES)
    assert isinstance(err.value, KeyError)  # and still a KeyError for callers that catch that


@FAST
@given(
    name=st.sampled_from(sorted(ALIASES)),
    pad=st.sampled_from(["", " ", "\t", "  \n"]),
    case=st.sampled_from([str.lower, str.upper, str.title, lambda s: s]),
)
def test_every_alias_in_any_case_and_padding_resolves(name, pad, case):
    assert get_task(pad + case(name) + pad).name in TASK_NAMES


@FAST
@given(text=st.text(max_size=60))
def test_rating_parse_answer_returns_a_label_or_the_stripped_text(text):
    parsed = get_task("LaMP-3").parse_answer(text)
    assert parsed in {"1", "2", "3", "4", "5"} or parsed == text.strip()
    if parsed == text.strip() and parsed not in {"1", "2", "3", "4", "5"}:
        # nothing that reads as a lone 1-5 was in the text
        assert not re.search(r"(?<![\d.])[1-5](?:\.0+)?(?![\d.])", text)


@FAST
@given(task_name=st.sampled_from(TASK_NAMES), text=st.text(max_size=80))
def test_parse_answer_never_raises_and_stays_in_the_label_space_when_a_label_is_named(task_name, text):
    spec = get_task(task_name)
    parsed = spec.parse_answer(text)
    assert isinstance(parsed, str)
    assert len(parsed) <= len(text)
    if spec.kind is TaskKind.CLASSIFICATION and parsed not in spec.labels:
        # an answer left outside the label set names no label at all
        assert not any(label.lower() in parsed.lower() for label in spec.labels)
    if spec.kind is TaskKind.GENERATION:
        assert "\n" not in parsed and parsed == parsed.strip()


@FAST
@given(task_name=st.sampled_from(LABEL_TASKS), data=st.data())
def test_a_label_decorated_like_an_llm_answer_parses_to_itself(task_name, data):
    spec = get_task(task_name)
    label = data.draw(st.sampled_from(spec.labels))
    shape = data.draw(
        st.sampled_from(
            ["{}", " {} ", "{}.", "Answer: {}", '"{}"', "{}\nbecause reasons", "Category: {}!", "  tag : {}  "]
        )
    )
    case = data.draw(st.sampled_from([str, str.upper, str.title]))
    if spec.kind is TaskKind.RATING:
        assume(shape != "{}.")  # a rating that ends a sentence: see test_a_rating_that_ends_a_sentence_parses
    assert spec.parse_answer(shape.format(case(label))) == label


@pytest.mark.parametrize("label", ["1", "2", "3", "4", "5"])
def test_a_rating_that_ends_a_sentence_parses(label):
    spec = get_task("LaMP-3")
    answers = [
        f"{label}.",
        f"The score is {label}.",
        f"I would rate it {label}.\nThe product broke.",
        f"Rating: {label}. Good value.",
    ]
    assert [spec.parse_answer(a) for a in answers] == [label] * len(answers)


@FAST
@given(task_name=st.sampled_from(TASK_NAMES), data=st.data())
def test_pseudo_questions_and_demonstrations_are_consistent(task_name, data):
    spec = get_task(task_name)
    item = {name: data.draw(texts) for name in spec.profile_fields}
    user, assistant = spec.demonstration(item)
    pseudo = spec.pseudo_question(item)
    if pseudo is None:
        assert (user, assistant) == (spec.demo_request, spec.item_text(item))
    else:
        assert (user, assistant) == pseudo
        assert user.startswith(spec.instruction)
        # the query a pseudo-question yields is exactly the item's input side
        assert spec.extract_query(user) == spec.item_input(item).strip()
        assert assistant == spec.item_output(item)


# -- retrieval -------------------------------------------------------------------------------------------
def _reference_tokens(text: str) -> list[str]:
    """The documented tokenizer, rewritten: maximal runs of alphanumeric characters of the lowercased text."""
    return ["".join(g) for alnum, g in itertools.groupby(text.lower(), key=str.isalnum) if alnum]


@FAST
@given(text=st.text(max_size=200))
def test_tokenize_is_lowercased_alphanumeric_runs(text):
    tokens = tokenize(text)
    assert tokens == _reference_tokens(text)
    assert all(t and all(c.isalnum() for c in t) for t in tokens)
    assert tokenize(" ".join(tokens)) == tokens  # idempotent on its own output


documents = st.lists(
    st.one_of(sentences, st.text(max_size=30), st.sampled_from(["", "!!!", "...", " ", "_ _"])), max_size=12
)


@FAST
@given(
    query=st.one_of(sentences, st.text(max_size=30), st.sampled_from(["", "?!", "the"])),
    docs=documents,
    k=st.integers(-2, 15),
)
def test_bm25_top_k_contract(query, docs, k):
    top = bm25_top_k(query, docs, k)
    scores = bm25_scores(query, docs)
    assert len(scores) == len(docs) and all(math.isfinite(s) for s in scores)
    assert len(top) == max(0, min(k, len(docs)))
    assert len(set(top)) == len(top) and all(0 <= i < len(docs) for i in top)
    assert [scores[i] for i in top] == sorted((scores[i] for i in top), reverse=True)
    assert top == sorted(range(len(docs)), key=lambda i: (-scores[i], i))[: max(k, 0)]
    assert bm25_top_k(query, docs, k) == top  # deterministic
    if k > 0:
        assert bm25_top_k(query, docs, k + 1)[:k] == top  # a larger k only appends
    q_terms = set(tokenize(query))
    for i, d in enumerate(docs):
        if not q_terms & set(tokenize(d)):
            assert scores[i] == 0.0  # a document sharing no term with the query scores exactly zero


@FAST
@given(query=sentences, docs=st.lists(sentences, min_size=1, max_size=10), data=st.data())
def test_bm25_scores_follow_the_documents_when_they_are_permuted(query, docs, data):
    perm = data.draw(st.permutations(range(len(docs))))
    scores = bm25_scores(query, docs)
    permuted = bm25_scores(query, [docs[i] for i in perm])
    assert permuted == pytest.approx([scores[i] for i in perm], rel=1e-9, abs=1e-12)


@SLOW
@given(
    query=st.one_of(st.just(""), st.text(alphabet="!?.,;:-_ ", max_size=50), sentences),
    n=st.integers(0, 3),
    size=st.sampled_from([0, 1, 50_000]),
)
def test_bm25_never_raises_on_empty_punctuation_or_huge_texts(query, n, size):
    docs = ["word " * (size // 5), "!" * size, ""][:n]
    top = bm25_top_k(query * (1 if size < 1000 else 200), docs, 5)
    assert sorted(top) == list(range(len(docs)))


# -- prompts ---------------------------------------------------------------------------------------------
@FAST
@given(text=st.text(max_size=120), limit=st.integers(0, 130))
def test_truncate_is_a_bounded_prefix_of_the_stripped_text(text, limit):
    cut = truncate(text, limit)
    stripped = text.strip()
    assert len(cut) <= limit
    assert stripped.startswith(cut)
    if len(stripped) <= limit:
        assert cut == stripped
    if limit > 0 and stripped:
        assert cut  # never cut down to nothing when something fits
    assert truncate(cut, limit) == cut  # idempotent


@st.composite
def prompt_cases(draw):
    spec = get_task(draw(st.sampled_from(TASK_NAMES)))
    records = draw(st.lists(st.fixed_dictionaries({n: st.text(max_size=300) for n in spec.profile_fields}), max_size=5))
    budget = PromptBudget(record_chars=draw(st.integers(1, 200)), input_chars=draw(st.integers(1, 400)))
    text = draw(st.one_of(st.text(max_size=500), st.text(max_size=50).map(lambda t: spec.instruction + t)))
    return spec, text, records, budget


@FAST
@given(case=prompt_cases(), style=st.sampled_from(PROMPT_STYLES))
def test_build_messages_alternates_ends_with_the_question_and_keeps_budgets(case, style):
    spec, text, records, budget = case
    msgs = build_messages(spec, text, records, style=style, budget=budget)
    question = truncate(text, budget.input_chars)
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in msgs)
    assert [m["role"] for m in msgs] == ["user", "assistant"] * ((len(msgs) - 1) // 2) + ["user"]
    assert msgs[-1]["content"].endswith(question)
    if style == "inline" or not records:
        assert len(msgs) == 1
        if not records:
            assert msgs[0]["content"] == question
        return
    assert len(msgs) == 2 * len(records) + 1
    assert msgs[-1]["content"] == question and len(question) <= budget.input_chars
    for m in msgs[:-1]:
        limit = budget.record_chars + (len(spec.instruction) if m["role"] == "user" else 0)
        assert len(m["content"]) <= limit
    # best record (records[0]) sits right before the question
    best_user, best_answer = spec.demonstration(records[0])
    assert msgs[-2]["content"] == truncate(best_answer, budget.record_chars)
    assert msgs[-3]["content"] == truncate(best_user, budget.record_chars + len(spec.instruction))


# -- metrics ---------------------------------------------------------------------------------------------
ids = st.lists(st.text(max_size=6), min_size=1, max_size=12, unique=True)


def _golds_for(spec, data, keys):
    if spec.metric == "rouge":
        return {k: data.draw(st.one_of(sentences, st.text(max_size=30))) for k in keys}
    return {
        k: data.draw(st.sampled_from(spec.labels).map(lambda lab: data.draw(st.sampled_from(["", " "])) + lab))
        for k in keys
    }


@SLOW
@given(task_name=st.sampled_from(TASK_NAMES), keys=ids, data=st.data())
def test_golds_scored_against_themselves_are_perfect(task_name, keys, data):
    spec = get_task(task_name)
    golds = _golds_for(spec, data, keys)
    m = evaluate(spec, dict(golds), golds)
    if spec.metric == "classification":
        present = {g.strip() for g in golds.values()}
        assert m["accuracy"] == 1.0
        assert m["f1"] == pytest.approx(len(present) / len(spec.labels))  # absent labels count as F1 0
    elif spec.metric == "rating":
        assert m == {"MAE": 0.0, "RMSE": 0.0}
    else:
        scorable = [bool(re.search(r"[a-z0-9]", g.lower())) for g in golds.values()]
        assert m["rouge-1"] == pytest.approx(sum(scorable) / len(scorable))
        assert m["rouge-L"] == pytest.approx(sum(scorable) / len(scorable))
        if all(scorable):
            assert m == {"rouge-1": 1.0, "rouge-L": 1.0}


rating_preds = st.one_of(
    st.sampled_from(["1", "2", "3", "4", "5", " 3 ", "5.0", "nan", "inf", "-inf", "", "five", "4 stars", "N/A"]),
    st.floats(1, 5).map(repr),
    st.text(alphabet="abcxyz !?", max_size=8),
)


@FAST
@given(keys=ids, data=st.data())
def test_rating_errors_are_bounded_by_the_official_worst_case(keys, data):
    golds = {k: data.draw(st.sampled_from("12345")) for k in keys}
    preds = {k: data.draw(rating_preds) for k in keys}
    m = evaluate(get_task("LaMP-3"), preds, golds)
    assert 0.0 <= m["MAE"] <= 4.0
    assert m["MAE"] - 1e-12 <= m["RMSE"] <= 4.0
    for k in keys:
        assert 1.0 <= rating_value(preds[k], golds[k]) <= 5.0
    if len(keys) == 1:
        (k,) = keys
        assert example_score(get_task("LaMP-3"), preds[k], golds[k]) == pytest.approx(-m["MAE"])


@SLOW
@given(task_name=st.sampled_from(TASK_NAMES), keys=ids, data=st.data())
def test_metrics_are_in_range_and_invariant_to_the_order_of_ids(task_name, keys, data):
    spec = get_task(task_name)
    golds = _golds_for(spec, data, keys)
    if spec.metric == "rouge":
        preds = {k: data.draw(st.one_of(sentences, st.text(max_size=20))) for k in keys}
    elif spec.metric == "rating":
        preds = {k: data.draw(rating_preds) for k in keys}
    else:
        preds = {k: data.draw(st.one_of(st.sampled_from(spec.labels), st.text(max_size=8))) for k in keys}
    m = evaluate(spec, preds, golds)
    order = data.draw(st.permutations(keys))
    shuffled = evaluate(spec, {k: preds[k] for k in reversed(order)}, {k: golds[k] for k in order})
    assert shuffled == pytest.approx(m, rel=1e-9, abs=1e-12)
    if spec.metric in ("classification", "rouge"):
        assert all(0.0 <= v <= 1.0 for v in m.values())
    if spec.metric == "rouge" and len(keys) == 1:
        (k,) = keys
        assert example_score(spec, preds[k], golds[k]) == pytest.approx(m["rouge-L"])


@FAST
@given(
    task_name=st.sampled_from(TASK_NAMES),
    gold_ids=ids,
    extra=st.sets(st.text(max_size=6), max_size=3),
    drop=st.integers(0, 3),
)
def test_mismatched_id_sets_raise_data_format_error(task_name, gold_ids, extra, drop):
    spec = get_task(task_name)
    label = spec.labels[0] if spec.labels else "x"
    golds = {k: label for k in gold_ids}
    preds = {k: label for k in gold_ids[drop:]}
    preds.update({k: label for k in extra if k not in golds})
    if preds.keys() == golds.keys():
        assert evaluate(spec, preds, golds)
        return
    with pytest.raises(DataFormatError) as err:
        evaluate(spec, preds, golds, preds_name="p.json", golds_name="g.json")
    assert str(err.value).startswith("p.json: ids do not match g.json: ")
    missing = len([k for k in golds if k not in preds])
    assert f"{missing} missing" in str(err.value)
