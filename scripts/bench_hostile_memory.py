"""How much memory a hostile packed message costs a device: the production ClientApp's peak RSS rise per layout.

Issue 28, probe 1: a 1 MB TRAIN message whose layout names one 1 MiB tensor 500 times (``same-as``) raised a
ClientApp's peak memory from 530 MB to 2,021 MB before the guard refused it. This script sends such messages, and
others (huge declared shapes, many tensors, a long ``dims`` list, an oversized flat array, a well-formed float64 base
of NaN) to ``client.client_app.app`` as a node of a small synthetic run on the stub LLM endpoint, each in a fresh
process that first answers a role query (data and models loaded), and reports the rise of the process's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before the message; sampled every millisecond where that
cannot be reset) over its RSS before, against the bytes of the device's expected base (float32), as a ratio. Target:
at most 2x. The CPU is reported with the numbers.

Run: ``python scripts/bench_hostile_memory.py`` (about a minute; ``--layouts same-as-500 huge-shapes`` for some).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYOUTS = ("same-as-500", "huge-shapes", "many-tensors", "long-dims", "oversized-flat", "nan-float64-base")


def _status(field: str) -> int:
    """A field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hostile(layout: str, spec: dict[str, tuple[int, ...]]):
    """The packed content of one hostile layout, against the device's base shapes ``spec``."""
    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    from shared.packing import FORMAT, LAYOUT_RECORD, PACKED_RECORD

    keys = list(spec)

    def content(entries: list[tuple[str, str, tuple[int, ...], int]], flat: dict):
        layout_record: dict[str, Any] = {
            "format": FORMAT,
            "records": ["arrays"],
            "record-of": [0] * len(entries),
            "keys": [k for k, _, _, _ in entries],
            "dtypes": [d for _, d, _, _ in entries],
            "ndims": [len(s) for _, _, s, _ in entries],
            "dims": [n for _, _, s, _ in entries for n in s],
            "same-as": [a for _, _, _, a in entries],
            "sent": [0] * len(entries),
        }
        return RecordDict(
            {
                PACKED_RECORD: ArrayRecord({d: Array(v) for d, v in flat.items()}),
                LAYOUT_RECORD: ConfigRecord(layout_record),
                "config": ConfigRecord({"server-round": 1}),
            }
        )

    if layout == "same-as-500":  # issue 28's probe: one 1 MiB tensor under 500 names
        size = 1 << 18
        return content(
            [(f"base.adapter.copy{i}", "float32", (size,), 0) for i in range(500)],
            {"float32": np.zeros(size, np.float32)},
        )
    if layout == "huge-shapes":  # the base's keys, each declared 10^5 times larger, the flat array the base's size
        total = sum(math.prod(s) for s in spec.values())
        return content(
            [(k, "float32", (*spec[k], 100_000), i) for i, k in enumerate(keys)],
            {"float32": np.zeros(total, np.float32)},
        )
    if layout == "many-tensors":  # 200,000 one-value tensors
        n = 200_000
        return content(
            [(f"base.adapter.t{i}", "float32", (1,), i) for i in range(n)], {"float32": np.zeros(n, np.float32)}
        )
    if layout == "long-dims":  # the base's tensors, the dims list padded with a million ones
        total = sum(math.prod(s) for s in spec.values())
        record = content(
            [(k, "float32", spec[k], i) for i, k in enumerate(keys)], {"float32": np.zeros(total, np.float32)}
        )
        layout_record = dict(record[LAYOUT_RECORD])
        layout_record["dims"] = list(layout_record["dims"]) + [1] * 1_000_000
        record[LAYOUT_RECORD] = ConfigRecord(layout_record)
        return record
    if layout == "oversized-flat":  # a well-described base, and 16 MiB more values in its flat array
        total = sum(math.prod(s) for s in spec.values())
        return content(
            [(k, "float32", spec[k], i) for i, k in enumerate(keys)],
            {"float32": np.zeros(total + (1 << 22), np.float32)},
        )
    if layout == "nan-float64-base":  # passes every rule of the layout, fails on its values
        total = sum(math.prod(s) for s in spec.values())
        return content([(k, "float64", spec[k], i) for i, k in enumerate(keys)], {"float64": np.full(total, np.nan)})
    raise SystemExit(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


def measure_one(layout: str, run_config: dict) -> dict:
    """In this process: warm up, then send one hostile message and measure the peak RSS rise."""
    from flwr.app import Context, Message, MessageType, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from client.client_app import app
    from client.node import base_shapes
    from shared.config import RunConfig
    from shared.protocol import ASK_KEY

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config=run_config)
    from flwr.app import ConfigRecord

    warm = Message(
        content=RecordDict({"config": ConfigRecord({ASK_KEY: "role"})}), dst_node_id=1, message_type=MessageType.QUERY
    )
    assert not app(warm, ctx).has_error()
    spec = base_shapes(RunConfig.from_mapping(run_config, complete=True).model)
    base_bytes = 4 * sum(math.prod(s) for s in spec.values())
    content = hostile(layout, spec)
    msg = Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)
    message_bytes = sum(len(a.data) for r in content.array_records.values() for a in r.values())
    del content
    import gc

    gc.collect()
    before = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        how = "VmHWM"
    except OSError:
        how = "sampled"
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _status("VmRSS"))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    if how == "sampled":
        sampler.start()
    started = time.perf_counter()
    reply: Message | Exception
    try:
        reply = app(msg, ctx)
    except Exception as exc:  # noqa: BLE001 (a ClientApp without error replies raises; Flower would send its text)
        reply = exc
    seconds = time.perf_counter() - started
    done.set()
    top = _status("VmHWM") if how == "VmHWM" else max(peak[0], _status("VmRSS"))
    rise = max(0, top - before)
    return {
        "layout": layout,
        "message_bytes": message_bytes,
        "base_bytes": base_bytes,
        "rss_before": before,
        "peak_rise": rise,
        "ratio": round(rise / base_bytes, 3),
        "measured_by": how,
        "reply": (
            f"raised {type(reply).__name__}: {str(reply)[:60]}"
            if isinstance(reply, Exception)
            else f"error {reply.error.code}: {reply.error.reason}"
            if reply.has_error()
            else "accepted"
        ),
        "seconds": round(seconds, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--run-config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, json.loads(Path(args.run_config).read_text()))))
        return 0

    from lab.llm_stub import StubEndpoint
    from lab.small_runs import SMALL_DEVICE, device_run_config
    from shared.synthetic import write_synthetic

    rows = []
    with tempfile.TemporaryDirectory(prefix="fh-bench-hostile-") as tmp, StubEndpoint(delay_s=0.0) as stub:
        data = write_synthetic(Path(tmp) / "data", SMALL_DEVICE["data.task"], n_users=2, items_per_user=10, seed=0)
        config = Path(tmp) / "run_config.json"
        config.write_text(json.dumps(device_run_config(data, Path(tmp) / "store", stub.url)))
        for layout in args.layouts:
            done = subprocess.run(
                [sys.executable, __file__, "--one", layout, "--run-config", str(config)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores visible); Python {platform.python_version()}")
    print(f"expected base: {rows[0]['base_bytes']:,} bytes (float32); target: peak RSS rise <= 2x that\n")
    print("| layout | message bytes | peak RSS rise | x base | reply | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['message_bytes']:,} | {r['peak_rise']:,} | {r['ratio']} | {r['reply']} | "
            f"{r['seconds']} |"
        )
    worst = max(r["ratio"] for r in rows)
    print(
        f"\nworst: {worst}x the expected base ({'within' if worst <= 2 else 'OVER'} the 2x target); "
        f"measured by {rows[0]['measured_by']}"
    )
    return 0 if worst <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
