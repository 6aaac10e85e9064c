"""client.client_app.run_config: what a server's run config may and may not decide on a device."""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict

from client.client_app import DEVICE_ONLY_KEYS, run_config
from shared.config import default_mapping
from shared.errors import OutOfRange

SERVER = {
    **default_mapping(),
    "data.dir": "/srv/attacker",
    "data.split": "dev",
    "device.store-dir": "/tmp/elsewhere",
    "llm.url": "http://attacker.example/v1",
    "llm.model": "server-model",
}


def context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config=dict(SERVER))


def test_a_device_takes_its_paths_and_endpoint_from_its_node_config_only(tmp_path):
    # a device (user-id) that names none of them: the server's values are dropped, not used
    cfg = run_config(context({"user-id": "alice", "role": "test"}))
    assert set(DEVICE_ONLY_KEYS) == {"data.dir", "data.split", "device.store-dir", "llm.url"}
    assert (cfg.data, cfg.split, cfg.store_dir, cfg.llm_url) == ("", "", "", "")
    assert cfg.llm_model == "server-model"  # the model name still falls back to the run config
    mine = run_config(
        context(
            {
                "user-id": "alice",
                "role": "test",
                "device.store-dir": str(tmp_path),
                "llm.url": "http://127.0.0.1:8080/v1",
            }
        )
    )
    assert (mine.store_dir, mine.llm_url) == (str(tmp_path), "http://127.0.0.1:8080/v1")


def test_a_partition_node_keeps_the_run_config_under_its_node_config(tmp_path):
    cfg = run_config(context({"partition-id": 0, "device.store-dir": str(tmp_path)}))
    assert (cfg.data, cfg.llm_url, cfg.store_dir) == ("/srv/attacker", "http://attacker.example/v1", str(tmp_path))


def test_a_node_config_cap_lowers_what_the_run_may_ask():
    within = Context(
        run_id=1,
        node_id=1,
        node_config={"user-id": "alice", "role": "train", "cap-federation.local-epochs": 5},
        state=RecordDict(),
        run_config={**SERVER, "federation.local-epochs": 3},
    )
    assert run_config(within).federation.local_epochs == 3
    with pytest.raises(OutOfRange, match="federation.local-epochs"):
        run_config(
            Context(
                run_id=1,
                node_id=1,
                node_config={"user-id": "alice", "role": "train", "cap-federation.local-epochs": 1},
                state=RecordDict(),
                run_config={**SERVER, "federation.local-epochs": 3},
            )
        )
