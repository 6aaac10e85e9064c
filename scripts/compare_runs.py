"""Compare two runs' predictions question by question (e.g. federated against centralized HYDRA).

Prints, for each pair of prediction files: how many answers differ, on how many questions the second run
scores higher or lower (the task's per-question utility, :func:`shared.metrics.example_score`: ROUGE-L F,
minus the rating error, or correctness), the mean paired difference and its 95% bootstrap interval
(:func:`shared.stats.paired_bootstrap`, seeded).

    .venv/bin/python scripts/compare_runs.py --golds ../shared/data/lamp/lamp7 --task LaMP-7 \\
        runs/hydra-lamp7/hydra_outputs.json runs/fed-lamp7/fed-hydra_outputs.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import find_split_files, load_outputs, load_split
from shared.errors import DataFormatError
from shared.metrics import example_score
from shared.stats import paired_bootstrap
from shared.tasks import get_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--golds", required=True, help="LaMP directory holding the *_outputs.json golds")
    p.add_argument("--split", default=None, help="file prefix of the golds, or \"timeline\" (LaMP-3's time-based split)")
    p.add_argument("--task", required=True)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("pairs", nargs="+", help="first-run and second-run prediction files, in pairs")
    args = p.parse_args()
    if len(args.pairs) % 2:
        raise SystemExit("prediction files come in pairs: first run, second run")
    task = get_task(args.task)
    if args.split == "timeline":  # built in memory from user_histories.json (shared.data.load_timeline)
        golds, gold_file = load_split(args.golds, task, "timeline").golds, f"{args.golds} (timeline split)"
    else:
        _, gold_file = find_split_files(args.golds, args.split)
        if gold_file is None:
            raise SystemExit(f"{args.golds}: no *_outputs.json with golds")
        _, golds = load_outputs(gold_file)
    print("| first | second | answers that differ | second better | second worse | mean difference | 95% interval |")
    print("|---|---|---|---|---|---|---|")
    for a, b in zip(args.pairs[::2], args.pairs[1::2]):
        first, second = load_outputs(a)[1], load_outputs(b)[1]
        if set(first) != set(second) or not set(first) <= set(golds):
            raise DataFormatError(b, f"its question ids differ from {a}'s or are not all in {gold_file}")
        ids = sorted(first)
        c = paired_bootstrap([example_score(task, first[i], golds[i]) for i in ids],
                             [example_score(task, second[i], golds[i]) for i in ids], resamples=args.resamples)
        print(f"| {Path(a).name} | {Path(b).name} | {sum(first[i] != second[i] for i in ids)} of {len(ids)} "
              f"| {c.wins} | {c.losses} | {c.mean:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] |")


if __name__ == "__main__":
    main()
