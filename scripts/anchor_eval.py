"""Every no-LLM anchor of LaMP-7 (:func:`shared.hydra.candidates.anchors_for`) on users of one's choice, without a run.

Reads the shared base a run trained (``<run>/trained/base.safetensors``: the input editor and the style model) and
writes each question of ``--users`` as each anchor would: the input, the input with the user's spellings (``style``),
the editor's filler edit at each level (``edit-<level>``) and that edit with the user's spellings
(``style-edit-<level>``), plus two habits that are not anchors (``style-sign``: the styled input followed by the
user's sign-off; ``drop-I``: the input without a sentence-initial "I", for users whose history rarely starts with
"I"). For each: ROUGE-L, the paired 95% bootstrap interval against the input, answers changed, broken share. No LLM.

Pick users that no one tunes to and the run did not train on (the headline trains on 0-499 and answers 500-649;
users 650-999 are left for such checks):

    .venv/bin/python scripts/anchor_eval.py --data ../shared/data/lamp/lamp7 \\
        --base runs/lamp7-readable-s0/trained/base.safetensors --users 650:1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import group_by_user, load_split
from shared.hydra.bundle import load_tensors
from shared.hydra.candidates import EDIT_LEVELS, filler_edit, personal_habits
from shared.hydra.context import UserContext
from shared.hydra.editor import InputEditor
from shared.metrics import rouge_pair
from shared.readability import is_broken
from shared.stats import paired_bootstrap

EDITOR_PREFIX = "base.adapter.editor."
I_FORMS = ("i", "i'm", "im", "i've", "ive", "i'll")


def first_word(text: str) -> str:
    """The first word that is no @mention, lowercased, without trailing punctuation.

    >>> first_word("@bob I'm home.")
    "i'm"
    """
    words = [w for w in text.split() if not w.startswith("@")]
    return words[0].lower().rstrip(".,!?") if words else ""


def drop_initial_i(text: str) -> str:
    """``text`` without its sentence-initial "I" (the next word capitalized), else unchanged.

    >>> drop_initial_i("@bob I love it"), drop_initial_i("Love it")
    ('@bob Love it', 'Love it')
    """
    words = text.split()
    i = next((k for k, w in enumerate(words) if not w.startswith("@")), None)
    if i is None or words[i] != "I" or i + 1 >= len(words):
        return text
    rest = words[i + 1]
    return " ".join([*words[:i], rest[:1].upper() + rest[1:], *words[i + 2 :]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="LaMP-7 directory")
    p.add_argument("--base", required=True, help="a run's trained/base.safetensors")
    p.add_argument("--users", default="650:1000", help="users (start:stop, in file order) to answer")
    p.add_argument("--i-share", type=float, default=0.1, help="drop-I only for users whose history starts with I less")
    args = p.parse_args()
    tensors, _ = load_tensors(args.base, kind="base")
    editor = InputEditor.from_state(
        {k[len(EDITOR_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EDITOR_PREFIX)}
    )
    dataset = load_split(args.data, "LaMP-7")
    start, stop = (int(x) for x in args.users.split(":"))
    questions = [q for qs in list(group_by_user(dataset.questions).values())[start:stop] for q in qs]
    answers: dict[str, list[str]] = {}
    for q in questions:
        ctx = UserContext.build(dataset.task, q.profile)
        habits = personal_habits(ctx, editor)
        row = {"input": q.query, "style": habits.apply(q.query), "style-sign": habits.apply(q.query, sign=True)}
        words = q.query.split()
        for level in EDIT_LEVELS:
            edited = filler_edit(editor, words, ctx.counts, level)
            row[f"edit-{level:g}"] = edited
            row[f"style-edit-{level:g}"] = habits.apply(edited)
        starts = [first_word(t) in I_FORMS for t in q.profile_texts(dataset.task)]
        row["drop-I"] = drop_initial_i(q.query) if starts and np.mean(starts) < args.i_share else q.query
        for name, text in row.items():
            answers.setdefault(name, []).append(text)
    golds = [dataset.golds[q.id] for q in questions]
    sources = [q.query for q in questions]
    base = [rouge_pair(s, g)[1] for s, g in zip(sources, golds)]
    print(f"{len(questions)} questions of users {args.users}; base {args.base}\n")
    print("| answer | ROUGE-L | vs input (paired 95%) | changed | broken |")
    print("|---|---|---|---|---|")
    for name, texts in answers.items():
        scores = [rouge_pair(t, g)[1] for t, g in zip(texts, golds)]
        c = paired_bootstrap(base, scores)
        changed = sum(t != s for t, s in zip(texts, sources))
        broken = np.mean([t != s and is_broken(t, s) for t, s in zip(texts, sources)])
        print(
            f"| {name} | {np.mean(scores):.4f} | {c.mean:+.4f} [{c.low:+.4f}, {c.high:+.4f}] | {changed} | "
            f"{broken:.1%} |"
        )


if __name__ == "__main__":
    main()
