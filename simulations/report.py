r"""Result tables and plots of a run: one row per method, markdown and JSON, a bar chart, and what a run prints.

Example:
    >>> r = MethodResult("input", {"a": "x"}, {"rouge-1": 0.5, "rouge-L": 0.4}, 1.0, 0, 0)
    >>> r.row()["rouge-L"]
    0.4
    >>> plain("\x1b[92mINFO \x1b[0m: [ROUND 1/3]")
    'INFO : [ROUND 1/3]'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.io import atomic_write_text
from shared.metrics import primary_metric
from shared.tasks import TaskSpec

__all__ = [
    "MethodResult",
    "write_table",
    "plot_methods",
    "bar_axis_limit",
    "relative_gain",
    "plain",
    "headline_comparison",
    "console_summary",
    "MORE_METHODS",
]

MORE_METHODS = '--run-config "eval.methods=all"'
"""How a run evaluates every baseline and HYDRA variant, not only the default ones (config key ``eval.methods``)."""

_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
"""A terminal escape sequence: CSI (colours, cursor moves), OSC (titles, links), or a two-character one."""


@dataclass
class MethodResult:
    """Predictions and figures of one method."""

    name: str
    predictions: dict[str, str]
    metrics: dict[str, float]
    seconds: float
    llm_calls: int
    cache_hits: int
    llm_failures: int = 0
    llm_seconds: float = 0.0

    def row(self) -> dict[str, float | str]:
        """The table row: metrics, questions, LLM requests sent and cache hits, failures, wall seconds, and per answer
        the LLM answers used (sent + cached: the cost on a cold cache) and the requests' seconds."""
        n = len(self.predictions)
        return {
            "method": self.name,
            **{k: round(v, 4) for k, v in self.metrics.items()},
            "n": n,
            "llm_calls": self.llm_calls,
            "cache_hits": self.cache_hits,
            "llm_failures": self.llm_failures,
            "seconds": round(self.seconds, 1),
            "llm_per_answer": round((self.llm_calls + self.cache_hits) / n, 2) if n else 0.0,
            "llm_s_per_answer": round(self.llm_seconds / n, 3) if n else 0.0,
        }


def relative_gain(value: float, reference: float, higher_is_better: bool) -> float:
    """Relative improvement of ``value`` over ``reference`` (positive is better), e.g. 0.09 for 9%.

    >>> round(relative_gain(0.5, 0.6, higher_is_better=False), 4)
    0.1667
    """
    if reference == 0:
        return 0.0
    return (value - reference) / abs(reference) if higher_is_better else (reference - value) / abs(reference)


def write_table(
    results: Sequence[MethodResult],
    task: TaskSpec,
    out_dir: str | Path,
    *,
    title: str,
    extra: Mapping[str, object] | None = None,
) -> str:
    """Write ``metrics.json`` and ``metrics.md`` (a markdown table, best primary metric marked); return the markdown."""
    rows = [r.row() for r in results]
    metric, higher = primary_metric(task)
    best = (max if higher else min)(rows, key=lambda r: r[metric])["method"] if rows else None
    columns = list(rows[0]) if rows else []
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"**{v}**" if (c == metric and r["method"] == best) else str(v) for c, v in r.items()]
        lines.append("| " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    out = Path(out_dir)
    atomic_write_text(out / "metrics.md", markdown)
    atomic_write_text(
        out / "metrics.json",
        json.dumps({"task": task.name, "primary_metric": metric, "rows": rows, **(extra or {})}, indent=1),
    )
    return markdown


def bar_axis_limit(values: Sequence[float], oracle: float | None = None, *, room: float = 0.15) -> float:
    """The right end of a bar chart's value axis: the largest bar or oracle line plus ``room`` of it, leaving
    space for the legend and for values printed after short bars.

    Example:
        >>> round(bar_axis_limit([0.2, 0.4], oracle=0.44), 3)
        0.506
        >>> bar_axis_limit([0.0])
        1.0
    """
    top = max([*values, *([] if oracle is None else [oracle])], default=0.0)
    return top * (1.0 + room) if top > 0 else 1.0


def plot_methods(
    rows: Sequence[Mapping[str, object]],
    task: TaskSpec,
    path: str | Path,
    *,
    title: str,
    oracle: float | None = None,
    groups: Mapping[str, str] | None = None,
) -> Path:
    """A horizontal bar chart of the primary metric per method (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, higher = primary_metric(task)
    names = [str(r["method"]) for r in rows]
    values = [float(r[metric]) for r in rows]  # type: ignore[arg-type]
    colours = {"baseline": "#9e9e9e", "hydra": "#1f77b4", "federated": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    bars = ax.barh(names, values, color=[colours.get((groups or {}).get(n, "baseline"), "#9e9e9e") for n in names])
    limit = bar_axis_limit(values, oracle)
    for bar, v in zip(bars, values):  # inside the bar's end (clear of an oracle line), after a short bar
        inside = v > 0.2 * limit
        ax.text(
            v,
            bar.get_y() + bar.get_height() / 2,
            f" {v:.3f} ",
            va="center",
            fontsize=8,
            ha="right" if inside else "left",
            color="white" if inside else "black",
        )
    if oracle is not None:
        ax.axvline(oracle, color="#d62728", linestyle="--", linewidth=1, label=f"pool oracle {oracle:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0.0, limit)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plain(line: str) -> str:
    r"""One line of another program's output as plain text: no terminal escape codes (colours, cursor moves), and of
    a line a progress bar redrew with carriage returns only its last state.

    >>> plain("Loading:   0%|   | 0/9\rLoading: 100%|###| 9/9\r")
    'Loading: 100%|###| 9/9'
    """
    text = _ESCAPE.sub("", line)
    parts = [p for p in text.split("\r") if p.strip()]
    return parts[-1] if parts else text.replace("\r", "")


def headline_comparison(summary: Mapping[str, Any]) -> str | None:
    """The one paired comparison a run prints: HYDRA (``fed-hydra`` in a federated run) against the run's strongest
    baseline, from ``summary["paired_bootstrap"]`` (per question, HYDRA's score minus the baseline's: > 0 is better);
    None when the run has no such pair.

    >>> print(headline_comparison({"strongest_baseline": "input", "paired_bootstrap": {"fed-hydra vs input": {
    ...     "n": 4, "mean_difference": 0.0888, "interval": [-0.0891, 0.2667], "wins": 2, "losses": 2}}}))
    ... # doctest: +NORMALIZE_WHITESPACE
    fed-hydra vs input (the strongest baseline in the table): +0.0888 per question, 95% interval [-0.0891, +0.2667];
    better on 2, worse on 2 of 4 questions
    """
    strongest = summary.get("strongest_baseline")
    paired = summary.get("paired_bootstrap") or {}
    for name in ("fed-hydra", "hydra"):
        c = paired.get(f"{name} vs {strongest}")
        if strongest and c:
            low, high = c["interval"]
            return (
                f"{name} vs {strongest} (the strongest baseline in the table): {c['mean_difference']:+.4f} per "
                f"question, 95% interval [{low:+.4f}, {high:+.4f}]; better on {c['wins']}, worse on {c['losses']} "
                f"of {c['n']} questions"
            )
    return None


def console_summary(summary: Mapping[str, Any], out: str | Path, *, totals: str = "") -> str:
    """What ``fedhydra run`` and ``simulate`` print when they are done (one screen; the files hold the rest): the
    table of the methods run, HYDRA against the strongest baseline, the plots, ``totals`` (a line of time and cost),
    and where the rest is."""
    out = Path(out)
    lines = [str(summary["method_table"]).rstrip(), ""]
    comparison = headline_comparison(summary)
    if comparison:
        lines.append(comparison)
    plots = [str(out / name) for name in ("metrics.png", "rounds.png") if (out / name).exists()]
    if plots:
        lines.append("plots: " + ", ".join(plots))
    if totals:
        lines.append(totals)
    lines.append(
        f"everything is in {out} (metrics.md: every paired comparison and the LLM cost per stage); every "
        f"baseline and HYDRA variant: {MORE_METHODS}"
    )
    return "\n".join(lines)
