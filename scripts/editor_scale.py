"""How the input editor's edits of LaMP-7 inputs gain over the input as it learns from more training users, and what
readability costs.

No LLM and no model but the editor (:class:`shared.hydra.editor.InputEditor`): it is fitted on the (input, gold)
pairs of the first N users of the data (as the run's training users would teach it), with each user's history word
counts, and scored on later users that are also training users of a run (never on a run's test users): ROUGE-L of
each fixed compression level (:func:`shared.hydra.editor.f1_optimal_keep`) against the input returned unchanged,
and the oracle of the input and the levels. The figures motivate ``data.free-train-users`` (docs/lab-notebook.md).

Each level is shown twice: the editor free to drop any word (as it was before issue 27: ROUGE rewards deleting, and
most of those edits are broken sentences), and the editor as HYDRA's pool now uses it, dropping fillers only and
writing the result the user's way (:func:`shared.hydra.candidates.filler_edit`, :class:`shared.style.StyleHabits`).
Each cell gives the broken share (:func:`shared.readability.is_broken`) after the interval.

    .venv/bin/python scripts/editor_scale.py --data ../shared/data/lamp/lamp7 --eval-users 400:500

With ``--out DIR`` it also writes, for the editor of the last ``--train`` value, each level's predictions as
``edit-<level>_outputs.json``: "the input edited by word statistics", the simple personal baseline of a run whose
test users are ``--eval-users`` (compare them with ``scripts/compare_runs.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import group_by_user, load_split, write_outputs
from shared.hydra.candidates import filler_edit
from shared.hydra.editor import InputEditor, f1_optimal_keep, history_counts
from shared.metrics import rouge_pair
from shared.readability import broken_share
from shared.stats import paired_bootstrap
from shared.style import StyleHabits

LEVELS = (0.6, 0.7, 0.8, 1.0)


def pairs(dataset, users, *, with_ids: bool = False, with_habits: bool = False):
    """(input words, history counts, gold) of each question of ``users`` (and its id first ``with_ids``; the user's
    :class:`~shared.style.StyleHabits` last ``with_habits``)."""
    task = dataset.task
    out = []
    for qs in users:
        history = [task.item_text(p) for p in min(qs, key=lambda q: len(q.profile)).profile]
        counts = history_counts(history)
        habits = StyleHabits.of(history) if with_habits else None
        for q in qs:
            row: tuple[Any, ...] = (task.extract_query(q.input).split(), counts, dataset.golds[q.id])
            row = (*row, habits) if with_habits else row
            out.append((q.id, *row) if with_ids else row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="LaMP-7 directory")
    p.add_argument("--eval-users", default="400:500", help="users (start:stop) the edits are scored on")
    p.add_argument("--train", default="12,50,100,200,400", help="numbers of first users the editor learns from")
    p.add_argument("--out", default=None, help="write the last editor's predictions per level here")
    args = p.parse_args()
    dataset = load_split(args.data, "LaMP-7")
    groups = list(group_by_user(dataset.questions).values())
    start, stop = (int(x) for x in args.eval_users.split(":"))
    rows = pairs(dataset, groups[start:stop], with_ids=True, with_habits=True)
    ids, test = [r[0] for r in rows], [r[1:] for r in rows]
    inputs = [" ".join(w) for w, _, _, _ in test]
    inp = np.array([rouge_pair(i, g)[1] for i, (_, _, g, _) in zip(inputs, test)])
    print(f"editor on users {start}-{stop - 1} ({len(test)} questions); input ROUGE-L {inp.mean():.4f}\n")
    print("| training users | editor | " + " | ".join(f"level {lv}" for lv in LEVELS) + " | oracle (input + levels) |")
    print("|---|---|" + "---|" * (len(LEVELS) + 1))
    for n in (int(x) for x in args.train.split(",")):
        if n > start:
            raise SystemExit(f"--train {n} would overlap the evaluation users from {start}")
        editor = InputEditor()
        editor.fit([(w, c, InputEditor.labels(w, g)) for w, c, g in pairs(dataset, groups[:n])])
        # both ways are used within this iteration, with this iteration's editor
        ways = {
            "any word": lambda w, c, h, lv: f1_optimal_keep(w, editor.keep_probabilities(w, c), lv * len(w)),  # noqa: B023
            "fillers, user's style": lambda w, c, h, lv: h.apply(filler_edit(editor, w, c, lv)),  # noqa: B023
        }
        for way, edit in ways.items():
            cells, best = [], inp.copy()
            for level in LEVELS:
                edits = [edit(w, c, h, level) for w, c, _, h in test]
                s = np.array([rouge_pair(e, g)[1] for e, (_, _, g, _) in zip(edits, test)])
                if args.out:
                    name = "edit" if way == "any word" else "edit-readable"
                    write_outputs(Path(args.out) / f"{name}-{level}_outputs.json", dataset.task, dict(zip(ids, edits)))
                best = np.maximum(best, s)
                c = paired_bootstrap(inp.tolist(), s.tolist())
                cells.append(
                    f"{s.mean():.4f} ({c.mean / inp.mean():+.1%}; [{c.low:+.4f}, {c.high:+.4f}]; "
                    f"broken {broken_share(edits, inputs):.0%})"
                )
            print(f"| {n} | {way} | " + " | ".join(cells) + f" | {best.mean():.4f} |")


if __name__ == "__main__":
    main()
