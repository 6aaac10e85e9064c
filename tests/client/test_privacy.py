"""Claims of docs/privacy.md about what a real client sends, that no other test shows: the differential-privacy
clipping of a reply, the tensors a client did not train coming back byte for byte, and the device's own LLM endpoint
winning over the run config's. Against the deterministic stub endpoint (``lab/llm_stub.py``, not a language
model)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from lab.llm_stub import StubEndpoint
from lab.small_runs import device_run_config
from shared.hydra.spec import EDITOR_PREFIX
from shared.synthetic import write_synthetic
from shared.training.model import ModelConfig, initial_shared_state
from tests.client.test_hostile_server import TASK, send

pytestmark = pytest.mark.usefixtures("flower_task_identity")


def test_with_dp_a_client_clips_its_update_to_dp_clip_before_it_leaves():
    from client.client_app import _dp_mod

    sent = {"base.a": np.zeros(4, np.float32), "base.b": np.ones(2, np.float32)}
    trained = {"base.a": np.full(4, 3.0, np.float32), "base.b": np.ones(2, np.float32)}  # update norm 6

    def train(msg, ctx):
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in trained.items()}),
                "metrics": MetricRecord({"num-examples": 1}),
            }
        )
        return Message(content=content, reply_to=msg)

    def reply_with(config: dict) -> dict[str, np.ndarray]:
        msg = Message(
            content=RecordDict(
                {"arrays": ArrayRecord({k: Array(v) for k, v in sent.items()}), "config": ConfigRecord(config)}
            ),
            dst_node_id=1,
            message_type=MessageType.TRAIN,
        )
        ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
        return {k: v.numpy() for k, v in _dp_mod(msg, ctx, train).content["arrays"].items()}

    clipped = reply_with({KEY_CLIPPING_NORM: 0.5})
    update = np.sqrt(sum(float(np.sum((clipped[k] - sent[k]) ** 2)) for k in sent))
    assert update == pytest.approx(0.5, rel=1e-5)
    assert np.array_equal(clipped["base.b"], sent["base.b"])  # an untouched tensor stays untouched, even clipped
    plain = reply_with({})  # no DP: the update leaves as trained
    assert all(np.array_equal(plain[k], trained[k]) for k in trained)


@pytest.fixture
def run_config(tmp_path):
    data = write_synthetic(tmp_path / "data", TASK, n_users=2, items_per_user=10, seed=0)
    with StubEndpoint(delay_s=0.0) as stub:
        yield device_run_config(data, tmp_path / "store", stub.url)


def test_the_tensors_a_client_did_not_train_come_back_byte_for_byte(run_config):
    """LaMP-3 trains no input editor (a rewrite-task part): a training reply carries the editor exactly as sent, so the
    server can tell the tensors a client did not train (docs/privacy.md, what the audit found)."""
    initial = initial_shared_state(ModelConfig(), 0)
    reply = send(run_config, 0, MessageType.TRAIN, initial)
    arrays = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    untouched = {k for k in initial if arrays[k].tobytes() == initial[k].tobytes()}
    assert {k for k in initial if k.startswith(EDITOR_PREFIX)} <= untouched and untouched != set(initial)
    # here more stays untouched (seen when this test was written): a role without usable examples (this user's
    # reranker) and, after a single optimizer step, LoRA's A matrices (their gradient is zero while B is)
    assert set(reply.content["metrics"]) >= {"num-examples", "train-loss", "llm-calls", "seconds"}


def test_a_dp_client_takes_a_base_in_any_key_order_and_replies_in_that_order(run_config):
    """A resumed server sends the base of its checkpoint, whose keys come back sorted, not in the model's order.
    Flower's clipping (DP runs, plain or secure) refuses a reply whose keys are not in the order sent, so the client
    replies in the order it received, and clips as always."""
    initial = initial_shared_state(ModelConfig(), 0)
    resumed = {k: initial[k] for k in sorted(initial)}
    assert list(resumed) != list(initial)  # as a checkpoint loads (shared/hydra/bundle.py, load_tensors)
    reply = send(run_config, 0, MessageType.TRAIN, resumed, **{KEY_CLIPPING_NORM: 0.5})
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    arrays = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    assert list(arrays) == list(resumed)
    assert np.sqrt(sum(float(np.sum((arrays[k] - resumed[k]) ** 2)) for k in arrays)) <= 0.5 + 1e-5


def test_a_devices_node_config_pins_its_llm_endpoint_over_the_run_configs(run_config, monkeypatch):
    """The run config (the operator's) names an endpoint; a device that names its own in its node config sends its
    prompts there and nowhere else; one that does not uses the run config's, even over its FEDHYDRA_LLM_BASE_URL."""
    from client.client_app import _node

    mine = run_config["llm.url"]
    operators = {**run_config, "llm.url": "http://203.0.113.9:8080/v1"}
    ctx = Context(
        run_id=1, node_id=1, node_config={"partition-id": 0, "llm.url": mine}, state=RecordDict(), run_config=operators
    )
    assert _node(ctx).llm.config.base_url.rstrip("/") == mine.rstrip("/")
    monkeypatch.setenv("FEDHYDRA_LLM_BASE_URL", mine)
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config=operators)
    assert _node(ctx).llm.config.base_url.startswith("http://203.0.113.9:8080")  # unpinned: the operator's choice


def test_the_llm_provider_gets_history_records_and_inputs_never_a_gold():
    """What a training user's episodes send to the LLM endpoint: the question's input, history records (as earlier
    turns, or alone for the reranker's labels) and, for LaMP-7's pseudo-questions, whole tweets to paraphrase; never
    the gold of a question."""
    from shared.hydra.candidates import PoolConfig
    from shared.hydra.episodes import EpisodeConfig, build_user_episodes
    from shared.llm.client import LLMClient, LLMConfig
    from shared.tasks import get_task

    task = get_task("LaMP-7")
    tweets = [{"id": f"t{i}", "text": f"tweet {i} about my cat and the rain today"} for i in range(12)]
    gold = "zebra quasar unmistakable"
    questions = [("q1", task.instruction + "My cat is sitting in the rain today.", gold)]
    sent: list = []

    class Recording(LLMClient):
        def complete_many(self, calls, **kw):
            sent.extend(calls)
            return super().complete_many(calls, **kw)

    config = EpisodeConfig(
        pseudo_questions=2, free_questions=2, label_records=2, pool=PoolConfig(n_samples=1), calls_per_user=200
    )
    with StubEndpoint(delay_s=0.0) as stub:
        build_user_episodes(
            task, "u", tweets, questions, Recording(LLMConfig(base_url=stub.url, cache_path="")), config
        )
    texts = [m["content"] for call in sent for m in call.messages]
    assert sent and not any(gold in t for t in texts)
    history = {t["text"] for t in tweets}
    records = [m["content"] for call in sent for m in call.messages if m["role"] == "assistant"]
    assert records and set(records) <= history  # history records, as the assistant's earlier turns
    asks = [m["content"] for call in sent for m in call.messages if m["role"] == "user"]
    assert any(t in a for a in asks for t in history)  # a pseudo-question's tweet, sent whole to be paraphrased


def _leaks(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s and s in text]


def test_an_error_reply_carries_a_code_and_a_fixed_reason_and_the_audit_records_it(
    run_config, tmp_path, monkeypatch, caplog
):
    """Issue 28's probe 5: a training message sent to a test node, and a message to a node whose store is damaged,
    fail; their replies carry a code and a fixed reason (shared.protocol.ERROR_REPLIES), never the user's id, the
    store's path or data; the privacy audit records both error replies as they leave, and the device's log keeps the
    full reason."""
    import json
    import logging
    from pathlib import Path

    from shared.protocol import ERROR_REPLIES

    audit = tmp_path / "audit"
    monkeypatch.setenv("FEDHYDRA_AUDIT_DIR", str(audit))
    caplog.set_level(logging.WARNING, logger="client.replies")
    initial = initial_shared_state(ModelConfig(), 0)
    store = Path(run_config["device.store-dir"])

    wrong_role = send(run_config, 1, MessageType.TRAIN, initial)  # partition 1: the test user
    assert wrong_role.has_error()
    assert (wrong_role.error.code, wrong_role.error.reason) == (105, ERROR_REPLIES[105][1])
    test_user = (
        next(line for line in caplog.text.splitlines() if "is a test user" in line).split("user ")[-1].split()[0]
    )

    assert not send(run_config, 0, MessageType.TRAIN, initial).has_error()  # the training user's store exists now
    user = next(p for p in store.iterdir() if p.is_dir() and p.name != "bundles")
    for damaged in [p for p in user.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors")]:
        damaged.write_bytes(b"\x00garbage")
    broken = send(run_config, 0, MessageType.TRAIN, initial)
    assert broken.has_error() and broken.error.code != 0
    assert broken.error.reason == ERROR_REPLIES[broken.error.code][1]

    sent = [json.loads(line) for f in audit.glob("*.jsonl") for line in f.read_text().splitlines()]
    errors = [line for line in sent if "error" in line]
    assert [(e["code"], e["error"]) for e in errors] == [
        (105, ERROR_REPLIES[105][1]),
        (broken.error.code, broken.error.reason),
    ]
    everything = wrong_role.error.reason + broken.error.reason + "".join(f.read_text() for f in audit.glob("*.jsonl"))
    assert not _leaks(everything, test_user, user.name, str(store), str(tmp_path), "test user", "garbage")
    assert test_user in caplog.text  # the device's own log keeps what happened
