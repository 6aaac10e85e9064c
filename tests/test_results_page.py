"""docs/results.md is a page a user reads in minutes (issue 29, item 5): at most 250 lines, each plot it links there,
and each notebook section its "At a glance" table names a heading of docs/lab-notebook.md."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
MAX_LINES = 250


def test_the_results_page_is_short_and_its_plots_exist():
    text = (DOCS / "results.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES
    plots = re.findall(r"\]\((img/[^)]+\.png)\)", text)
    assert plots and all((DOCS / p).is_file() for p in plots)
    assert text.count("```bash") >= 8  # the commands that reproduce the headline figures


def test_each_headline_row_names_a_notebook_section():
    text = (DOCS / "results.md").read_text(encoding="utf-8")
    glance = text.split("## At a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in glance.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    headings = (DOCS / "lab-notebook.md").read_text(encoding="utf-8")
    assert len(rows) >= 8
    for row in rows:
        section = row.rstrip(" |").rsplit("|", 1)[1]
        quoted = re.findall(r'"([^"]+)"', section)
        assert quoted, row
        assert all(f"## {q}" in headings or q in headings for q in quoted), (row, quoted)
