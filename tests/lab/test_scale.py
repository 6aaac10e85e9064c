"""The scale measurements' own parts (issue 16): the probe of the scale ClientApp, the process-tree memory sampler,
the figures drawn from a run's files, and the local multi-node Ray cluster's command lines. Against the deterministic
stub endpoint (``lab/llm_stub.py``, not a language model); no Flower simulation runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from lab.llm_stub import StubEndpoint
from lab.scale.bench import analyze, busy_seconds, store_disk
from lab.scale.memory import TreeMemory
from lab.scale.probe import read_probes, serialized_size
from lab.small_runs import device_run_config
from shared.packing import is_packed, pack_content
from shared.synthetic import write_synthetic
from shared.training.model import ModelConfig, initial_shared_state


def _send(run_config: dict, partition: int, arrays: dict, server_round: int, probe_dir: Path) -> Message:
    from client.client_app import build_app
    from lab.scale.probe import probe_mod_for

    app = build_app(probe_mod_for(probe_dir))  # lab.scale.client_app's, with the folder a staged app names

    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()}),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    msg = Message(content=pack_content(content), dst_node_id=7, message_type=MessageType.TRAIN)  # as the server sends
    ctx = Context(
        run_id=1, node_id=7, node_config={"partition-id": partition}, state=RecordDict(), run_config=run_config
    )
    return app(msg, ctx)


def test_the_scale_app_is_a_copy_naming_the_probed_client_app_with_the_lab_in_it(tmp_path):
    """The production app does not carry the probe: a scale run submits a copy whose bundle adds the lab's code."""
    import io
    import tomllib
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    from lab.scale import CLIENT_APP
    from lab.scale.app import REPO, scale_app

    app = scale_app(tmp_path, tmp_path / "probe")
    assert app == tmp_path / "flwr-app" and app != REPO
    staged = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert staged["components"]["clientapp"] == CLIENT_APP == "lab.scale.client_app:app"
    names = set(zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app))).namelist())
    assert {
        "lab/scale/client_app.py",
        "lab/scale/probe.py",
        "lab/scale/probe_target.py",
        "client/client_app.py",
    } <= names
    # the run's probe folder travels in the staged app's code, not in the environment
    staged_target = (app / "lab" / "scale" / "probe_target.py").read_text()
    assert f"PROBE_DIR: str | None = {str((tmp_path / 'probe').resolve())!r}" in staged_target
    assert "PROBE_DIR: str | None = None" in (REPO / "lab" / "scale" / "probe_target.py").read_text()


@pytest.mark.slow
@pytest.mark.usefixtures("flower_task_identity")
def test_the_probe_records_first_contact_llm_bytes_and_place_of_each_message(tmp_path, monkeypatch):
    data = write_synthetic(tmp_path / "data", "LaMP-3", n_users=2, items_per_user=10, seed=0)
    monkeypatch.setenv("FEDHYDRA_RAY_NODE_NAME", "head")
    initial = initial_shared_state(ModelConfig(), 0)
    with StubEndpoint(delay_s=0.0) as stub:
        # two training users, no test user
        run_config = device_run_config(
            data, tmp_path / "store", stub.url, {"data.train-users": 2, "data.test-users": 0}
        )
        first = _send(run_config, 0, initial, 1, tmp_path / "probe")
        second = _send(run_config, 0, initial, 2, tmp_path / "probe")
    assert not first.has_error() and not second.has_error()
    rows = read_probes(tmp_path / "probe")
    assert [r["round"] for r in rows] == [1, 2] and {r["type"] for r in rows} == {"train"}
    built, cached = rows
    assert built["episodes_built"] and built["llm_calls"] > 0 and built["episodes_seconds"] > 0
    assert not cached["episodes_built"] and cached["llm_calls"] == 0  # episodes read from the node's store
    nbytes = sum(v.nbytes for v in initial.values())
    assert built["tensor_bytes_in"] == built["tensor_bytes_out"] == nbytes
    # Flower's serialized reply, packed as it leaves (shared/packing.py): the tensors the round changed (equal ones
    # stored once, unchanged ones marked, not sent) and the headers of its 7 objects (the message, its 2 records, the
    # packing's 2 records, one array and its chunk): exactly the reply the ClientApp sent
    assert is_packed(first.content)
    assert (built["wire_bytes_out"], built["objects_out"]) == serialized_size(first)
    assert 0 < built["wire_bytes_out"] < 1.5 * nbytes and built["objects_out"] == 7
    assert 0.5 * nbytes < built["wire_bytes_in"] < 1.5 * nbytes and built["objects_in"] == 7
    assert built["partition"] == 0 and built["pid"] == os.getpid() and built["ray_node_name"] == "head"
    assert built["seconds"] >= built["episodes_seconds"] and built["hwm_mb"] >= built["rss_mb"] > 0


def test_a_client_without_the_probe_directory_records_nothing(tmp_path):
    from lab.scale.probe import probe_mod_for
    from lab.scale.probe_target import PROBE_DIR

    assert PROBE_DIR is None  # the repository's probed ClientApp records nowhere; a staged app names its folder
    assert probe_mod_for(None)("message", "context", lambda m, c: (m, c)) == ("message", "context")
    assert list(tmp_path.iterdir()) == []


def test_busy_seconds_is_the_union_of_the_clients_intervals():
    assert busy_seconds([]) == 0
    assert busy_seconds([(0, 1), (0.5, 2), (3, 4)]) == 3  # two clients overlapping count once
    assert busy_seconds([(0, 10), (2, 3)]) == 10


def test_the_sampler_sees_every_process_of_a_tree_and_their_peaks(tmp_path):
    script = "import time; x = bytearray(60 * 2**20); time.sleep(3)"
    child = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {script!r}])"]
    )
    try:
        with TreeMemory([child.pid], interval_s=0.1) as mem:
            time.sleep(2.0)
    finally:
        child.wait(10)
    report = mem.report()
    pids = {p["pid"] for p in report["processes"]}
    assert child.pid in pids and len(pids) >= 2  # the child and the grandchild
    assert max(p["peak_rss_mb"] for p in report["processes"]) >= 60
    assert report["peak_total_rss_mb"] >= 60 and report["samples"] > 3


def test_the_figures_of_a_run_come_from_its_round_lines_and_probe_lines(tmp_path):
    (tmp_path / "server").mkdir()
    (tmp_path / "probe").mkdir()
    round_line = {
        "server_round": 1,
        "sampled": 2,
        "accepted": 2,
        "failed": 0,
        "rejected": [],
        "seconds": 12.0,
        "timing": {"train": 10.0, "aggregate": 0.5, "checkpoint": 0.1},
        "bytes_up_per_client": [100, 100],
        "bytes_down_per_client": 100,
    }
    (tmp_path / "server" / "rounds.jsonl").write_text(json.dumps(round_line) + "\n")
    base = {
        "type": "train",
        "round": 1,
        "host": "h",
        "ray_node": "n1",
        "ray_node_name": None,
        "llm_calls": 0,
        "llm_seconds": 0.0,
        "wire_bytes_out": 130,
        "wire_bytes_in": 120,
        "objects_out": 5,
        "hwm_mb": 900.0,
        "rss_mb": 800.0,
    }
    probes = [
        {
            **base,
            "pid": 1,
            "start": 100.0,
            "seconds": 4.0,
            "episodes_seconds": 1.0,
            "episodes_built": True,
            "llm_calls": 3,
            "llm_seconds": 0.6,
        },
        {**base, "pid": 2, "start": 102.0, "seconds": 4.0, "episodes_seconds": 0.01, "episodes_built": False},
        {
            **base,
            "type": "query",
            "round": None,
            "pid": 1,
            "start": 90.0,
            "seconds": 0.5,
            "episodes_seconds": 0.0,
            "episodes_built": False,
        },
    ]
    (tmp_path / "probe" / "h-1.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probes) + '{"cut')
    out = analyze(tmp_path)
    (row,) = out["rounds"]
    assert row["clients_busy_s"] == 6.0 and row["flower_overhead_s"] == 4.0  # 10 s of training phase, 6 busy
    assert row["client_s"] == 8.0 and row["episodes_client_s"] == 1.0 and row["train_client_s"] == 7.0
    assert row["first_contacts"] == 1 and row["llm_calls"] == 3 and row["client_processes"] == 2
    assert row["wire_bytes_up"] == 130 and row["tensor_bytes_up"] == 100
    assert out["first_contact"] == {"clients": 1, "mean_s": 1.0, "mean_llm_calls": 3}
    assert out["role_queries"]["messages"] == 1
    assert out["placement"] == [
        {"host": "h", "ray_node": "n1", "ray_node_name": None, "pids": [1, 2], "messages": 3, "train": 2}
    ]
    first = next(c for c in out["client_processes"] if c["pid"] == 1)
    assert first["messages"] == 2 and first["train_messages"] == 1 and first["max_train_rss_mb"] == 800.0


def test_disk_per_store_leaves_the_bundles_apart(tmp_path):
    for user, size in (("a", 100), ("b", 300)):
        (tmp_path / user).mkdir()
        (tmp_path / user / "episodes.jsonl").write_bytes(b"x" * size)
    (tmp_path / "bundles" / "x").mkdir(parents=True)
    (tmp_path / "bundles" / "x" / "m.onnx").write_bytes(b"y" * 1000)
    assert store_disk(tmp_path) == {
        "stores": 2,
        "mean_bytes": 200,
        "max_bytes": 300,
        "total_bytes": 400,
        "bundles_bytes": 1000,
    }
    assert store_disk(tmp_path, ["a"])["stores"] == 1


def test_simulate_attaches_to_a_ray_cluster_given_its_address(tmp_path, monkeypatch, capsys):
    """`fedhydra simulate --ray-address A --client-cpus C`: Flower's simulation process gets RAY_ADDRESS=A (Flower's Ray
    backend calls ray.init() without an address, which reads it) and each ClientApp C CPUs."""
    import simulations.federated as federated
    from simulations.cli import main
    from simulations.superlink import SimulationError

    seen = {}

    class FakeLink:
        def __init__(self, home, *, num_supernodes, num_cpus_per_client=2, env=None):
            seen.update(nodes=num_supernodes, cpus=num_cpus_per_client, env=dict(env or {}))

        def __enter__(self):
            raise SimulationError("stopped here by the test")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(federated, "LocalSuperLink", FakeLink)
    with StubEndpoint(delay_s=0.0) as stub:
        code = main(
            [
                "simulate",
                "--out",
                str(tmp_path / "out"),
                "--llm-url",
                stub.url,
                "--llm-model",
                "stub",
                "--train-users",
                "2",
                "--test-users",
                "1",
                "--run-config",
                "data.synthetic-users=3 data.synthetic-items=6",
                "--ray-address",
                "10.1.2.3:6379",
                "--client-cpus",
                "3",
            ]
        )
    assert code == 2 and "stopped here by the test" in capsys.readouterr().err
    assert seen["env"]["RAY_ADDRESS"] == "10.1.2.3:6379" and seen["cpus"] == 3 and seen["nodes"] == 3
    seen.clear()
    with StubEndpoint(delay_s=0.0) as stub:
        main(
            [
                "simulate",
                "--out",
                str(tmp_path / "out2"),
                "--llm-url",
                stub.url,
                "--llm-model",
                "stub",
                "--train-users",
                "2",
                "--test-users",
                "1",
                "--run-config",
                "data.synthetic-users=3 data.synthetic-items=6",
            ]
        )
    assert "RAY_ADDRESS" not in seen["env"] and seen["cpus"] == 2  # the default: a Ray of the simulation's own


def test_the_ray_nodes_command_lines_choose_their_own_ports_and_never_the_defaults():
    from lab.scale.ray_cluster import node_command

    head = node_command(head_address=None, num_cpus=2, temp_dir="/tmp/fhray-x", object_store_bytes=10**8, port=40001)
    worker = node_command(head_address="127.0.0.1:40001", num_cpus=1, temp_dir="/tmp/fhray-x", object_store_bytes=10**8)
    for cmd in (head, worker):
        assert "--block" in cmd and cmd[cmd.index("--temp-dir") + 1] == "/tmp/fhray-x"
        ports = [cmd[i + 1] for i, a in enumerate(cmd) if a.endswith("-port") and a != "--port"]
        assert ports and not {"6379", "10001", "52365", "8265"} & set(ports)
    assert head[head.index("--num-cpus") + 1] == "2" and worker[worker.index("--address") + 1] == "127.0.0.1:40001"
    assert "--head" not in worker


def test_probe_lines_keep_every_line_separator_inside_their_strings(tmp_path):
    # issue 28, item 16: read_probes split at str.splitlines(), so a reason or a host name holding U+0085, U+2028
    # or U+2029 (left raw by json.dumps(..., ensure_ascii=False)) made two damaged lines and the row was lost
    separators = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    rows = [
        {"type": "train", "pid": 1, "start": float(i), "error": f"boom{sep}again", "host": separators}
        for i, sep in enumerate(separators)
    ]
    (tmp_path / "h-1.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + '{"cut', encoding="utf-8"
    )
    assert read_probes(tmp_path) == rows
