"""Hand labels of LaMP-7 answers (readable or broken), and how well the automatic check agrees with them.

Two steps. ``sample`` draws answers from several runs' ``<method>_outputs.json`` files and writes them, shuffled,
for a person to label blind: ``blind.tsv`` shows only a number and the answer (neither the method nor the input);
``key.json`` keeps what each number is. The person writes ``r`` (readable) or ``b`` (broken) in the first column of
``blind.tsv``, by the rules of ``docs/labels/README.md``. ``score`` joins the labels with the key into
``docs/labels/lamp7-readability.jsonl`` (one answer per line: set, question id, method, input, answer, label) and reports
the check's (:func:`shared.readability.is_broken`) precision and recall on broken, overall and per method.

    .venv/bin/python scripts/readability_labels.py sample --data ../shared/data/lamp/lamp7 --out runs/labels \\
        --take 40 runs/a/input_outputs.json runs/a/hydra_outputs.json ...
    .venv/bin/python scripts/readability_labels.py score --blind runs/labels/blind.tsv --key runs/labels/key.json \\
        --out docs/labels/lamp7-readability.jsonl
    .venv/bin/python scripts/readability_labels.py score --labels docs/labels/lamp7-readability.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.data import load_split, read_json
from shared.io import atomic_write_text
from shared.readability import broken_reason


def _method(path: str) -> str:
    """``<run>/<method>_outputs.json`` -> ``<run>:<method>`` (the run folder's name tells seeds and runs apart)."""
    p = Path(path)
    return f"{p.parent.name}:{p.name.removesuffix('_outputs.json')}"


def sample(args: argparse.Namespace) -> None:
    dataset = load_split(args.data, "LaMP-7")
    inputs = {q.id: q.query for q in dataset.questions}
    rng = random.Random(args.seed)
    rows = []
    for spec in args.outputs:
        path, _, take = spec.partition("::")
        answers = {g["id"]: g["output"] for g in read_json(Path(path))["golds"]}
        ids = sorted(i for i in answers if i in inputs)
        for qid in rng.sample(ids, min(int(take) if take else args.take, len(ids))):
            rows.append({"qid": qid, "method": _method(path), "input": inputs[qid], "answer": answers[qid]})
    rng.shuffle(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = {str(n): row for n, row in enumerate(rows)}
    atomic_write_text(out / "key.json", json.dumps(key, indent=1))
    lines = [f"?\t{n}\t{' '.join(row['answer'].split())}" for n, row in enumerate(rows)]
    atomic_write_text(out / "blind.tsv", "\n".join(lines) + "\n")
    print(f"{len(rows)} answers to label in {out / 'blind.tsv'} (r: readable, b: broken, in the first column)")


def _agreement(rows: list[dict]) -> dict[str, float]:
    tp = sum(r["label"] == "broken" and r["check"] for r in rows)
    fp = sum(r["label"] == "readable" and r["check"] for r in rows)
    fn = sum(r["label"] == "broken" and not r["check"] for r in rows)
    agree = sum((r["label"] == "broken") == r["check"] for r in rows)
    return {
        "n": len(rows),
        "broken (labels)": sum(r["label"] == "broken" for r in rows),
        "broken (check)": sum(r["check"] for r in rows),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "agreement": agree / len(rows) if rows else 0.0,
    }


def score(args: argparse.Namespace) -> None:
    if args.labels:
        rows = [json.loads(line) for line in Path(args.labels).read_text(encoding="utf-8").split("\n") if line]
    else:
        key = json.loads(Path(args.key).read_text(encoding="utf-8"))
        rows = []
        for line in Path(args.blind).read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            mark, n, _ = line.split("\t", 2)
            if mark not in ("r", "b"):
                raise SystemExit(f"blind.tsv: answer {n} is not labelled (r or b, got {mark!r})")
            rows.append({**key[n], "label": "readable" if mark == "r" else "broken"})
        rows.sort(key=lambda r: (r["method"], r["qid"]))
        atomic_write_text(Path(args.out), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for r in rows:
        r["check"] = broken_reason(r["answer"], r["input"]) is not None
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["method"]].append(r)
        if "set" in r:  # "dev": labelled while the check was written; "held-out": labelled after it was frozen
            groups[f"set: {r['set']}"].append(r)
    print("| answers | n | broken (labels) | broken (check) | precision | recall | agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, part in [("all", rows), *sorted(groups.items())]:
        a = _agreement(part)
        print(
            f"| {name} | {a['n']} | {a['broken (labels)']} | {a['broken (check)']} | {a['precision']:.2f} | "
            f"{a['recall']:.2f} | {a['agreement']:.2f} |"
        )
    if args.show:
        for r in rows:
            if (r["label"] == "broken") != r["check"]:
                print(f"[{r['label']}, check {'broken' if r['check'] else 'readable'}] {r['answer']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="draw answers to label blind")
    s.add_argument("--data", required=True, help="the LaMP-7 folder the runs answered")
    s.add_argument("--out", required=True, help="folder for blind.tsv and key.json")
    s.add_argument("--take", type=int, default=40, help="answers drawn from each file (unless FILE::N says)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("outputs", nargs="+", help="<method>_outputs.json files (FILE::N draws N from that file)")
    c = sub.add_parser("score", help="the check against the labels")
    c.add_argument("--blind", help="a labelled blind.tsv (with --key and --out)")
    c.add_argument("--key")
    c.add_argument("--out", help="where the joined labels go (jsonl)")
    c.add_argument("--labels", help="or: a joined labels file")
    c.add_argument("--show", action="store_true", help="print the answers where the check and the label differ")
    args = p.parse_args()
    (sample if args.command == "sample" else score)(args)


if __name__ == "__main__":
    main()
