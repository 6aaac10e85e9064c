"""Two processes, one store: every item each adds is kept, and adding one item writes one row (no rewrite)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from client.store import UserStore
from tests.conftest import REPO

ADDER = textwrap.dedent("""
    import sys
    from client.sdk import PersonalClient
    from client.store import UserStore
    root, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = PersonalClient(UserStore(root, "alice", task="LaMP-7"), llm="http://127.0.0.1:9/v1", task="LaMP-7")
    print("ready", flush=True)
    sys.stdin.readline()  # go: both start adding at once
    for i in range(n):
        client.add_history([{"text": f"{name} item {i}"}])
    print("done", flush=True)
""")


def test_two_processes_adding_1000_items_each_keep_2000(tmp_path):
    UserStore(tmp_path, "alice", task="LaMP-7")  # made before, as an app's first run would
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADDER, str(tmp_path), name, "1000"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done", err[-2000:]
    history = UserStore(tmp_path, "alice", task="LaMP-7").read_history()
    assert len(history) == 2000
    assert {h["text"] for h in history} == {f"{p} item {i}" for p in ("p1", "p2") for i in range(1000)}
    assert len({h["id"] for h in history}) == 2000  # ids given in the appending transaction: no two alike
    for p in ("p1", "p2"):  # each process's items in its order
        mine = [int(h["text"].split()[-1]) for h in history if h["text"].startswith(p)]
        assert mine == list(range(1000))


def test_adding_one_item_writes_one_row_not_the_whole_history(tmp_path):
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    store.write_history([{"id": str(i), "text": f"tweet {i}"} for i in range(20000)])
    con = store._connection()
    before = con.total_changes
    assert store.append_history([{"text": "one more"}]) == 20001
    assert con.total_changes - before == 1
    assert store.read_history()[-1] == {"text": "one more", "id": "h20000"}
