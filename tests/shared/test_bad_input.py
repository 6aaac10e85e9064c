"""Bad input end to end: every malformed file, type or name gets one clear error line that names the place,
and a run that fails leaves no output that looks complete.

The command line is driven in-process through ``simulations.cli.main`` (status 2 and one
``fedhydra <command>: error: ...`` line on stderr). No LLM is needed: the baseline runs use the non-LLM
methods only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import shared.io
from client.sdk import PersonalClient
from shared.data import load_outputs, load_questions, write_outputs
from shared.errors import DataFormatError
from shared.hydra.context import UserContext
from shared.io import atomic_write_text
from shared.prompts import build_messages
from shared.retrieval import bm25_scores, bm25_top_k
from shared.tasks import get_task, task_names
from simulations.cli import main

R3 = get_task("LaMP-3").instruction  # "What is the score of the following review ... review: "


# -- helpers ---------------------------------------------------------------------------------------------
def outputs_file(path: Path, golds: dict[str, str] | list, task: str = "LaMP_3") -> Path:
    rows = golds if isinstance(golds, list) else [{"id": k, "output": v} for k, v in golds.items()]
    path.write_text(json.dumps({"task": task, "golds": rows}), encoding="utf-8")
    return path


def lamp3_split(folder: Path, n: int = 4, *, score=lambda i: "4") -> Path:
    """A small, valid LaMP-3 split (``dev_questions.json`` + ``dev_outputs.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    qs = [
        {
            "id": str(i),
            "input": R3 + f"review {i}",
            "profile": [{"id": f"p{i}", "text": "fine", "score": score(i)}, {"text": "meh", "score": "3"}],
        }
        for i in range(n)
    ]
    (folder / "dev_questions.json").write_text(json.dumps(qs), encoding="utf-8")
    outputs_file(folder / "dev_outputs.json", {str(i): "4" for i in range(n)})
    return folder


def one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fedhydra {command}: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture
def cli_baseline():
    """``fedhydra baseline`` as ``main`` runs it."""
    return lambda *args: main(["baseline", *map(str, args)])


# -- fedhydra eval -------------------------------------------------------------------------------------------
def test_eval_with_a_golds_file_that_is_not_utf8(tmp_path, capsys):
    golds = tmp_path / "g.json"
    blob = '{"task": "LaMP_3", "golds": [{"id": "1", "output": "café"}]}'.encode("latin-1")  # not UTF-8
    golds.write_bytes(blob)
    preds = outputs_file(tmp_path / "p.json", {"1": "4"})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds)]) == 2
    line = one_error_line(capsys, "eval")
    assert f"{golds}: not UTF-8 (byte {blob.index(0xE9)}: b'\\xe9')" in line


def test_eval_with_a_duplicate_id_in_the_golds(tmp_path, capsys):
    golds = outputs_file(
        tmp_path / "g.json", [{"id": "a", "output": "4"}, {"id": "b", "output": "2"}, {"id": "a", "output": "5"}]
    )
    preds = outputs_file(tmp_path / "p.json", {"a": "4", "b": "2"})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds)]) == 2
    line = one_error_line(capsys, "eval")
    assert f"{golds}: item 2, field 'id': duplicate id 'a'" in line


def test_eval_with_predictions_missing_an_id(tmp_path, capsys):
    golds = outputs_file(tmp_path / "g.json", {"a": "4", "b": "2", "c": "1"})
    preds = outputs_file(tmp_path / "p.json", {"a": "4", "c": "1"})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds)]) == 2
    line = one_error_line(capsys, "eval")
    assert f"{preds}: ids do not match {golds}: 1 missing (e.g. ['b'])" in line
    assert capsys.readouterr().out == ""  # no metrics printed


@pytest.mark.parametrize(
    "payload,needle",
    [
        ({"golds": []}, "no 'task' field; pass --task"),
        (
            {"task": "LaMP_3", "golds": [{"id": ["x"], "output": "4"}]},
            "item 0, field 'id': expected a string, got list",
        ),
        ({"task": "LaMP_3", "golds": {"id": "1"}}, "field 'golds': expected a list, got dict"),
    ],
)
def test_eval_with_other_malformed_golds(tmp_path, capsys, payload, needle):
    golds = tmp_path / "g.json"
    golds.write_text(json.dumps(payload), encoding="utf-8")
    preds = outputs_file(tmp_path / "p.json", {})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds)]) == 2
    line = one_error_line(capsys, "eval")
    assert str(golds) in line and needle in line


def test_eval_with_an_unknown_task_flag(tmp_path, capsys):
    golds = outputs_file(tmp_path / "g.json", {"a": "4"})
    preds = outputs_file(tmp_path / "p.json", {"a": "4"})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds), "--task", "LaMP-9"]) == 2
    line = one_error_line(capsys, "eval")
    assert "unknown task 'LaMP-9'; known tasks: " + ", ".join(task_names()) in line


def test_eval_with_an_unknown_task_in_the_golds_file(tmp_path, capsys):
    golds = outputs_file(tmp_path / "g.json", {"a": "4"}, task="LaMP_9")
    preds = outputs_file(tmp_path / "p.json", {"a": "4"})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds)]) == 2
    line = one_error_line(capsys, "eval")
    assert "unknown task 'LaMP_9'; known tasks: " + ", ".join(task_names()) in line
    assert f"{golds}: field 'task'" in line


def test_eval_with_missing_files(tmp_path, capsys):
    preds = outputs_file(tmp_path / "p.json", {})
    assert main(["eval", "--golds", str(tmp_path / "nope.json"), "--preds", str(preds)]) == 2
    assert f"{tmp_path / 'nope.json'}: file not found" in one_error_line(capsys, "eval")
    assert main(["eval", "--golds", str(tmp_path), "--preds", str(preds)]) == 2  # a directory
    assert f"{tmp_path}: cannot read" in one_error_line(capsys, "eval")


def test_eval_with_a_non_numeric_rating_gold(tmp_path, capsys):
    golds = outputs_file(tmp_path / "g.json", {"a": "4", "b": "three"})
    preds = outputs_file(tmp_path / "p.json", {"a": "4", "b": "3"})
    assert main(["eval", "--golds", str(golds), "--preds", str(preds)]) == 2
    line = one_error_line(capsys, "eval")
    assert str(golds) in line and "'b'" in line and "three" in line


# -- fedhydra baseline -----------------------------------------------------------------------------------------
def test_baseline_cli_runs_at_all(tmp_path, capsys):
    data = lamp3_split(tmp_path / "data")
    assert (
        main(
            [
                "baseline",
                "--data",
                str(data),
                "--task",
                "LaMP-3",
                "--method",
                "majority",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "metrics.json").exists()


def test_a_good_baseline_run_writes_metrics(tmp_path, cli_baseline, capsys):
    """The control for the failure cases below: the same command on good data writes metrics.json."""
    data = lamp3_split(tmp_path / "data")
    out = tmp_path / "out"
    assert (
        cli_baseline("--data", data, "--task", "LaMP-3", "--method", "majority", "--method", "user-mean", "--out", out)
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "majority_outputs.json",
        "metrics.json",
        "metrics.md",
        "user-mean_outputs.json",
    ]
    assert json.loads((out / "metrics.json").read_text())["rows"][0]["MAE"] == 0.0


def test_baseline_with_an_unknown_task(tmp_path, cli_baseline, capsys):
    data = lamp3_split(tmp_path / "data")
    assert cli_baseline("--data", data, "--task", "LaMP-42", "--method", "majority", "--out", tmp_path / "out") == 2
    line = one_error_line(capsys, "baseline")
    assert "unknown task 'LaMP-42'; known tasks: " + ", ".join(task_names()) in line
    assert not (tmp_path / "out").exists()


def test_baseline_with_no_questions_file(tmp_path, cli_baseline, capsys):
    data = tmp_path / "empty"
    data.mkdir()
    (data / "dev_outputs.json").write_text('{"task": "LaMP_3", "golds": []}')
    assert cli_baseline("--data", data, "--task", "LaMP-3", "--method", "majority", "--out", tmp_path / "out") == 2
    line = one_error_line(capsys, "baseline")
    assert f"{data}: expected exactly one *_questions.json (found none)" in line
    assert not (tmp_path / "out").exists()


def test_baseline_with_a_data_path_that_is_not_a_directory(tmp_path, cli_baseline, capsys):
    assert (
        cli_baseline(
            "--data", tmp_path / "missing", "--task", "LaMP-3", "--method", "majority", "--out", tmp_path / "out"
        )
        == 2
    )
    assert f"{tmp_path / 'missing'}: not a directory" in one_error_line(capsys, "baseline")


def test_baseline_with_a_wrong_type_at_item_3_leaves_no_metrics(tmp_path, cli_baseline, capsys):
    data = lamp3_split(tmp_path / "data", n=5)
    qs = json.loads((data / "dev_questions.json").read_text())
    qs[3]["input"] = ["not", "a", "string"]
    (data / "dev_questions.json").write_text(json.dumps(qs))
    out = tmp_path / "out"
    out.mkdir()
    assert cli_baseline("--data", data, "--task", "LaMP-3", "--method", "majority", "--out", out) == 2
    line = one_error_line(capsys, "baseline")
    assert f"{data / 'dev_questions.json'}: item 3, field 'input': expected a string, got list" in line
    assert list(out.iterdir()) == []  # neither metrics.json nor any predictions file


def test_baseline_with_golds_that_do_not_match_the_questions(tmp_path, cli_baseline, capsys):
    data = lamp3_split(tmp_path / "data", n=3)
    outputs_file(data / "dev_outputs.json", {"0": "4", "1": "4", "9": "4"})
    out = tmp_path / "out"
    assert cli_baseline("--data", data, "--task", "LaMP-3", "--method", "majority", "--out", out) == 2
    line = one_error_line(capsys, "baseline")
    assert (
        f"{data / 'dev_outputs.json'}: golds do not match the questions: 1 missing (e.g. ['2']), 1 unknown (e.g. ['9'])"
        in line
    )
    assert not (out / "metrics.json").exists()


def test_baseline_with_a_non_numeric_profile_score(tmp_path, cli_baseline, capsys):
    data = lamp3_split(tmp_path / "data", score=lambda i: "great" if i == 2 else "4")
    out = tmp_path / "out"
    assert (
        cli_baseline("--data", data, "--task", "LaMP-3", "--method", "majority", "--method", "user-mean", "--out", out)
        == 2
    )
    line = one_error_line(capsys, "baseline")
    assert f"{data / 'dev_questions.json'}: item 2, field 'profile[0].score'" in line
    assert not out.exists() or list(out.iterdir()) == []


# -- the loader's JSON layer ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "blob",
    [b'[{"id": ' + b"9" * 5000 + b', "input": "x", "profile": []}]', b"[" * 100_000 + b"]" * 100_000],
    ids=["huge-integer", "deep-nesting"],
)
def test_hostile_json_is_a_data_format_error(tmp_path, blob):
    path = tmp_path / "dev_questions.json"
    path.write_bytes(blob)
    with pytest.raises(DataFormatError, match=str(path)):
        load_questions(path, "LaMP-7")


def test_lone_surrogate_escapes_are_rejected_or_round_trip(tmp_path):
    path = tmp_path / "dev_questions.json"
    path.write_text('[{"id": "a\\ud800", "input": "x", "profile": []}]', encoding="ascii")
    try:
        (q,) = load_questions(path, "LaMP-7")
    except DataFormatError as exc:  # rejected, naming the place
        assert (exc.index, exc.field) == (0, "id") and str(path) in str(exc)
        return
    out = write_outputs(tmp_path / "p_outputs.json", get_task("LaMP-7"), {q.id: q.input})
    assert load_outputs(out)[1] == {q.id: q.input}


def test_empty_and_bom_files(tmp_path):
    empty = tmp_path / "a_questions.json"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="^" + re.escape(f"{empty}: invalid JSON at line 1, column 1")):
        load_questions(empty, "LaMP-7")
    bom = tmp_path / "b_questions.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"id": 1, "input": "x", "profile": []}]).encode())
    assert [q.id for q in load_questions(bom, "LaMP-7")] == ["1"]  # a UTF-8 byte-order mark is fine


def test_int_and_string_ids_that_collide_are_duplicates(tmp_path):
    path = tmp_path / "q_questions.json"
    path.write_text(json.dumps([{"id": 1, "input": "x", "profile": []}, {"id": "1", "input": "y", "profile": []}]))
    with pytest.raises(DataFormatError, match=r"item 1, field 'id': duplicate id '1' \(first at item 0\)"):
        load_questions(path, "LaMP-7")


def test_unknown_task_name_given_to_the_loader(tmp_path):
    path = tmp_path / "q_questions.json"
    path.write_text("[]")
    with pytest.raises(KeyError, match="unknown task 'LaMP-0'; known tasks: LaMP-1"):
        load_questions(path, "LaMP-0")


# -- the on-device SDK ---------------------------------------------------------------------------------------
@pytest.fixture
def client(tmp_path):
    return PersonalClient(tmp_path / "store", task="LaMP-3", llm="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(
    "items,needle",
    [
        (
            [{"text": "ok", "score": "3"}, {"text": "x", "score": None}],
            "item 1, field 'score': expected text, got NoneType",
        ),
        (
            [{"text": "ok", "score": "3"}, {"text": "x", "score": True}],
            "item 1, field 'score': expected text, got bool",
        ),
        ([{"text": {"a": 1}, "score": "3"}], "item 0, field 'text': expected text, got dict"),
        ([{"text": b"bytes", "score": "3"}], "item 0, field 'text': expected text, got bytes"),
        ([{"text": "ok", "score": "3"}, {"text": "ok", "score": "3"}, {"score": "3"}], "item 2, field 'text': missing"),
        ([{"text": "ok", "score": "3"}, {}], "item 1, field 'text': missing"),
        ([{"text": "ok", "score": "3"}, "just a string"], "item 1: expected an object, got str"),
        ([None], "item 0: expected an object, got NoneType"),
        ([{"text": "ok", "score": "6"}], "item 0, field 'score': '6' is not one of"),
    ],
)
def test_add_history_rejects_bad_items_by_index_and_field(client, items, needle):
    client.add_history([{"id": "keep", "text": "kept", "score": "5"}])
    with pytest.raises(DataFormatError) as err:
        client.add_history(items)
    assert str(err.value).startswith("add_history: ") and needle in str(err.value)
    assert client.history == [{"id": "keep", "text": "kept", "score": "5"}]  # nothing of the bad batch is stored


@pytest.mark.parametrize("task", task_names())
def test_add_history_names_the_missing_field_for_every_task(tmp_path, task):
    spec = get_task(task)
    c = PersonalClient(tmp_path / "s", task=task, llm="http://127.0.0.1:9/v1")
    last = spec.profile_fields[-1]
    item = {name: (spec.labels[0] if spec.labels else "x") for name in spec.profile_fields}
    del item[last]
    with pytest.raises(DataFormatError, match=rf"add_history: item 0, field '{last}': missing"):
        c.add_history([item])
    assert c.history == []


# -- empty profiles ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", task_names())
def test_an_empty_profile_is_answered_without_errors(task):
    spec = get_task(task)
    assert bm25_top_k("any query at all", [], 4) == [] and bm25_scores("q", []) == []
    ctx = UserContext.build(spec, [])
    assert ctx.items == () and ctx.texts == () and ctx.answers == ()
    assert ctx.mean_score is None
    assert ctx.label_prior == {}  # no prior without history (not a division by zero)
    assert build_messages(spec, spec.instruction + "q", []) == [{"role": "user", "content": spec.instruction + "q"}]


def test_an_empty_profile_loads_and_keeps_the_question(tmp_path):
    path = tmp_path / "q_questions.json"
    path.write_text(json.dumps([{"id": "1", "input": R3 + "ok", "profile": []}]))
    (q,) = load_questions(path, "LaMP-3")
    assert q.profile == () and q.profile_texts(get_task("LaMP-3")) == [] and q.query == "ok"


# -- atomic writes: a failed write leaves the old file and no temporary file ---------------------------------
class Boom(Exception):
    pass


@pytest.mark.parametrize("where", ["replace", "fsync", "write", "interrupt"])
def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, where):
    target = tmp_path / "metrics.json"
    target.write_text("old, complete")

    def fail(*args, **kwargs):
        raise KeyboardInterrupt if where == "interrupt" else Boom(where)

    real_fdopen = os.fdopen

    class HalfWriter:
        """A file whose write puts half of the data on disk and then fails (disk full)."""

        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()
            return False

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise Boom("disk full")

    with pytest.MonkeyPatch.context() as mp:
        if where in ("replace", "interrupt"):
            mp.setattr(shared.io.os, "replace", fail)
        elif where == "fsync":
            mp.setattr(shared.io.os, "fsync", fail)
        else:
            mp.setattr(shared.io.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
        with pytest.raises((Boom, KeyboardInterrupt)):
            atomic_write_text(target, "new " * 10_000)
    assert target.read_text() == "old, complete"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_write_outputs_failure_keeps_previous_predictions(tmp_path):
    spec = get_task("LaMP-7")
    path = write_outputs(tmp_path / "rag_outputs.json", spec, {"1": "old"})

    def no_space(*args):
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shared.io.os, "replace", no_space)
        with pytest.raises(OSError, match="No space left"):
            write_outputs(path, spec, {"1": "new", "2": "new"})
    assert load_outputs(path) == ("LaMP_7", {"1": "old"})
    assert [p.name for p in tmp_path.iterdir()] == ["rag_outputs.json"]


def test_unencodable_text_fails_before_any_file_is_touched(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "bad \ud800")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]
