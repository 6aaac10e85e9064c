"""Small process helpers shared by the embedded LLM server, the local SuperLink and the tests that start processes.

Example:
    >>> import os
    >>> pid_alive(os.getpid()), 0 < free_port() < 65536
    (True, True)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

__all__ = ["free_port", "pid_alive", "start_time", "descendants", "stop_process_tree"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (so that a reused pid is never signalled), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first), found by walking ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_process_tree(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and everything it started, by pid.

    Its process group gets SIGTERM, then SIGKILL after ``grace`` seconds. Once it has exited, the members of
    its group and its descendants found before that still alive (re-parented to init, or in their own
    session) get SIGTERM, then SIGKILL after ``grace`` seconds; a pid reused since is never signalled.
    """
    family = [(pid, start_time(pid)) for pid in descendants(proc.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    proc.poll()

    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        alive = [pid for pid, started in family if started is not None and start_time(pid) == started]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and (
            group_alive() or any(start_time(p) == s for p, s in family if p in alive)
        ):
            time.sleep(0.2)
