"""A ClientApp mod that records, per message, what a client's work cost and where it ran (scale runs only).

The mod of :func:`probe_mod_for` a folder appends, for every message the client handles, one JSON line to
``<folder>/<host>-<pid>.jsonl`` (a scale run's folder reaches the ClientApp through its staged app:
:mod:`lab.scale.probe_target`):

| key | what |
|---|---|
| ``type``, ``round``, ``partition``, ``node`` | the message type, its ``server-round`` (when the config has one), the node's ``partition-id`` (simulation) and node id |
| ``host``, ``pid``, ``ray_node``, ``ray_node_name`` | where it ran: host name, process, Ray node id (in a Ray worker), and ``FEDHYDRA_RAY_NODE_NAME`` as the Ray node's processes inherit it |
| ``start``, ``seconds`` | wall-clock start (epoch seconds) and seconds in the handler (everything inside this mod) |
| ``episodes_seconds``, ``episodes_built`` | seconds in :meth:`client.node.ClientNode.episodes`, and whether they were built (first contact) rather than read from the store |
| ``llm_calls``, ``llm_hits``, ``llm_seconds`` | the LLM requests sent, cache hits, and request-seconds (summed over concurrent requests) of the message's LLM clients |
| ``tensor_bytes_in``, ``tensor_bytes_out`` | bytes of the arrays received and sent (what ``rounds.jsonl`` reports) |
| ``wire_bytes_in``, ``wire_bytes_out``, ``objects_in``, ``objects_out`` | the serialized size of the message as Flower ships it, packed (:mod:`shared.packing`; the sum of its deflated objects: message, records, arrays, chunks) and their number; a deployment adds each request's framing |
| ``rss_mb``, ``hwm_mb`` | the process's resident memory after the message, and its peak so far (``VmHWM``) |

Without a folder the mod only calls the next handler. :func:`install` (called by the mod on each message)
wraps ``ClientNode.episodes`` and the ClientApp's ``make_llm`` in this process so that episode and LLM figures
can be attributed to the message; nothing else changes.

Example:
    >>> import numpy as np
    >>> from flwr.app import Array, ArrayRecord, RecordDict
    >>> size, objects = serialized_size(RecordDict({"a": ArrayRecord({"w": Array(np.zeros(1000, np.float32))})}))
    >>> size > 4000, objects      # the record dict, the array record, the array and its one chunk
    (True, 4)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context, Message

from shared.io import read_jsonl
from shared.packing import array_tensors, pack_content

__all__ = ["probe_mod_for", "install", "serialized_size", "tensor_bytes", "read_probes", "memory_mb"]

_CALL: dict[str, Any] = {"llms": [], "episodes_seconds": 0.0, "episodes_built": False}


def install() -> None:
    """Wrap ``ClientNode.episodes`` and ``client.client_app.make_llm`` of this process (once) to attribute their cost.

    :func:`probe_mod_for`'s mod calls it on every message: in a Ray simulation the ClientApp object is built in the simulation
    process and shipped to the workers by reference to its functions, so a worker never runs the module that built it.
    """
    import client.client_app as client_app
    from client.node import ClientNode

    if getattr(ClientNode.episodes, "_probed", False) and getattr(client_app.make_llm, "_probed", False):
        return

    original_episodes = ClientNode.episodes
    original_make_llm = client_app.make_llm

    def episodes(self):
        built = not self.store.has_episodes()  # the store keeps them in its database (client/store.py)
        started = time.perf_counter()
        try:
            return original_episodes(self)
        finally:
            _CALL["episodes_seconds"] += time.perf_counter() - started
            _CALL["episodes_built"] = _CALL["episodes_built"] or built

    def make_llm(cfg):
        llm = original_make_llm(cfg)
        _CALL["llms"].append(llm)
        return llm

    episodes._probed = make_llm._probed = True  # type: ignore[attr-defined]
    ClientNode.episodes = episodes  # type: ignore[method-assign]
    client_app.make_llm = make_llm


def serialized_size(obj) -> tuple[int, int]:
    """(bytes, objects) of a message or record as Flower serializes it: every nested object deflated."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    objects = get_all_nested_objects(obj)
    return sum(len(o.deflate()) for o in objects.values()), len(objects)


def tensor_bytes(message: Message) -> int:
    """Bytes of the arrays of a message's array records."""
    if message.has_error() or not message.has_content():
        return 0
    return int(sum(a.numpy().nbytes for record in message.content.array_records.values() for a in record.values()))


def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """(resident, peak resident) memory of a process in MB (``VmRSS``, ``VmHWM`` of ``/proc/<pid>/status``)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in values:
                    values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def _ray_node() -> str | None:
    if "ray" not in sys.modules:
        return None
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - a probe never breaks the client
        return None


def _wire(message: Message, reference: dict | None = None) -> tuple[int, int]:
    """What the message costs as it travels: packed (this mod sits inside :func:`client.packing.packing_mod`, which
    packs on the way out, against the tensors received (``reference``), what this mod sees unpacked)."""
    if message.has_error():
        return 0, 0
    try:
        packed = pack_content(message.content, reference=reference)
        return serialized_size(Message(content=packed, metadata=message.metadata))  # type: ignore[call-overload]  # Flower's stubs omit this form
    except Exception:  # noqa: BLE001
        return 0, 0


def probe_mod_for(folder: str | Path | None) -> Callable[[Message, Context, Any], Message]:
    """The probe mod that appends its lines under ``folder``; None: a mod that only calls the next handler.

    >>> probe_mod_for(None)("message", "context", lambda m, c: (m, c))
    ('message', 'context')
    """
    if folder is None:
        return lambda msg, ctx, call_next: call_next(msg, ctx)

    def probe_mod(msg: Message, ctx: Context, call_next) -> Message:
        install()
        _CALL.update(llms=[], episodes_seconds=0.0, episodes_built=False)
        received = array_tensors(msg.content) if msg.has_content() else None
        wall = time.time()
        started = time.perf_counter()
        reply = call_next(msg, ctx)
        seconds = time.perf_counter() - started
        config = msg.content.config_records.get("config") if msg.has_content() else None
        stats = [llm.stats for llm in _CALL["llms"] if getattr(llm, "stats", None) is not None]
        wire_in, objects_in = _wire(msg)
        wire_out, objects_out = _wire(reply, received)
        rss, hwm = memory_mb()
        row = {
            "type": msg.metadata.message_type,
            "round": config.get("server-round") if config is not None else None,
            "partition": ctx.node_config.get("partition-id"),
            "node": msg.metadata.dst_node_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "ray_node": _ray_node(),
            "ray_node_name": os.environ.get("FEDHYDRA_RAY_NODE_NAME"),
            "start": wall,
            "seconds": round(seconds, 4),
            "episodes_seconds": round(_CALL["episodes_seconds"], 4),
            "episodes_built": _CALL["episodes_built"],
            "llm_calls": sum(s.calls for s in stats),
            "llm_hits": sum(s.cache_hits for s in stats),
            "llm_seconds": round(sum(s.seconds for s in stats), 4),
            "tensor_bytes_in": tensor_bytes(msg),
            "tensor_bytes_out": tensor_bytes(reply),
            "wire_bytes_in": wire_in,
            "wire_bytes_out": wire_out,
            "objects_in": objects_in,
            "objects_out": objects_out,
            "error": reply.error.reason[:200] if reply.has_error() else None,
            "rss_mb": round(rss, 1),
            "hwm_mb": round(hwm, 1),
        }
        _CALL["llms"] = []
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / f"{socket.gethostname()}-{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        return reply

    return probe_mod


def read_probes(folder: str | Path) -> list[dict]:
    """Every probe line under ``folder`` (all processes), in start order."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        # split at "\n" only; a line cut short by a killed process is skipped
        rows.extend(row for row in read_jsonl(path) if isinstance(row, dict))
    return sorted(rows, key=lambda r: r.get("start", 0))
