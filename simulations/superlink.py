"""A local Flower SuperLink (simulation mode) whose whole lifecycle this process owns.

:class:`LocalSuperLink` starts ``flower-superlink --simulation`` on free loopback ports with its own
``FLWR_HOME`` (so runs never share state or ports), writes the federation into ``$FLWR_HOME/config.toml``,
submits the app with ``flwr run``, follows its log, reads its final status (``flwr run --stream`` exits 0
even for a failed run, so the status is what counts), and stops what it started by pid on exit. Its pid is in
``$FLWR_HOME/superlink.pid`` while it runs. A home left by a SuperLink that was killed (its pid file names a
dead process) is reused: the dead run's Flower state (``state.db``) is discarded, FedHydra's own files (the
server's checkpoints, the clients' stores) are elsewhere and stay.

Example::

    with LocalSuperLink(Path("runs/x/flwr-home"), num_supernodes=12) as link:
        run_id = link.submit(app_dir, run_config_file)
        status = link.wait(run_id, on_line=print)      # "finished:completed" on success
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared.errors import FedHydraError
from shared.procs import descendants, free_port, pid_alive, stop_process_tree

__all__ = ["LocalSuperLink", "SimulationError", "flwr_executable", "descendants", "kill_tree"]


class SimulationError(FedHydraError):
    """The Flower run could not be started or did not complete."""


def flwr_executable(name: str = "flwr") -> str:
    """The Flower command installed beside this Python (falls back to PATH)."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SimulationError(f"{name} not found; install flwr[simulation]==1.41.0")
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "superlink"  # cannot tell (no /proc): assume it is


def kill_tree(pid: int, *, timeout: float = 30.0) -> list[int]:
    """SIGKILL ``pid`` and all its descendants at once, as a machine crash would; returns the pids killed.

    Processes are first stopped (SIGSTOP) so that none can start another or notice its parent dying, then
    killed. Processes that left the tree before (re-parented elsewhere) are not found.
    """
    frozen: list[int] = []
    seen: set[int] = set()
    while True:
        batch = [p for p in [pid, *descendants(pid)] if p not in seen]
        if not batch:
            break
        for p in batch:
            seen.add(p)
            try:
                os.kill(p, signal.SIGSTOP)
                frozen.append(p)
            except ProcessLookupError:
                pass
    for p in frozen:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in frozen):
        try:  # reap our own child if it is one
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return frozen


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LocalSuperLink:
    """See the module docstring."""

    FEDERATION = "fedhydra"

    def __init__(self, home: Path, *, num_supernodes: int, num_cpus_per_client: int = 2, env: dict | None = None):
        self.home = Path(home).resolve()
        self.num_supernodes = num_supernodes
        self.num_cpus = num_cpus_per_client
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            **(env or {}),
            "FLWR_HOME": str(self.home),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
        }
        self.process: subprocess.Popen | None = None
        self.control_port = 0

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> LocalSuperLink:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid_file(self) -> Path:
        return self.home / "superlink.pid"

    def _discard_stale_state(self) -> None:
        """Refuse a home whose SuperLink is alive; forget the Flower state of one that died without stopping."""
        try:
            old = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            old = 0
        if old and pid_alive(old) and "superlink" in _cmdline(old):  # (a reused pid is not our SuperLink)
            raise SimulationError(f"{self.home} is in use by a running flower-superlink (pid {old})")
        for name in ("state.db", "state.db-wal", "state.db-shm", "superlink.pid"):
            try:
                (self.home / name).unlink()
            except FileNotFoundError:
                pass

    def start(self, timeout: float = 60.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._discard_stale_state()
        # Flower 1.41 serves the Control, Fleet and Runtime APIs on one HTTP port
        self.control_port = api_port = free_port()
        (self.home / "config.toml").write_text(
            "[superlink]\n"
            f'default = "{self.FEDERATION}"\n\n'
            f"[superlink.{self.FEDERATION}]\n"
            f'address = "127.0.0.1:{self.control_port}"\n'
            "insecure = true\n"
        )
        log = open(self.home / "superlink.log", "ab")  # noqa: SIM115 - the SuperLink's output while it runs
        cmd = [
            flwr_executable("flower-superlink"),
            "--insecure",
            "--simulation",
            "--isolation",
            "subprocess",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--database",
            str(self.home / "state.db"),
        ]
        self.process = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.pid_file.write_text(str(self.process.pid))
        try:  # whatever ends the wait (a timeout, Ctrl-C, SIGTERM made SystemExit) stops what was started
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SimulationError(
                        f"flower-superlink exited with {self.process.returncode}; see {self.home / 'superlink.log'}"
                    )
                if _port_open(self.control_port):
                    return
                time.sleep(0.3)
            raise SimulationError(f"flower-superlink did not open its Control API within {timeout:.0f}s")
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 15.0) -> None:
        """Stop the SuperLink and everything it started (:func:`shared.procs.stop_process_tree`): its process
        group, and what outlives it there (a flwr-simulation whose superexec exited is re-parented to init)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        try:
            stop_process_tree(proc, grace)
        finally:
            try:
                self.pid_file.unlink()
            except FileNotFoundError:
                pass

    # -- runs ----------------------------------------------------------------------------------------------
    def _flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run([flwr_executable(), *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def submit(self, app_dir: Path, run_config: Path) -> int:
        """Submit the app; returns the run id."""
        federation = f"num-supernodes={self.num_supernodes} client-resources-num-cpus={self.num_cpus}"
        done = self._flwr(
            "run",
            str(app_dir),
            self.FEDERATION,
            "--run-config",
            str(run_config),
            "--federation-config",
            federation,
            "--format",
            "json",
            timeout=300,
        )
        match = re.search(r'"run-id"\s*:\s*"?(\d+)', done.stdout) or re.search(
            r"run[ _-]?id\D+(\d+)", done.stdout, re.I
        )
        if done.returncode != 0 or not match:
            raise SimulationError(f"flwr run failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
        return int(match.group(1))

    def status(self, run_id: int) -> str:
        """The run's status string, e.g. "running", "finished:completed", "finished:failed"."""
        done = self._flwr("ls", "--run-id", str(run_id), self.FEDERATION, "--format", "json")
        try:
            data = json.loads(done.stdout)
        except ValueError:
            return "unknown"
        runs = data.get("runs") or []
        return str(runs[0].get("status", "unknown")) if runs else "unknown"

    def wait(
        self,
        run_id: int,
        *,
        on_line: Callable[[str], None] | None = None,
        status_every_s: float = 60.0,
        timeout: float = 24 * 3600,
    ) -> str:
        """Follow the run's log until it finishes; return its final status.

        Asking the status starts a ``flwr`` process (about a second of CPU), so it is asked when the log stream
        ends and otherwise once a minute.
        """
        follower = subprocess.Popen(
            [flwr_executable(), "log", str(run_id), self.FEDERATION, "--stream"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def pump() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                if on_line:
                    on_line(line.rstrip("\n"))

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + status_every_s
        status = "unknown"
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    return "finished:superlink-died"
                ended = follower.poll() is not None
                if ended or time.monotonic() >= next_check:
                    status = self.status(run_id)
                    if status.startswith("finished"):
                        break
                    if ended:  # the stream broke off early: follow again
                        follower = subprocess.Popen(
                            [flwr_executable(), "log", str(run_id), self.FEDERATION, "--stream"],
                            env=self.env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                        )
                        thread = threading.Thread(target=pump, daemon=True)
                        thread.start()
                    next_check = time.monotonic() + status_every_s
                time.sleep(1.0)
        finally:
            time.sleep(1.0)
            if follower.poll() is None:
                follower.terminate()
                try:
                    follower.wait(10)
                except subprocess.TimeoutExpired:
                    follower.kill()
            thread.join(timeout=5)
        return status
