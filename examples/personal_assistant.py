"""A tiny app on the FedHydra SDK: a personal tweet rewriter that explains itself.

Run it against the embedded LLM (started on demand) with a global base exported from a federated run:

    .venv/bin/fedhydra export --from runs/main/server/checkpoints --out runs/bundle
    .venv/bin/python examples/personal_assistant.py --bundle runs/bundle "I am going to the game tomorrow."

Without ``--history`` it uses a synthetic user's tweets; with ``--history FILE`` a JSON list of
``{"id", "text"}`` (a LaMP-7 profile). Everything the app learns stays in ``--store``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from client.sdk import PersonalClient
from shared.synthetic import generate
from shared.tasks import get_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", nargs="*", help="tweets to rewrite in the user's style (default: read stdin lines)")
    parser.add_argument("--bundle", required=True, help="a device bundle (fedhydra export)")
    parser.add_argument("--store", default="runs/assistant-store", help="where the app keeps the user's data")
    parser.add_argument("--history", help="JSON list of the user's past tweets ({id, text})")
    parser.add_argument("--llm-url", help="OpenAI-compatible endpoint (default: env, else the embedded server)")
    args = parser.parse_args(argv)

    task = get_task("LaMP-7")
    # closing the client stops an embedded LLM server it started (DeviceConfig(keep_llm_server=True) would leave it
    # running)
    with PersonalClient(args.store, args.bundle, llm=args.llm_url, task=task) as client:
        return run(client, task, args)


def run(client: PersonalClient, task, args: argparse.Namespace) -> int:
    """Onboard the user if new, then rewrite each text and show what explains the answer."""
    if not client.history:
        if args.history:
            items = json.loads(Path(args.history).read_text())
        else:
            questions, _, truth = generate("LaMP-7", n_users=1, items_per_user=20, seed=7)
            items = questions[0]["profile"]
            print(f"using a synthetic user whose quirks are {truth['users'][questions[0]['user_id']]}")
        client.add_history(items)
        # onboarding runs in the background; answers come at once from the shared heads meanwhile
        fitting = client.fit_in_background()
        fitting.add_done_callback(
            lambda f: (
                f.exception()
                or print(
                    f"\n[fitted this user's heads: {f.result().fit_seconds:.1f} s on the device, {f.result().llm_calls} LLM "
                    f"calls ({f.result().llm_seconds:.1f} s) to label their history; later answers are personal]"
                )
            )
        )
    texts = args.text or [line.strip() for line in sys.stdin if line.strip()]
    for text in texts:
        result = client.answer(task.instruction + text)
        heads = "personal" if result.personal else "shared (the user's own are still being fitted)"
        print(
            f"\n> {text}\n= {result.output}\n  heads: {heads}; cost: {result.cost['asked']} LLM answers, "
            f"{result.cost['wall_seconds']:.2f} s"
        )
        print(
            "  because of these past tweets:",
            *[f"    [{r['score']:+.2f}] {r['text']}" for r in result.records],
            sep="\n",
        )
        print(
            "  candidates:",
            *[
                f"    [{c['score']:+.2f}] ({c['source']}) {c['text']}"
                for c in sorted(result.candidates, key=lambda c: -c["score"])
            ],
            sep="\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
