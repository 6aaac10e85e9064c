"""A Ray cluster of several Ray nodes on this machine, as separate processes, that this process starts and stops.

Each node is one ``ray start --block`` process (the head with ``--head``, the others with ``--address`` of the head),
with its own CPU count, object store, ports and the environment variable ``FEDHYDRA_RAY_NODE_NAME`` (which the
node's Ray workers inherit, so a ClientApp can say on which node it ran). It is how Ray's own multi-node tests run a
cluster on one host: the loopback stands in for the network between machines. Every port is chosen free (never
Ray's defaults 6379, 10001, 52365, which another Ray on the machine may hold) and the cluster's files are under a
temporary folder of its own (``--temp-dir``), never ``/tmp/ray``.

:meth:`LocalRayCluster.stop` stops what it started **by pid**: SIGTERM to each ``ray start --block`` process group
(Ray then stops that node's raylet, GCS, agents and workers), then, after a grace period, SIGKILL to any process
of each node's tree still alive (pids recorded while running, each checked against its start time). It never runs
``ray stop``, which would stop every Ray process of the machine, other people's included.

Example::

    with LocalRayCluster(Path("runs/ray"), nodes=[("head", 1), ("worker", 1)]) as cluster:
        print(cluster.address)          # 127.0.0.1:PORT, for RAY_ADDRESS or ray.init(address=...)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from shared.errors import FedHydraError
from shared.procs import descendants, free_port, start_time, stop_process_tree

__all__ = ["LocalRayCluster", "RayClusterError", "ray_executable", "node_command"]


class RayClusterError(FedHydraError):
    """A Ray node did not start or the cluster did not form."""


def ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise RayClusterError("the `ray` command is not installed (flwr[simulation] brings it)")
    return found


def node_command(
    *, head_address: str | None, num_cpus: float, temp_dir: str, object_store_bytes: int, port: int | None = None
) -> list[str]:
    """The ``ray start`` command line of one node: the head when ``head_address`` is None (on ``port``), else a
    worker joining it. Every port the node opens is free at the time of the call.

    >>> cmd = node_command(head_address=None, num_cpus=1, temp_dir="/tmp/x", object_store_bytes=10**8, port=6000)
    >>> cmd[1:4], "--port" in cmd and "6000" in cmd, "--include-dashboard=false" in cmd
    (['start', '--block', '--head'], True, True)
    >>> "--address" in node_command(head_address="127.0.0.1:6000", num_cpus=1, temp_dir="/tmp/x", object_store_bytes=10**8)
    True
    """
    cmd = [ray_executable(), "start", "--block"]
    if head_address is None:
        cmd += [
            "--head",
            "--port",
            str(port or free_port()),
            "--include-dashboard=false",
            "--ray-client-server-port",
            str(free_port()),
            "--dashboard-port",
            str(free_port()),
        ]
    else:
        cmd += ["--address", head_address]
    cmd += [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        str(int(num_cpus)),
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(int(object_store_bytes)),
        "--temp-dir",
        temp_dir,
        "--node-manager-port",
        str(free_port()),
        "--object-manager-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--dashboard-agent-grpc-port",
        str(free_port()),
        "--runtime-env-agent-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--disable-usage-stats",
    ]
    return cmd


class LocalRayCluster:
    """See the module docstring. ``nodes``: (name, CPUs) per Ray node, the head first."""

    def __init__(
        self,
        folder: Path,
        *,
        nodes: Sequence[tuple[str, float]] = (("head", 1), ("worker", 1)),
        object_store_mb: int = 300,
        env: dict | None = None,
    ):
        self.folder = Path(folder).resolve()
        self.nodes = list(nodes)
        if len(self.nodes) < 1:
            raise RayClusterError("a cluster needs a head node")
        self.object_store_bytes = object_store_mb * 2**20
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.family: dict[int, str | None] = {}  # pid -> start time, of every process seen in a node's tree
        self.address = ""
        self.temp_dir = ""

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """The ``ray start --block`` process of each node."""
        return [p.pid for _, p in self.procs]

    def _start_node(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"ray-{name}.log", "ab")  # noqa: SIM115 - the node's output while it runs
        env = {**self.env, "FEDHYDRA_RAY_NODE_NAME": name}
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.procs.append((name, proc))
        (self.folder / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.procs}))
        return proc

    def start(self, timeout: float = 180.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # a short path: Ray's unix sockets live under it (the limit is 107 bytes)
        self.temp_dir = tempfile.mkdtemp(prefix="fhray-", dir="/tmp")
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        try:
            (head_name, head_cpus), *workers = self.nodes
            self._start_node(
                head_name,
                node_command(
                    head_address=None,
                    num_cpus=head_cpus,
                    temp_dir=self.temp_dir,
                    object_store_bytes=self.object_store_bytes,
                    port=port,
                ),
            )
            self._wait_nodes(1, timeout)
            for name, cpus in workers:
                self._start_node(
                    name,
                    node_command(
                        head_address=self.address,
                        num_cpus=cpus,
                        temp_dir=self.temp_dir,
                        object_store_bytes=self.object_store_bytes,
                    ),
                )
            self._wait_nodes(len(self.nodes), timeout)
        except BaseException:
            self.stop()
            raise

    def _record_family(self) -> None:
        for _, proc in self.procs:
            for pid in [proc.pid, *descendants(proc.pid)]:
                if pid not in self.family:
                    self.family[pid] = start_time(pid)

    def alive_nodes(self) -> list[dict]:
        """The cluster's live nodes as Ray's GCS lists them (``ray list nodes`` needs the dashboard, so this asks
        the GCS from a short-lived driver process)."""
        code = (  # noqa: UP031 (a code string: its braces are Python's)
            "import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'cpus': n['Resources'].get('CPU', 0), "
            "'name': n.get('NodeName')} for n in ray.nodes()])); ray.shutdown()"
        ) % self.address
        done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            return []
        try:
            return [n for n in json.loads(done.stdout.strip().splitlines()[-1]) if n["alive"]]
        except (ValueError, IndexError):
            return []

    def _wait_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RayClusterError(
                        f"ray node {name!r} exited with {proc.returncode}; see {self.folder / f'ray-{name}.log'}"
                    )
            self._record_family()
            if len(self.alive_nodes()) >= count:
                self._record_family()
                return
            time.sleep(2.0)
        raise RayClusterError(f"the Ray cluster did not reach {count} nodes within {timeout:.0f} s")

    def stop(self, grace: float = 20.0) -> None:
        """Stop every node this object started, by pid (module docstring); remove the cluster's temporary folder."""
        self._record_family()
        for _, proc in reversed(self.procs):  # workers first, the head last
            if proc.poll() is None:
                try:
                    stop_process_tree(proc, grace)
                except OSError:
                    pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [pid for pid, started in self.family.items() if started is not None and start_time(pid) == started]
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + 5.0
            while alive and time.monotonic() < deadline and any(start_time(p) == self.family[p] for p in alive):
                time.sleep(0.2)
        self.procs = []
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = ""

    def leftovers(self) -> list[int]:
        """Processes of the cluster's trees still alive (after :meth:`stop`: none)."""
        return [pid for pid, started in self.family.items() if started is not None and start_time(pid) == started]
