"""A real multi-process deployment, as in docs/deployment.md: a SuperLink with TLS and SuperNode authentication,
two registered SuperNodes (one finding its user by ``partition-id``, the other by ``user-id`` + ``role``), the app
submitted with ``flwr run``, and a third SuperNode whose key was never registered being refused.

Every process (SuperLink, SuperNodes, and whatever they spawn: SuperExec, ServerApp, ClientApps) is started here
with its own ``FLWR_HOME`` and free ports, and stopped by pid in a ``finally`` block.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.store import UserStore
from shared.procs import stop_process_tree

pytestmark = [pytest.mark.slow, pytest.mark.llm]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LINK = "fedhydra-deploy"
RUN_TIMEOUT_S = 1500.0  # 2 slow cores, possibly shared with other jobs
SMALL = {
    "data.task": "LaMP-7",
    "data.synthetic-users": 2,
    "data.synthetic-items": 8,
    "data.train-users": 2,
    "data.test-users": 0,
    "federation.num-rounds": 1,
    "pool.pseudo-questions": 1,
    "pool.free-questions": 2,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "train.epochs": 1,
    "federation.local-epochs": 1,
    "federation.min-train-nodes": 2,
    "run.seed": 0,
}


def _make_certs():
    """scripts/deploy/make_certs.py (the same script the deployment guide uses)."""
    spec = importlib.util.spec_from_file_location("fedhydra_make_certs", REPO / "scripts" / "deploy" / "make_certs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Processes:
    """Processes this test started, each in its own session, stopped (with their descendants) by pid."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - the process's output while it runs
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        self.started.append((name, proc))
        return proc

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop_all(self, grace: float = 15.0) -> None:
        for _, proc in reversed(self.started):  # SuperNodes before the SuperLink
            stop_process_tree(proc, grace)


def _flwr(env: dict[str, str], *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "flwr"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _json(done: subprocess.CompletedProcess) -> dict:
    """The JSON object a `flwr ... --format json` command printed (after any other lines)."""
    text = done.stdout
    start = text.find("{")
    assert start >= 0, f"no JSON from flwr ({done.returncode}): {text[-1500:]} {done.stderr[-1500:]}"
    return json.loads(text[start:])


def _nodes(env: dict[str, str]) -> list[dict]:
    done = _flwr(env, "supernode", "ls", LINK, "--format", "json")
    return _json(done).get("nodes", []) if done.returncode == 0 else []


def _run_status(env: dict[str, str], run_id: int) -> str:
    done = _flwr(env, "ls", "--run-id", str(run_id), LINK, "--format", "json")
    try:
        runs = _json(done).get("runs") or []
    except (AssertionError, ValueError):
        return "unknown"
    return str(runs[0].get("status", "unknown")) if runs else "unknown"


def _wait_for(check, timeout: float, what: str, *, alive: list[subprocess.Popen] = (), logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [p.args[0] for p in alive if p.poll() is not None]
        assert not dead, f"{dead} exited while waiting for {what}\n{logs()}"
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs()}")


def test_tls_superlink_authenticated_supernodes_and_a_refused_key(tmp_path, llm_server):
    import tomli_w

    from shared.data import load_split
    from shared.synthetic import write_synthetic
    from shared.users import split_users

    certs = _make_certs()
    tls = certs.make_ca_and_server(tmp_path / "keys", ["127.0.0.1", "localhost"])
    keys = {name: certs.make_supernode_key(tmp_path / "keys" / "supernodes", name) for name in ("n0", "n1", "rogue")}

    data = write_synthetic(
        tmp_path / "data.dir",
        SMALL["data.task"],
        n_users=SMALL["data.synthetic-users"],
        items_per_user=SMALL["data.synthetic-items"],
        seed=SMALL["run.seed"],
    )
    train, _ = split_users(
        load_split(data, SMALL["data.task"]), train_users=SMALL["data.train-users"], test_users=SMALL["data.test-users"]
    )

    def env_for(role: str) -> dict[str, str]:
        """Each process its own FLWR_HOME and FEDHYDRA_HOME, as on separate machines."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEDHYDRA_", "FLWR_"))}
        home = tmp_path / role
        (home / "flwr-home").mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "FLWR_HOME": str(home / "flwr-home"),
                "FEDHYDRA_HOME": str(home / "fedhydra-home"),
                "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", ""),
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
            }
        )
        return env

    port = _free_port()
    cli = env_for("operator")
    (Path(cli["FLWR_HOME"]) / "config.toml").write_text(
        "[superlink]\n"
        f'default = "{LINK}"\n\n'
        f"[superlink.{LINK}]\n"
        f'address = "127.0.0.1:{port}"\n'
        f'root-certificates = "{tls["ca"]}"\n'
    )
    run_config = tmp_path / "run_config.toml"
    out_dir = tmp_path / "server" / "out"
    run_config.write_text(
        tomli_w.dumps(
            {**SMALL, "run.out-dir": str(out_dir), "llm.url": llm_server.url, "llm.model": "smollm2-135m-instruct"}
        )
    )
    # node 0 finds its user by partition-id (inline node config), node 1 by user-id + role (a TOML file, which also
    # names its LLM endpoint: node config overrides the run config's data.dir, device.store-dir and llm.url)
    stores = {name: tmp_path / name / "store" for name in ("n0", "n1")}
    node1_config = tmp_path / "n1" / "node_config.toml"
    node1_config.parent.mkdir(parents=True, exist_ok=True)
    node1_config.write_text(
        tomli_w.dumps(
            {
                "user-id": train[1].user_id,
                "role": "train",
                "data.dir": str(data),
                "device.store-dir": str(stores["n1"]),
                "llm.url": llm_server.url,
            }
        )
    )
    node_configs = {
        "n0": f"partition-id=0 data.dir='{data}' device.store-dir='{stores['n0']}'",
        "n1": str(node1_config),
    }

    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        link = procs.start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile",
                str(tls["ca"]),
                "--ssl-certfile",
                str(tls["cert"]),
                "--ssl-keyfile",
                str(tls["key"]),
                "--enable-supernode-auth",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database",
                str(tmp_path / "superlink" / "state.db"),
            ],
            env_for("superlink"),
        )
        _wait_for(
            lambda: _port_open(port), 120, "the SuperLink port", alive=[link], logs=lambda: procs.log("superlink")
        )

        # TLS is on, with a certificate our CA signed for 127.0.0.1
        context = ssl.create_default_context(cafile=str(tls["ca"]))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            assert conn.version() in ("TLSv1.2", "TLSv1.3")

        for name in ("n0", "n1"):
            done = _flwr(cli, "supernode", "register", str(keys[name][1]), LINK, "--name", name, "--format", "json")
            assert done.returncode == 0 and _json(done)["success"], done.stdout + done.stderr
        assert len(_nodes(cli)) == 2

        # a key that was never registered is refused, and the node exits
        rogue = procs.start(
            "rogue",
            [
                str(BIN / "flower-supernode"),
                "--superlink",
                f"127.0.0.1:{port}",
                "--root-certificates",
                str(tls["ca"]),
                "--auth-supernode-private-key",
                str(keys["rogue"][0]),
                "--port",
                str(_free_port()),
                "--max-retries",
                "2",
                "--max-wait-time",
                "60",
                "--node-config",
                f"partition-id=1 data.dir='{data}'",
            ],
            env_for("rogue"),
        )
        try:
            rogue.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the unregistered SuperNode was not refused\n{procs.log('rogue')}")
        assert rogue.returncode != 0
        assert "Failed to activate SuperNode" in procs.log("rogue"), procs.log("rogue")
        assert "No SuperNode found with the given public key" in procs.log("superlink", tail=200_000)

        nodes = []
        for name in ("n0", "n1"):
            nodes.append(
                procs.start(
                    name,
                    [
                        str(BIN / "flower-supernode"),
                        "--superlink",
                        f"127.0.0.1:{port}",
                        "--root-certificates",
                        str(tls["ca"]),
                        "--auth-supernode-private-key",
                        str(keys[name][0]),
                        "--port",
                        str(_free_port()),
                        "--node-config",
                        node_configs[name],
                    ],
                    env_for(name),
                )
            )
        all_logs = lambda: "\n".join(f"--- {n} ---\n{procs.log(n)}" for n in ("superlink", "n0", "n1"))  # noqa: E731
        _wait_for(
            lambda: sum(n.get("status") == "online" for n in _nodes(cli)) == 2,
            180,
            "two online SuperNodes",
            alive=[link, *nodes],
            logs=all_logs,
        )
        assert len(_nodes(cli)) == 2  # the rogue key did not add a node

        done = _flwr(cli, "run", str(REPO), LINK, "--run-config", str(run_config), "--format", "json", timeout=600)
        match = re.search(r'"run-id"\s*:\s*"?(\d+)', done.stdout)
        assert done.returncode == 0 and match, f"flwr run failed ({done.returncode}): {done.stdout} {done.stderr}"
        run_id = int(match.group(1))

        status = {"value": "unknown"}

        def finished() -> bool:
            status["value"] = _run_status(cli, run_id)
            return status["value"].startswith("finished")

        def run_logs() -> str:
            try:
                shown = _flwr(cli, "log", str(run_id), LINK, "--show", timeout=60).stdout[-6000:]
            except subprocess.TimeoutExpired:
                shown = "(flwr log timed out)"
            return f"status {status['value']}\n--- run log ---\n{shown}\n{all_logs()}"

        _wait_for(finished, RUN_TIMEOUT_S, f"run {run_id} to finish", alive=[link, *nodes], logs=run_logs)
        assert status["value"] == "finished:completed", run_logs()

        rounds = [json.loads(line) for line in (out_dir / "rounds.jsonl").read_text().splitlines() if line.strip()]
        assert len(rounds) >= 1, run_logs()
        first = rounds[0]
        assert first["server_round"] == 1
        assert first["accepted"] == 2 and first["failed"] == 0 and first["rejected"] == [], first
        assert len(first["bytes_up_per_client"]) == 2 and min(first["bytes_up_per_client"]) > 0
        summary = json.loads((out_dir / "server_summary.json").read_text())
        assert summary["train_clients"] == 2 and summary["test_clients"] == 0

        # what each user's device built stays in that device's store; the server holds none of it
        for name, user in (("n0", train[0]), ("n1", train[1])):
            folders = [p.name for p in stores[name].iterdir() if p.is_dir()]
            assert folders == [user.user_id], (name, folders)
            assert (stores[name] / user.user_id / "heads.safetensors").is_file()
            assert UserStore(stores[name], user.user_id, task=SMALL["data.task"]).has_episodes()
        for private in ("heads.safetensors", "store.sqlite", "episodes.jsonl", "history.json"):
            for server_side in ("server", "superlink", "operator"):
                assert not list((tmp_path / server_side).rglob(private)), (server_side, private)
    finally:
        procs.stop_all()
    for name, proc in procs.started:
        assert proc.poll() is not None, f"{name} still running"
