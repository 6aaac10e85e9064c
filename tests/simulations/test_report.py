"""The bar chart's value axis leaves room for the printed values and the oracle line."""

import pytest

from simulations.report import bar_axis_limit


@pytest.mark.parametrize("values, oracle", [([0.25, 0.41, 0.39], 0.431), ([0.25, 0.45], 0.43), ([3.3, 0.5], None)])
def test_the_axis_ends_past_the_longest_bar_and_the_oracle(values, oracle):
    limit = bar_axis_limit(values, oracle)
    top = max(values + ([oracle] if oracle is not None else []))
    assert limit >= top * 1.1, "the longest bar or the oracle line would touch the edge"
    assert limit <= top * 1.5, "the bars would be squeezed into a corner"


def test_an_all_zero_chart_still_has_an_axis():
    assert bar_axis_limit([0.0, 0.0]) == 1.0


# -- what a run prints (issue 29, item 6) -------------------------------------------------------------------------
def test_plain_drops_colours_cursor_moves_and_redrawn_bars():
    from simulations.report import plain

    assert (
        plain("\x1b[92mINFO \x1b[0m:      [ROUND 1/3] training on 8 of 8 clients")
        == "INFO :      [ROUND 1/3] training on 8 of 8 clients"
    )
    assert plain("\x1b[36m(ClientAppActor pid=8560)\x1b[0m warning") == "(ClientAppActor pid=8560) warning"
    assert plain("\x1b]8;;http://x\x07link\x1b]8;;\x07 \x1b[2K\x1b[1A") == "link "
    assert plain("Loading:   0%|  | 0/103\rLoading: 100%|##| 103/103\r") == "Loading: 100%|##| 103/103"
    assert plain("no codes at all") == "no codes at all"


def summary_of(methods: list[str], strongest: str = "input") -> dict:
    header = "| method | rouge-1 | rouge-L | n |\n|---|---|---|---|\n"
    table = (
        "### LaMP-7: federated HYDRA, 8 training / 4 test users\n\n"
        + header
        + "".join(f"| {m} | 0.5 | 0.5 | 4 |\n" for m in methods)
    )
    paired = {
        f"{m} vs {strongest}": {"n": 4, "mean_difference": 0.1, "interval": [-0.1, 0.3], "wins": 2, "losses": 1}
        for m in methods
        if m.startswith("fed-hydra")
    }
    paired["fed-hydra vs fed-hydra-shared-head"] = {
        "n": 4,
        "mean_difference": 0.0,
        "interval": [0.0, 0.0],
        "wins": 0,
        "losses": 0,
    }
    return {"method_table": table, "strongest_baseline": strongest, "paired_bootstrap": paired}


def test_the_printed_summary_is_the_table_one_comparison_the_plots_and_where_the_rest_is(tmp_path):
    from simulations.report import MORE_METHODS, console_summary

    (tmp_path / "metrics.png").write_bytes(b"png")
    text = console_summary(
        summary_of(["input", "rag-k4", "fed-hydra", "fed-hydra-shared-head"]),
        tmp_path,
        totals="wall time 9.0 s; LLM calls 3",
    )
    lines = text.splitlines()
    assert [line.split("|")[1].strip() for line in lines if line.startswith("| ") and "method" not in line] == [
        "input",
        "rag-k4",
        "fed-hydra",
        "fed-hydra-shared-head",
    ]
    assert [line for line in lines if " vs " in line] == [
        "fed-hydra vs input (the strongest baseline in the table): +0.1000 per question, 95% interval [-0.1000, "
        "+0.3000]; better on 2, worse on 1 of 4 questions"
    ]
    assert f"plots: {tmp_path / 'metrics.png'}" in lines  # only the plots that were drawn
    assert "wall time 9.0 s; LLM calls 3" in lines and MORE_METHODS in lines[-1]
    assert len(lines) <= 20


def test_the_centralized_runs_comparison_is_hydras_and_a_run_without_a_baseline_prints_none():
    from simulations.report import headline_comparison

    central = {
        "strongest_baseline": "rag-k4",
        "paired_bootstrap": {
            "hydra-shared-head vs rag-k4": {"n": 2, "mean_difference": 0.5, "interval": [0, 1], "wins": 1, "losses": 0},
            "hydra vs rag-k4": {"n": 2, "mean_difference": -0.5, "interval": [-1, 0], "wins": 0, "losses": 1},
        },
    }
    assert headline_comparison(central).startswith("hydra vs rag-k4 (the strongest baseline in the table): -0.5000")
    assert headline_comparison({"strongest_baseline": None, "paired_bootstrap": {}}) is None
