from __future__ import annotations

import json

import pytest

from shared.data import load_outputs, load_questions, load_split, write_outputs
from shared.errors import DataFormatError
from shared.tasks import get_task

PROFILE_ITEMS = {
    "LaMP-1": {"id": "p", "title": "T", "abstract": "A"},
    "LaMP-2": {"id": "p", "description": "D", "tag": "comedy"},
    "LaMP-2N": {"id": "p", "title": "T", "text": "X", "category": "sports"},
    "LaMP-3": {"id": "p", "text": "X", "score": "4"},
    "LaMP-4": {"id": "p", "title": "T", "text": "X"},
    "LaMP-5": {"id": "p", "title": "T", "abstract": "A"},
    "LaMP-6": {"id": "p", "title": "T", "text": "X"},
    "LaMP-7": {"id": "p", "text": "X"},
}


def write(tmp_path, name, payload, raw: bytes | None = None):
    path = tmp_path / name
    path.write_bytes(raw if raw is not None else json.dumps(payload).encode())
    return path


@pytest.mark.parametrize("task", list(PROFILE_ITEMS))
def test_every_task_loads_its_official_layout(tmp_path, task):
    spec = get_task(task)
    qs = [
        {"id": f"q{i}", "input": spec.instruction + f"text {i}", "profile": [PROFILE_ITEMS[task]] * 2} for i in range(3)
    ]
    write(tmp_path, "dev_questions.json", qs)
    write(
        tmp_path,
        "dev_outputs.json",
        {"task": spec.official_id, "golds": [{"id": f"q{i}", "output": "x"} for i in range(3)]},
    )
    ds = load_split(tmp_path, task)
    assert [q.id for q in ds.questions] == ["q0", "q1", "q2"]
    assert ds.golds == {"q0": "x", "q1": "x", "q2": "x"}
    assert len(ds.questions[0].profile) == 2


def test_time_based_user_ids_group_questions(tmp_path):
    qs = [{"id": str(i), "user_id": f"u{i % 2}", "input": "x", "profile": []} for i in range(4)]
    path = write(tmp_path, "train_questions.json", qs)
    loaded = load_questions(path, "LaMP-7")
    assert [q.user_id for q in loaded] == ["u0", "u1", "u0", "u1"]


@pytest.mark.parametrize(
    "payload,raw,needle",
    [
        (None, b"[{", "invalid JSON at line 1"),
        (None, b"\xff\xfe[]", "not UTF-8"),
        ({"id": "1"}, None, "expected a JSON list"),
        ([["x"]], None, "item 0: expected an object"),
        ([{"id": "1", "profile": []}], None, "item 0, field 'input': missing"),
        ([{"id": "1", "input": 5, "profile": []}], None, "item 0, field 'input': expected a string, got int"),
        ([{"id": "1", "input": "x", "profile": {}}], None, "field 'profile': expected a list"),
        ([{"id": "1", "input": "x", "profile": [{"id": "p"}]}], None, "item 0, field 'profile[0].text': missing"),
        (
            [{"id": "1", "input": "x", "profile": [{"text": None}]}],
            None,
            "field 'profile[0].text': expected a string, got NoneType",
        ),
        (
            [{"id": "1", "input": "x", "profile": []}, {"id": "1", "input": "y", "profile": []}],
            None,
            "item 1, field 'id': duplicate id '1' (first at item 0)",
        ),
    ],
)
def test_malformed_questions_name_the_place(tmp_path, payload, raw, needle):
    path = write(tmp_path, "bad_questions.json", payload, raw)
    with pytest.raises(DataFormatError) as err:
        load_questions(path, "LaMP-7")
    assert str(path) in str(err.value)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "payload,needle",
    [
        ([], 'expected an object {"task", "golds"}'),
        ({"task": "LaMP_7"}, "field 'golds': missing"),
        ({"golds": [{"id": "1"}]}, "item 0, field 'output': missing"),
        ({"golds": [{"id": "1", "output": "a"}, {"id": "1", "output": "b"}]}, "item 1, field 'id': duplicate id"),
        ({"task": 7, "golds": []}, "field 'task': expected a string"),
    ],
)
def test_malformed_outputs_name_the_place(tmp_path, payload, needle):
    path = write(tmp_path, "x_outputs.json", payload)
    with pytest.raises(DataFormatError, match="x_outputs.json") as err:
        load_outputs(path)
    assert needle in str(err.value)


def test_golds_must_match_questions_and_task(tmp_path):
    write(tmp_path, "dev_questions.json", [{"id": "1", "input": "x", "profile": []}])
    write(tmp_path, "dev_outputs.json", {"task": "LaMP_7", "golds": [{"id": "2", "output": "y"}]})
    with pytest.raises(DataFormatError, match=r"1 missing .*'1'.*1 unknown .*'2'"):
        load_split(tmp_path, "LaMP-7")
    write(tmp_path, "dev_outputs.json", {"task": "LaMP_3", "golds": [{"id": "1", "output": "y"}]})
    with pytest.raises(DataFormatError, match="task is 'LaMP_3' but 'LaMP_7' was expected"):
        load_split(tmp_path, "LaMP-7")


def test_split_discovery_needs_one_split_or_a_name(tmp_path):
    for split in ("dev", "train"):
        write(tmp_path, f"{split}_questions.json", [])
    with pytest.raises(DataFormatError, match="exactly one"):
        load_split(tmp_path, "LaMP-7")
    assert load_split(tmp_path, "LaMP-7", split="dev").questions == ()


def test_huge_inputs_are_truncated_as_documented(tmp_path):
    from shared.data import MAX_INPUT_CHARS

    path = write(tmp_path, "q_questions.json", [{"id": "1", "input": "x" * (MAX_INPUT_CHARS * 3), "profile": []}])
    assert len(load_questions(path, "LaMP-7")[0].input) == MAX_INPUT_CHARS


def test_outputs_round_trip_and_are_written_atomically(tmp_path):
    spec = get_task("LaMP-3")
    path = write_outputs(tmp_path / "out" / "p_outputs.json", spec, {"a": "5", "b": "1"})
    assert load_outputs(path) == ("LaMP_3", {"a": "5", "b": "1"})
    assert [p.name for p in path.parent.iterdir()] == ["p_outputs.json"]  # no temporary files left


def test_real_lamp_data_loads(lamp_data):
    d7 = load_split(lamp_data / "lamp7", "LaMP-7")
    assert len(d7.questions) == 1000 and len(d7.users()) == 1000
    assert all(q.query and not q.query.startswith("Paraphrase") for q in d7.questions)
    d3 = load_split(lamp_data / "lamp3", "LaMP-3")
    assert len(d3.questions) == 30 and len(d3.users()) == 6
    assert all(item["score"] in "12345" for q in d3.questions for item in q.profile)
