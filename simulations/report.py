"""Result tables and plots of a run: one row per method, markdown and JSON, and a bar chart.

Example:
    >>> r = MethodResult("input", {"a": "x"}, {"rouge-1": 0.5, "rouge-L": 0.4}, 1.0, 0, 0)
    >>> r.row()["rouge-L"]
    0.4
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.io import atomic_write_text
from shared.metrics import primary_metric
from shared.tasks import TaskSpec

__all__ = ["MethodResult", "write_table", "plot_methods", "bar_axis_limit", "relative_gain"]


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
        return {"method": self.name, **{k: round(v, 4) for k, v in self.metrics.items()},
                "n": n, "llm_calls": self.llm_calls, "cache_hits": self.cache_hits,
                "llm_failures": self.llm_failures, "seconds": round(self.seconds, 1),
                "llm_per_answer": round((self.llm_calls + self.cache_hits) / n, 2) if n else 0.0,
                "llm_s_per_answer": round(self.llm_seconds / n, 3) if n else 0.0}


def relative_gain(value: float, reference: float, higher_is_better: bool) -> float:
    """Relative improvement of ``value`` over ``reference`` (positive is better), e.g. 0.09 for 9%.

    >>> round(relative_gain(0.5, 0.6, higher_is_better=False), 4)
    0.1667
    """
    if reference == 0:
        return 0.0
    return (value - reference) / abs(reference) if higher_is_better else (reference - value) / abs(reference)


def write_table(results: Sequence[MethodResult], task: TaskSpec, out_dir: str | Path, *,
                title: str, extra: Mapping[str, object] | None = None) -> str:
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
    atomic_write_text(out / "metrics.json", json.dumps({"task": task.name, "primary_metric": metric, "rows": rows,
                                                        **(extra or {})}, indent=1))
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


def plot_methods(rows: Sequence[Mapping[str, object]], task: TaskSpec, path: str | Path, *, title: str,
                 oracle: float | None = None, groups: Mapping[str, str] | None = None) -> Path:
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
        ax.text(v, bar.get_y() + bar.get_height() / 2, f" {v:.3f} ", va="center", fontsize=8,
                ha="right" if inside else "left", color="white" if inside else "black")
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
