"""The memory of every process of a run: a thread samples a process tree (and any extra pids) from ``/proc``.

Each sample reads, for every live process of the tree, its resident memory (``VmRSS``), its peak so far as the
kernel keeps it (``VmHWM``, so a peak between two samples is not missed) and, every ``pss_every``-th sample, its
proportional share (``Pss`` of ``smaps_rollup``: pages shared between processes, such as the libraries of forked Ray
workers, counted once in the sum). A process is named by its command line (``raylet``, ``ray::ClientAppActor``,
``flwr-simulation``, ...).

Example:
    >>> import os, time
    >>> with TreeMemory([os.getpid()], interval_s=0.05) as mem:
    ...     time.sleep(0.2)
    >>> report = mem.report()
    >>> report["processes"][0]["pid"] == os.getpid() and report["peak_total_rss_mb"] > 0
    True
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.procs import descendants

__all__ = ["TreeMemory", "process_name"]


def process_name(pid: int) -> str:
    """A short name for a process: the Ray or Flower role when it has one, else its command."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not args:
        return "?"
    text = " ".join(args)
    if text.startswith("ray::"):  # "ray::ClientAppActor.run" while it runs a method, "ray::ClientAppActor" between
        return args[0].split(" ")[0].split(".")[0]
    exe = os.path.basename(args[0])
    if exe in ("raylet", "gcs_server"):
        return exe
    for marker, name in (
        ("default_worker.py", "ray worker (starting)"),
        ("dashboard/agent.py", "ray dashboard agent"),
        ("runtime_env/agent", "ray runtime-env agent"),
        ("log_monitor.py", "ray log_monitor"),
        ("autoscaler/_private/monitor.py", "ray monitor"),
        ("dashboard/dashboard.py", "ray dashboard"),
        ("flower-superlink", "flower-superlink"),
        ("flower-superexec", "flower-superexec"),
        ("flower-supernode", "flower-supernode"),
        ("flwr-simulation", "flwr-simulation"),
        ("flwr-serverapp", "flwr-serverapp"),
        ("flwr-clientapp", "flwr-clientapp"),
        ("bin/flwr ", "flwr (CLI)"),
        ("bin/ray start", "ray start (node)"),
        ("llama-server", "llama-server"),
    ):
        if marker in text + " ":
            return name
    if exe.startswith("python") and len(args) > 1:
        script = next((a for a in args[1:] if not a.startswith("-")), "")
        return f"python {os.path.basename(script)}" if script else exe
    return exe


def _status(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


def _pss(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class _Proc:
    pid: int
    name: str
    first_s: float
    last_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0


@dataclass
class TreeMemory:
    """Samples the processes of the trees rooted at ``roots`` every ``interval_s`` seconds (a context manager)."""

    roots: Iterable[int]
    interval_s: float = 0.5
    pss_every: int = 4
    procs: dict[tuple[int, float], _Proc] = field(default_factory=dict)
    peak_total_rss_mb: float = 0.0
    peak_total_pss_mb: float = 0.0
    samples: int = 0
    timeline: list[tuple[float, float, int]] = field(default_factory=list)
    """(seconds since start, total RSS in MB, processes) per sample."""

    def __post_init__(self) -> None:
        self.roots = list(self.roots)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def add_root(self, pid: int) -> None:
        with self._lock:
            if pid not in self.roots:
                self.roots = [*self.roots, pid]

    def sample(self) -> None:
        with self._lock:
            roots = list(self.roots)
        pids: list[int] = []
        for root in roots:
            for pid in [root, *descendants(root)]:
                if pid not in pids and os.path.exists(f"/proc/{pid}"):
                    pids.append(pid)
        now = time.monotonic() - self._t0
        with_pss = self.samples % self.pss_every == 0
        total_rss = total_pss = 0.0
        for pid in pids:
            rss, hwm = _status(pid)
            if rss == 0 and hwm == 0:
                continue
            key = (pid, self._start_key(pid))
            proc = self.procs.get(key)
            if proc is None:
                proc = self.procs[key] = _Proc(pid, process_name(pid), now)
            elif not proc.name.startswith("ray::") or proc.name == "ray::IDLE":
                # a Ray worker renames itself when it hosts an actor or a task (and "ray::IDLE" again after it)
                name = process_name(pid)
                if name != "ray::IDLE" or not proc.name.startswith("ray::"):
                    proc.name = name
            proc.last_s = now
            proc.peak_rss_mb = max(proc.peak_rss_mb, hwm, rss)
            total_rss += rss
            if with_pss:
                pss = _pss(pid)
                if pss is not None:
                    proc.peak_pss_mb = max(proc.peak_pss_mb, pss)
                    total_pss += pss
        self.peak_total_rss_mb = max(self.peak_total_rss_mb, total_rss)
        if with_pss:
            self.peak_total_pss_mb = max(self.peak_total_pss_mb, total_pss)
        self.timeline.append((round(now, 2), round(total_rss, 1), len(pids)))
        self.samples += 1

    @staticmethod
    def _start_key(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                return float(fh.read().rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            return 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a sampler never sinks the run it measures
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tree-memory")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def report(self) -> dict:
        """Per process (peak RSS and PSS, first and last seen) and the peaks of the totals."""
        procs = sorted(self.procs.values(), key=lambda p: (-p.peak_rss_mb, p.pid))
        by_name: dict[str, dict] = {}
        for p in procs:
            entry = by_name.setdefault(p.name, {"name": p.name, "count": 0, "peak_rss_mb": 0.0, "peak_pss_mb": 0.0})
            entry["count"] += 1
            entry["peak_rss_mb"] = round(max(entry["peak_rss_mb"], p.peak_rss_mb), 1)
            entry["peak_pss_mb"] = round(max(entry["peak_pss_mb"], p.peak_pss_mb), 1)
        return {
            "peak_total_rss_mb": round(self.peak_total_rss_mb, 1),
            "peak_total_pss_mb": round(self.peak_total_pss_mb, 1),
            "samples": self.samples,
            "by_name": sorted(by_name.values(), key=lambda e: -e["peak_rss_mb"]),
            "processes": [
                {
                    "pid": p.pid,
                    "name": p.name,
                    "peak_rss_mb": round(p.peak_rss_mb, 1),
                    "peak_pss_mb": round(p.peak_pss_mb, 1),
                    "seen_s": [round(p.first_s, 1), round(p.last_s, 1)],
                }
                for p in procs
            ],
        }
