"""The local SuperLink's lifecycle helpers (:mod:`simulations.superlink`), without Flower."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import simulations.superlink as superlink
from shared.procs import pid_alive, stop_process_tree
from simulations.superlink import LocalSuperLink, descendants, kill_tree


def _orphaned_group_member() -> tuple[subprocess.Popen, int]:
    """(the group leader, exited; pid of a process of its group that outlives it and is re-parented to init)."""
    script = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        "print(p.pid, flush=True)"
    )
    leader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    orphan = int(leader.stdout.readline())
    leader.wait(timeout=30)
    return leader, orphan


def test_stragglers_of_the_group_are_stopped_after_the_leader_exited():
    leader, orphan = _orphaned_group_member()
    assert pid_alive(orphan)  # what a SIGTERM of the leader alone left running
    stop_process_tree(leader, grace=5)
    deadline = time.monotonic() + 10
    while pid_alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(orphan)


def test_stop_ends_the_whole_tree_of_a_started_process(tmp_path):
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']);"
        " time.sleep(300)"
    )
    link = LocalSuperLink(tmp_path / "home", num_supernodes=1)
    link.home.mkdir(parents=True)
    link.process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 30
    while not descendants(link.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = descendants(link.process.pid)[0]
    leader = link.process
    link.stop(grace=5)
    assert leader.poll() is not None and not pid_alive(child)
    assert link.process is None


def test_kill_tree_kills_descendants():
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not descendants(parent.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = descendants(parent.pid)[0]
    assert set(kill_tree(parent.pid)) >= {parent.pid, child}
    assert not pid_alive(child) and parent.poll() is not None


def test_a_start_interrupted_while_waiting_stops_what_it_started(tmp_path, monkeypatch):
    """SIGTERM (made SystemExit by scripts/fed_scale.py) while the SuperLink was still opening its port left it
    running; now the wait's end, whatever ends it, stops it."""
    fake = tmp_path / "flower-superlink"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(0o755)
    monkeypatch.setattr(superlink, "flwr_executable", lambda name="flwr": str(fake))

    link = LocalSuperLink(tmp_path / "home", num_supernodes=1)
    started: list[int] = []

    def interrupted(port):
        started.append(link.process.pid)
        raise SystemExit(143)

    monkeypatch.setattr(superlink, "_port_open", interrupted)
    with pytest.raises(SystemExit):
        link.start()
    assert started and not pid_alive(started[0])
    assert link.process is None and not link.pid_file.exists()
