"""Compare two runs' predictions question by question (e.g. federated against centralized HYDRA).

Prints, for each pair of prediction files: how many answers differ, on how many questions the second run
scores higher or lower (the task's per-question utility, :func:`shared.metrics.example_score`: ROUGE-L F,
minus the rating error, or correctness), the mean paired difference and its 95% bootstrap interval
(:func:`shared.stats.paired_bootstrap`, seeded).

Where some user asks more than one question (LaMP-3's timeline split: 40 questions per user), a last column gives
the user-level interval too (users resampled, each with all their questions), the one to read when few users
carry many questions.

For a rewrite task (LaMP-7) a column gives each side's broken share (:func:`shared.readability.is_broken` against
the question's input; a joined side's mean over its files).

A side may join several prediction files of the same questions with ``+`` (e.g. one run per seed): each
question then scores the mean of its files' scores, so the interval is over questions with the seeds averaged.

    .venv/bin/python scripts/compare_runs.py --golds ../shared/data/lamp/lamp7 --task LaMP-7 \\
        runs/hydra-lamp7/hydra_outputs.json runs/fed-lamp7/fed-hydra_outputs.json
    .venv/bin/python scripts/compare_runs.py --golds ../shared/data/lamp/lamp7 --task LaMP-7 \\
        runs/s0/input_outputs.json+runs/s1/input_outputs.json runs/s0/hydra_outputs.json+runs/s1/hydra_outputs.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import find_split_files, load_outputs, load_questions, load_split
from shared.errors import DataFormatError
from shared.metrics import example_score
from shared.readability import broken_share
from shared.stats import paired_bootstrap
from shared.tasks import get_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--golds", required=True, help="LaMP directory holding the *_outputs.json golds")
    p.add_argument("--split", default=None, help='file prefix of the golds, or "timeline" (LaMP-3\'s time-based split)')
    p.add_argument("--task", required=True)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument(
        "pairs",
        nargs="+",
        help="first-run and second-run prediction files, in pairs; a side may join "
        "several runs' files of the same questions with + (their scores averaged)",
    )
    args = p.parse_args()
    if len(args.pairs) % 2:
        raise SystemExit("prediction files come in pairs: first run, second run")
    task = get_task(args.task)
    gold_file: str | Path | None
    if args.split == "timeline":  # built in memory from user_histories.json (shared.data.load_timeline)
        split = load_split(args.golds, task, "timeline")
        golds, gold_file, questions = split.golds, f"{args.golds} (timeline split)", list(split.questions)
    else:
        question_file, gold_file = find_split_files(args.golds, args.split)
        if gold_file is None:
            raise SystemExit(f"{args.golds}: no *_outputs.json with golds")
        _, golds = load_outputs(gold_file)
        questions = load_questions(question_file, task)
    users = {q.id: q.user_id for q in questions}
    inputs = {q.id: q.query for q in questions}
    by_user = len(set(users.values())) < len(users)  # some user carries several questions
    extra = (" users | 95% interval over users |", "---|---|") if by_user else ("", "")
    if task.rewrite:
        extra = (extra[0] + " broken: first / second |", extra[1] + "---|")
    print(
        "| first | second | answers that differ | second better | second worse | mean difference | 95% interval |"
        + extra[0]
    )
    print("|---|---|---|---|---|---|---|" + extra[1])
    for a, b in zip(args.pairs[::2], args.pairs[1::2]):
        firsts, seconds = _load_side(a), _load_side(b)
        ids = sorted(firsts[0])
        if not set(ids) <= set(golds):
            raise DataFormatError(a.split("+")[0], f"some of its question ids are not in {gold_file}")
        for path, run in zip(a.split("+") + b.split("+"), firsts + seconds):
            if set(run) != set(ids):
                raise DataFormatError(path, f"its question ids differ from {a.split('+')[0]}'s")
        c = paired_bootstrap(
            _mean_scores(task, firsts, golds, ids),
            _mean_scores(task, seconds, golds, ids),
            resamples=args.resamples,
            groups=[users.get(i, i) for i in ids] if by_user else None,
        )
        differ = sum(any(f[i] != s[i] for f in firsts for s in seconds) for i in ids)
        tail = f" {c.users} | [{c.user_low:+.4f}, {c.user_high:+.4f}] |" if by_user else ""
        if task.rewrite:
            shares = [
                sum(broken_share([r[i] for i in ids], [inputs[i] for i in ids]) for r in side) / len(side)
                for side in (firsts, seconds)
            ]
            tail += f" {shares[0]:.1%} / {shares[1]:.1%} |"
        print(
            f"| {_name(a)} | {_name(b)} | {differ} of {len(ids)} "
            f"| {c.wins} | {c.losses} | {c.mean:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] |" + tail
        )


def _load_side(side: str) -> list[dict[str, str]]:
    """The predictions of each file joined by ``+`` on one side."""
    return [load_outputs(path)[1] for path in side.split("+")]


def _mean_scores(task, runs: list[dict[str, str]], golds: Mapping[str, str], ids: list[str]) -> list[float]:
    """Each question's score, averaged over the runs of one side."""
    return [sum(example_score(task, run[i], golds[i]) for run in runs) / len(runs) for i in ids]


def _name(side: str) -> str:
    """A side's label: the file name, or folder/file for each file of a joined side (the runs differ by folder)."""
    return "+".join(
        f"{Path(path).parent.name}/{Path(path).name}" if "+" in side else Path(path).name for path in side.split("+")
    )


if __name__ == "__main__":
    main()
