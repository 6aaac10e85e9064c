"""How the input editor's edits of LaMP-7 inputs gain over the input as it learns from more training users.

No LLM and no model but the editor (:class:`shared.hydra.editor.InputEditor`): it is fitted on the (input, gold)
pairs of the first N users of the data (as the run's training users would teach it), with each user's history word
counts, and scored on later users that are also training users of a run (never on a run's test users): ROUGE-L of
each fixed compression level (:func:`shared.hydra.editor.f1_optimal_keep`) against the input returned unchanged,
and the oracle of the input and the levels. The figures motivate ``free-train-users`` (docs/results.md).

    .venv/bin/python scripts/editor_scale.py --data ../shared/data/lamp/lamp7 --eval-users 400:500

With ``--out DIR`` it also writes, for the editor of the last ``--train`` value, each level's predictions as
``edit-<level>_outputs.json``: "the input edited by word statistics", the simple personal baseline of a run whose
test users are ``--eval-users`` (compare them with ``scripts/compare_runs.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import group_by_user, load_split, write_outputs
from shared.hydra.editor import InputEditor, f1_optimal_keep, history_counts
from shared.metrics import rouge_pair
from shared.stats import paired_bootstrap

LEVELS = (0.6, 0.7, 0.8, 1.0)


def pairs(dataset, users, *, with_ids: bool = False):
    """(input words, history counts, gold) of each question of ``users`` (and its id first ``with_ids``)."""
    task = dataset.task
    out = []
    for qs in users:
        history = min(qs, key=lambda q: len(q.profile)).profile
        counts = history_counts([task.item_text(p) for p in history])
        for q in qs:
            row = (task.extract_query(q.input).split(), counts, dataset.golds[q.id])
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
    rows = pairs(dataset, groups[start:stop], with_ids=True)
    ids, test = [r[0] for r in rows], [r[1:] for r in rows]
    inp = np.array([rouge_pair(" ".join(w), g)[1] for w, _, g in test])
    print(f"editor on users {start}-{stop - 1} ({len(test)} questions); input ROUGE-L {inp.mean():.4f}\n")
    print("| training users | " + " | ".join(f"level {lv}" for lv in LEVELS) + " | oracle (input + levels) |")
    print("|---|" + "---|" * (len(LEVELS) + 1))
    for n in (int(x) for x in args.train.split(",")):
        if n > start:
            raise SystemExit(f"--train {n} would overlap the evaluation users from {start}")
        editor = InputEditor()
        editor.fit([(w, c, InputEditor.labels(w, g)) for w, c, g in pairs(dataset, groups[:n])])
        cells, best = [], inp.copy()
        for level in LEVELS:
            edits = [f1_optimal_keep(w, editor.keep_probabilities(w, c), level * len(w)) for w, c, _ in test]
            s = np.array([rouge_pair(e, g)[1] for e, (_, _, g) in zip(edits, test)])
            if args.out:
                write_outputs(Path(args.out) / f"edit-{level}_outputs.json", dataset.task, dict(zip(ids, edits)))
            best = np.maximum(best, s)
            c = paired_bootstrap(inp.tolist(), s.tolist())
            cells.append(f"{s.mean():.4f} ({c.mean / inp.mean():+.1%}; [{c.low:+.4f}, {c.high:+.4f}])")
        print(f"| {n} | " + " | ".join(cells) + f" | {best.mean():.4f} |")


if __name__ == "__main__":
    main()
