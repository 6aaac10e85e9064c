"""The learned style model against the input and the rule baselines, on LaMP-7 users no one tuned to.

No LLM and no model but the style model (:class:`shared.hydra.style_model.StyleModel`): it learns from the (input,
gold) pairs of the training users (``--train-users``, e.g. users 0-499, each with their own rule counts) and writes
each question of the evaluation users (``--eval-users``) the way HYDRA's ``style`` candidate does
(:func:`shared.hydra.candidates.personal_habits`: the rules the model chooses, the user's case, final period). Beside
it: the input, the ``style-rules`` baseline (each rule of the whole catalogue by a majority of the user's history,
no model) and the same baseline over the 24 rules of the table before the catalogue grew (``style-rules-24``). For
each: ROUGE-L, the paired 95% bootstrap interval against the input and against the model, answers changed, broken
share (:func:`shared.readability.broken_share`).

    .venv/bin/python scripts/style_eval.py --data ../shared/data/lamp/lamp7 --train-users 0:500 --eval-users 500:650

With ``--out DIR`` it writes each method's predictions as ``<method>_outputs.json`` (for ``scripts/compare_runs.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import Question, group_by_user, load_split, write_outputs
from shared.hydra.candidates import personal_habits
from shared.hydra.context import UserContext
from shared.hydra.editor import InputEditor
from shared.hydra.style_model import StyleModel, style_examples
from shared.metrics import rouge_pair
from shared.readability import broken_share
from shared.stats import paired_bootstrap
from shared.style import RULE_NAMES, StyleHabits

OLD_TABLE = frozenset(
    [
        "contractions",
        "no-apostrophe",
        "u",
        "ur",
        "r",
        "2",
        "4",
        "cuz",
        "luv",
        "pls",
        "tmrw",
        "thx",
        "ppl",
        "b4",
        "tho",
        "thru",
        "nite",
        "bday",
        "kinda",
        "idk",
        "btw",
        "omg",
        "ya",
        "n",
    ]
)
"""The 24 rules of the table before issue 27's catalogue."""
assert set(RULE_NAMES) >= OLD_TABLE
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def _users(spec: str, groups: list[list[Question]]) -> list[list[Question]]:
    start, stop = (int(x) for x in spec.split(":"))
    return groups[start:stop]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="LaMP-7 directory")
    p.add_argument("--train-users", default="0:500", help="users (start:stop) the style model learns from")
    p.add_argument("--eval-users", default="500:650", help="users (start:stop) the answers are scored on")
    p.add_argument("--folds", type=int, default=5, help="cross-validate the decision threshold on training users")
    p.add_argument("--show", type=int, default=20, help="print this many changed answers of the model")
    p.add_argument("--out", default=None, help="write each method's predictions here")
    args = p.parse_args()
    dataset = load_split(args.data, "LaMP-7")
    task = dataset.task
    groups = list(group_by_user(dataset.questions).values())
    train, test = _users(args.train_users, groups), _users(args.eval_users, groups)
    if set(q.id for qs in train for q in qs) & set(q.id for qs in test for q in qs):
        raise SystemExit("the training and evaluation users overlap")
    train_q = [q for qs in train for q in qs]
    train_ctx = [UserContext.build(task, q.profile) for q in train_q]
    per_q = [style_examples(q.query, dataset.golds[q.id], c.rule_counts) for q, c in zip(train_q, train_ctx)]
    editor = InputEditor()
    examples = [x for xs in per_q for x in xs]
    loss = editor.style.fit(examples)
    print(f"style model: {len(examples)} examples from {len(train)} training users, log loss {loss:.4f}")
    if args.folds > 1:  # the decision rule, checked on the training users only: held-out folds, ROUGE-L per threshold
        print(f"\n{args.folds}-fold cross-validation over the training users (ROUGE-L of the held-out folds' style):")
        gains: dict[float, list[float]] = {t: [] for t in THRESHOLDS}
        for fold in range(args.folds):
            model = StyleModel()
            model.fit([x for i, xs in enumerate(per_q) if i % args.folds != fold for x in xs])
            for i, (q, c) in enumerate(zip(train_q, train_ctx)):
                if i % args.folds != fold:
                    continue
                probs = model.probabilities(c.rule_counts)
                base = rouge_pair(q.query, dataset.golds[q.id])[1]
                for t in THRESHOLDS:
                    rules = tuple(n for n, pi in zip(RULE_NAMES, probs) if pi > t)
                    answer = replace(c.habits, rules=rules).apply(q.query)
                    gains[t].append(rouge_pair(answer, dataset.golds[q.id])[1] - base)
        print("  " + ", ".join(f"P > {t}: {np.mean(g):+.4f}" for t, g in gains.items()) + " (vs the input)")

    def baseline(q: Question, keep: Callable[[str], bool]) -> str:
        habits = StyleHabits.of(q.profile_texts(task))
        return replace(habits, rules=tuple(r for r in habits.rules if keep(r))).apply(q.query)

    methods: dict[str, dict[str, str]] = {"input": {}, "style-rules-24": {}, "style-rules": {}, "style-model": {}}
    questions = [q for qs in test for q in qs]
    chosen: list[tuple[str, ...]] = []
    for q in questions:
        ctx = UserContext.build(task, q.profile)
        habits = personal_habits(ctx, editor)
        chosen.append(habits.rules)
        methods["input"][q.id] = q.query
        methods["style-rules-24"][q.id] = baseline(q, lambda r: r in OLD_TABLE)
        methods["style-rules"][q.id] = baseline(q, lambda r: True)
        methods["style-model"][q.id] = habits.apply(q.query)
    golds = [dataset.golds[q.id] for q in questions]
    sources = [q.query for q in questions]
    scores = {m: [rouge_pair(preds[q.id], g)[1] for q, g in zip(questions, golds)] for m, preds in methods.items()}
    print(
        f"evaluation: {len(questions)} questions of {len(test)} users; rules chosen per user: "
        f"{np.mean([len(c) for c in chosen]):.1f} on average\n"
    )
    print("| method | ROUGE-L | changed | broken | vs input (paired 95%) | style-model vs it |")
    print("|---|---|---|---|---|---|")
    for m, preds in methods.items():
        answers = [preds[q.id] for q in questions]
        changed = sum(a != s for a, s in zip(answers, sources))
        vs_input = paired_bootstrap(scores["input"], scores[m]) if m != "input" else None
        vs_model = paired_bootstrap(scores[m], scores["style-model"]) if m != "style-model" else None
        print(
            f"| {m} | {np.mean(scores[m]):.4f} | {changed} | {broken_share(answers, sources):.1%} | "
            f"{_cell(vs_input)} | {_cell(vs_model)} |"
        )
    applied = Counter(r for c in chosen for r in c)
    print(
        f"\nrules the model applies, users of {len(chosen)}: " + ", ".join(f"{r} {n}" for r, n in applied.most_common())
    )
    weights = editor.style.shared.tolist()
    print(f"\nshared row [bias, logit(share), log1p(uses)]: {[round(w, 3) for w in weights]}")
    shown = 0
    for q, g in zip(questions, golds):
        answer = methods["style-model"][q.id]
        if answer != q.query and shown < args.show:
            shown += 1
            print(f"\ninput: {q.query}\nmodel: {answer}\nrules: {methods['style-rules'][q.id]}\ngold:  {g}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for m, preds in methods.items():
            write_outputs(out / f"{m}_outputs.json", task, preds)


def _cell(comparison) -> str:
    if comparison is None:
        return ""
    return f"{comparison.mean:+.4f} [{comparison.low:+.4f}, {comparison.high:+.4f}]"


if __name__ == "__main__":
    main()
