"""A node's work without Flower: a free training node's episodes, and its margin sums (only counts and sums)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from client.node import ClientNode, is_free_node, node_dataset, resolve_user
from shared.config import RunConfig, default_mapping
from shared.errors import ConfigError
from shared.hydra.decision import MarginSums
from shared.hydra.episodes import free_user_config
from shared.protocol import NodeRole
from shared.synthetic import write_synthetic

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> RunConfig:
    tmp = tmp_path_factory.mktemp("node")
    data = write_synthetic(tmp / "data", "LaMP-3", n_users=4, items_per_user=10, questions_per_user=3)
    return RunConfig.from_mapping(
        {
            **default_mapping(),
            "data.task": "LaMP-3",
            "data.dir": str(data),
            "data.train-users": 2,
            "data.free-train-users": 1,
            "data.test-users": 1,
            "device.store-dir": str(tmp / "clients"),
            "pool.free-questions": 4,
            "train.fit-steps": 20,
        }
    )


def test_free_training_nodes_follow_the_paid_ones_and_build_their_episodes_as_the_centralized_run(cfg):
    from shared.users import node_count, split_users
    from simulations.hydra_run import build_episodes

    assert (
        node_count(
            cfg.protocol, train_users=cfg.train_users, test_users=cfg.test_users, free_train_users=cfg.free_train_users
        )
        == 4
    )
    roles = [resolve_user(cfg, {"partition-id": i})[1] for i in range(4)]
    assert roles == [NodeRole.TRAIN] * 3 + [NodeRole.TEST]
    assert [is_free_node(cfg, {"partition-id": i}) for i in range(4)] == [False, False, True, False]
    assert is_free_node(cfg, {"user-id": "x", "role": "train", "free-train": True})
    user, role = resolve_user(cfg, {"partition-id": 2})
    node = ClientNode(cfg=cfg, user=user, role=role, llm=None, free=True)  # no LLM client at all: none is needed
    episodes, built = node.episodes()
    assert built["llm_calls"] == 0 and episodes
    assert any(not ep.pseudo for ep in episodes) and all(not ep.rerank_answers and ep.greedy is None for ep in episodes)
    train, _ = split_users(
        node_dataset(cfg), train_users=cfg.train_users, test_users=cfg.test_users, free_train_users=cfg.free_train_users
    )
    assert train[2].user_id == user.user_id
    central, _ = build_episodes(
        node.task, [user], None, replace(cfg, episodes=free_user_config(cfg.episodes)), with_golds=True, progress=False
    )
    assert [ep.to_json() for ep in episodes] == [ep.to_json() for ep in central[user.user_id]]


def test_a_training_nodes_margin_reply_is_counts_and_sums_only_and_leaves_its_model_alone(cfg):
    from client.node import shared_base
    from shared.training.model import initial_shared_state

    user, role = resolve_user(cfg, {"partition-id": 2})
    node = ClientNode(cfg=cfg, user=user, role=role, llm=None, free=True)
    arrays = initial_shared_state(cfg.model, 0)
    heads_before = node.store.read_heads(cfg.model)
    record = node.margin_sums(arrays)
    # exactly the grid's counts and sums, per decision (anchor, LLM answers): numbers, no tensor, no text, nothing
    # naming the user
    from shared.hydra.candidates import decision_keys

    decisions = decision_keys(node.task, cfg.pool)
    assert set(record) == MarginSums.record_keys(anchors=decisions)
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record.values())
    assert user.user_id not in json.dumps(record) and not any(user.user_id in k for k in record)
    sums = MarginSums.from_record(record, anchors=decisions)
    assert sums.points > 0 and sums.left[0] >= sums.left[-1] == 0
    assert node.margin_sums(arrays) == record  # deterministic
    # the base stayed frozen and the stored personal heads untouched
    after = {k: v.numpy() for k, v in shared_base(cfg.model).shared_state().items()}
    assert all(np.array_equal(after[k], arrays[k]) for k in arrays)
    assert node.store.read_heads(cfg.model) == heads_before
    test_user, test_role = resolve_user(cfg, {"partition-id": 3})
    with pytest.raises(ConfigError, match="test user"):
        ClientNode(cfg=cfg, user=test_user, role=test_role, llm=None).margin_sums(arrays)


def test_a_training_round_uses_at_most_local_episodes_of_the_users_episodes(cfg):
    """`federation.local-episodes` caps a round's work: the reply weighs only the examples of the episodes drawn."""
    from shared.llm.client import LLMClient, LLMConfig
    from shared.protocol import WEIGHT_KEY
    from shared.training.model import ROLES, initial_shared_state

    user, role = resolve_user(cfg, {"partition-id": 2})
    arrays = initial_shared_state(cfg.model, 0)
    llm = LLMClient(
        LLMConfig(base_url="http://127.0.0.1:9/v1", model="none", cache_path="")
    )  # a free node asks nothing
    full = ClientNode(cfg=cfg, user=user, role=role, llm=llm, free=True)
    episodes, _ = full.episodes()
    assert len(episodes) > 2
    all_examples = full.train(arrays, server_round=1)[1][WEIGHT_KEY]
    capped = ClientNode(
        cfg=replace(cfg, federation=replace(cfg.federation, local_episodes=2)), user=user, role=role, llm=llm, free=True
    )
    out, metrics = capped.train(arrays, server_round=1)
    assert 0 < metrics[WEIGHT_KEY] <= 2 * len(ROLES) < all_examples
    assert set(out) == set(arrays) and llm.stats.calls == 0


def test_a_margin_is_a_number_in_its_range_or_inf_and_an_anchor_one_of_the_tasks():
    """Issue 28, probe 2 (property-based): whatever a server sends as the final evaluation's margin, only a number in
    [0, MAX_MARGIN] or inf gets through; an anchor only if it is one of the task's anchors (no text of it is ever a
    path: device_bundle names its folder by a digest)."""
    import math

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from client.node import MAX_MARGIN, check_anchor, check_margin
    from shared.errors import ConfigError
    from shared.hydra.candidates import anchors_for
    from shared.tasks import get_task

    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-10, 10),
            st.booleans(),
            st.text(max_size=4),
            st.none(),
        )
    )
    def margins(value):
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (0 <= value <= MAX_MARGIN or value == math.inf)
        )
        if ok:
            assert check_margin(value) == float(value)
        else:
            with pytest.raises(ConfigError, match="'margin' must be a number in"):
                check_margin(value)

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from(["LaMP-3", "LaMP-7"]),
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(["baseline", "edit-0.6", "edit-1", "x/../../../escaped", "../baseline"]),
            st.integers(),
        ),
    )
    def anchors(task_name, value):
        task = get_task(task_name)
        if value in anchors_for(task):
            assert check_anchor(value, task) == value
        else:
            with pytest.raises(ConfigError) as caught:
                check_anchor(value, task)
            assert str(caught.value) == (
                f"message config key 'anchor' must be one of {', '.join(anchors_for(task))} for {task.name}"
            )  # the server's text is not repeated

    margins()
    anchors()


def test_a_node_builds_again_an_onboarding_an_outage_cut_short(cfg):
    """Episodes stored with ``onboarding_failed`` > 0 (labels an LLM outage cost) are built again on the next
    message; without it the stored episodes are used as they are (as the SDK's ``fit()``)."""
    user, role = resolve_user(cfg, {"partition-id": 2})
    node = ClientNode(cfg=cfg, user=user, role=role, llm=None, free=True)
    full, _ = node.episodes()
    assert full and node.store.onboarding_failed() == 0
    node.store.write_episodes(full[:1])  # what an onboarding cut short by an outage stored
    assert len(node.episodes()[0]) == 1  # no failure recorded: the stored episodes are used
    node.store.update_meta(onboarding_failed=3)
    again, _ = node.episodes()
    assert [ep.to_json() for ep in again] == [ep.to_json() for ep in full] and node.store.onboarding_failed() == 0


def test_a_servers_llm_call_count_is_a_whole_number_up_to_the_pools_requests():
    from client.node import check_llm_calls
    from shared.hydra.candidates import PoolConfig

    pool = PoolConfig(n_samples=1)
    assert [check_llm_calls(c, pool) for c in (0, 1, 2)] == [0, 1, 2]
    for bad in (-1, 3, 1.0, "1", True, None, float("nan")):
        with pytest.raises(ConfigError, match="'llm-calls' must be a whole number in \\[0, 2\\]"):
            check_llm_calls(bad, pool)


def test_a_new_user_under_margin_inf_is_not_onboarded_and_asks_the_llm_nothing(cfg, tmp_path):
    """Under a margin of ``inf`` no head can change an answer: the test node answers without building an onboarding
    (the LLM is a closed port, so any request would fail and count), as the SDK's ``fit()`` does."""
    from shared.llm import LLMClient, LLMConfig
    from shared.training.model import initial_shared_state

    user, role = resolve_user(cfg, {"partition-id": 3})
    assert role is NodeRole.TEST
    llm = LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", cache_path="", max_retries=0))
    node = ClientNode(cfg=replace(cfg, store_dir=str(tmp_path)), user=user, role=role, llm=llm)
    golds = {q.id: "3" for q in user.questions}
    metrics = node.evaluate(
        initial_shared_state(cfg.model, 0), methods=["user-mean", "hydra"], golds=golds, margin=float("inf")
    )
    assert metrics["llm-calls"] == 0 and metrics["llm-failures"] == 0
    assert node.store.read_episodes() is None and node.store.read_heads(cfg.model) is None
    meta = node.store.read_meta()
    assert meta["episodes"] == 0 and meta["episode_llm_asked"] == 0
    answered = node.store.read_predictions()["by_method"]["hydra"]
    assert set(answered) == set(golds) and all(a in {"1", "2", "3", "4", "5"} for a in answered.values())
