"""Issue 28, item 15: the ``fedhydra`` command refuses every nonsense value with one line on stderr and exit status
2, and writes nothing when it refuses.

Driven in-process through ``simulations.cli.main``; no LLM is reached (the refusals come first, and the runs that
could call one get an address where nothing listens).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from shared.synthetic import write_synthetic
from simulations.cli import build_parser, main

SQLITE_HEADER = b"SQLite format 3\x00"

R3 = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without "
    "further explanation. review: "
)
NOWHERE = "http://127.0.0.1:9/v1"  # the discard port: nothing answers there


def lamp3(folder: Path, n: int = 4, *, golds: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    qs = [
        {"id": str(i), "input": R3 + f"review {i}", "profile": [{"id": f"p{i}", "text": "fine", "score": "4"}]}
        for i in range(n)
    ]
    (folder / "dev_questions.json").write_text(json.dumps(qs), encoding="utf-8")
    if golds:
        (folder / "dev_outputs.json").write_text(
            json.dumps({"task": "LaMP_3", "golds": [{"id": str(i), "output": "4"} for i in range(n)]}), encoding="utf-8"
        )
    return folder


def refused(capsys, command: str, argv: list) -> str:
    """Run ``fedhydra <argv>``; assert status 2, exactly one ``fedhydra <command>: error:`` line, nothing on stdout."""
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert status == 2, (captured.out, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fedhydra {command}: error: "), lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- fedhydra eval ---------------------------------------------------------------------------------------------
def test_eval_with_empty_golds_is_refused(tmp_path, capsys):
    golds = tmp_path / "g.json"
    golds.write_text('{"task": "LaMP_3", "golds": []}')
    line = refused(capsys, "eval", ["eval", "--golds", golds, "--preds", golds])
    assert "no golds to score" in line


# -- fedhydra baseline -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("--users", -1, "argument --users: must be an integer in 1..1000000, got '-1'"),
        ("--users", 0, "argument --users: must be an integer in 1..1000000, got '0'"),
        ("--offset", -2, "argument --offset: must be an integer in 0..1000000, got '-2'"),
        ("--offset", 100, "--offset must be an integer in 0..3 (the data has 4 users), got 100"),
        ("--offset", 4, "--offset must be an integer in 0..3 (the data has 4 users), got 4"),
        ("--k", 0, "argument --k: must be an integer in 1..100, got '0'"),
        ("--k", -1, "argument --k: must be an integer in 1..100, got '-1'"),
        ("--users", "1e3", "argument --users: must be an integer"),
        ("--timeline-questions", 0, "argument --timeline-questions: must be an integer in 1..1000"),
        ("--llm-timeout", "nan", "argument --llm-timeout: must be a number in 0.001..3600, got 'nan'"),
        ("--llm-timeout", "inf", "argument --llm-timeout: must be a number"),
        ("--llm-timeout", 0, "argument --llm-timeout: must be a number"),
        ("--llm-concurrency", 0, "argument --llm-concurrency: must be an integer in 1..256"),
        ("--split", "../dev", "argument --split: must be a plain name"),
    ],
)
def test_baseline_refuses_an_out_of_range_flag_and_writes_nothing(tmp_path, capsys, flag, value, needle):
    data = lamp3(tmp_path / "data")
    out = tmp_path / "out"
    line = refused(
        capsys,
        "baseline",
        [
            "baseline",
            "--data",
            data,
            "--task",
            "LaMP-3",
            "--method",
            "majority",
            "--llm-url",
            NOWHERE,
            "--out",
            out,
            flag,
            value,
        ],
    )
    assert needle in line
    assert not out.exists()


def test_baseline_without_an_outputs_file_is_refused(tmp_path, capsys):
    data = lamp3(tmp_path / "data", golds=False)
    out = tmp_path / "out"
    line = refused(
        capsys, "baseline", ["baseline", "--data", data, "--task", "LaMP-3", "--method", "majority", "--out", out]
    )
    assert "no *_outputs.json with the golds" in line
    assert not out.exists()


def test_baseline_with_out_naming_an_existing_file_is_refused_and_the_file_kept(tmp_path, capsys):
    data = lamp3(tmp_path / "data")
    out = tmp_path / "taken.txt"
    out.write_text("mine")
    line = refused(
        capsys, "baseline", ["baseline", "--data", data, "--task", "LaMP-3", "--method", "majority", "--out", out]
    )
    assert "argument --out: must be a folder" in line
    assert out.read_text() == "mine"
    below = out / "sub"
    refused(
        capsys, "baseline", ["baseline", "--data", data, "--task", "LaMP-3", "--method", "majority", "--out", below]
    )


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all\n" * 40, SQLITE_HEADER + b"\x07" * 8000],  # a right header over damaged pages
    ids=["garbage", "damaged-pages"],
)
def test_baseline_with_a_garbage_llm_cache_is_refused(tmp_path, capsys, content):
    data = lamp3(tmp_path / "data")
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(content)
    out = tmp_path / "out"
    line = refused(
        capsys,
        "baseline",
        [
            "baseline",
            "--data",
            data,
            "--task",
            "LaMP-3",
            "--method",
            "rag",
            "--llm-url",
            NOWHERE,
            "--llm-cache",
            cache,
            "--out",
            out,
        ],
    )
    assert "llm-cache" in line
    assert not out.exists() and cache.read_bytes() == content


# -- fedhydra run / simulate -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "simulate"])
def test_a_run_refused_for_its_users_leaves_nothing_behind(tmp_path, capsys, monkeypatch, command):
    """Synthetic users (empty ``data.dir``): more users asked for than are generated. The refusal used to come after
    ``out/data`` was written."""
    monkeypatch.setenv("FEDHYDRA_LLM_BASE_URL", NOWHERE)
    out = tmp_path / "out"
    line = refused(
        capsys,
        command,
        [
            command,
            "--out",
            out,
            "--task",
            "LaMP-7",
            "--train-users",
            "4",
            "--test-users",
            "4",
            "--run-config",
            "data.synthetic-users=3",
            "--llm-url",
            NOWHERE,
        ],
    )
    assert "asked for 4 training and 4 test users, the data has 3" in line
    assert tree(out) == []


@pytest.mark.parametrize("command", ["run", "simulate"])
def test_a_run_refused_for_a_garbage_llm_cache_leaves_nothing_behind(tmp_path, capsys, monkeypatch, command):
    data = write_synthetic(tmp_path / "data", "LaMP-7", n_users=4, items_per_user=6, seed=1)
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(SQLITE_HEADER + b"\x07" * 8000)
    out = tmp_path / "out"
    line = refused(
        capsys,
        command,
        [
            command,
            "--out",
            out,
            "--data",
            data,
            "--task",
            "LaMP-7",
            "--train-users",
            "2",
            "--test-users",
            "2",
            "--llm-url",
            NOWHERE,
            "--llm-cache",
            cache,
        ],
    )
    assert "llm-cache" in line
    assert tree(out) == []


# -- every subcommand ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["synth", "--users", "0"],
        ["synth", "--users", "-5"],
        ["synth", "--items", "0"],
        ["synth", "--questions", "0"],
        ["synth", "--seed", "-1"],
        ["synth", "--users", "100001"],
        ["llm", "serve", "--port", "70000"],
        ["llm", "serve", "--threads", "0"],
        ["llm", "serve", "--slots", "0"],
        ["llm", "serve", "--ctx", "1"],
        ["simulate", "--client-cpus", "0"],
        ["simulate", "--client-cpus", "-1"],
        ["run", "--llm-model", "bad\x00name"],
        ["run", "--run-config", "x" * 5000],
        ["run", "--split", "a/b"],
    ],
)
def test_every_subcommand_refuses_out_of_range_values_when_parsing(tmp_path, capsys, argv):
    """Refused by the parser, before anything runs (no server started, no file written), naming the flag and
    what it must be."""
    out = tmp_path / "out"
    line = refused(capsys, argv[0], [*argv, "--out", out] if argv[0] != "llm" else argv)
    flag = next(a for a in argv if a.startswith("--"))
    assert f"argument {flag}: must " in line
    assert not out.exists()


def test_synth_refuses_more_items_than_its_cap(tmp_path, capsys):
    from simulations.cli import SYNTH_MAX_ITEMS

    out = tmp_path / "out"
    line = refused(capsys, "synth", ["synth", "--users", "100000", "--items", "10000", "--out", out])
    assert f"must be at most {SYNTH_MAX_ITEMS:,}" in line
    assert not out.exists()


def _actions():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            yield name, action


RUN_CONFIG_FLAGS = {"--train-users", "--test-users", "--seed", "--num-rounds"}
"""Keys of the run config, bounded by shared.config when the run builds its config (not by the parser)."""


def test_no_flag_takes_an_unbounded_number():
    """Every numeric flag of every subcommand gets its type from the one bounded helper (its range in BOUNDS),
    except the run-config keys, which the run config bounds."""
    for command, action in _actions():
        if action.type in (int, float):
            assert set(action.option_strings) & RUN_CONFIG_FLAGS and command in ("run", "simulate"), (
                command,
                action.option_strings,
            )


def test_each_bound_refuses_both_sides_and_non_numbers():
    from simulations.cli_args import BOUNDS, bounded

    for flag, bound in BOUNDS.items():
        parse = bounded(flag)
        step = 1 if bound.integer else 1e-3
        assert parse(repr(bound.lo)) == bound.lo and parse(repr(bound.hi)) == bound.hi
        for text in (
            repr(bound.lo - step),
            repr(bound.hi + step),
            "nan",
            "inf",
            "-inf",
            "",
            "1" * 400,
            "1_0",
            "0x10",
            "12abc",
        ):
            with pytest.raises(argparse.ArgumentTypeError):
                parse(text)
        if bound.integer:
            with pytest.raises(argparse.ArgumentTypeError):
                parse(f"{bound.lo}.5")
        else:
            assert math.isclose(parse(str((bound.lo + bound.hi) / 2)), (bound.lo + bound.hi) / 2)


def test_baseline_reads_its_settings_from_the_validated_run_config():
    """``baseline``'s flags land on the run config's keys (BASELINE_FLAGS), checked there like ``--run-config``; a flag
    not given takes the table's value."""
    from shared.config import default_mapping
    from simulations.cli import _baseline_config

    base = ["baseline", "--data", "d", "--task", "LaMP-3", "--method", "rag", "--out", "o"]
    cfg = _baseline_config(build_parser().parse_args(base))
    table = default_mapping()
    assert (cfg.llm_concurrency, cfg.llm_timeout, cfg.timeline_questions) == (
        table["llm.concurrency"],
        table["llm.timeout"],
        table["data.timeline-questions"],
    )
    flags = ["--llm-concurrency", "7", "--llm-timeout", "2.5", "--timeline-questions", "12"]
    cfg = _baseline_config(build_parser().parse_args(base + flags))
    assert (cfg.llm_concurrency, cfg.llm_timeout, cfg.timeline_questions) == (7, 2.5, 12)
