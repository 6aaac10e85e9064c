"""The server's round log: fault counters summed per round, failure reasons kept, and rounds.jsonl on resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from server.checkpoint import save_checkpoint
from server.federation import RoundLog, ValidatingStrategy, expected_from, reset_round_log
from server.plan import restore_accountant
from server.strategies import build_strategy
from shared.config import RunConfig, default_mapping

SENT = {"base.adapter.trunk.weight": np.zeros((3, 4), np.float32)}


pytestmark = pytest.mark.usefixtures("flower_task_identity")


COUNTERS = {"skipped-examples": 0, "llm-retries": 0, "llm-failures": 0}


def reply(metrics: dict) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v + 0.01) for k, v in SENT.items()}),
            "metrics": MetricRecord({"num-examples": 4, **COUNTERS, **metrics}),
        }
    )
    return Message(content=content, dst_node_id=0, message_type="train")


def test_fault_counters_are_summed_and_failures_kept_with_their_reason():
    strategy = ValidatingStrategy(FedAvg(), expected_from(ArrayRecord({k: Array(v) for k, v in SENT.items()})))
    strategy.current = record = RoundLog(server_round=1)
    failed = Message(Error(code=0, reason="partition 2 dropped out of round 1"), reply_to=reply({}))
    replies = [
        reply({"skipped-examples": 2, "llm-retries": 5}),
        reply({"skipped-examples": 1, "llm-failures": 3}),
        reply({"llm-retries": float("nan"), "num-examples": 0}),
        failed,
    ]
    strategy.aggregate_train(1, replies)
    assert record.accepted == 2 and record.failed == 1 and len(record.rejected) == 1
    assert record.faults == {"skipped-examples": 3, "llm-retries": 5, "llm-failures": 3}  # NaN is not a count
    assert record.failures == [f"node {failed.metadata.src_node_id}: partition 2 dropped out of round 1"]


def test_a_reply_with_other_metric_keys_is_rejected_not_the_whole_round():
    strategy = ValidatingStrategy(FedAvg(), expected_from(ArrayRecord({k: Array(v) for k, v in SENT.items()})))
    strategy.current = record = RoundLog(server_round=1)
    odd = reply({"injected-metric": 1.0})
    arrays, _ = strategy.aggregate_train(1, [reply({}), odd, reply({})])
    assert arrays is not None and record.accepted == 2
    assert len(record.rejected) == 1 and "extra ['injected-metric']" in record.rejected[0]
    renamed = Message(
        RecordDict({"weights": reply({}).content["arrays"], "metrics": reply({}).content["metrics"]}),
        dst_node_id=0,
        message_type="train",
    )
    strategy.current = record = RoundLog(server_round=2)
    assert strategy.aggregate_train(2, [renamed, reply({}), reply({})])[0] is not None and record.accepted == 2
    evals = [
        Message(
            RecordDict({"metrics": MetricRecord({"num-examples": 2, **extra})}), dst_node_id=0, message_type="evaluate"
        )
        for extra in ({}, {"x": 1.0}, {})
    ]
    assert strategy.aggregate_evaluate(2, evals) is not None and record.eval_failed == 1


def test_evaluation_counters_and_failures():
    strategy = ValidatingStrategy(FedAvg(), expected_from(ArrayRecord({k: Array(v) for k, v in SENT.items()})))
    strategy.current = record = RoundLog(server_round=1)
    eval_ok = Message(
        RecordDict({"metrics": MetricRecord({"num-examples": 2, "degraded-answers": 4})}),
        dst_node_id=0,
        message_type="evaluate",
    )
    strategy.aggregate_evaluate(1, [eval_ok, Message(Error(code=0, reason="boom"), reply_to=eval_ok)])
    assert record.faults["degraded-answers"] == 4 and record.eval_failed == 1


def test_a_fresh_run_starts_the_round_log_anew_and_a_resumed_one_keeps_its_rounds(tmp_path):
    log = tmp_path / "rounds.jsonl"
    assert reset_round_log(log, 0) == [] and not log.exists()
    log.write_text("".join(json.dumps({"server_round": r}) + "\n" for r in (1, 2, 3)) + '{"server_round": 4, "acc')
    assert [r["server_round"] for r in reset_round_log(log, 2)] == [1, 2]
    assert log.read_text().splitlines() == ['{"server_round": 1}', '{"server_round": 2}']
    reset_round_log(log, 0)
    assert log.read_text() == ""


def test_a_resumed_dp_run_gets_the_privacy_ledger_of_its_checkpoint(tmp_path):
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

    cfg = RunConfig.from_mapping(
        {**default_mapping(), "run.out-dir": str(tmp_path), "dp.noise": 1.0, "run.resume": True}
    )
    _, before = build_strategy(cfg.federation, n_train=4)
    before.compose(GaussianPrivacyEvent(noise_multiplier=1.0, sample_size=4, population_size=4), count=3)
    save_checkpoint(
        tmp_path / "checkpoints", 3, SENT, model=cfg.model, task=cfg.task, privacy=json.dumps(before.state_dict())
    )
    _, after = build_strategy(cfg.federation, n_train=4)
    assert restore_accountant(cfg, 3, after)
    assert after.num_releases == before.num_releases == 3
    assert after.get_privacy_spent().epsilon == pytest.approx(before.get_privacy_spent().epsilon)
    save_checkpoint(tmp_path / "checkpoints", 4, SENT, model=cfg.model, task=cfg.task)  # no ledger in it
    _, fresh = build_strategy(cfg.federation, n_train=4)
    assert not restore_accountant(cfg, 4, fresh) and not restore_accountant(cfg, 0, fresh)


class _RecordingGrid:
    """A Grid that answers every training message with a valid update and every evaluation with metrics, and
    records what was sent and with which timeout."""

    def __init__(self, node_ids: list[int], train_extra: dict | None = None):
        self.node_ids = node_ids
        self.train_extra = train_extra or {}
        self.sent: list[tuple[str, bool, float]] = []  # (message type, final, timeout)

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)

    def send_and_receive(self, messages, timeout=None):
        out = []
        for m in messages:
            self.sent.append((m.metadata.message_type, bool(m.content["config"]["final"]), timeout))
            if m.metadata.message_type.startswith("train"):
                out.append(Message(reply(self.train_extra).content, reply_to=m))
            else:
                n = 1 + m.metadata.dst_node_id % 2  # questions answered: 2 on node 3, 1 on node 4
                out.append(
                    Message(
                        RecordDict({"metrics": MetricRecord({"num-examples": n, "hydra/MAE": float(n)})}), reply_to=m
                    )
                )
        return out


@pytest.mark.parametrize("eval_every, evaluated", [(1, [1, 2, 3, 4]), (2, [2, 4]), (3, [3, 4]), (0, [4])])
def test_test_users_evaluate_every_n_rounds_and_always_after_the_last(tmp_path, eval_every, evaluated):
    from server.federation import run_rounds
    from shared.training.model import ModelConfig

    grid = _RecordingGrid([1, 2, 3, 4])
    initial = ArrayRecord({k: Array(v) for k, v in SENT.items()})
    strategy = ValidatingStrategy(
        FedAvg(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1), expected_from(initial)
    )
    run_rounds(
        grid,
        strategy,
        initial,
        num_rounds=4,
        start_round=0,
        roles={1: "train", 2: "train", 3: "test", 4: "test"},
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=ModelConfig(),
        task="LaMP-7",
        timeout=12.5,
        eval_every=eval_every,
    )
    rounds = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert [r["server_round"] for r in rounds if r["eval_metrics"]] == evaluated
    assert all(r["accepted"] == 2 for r in rounds)
    evaluations = [final for kind, final, _ in grid.sent if kind == "evaluate"]
    assert len(evaluations) == 2 * len(evaluated) and evaluations[-2:] == [True, True]
    assert evaluations.count(True) == 2
    assert {t for *_, t in grid.sent} == {12.5}


def test_eval_every_and_round_timeout_are_validated():
    from shared.config import ConfigError

    cfg = RunConfig.from_mapping({**default_mapping(), "eval.every": 0, "federation.round-timeout": 90.0})
    assert cfg.federation.eval_every == 0 and cfg.federation.round_timeout == 90.0
    with pytest.raises(ConfigError, match="eval.every"):
        RunConfig.from_mapping({**default_mapping(), "eval.every": -1})
    with pytest.raises(ConfigError, match="federation.round-timeout"):
        RunConfig.from_mapping({**default_mapping(), "federation.round-timeout": 0.0})


def test_local_head_epochs_default_to_the_runs_head_epochs_spread_over_its_rounds():
    """A client's round trains trunk and heads for train.head-epochs / federation.num-rounds (rounded up) unless set."""
    from shared.config import ConfigError

    def local(**kw):
        return RunConfig.from_mapping({**default_mapping(), **kw}).federation.local_head_epochs

    assert local(**{"train.head-epochs": 40, "federation.num-rounds": 2}) == 20
    assert local(**{"train.head-epochs": 40, "federation.num-rounds": 3}) == 14
    assert local(**{"train.head-epochs": 40, "federation.num-rounds": 3, "federation.local-head-epochs": 5}) == 5
    assert local(**{"train.head-epochs": 0, "federation.num-rounds": 3}) == 0
    with pytest.raises(ConfigError, match="federation.local-head-epochs"):
        local(**{"federation.local-head-epochs": -1})


def test_a_dp_run_weighs_evaluations_by_questions_although_updates_weigh_the_same(tmp_path):
    """Under DP, training replies carry ``dp-weight`` (every update weighs 1); evaluation replies do not and are
    weighted by the questions answered (this used to fail the whole run at its evaluation)."""
    from server.federation import run_rounds
    from shared.protocol import DP_WEIGHT_KEY

    cfg = RunConfig.from_mapping(
        {**default_mapping(), "run.out-dir": str(tmp_path), "dp.noise": 0.5, "federation.min-train-nodes": 2}
    )
    inner, accountant = build_strategy(cfg.federation, n_train=2)
    initial = ArrayRecord({k: Array(v) for k, v in SENT.items()})
    strategy = ValidatingStrategy(inner, expected_from(initial), weight_key=DP_WEIGHT_KEY)
    grid = _RecordingGrid([1, 2, 3, 4], train_extra={DP_WEIGHT_KEY: 1})
    run_rounds(
        grid,
        strategy,
        initial,
        num_rounds=1,
        start_round=0,
        roles={1: "train", 2: "train", 3: "test", 4: "test"},
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=cfg.model,
        task=cfg.task,
        accountant=accountant,
    )
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert row["accepted"] == 2 and row["privacy"]["epsilon"] > 0
    # node 3 answered 2 questions with MAE 2, node 4 one with MAE 1: weighted (2*2 + 1*1) / 3
    assert row["eval_metrics"]["hydra/MAE"] == pytest.approx(5 / 3)
    assert row["eval_metrics"]["num-examples"] == 3


def test_pooled_evaluation_metrics_equal_the_metrics_over_all_questions():
    """Users' MAE and RMSE pooled by the server equal the official metrics over every question at once."""
    from server.federation import weighted_metrics
    from shared.metrics import evaluate
    from shared.tasks import get_task

    task = get_task("LaMP-3")
    users = [
        ({"a": "1", "b": "5"}, {"a": "2", "b": "5"}),
        ({"c": "3", "d": "1", "e": "5"}, {"c": "3", "d": "4", "e": "5"}),
    ]
    records = [
        {"num-examples": len(golds), **{f"hydra/{k}": v for k, v in evaluate(task, preds, golds).items()}}
        for preds, golds in users
    ]
    pooled = weighted_metrics(records)
    everyone = evaluate(
        task, {k: v for p, _ in users for k, v in p.items()}, {k: v for _, g in users for k, v in g.items()}
    )
    assert pooled["num-examples"] == 5
    assert pooled["hydra/MAE"] == pytest.approx(everyone["MAE"])
    assert pooled["hydra/RMSE"] == pytest.approx(everyone["RMSE"])
    assert pooled["hydra/RMSE"] != pytest.approx(np.mean([r["hydra/RMSE"] for r in records]))


@pytest.mark.parametrize("strategy_name, with_state", [("fedadam", True), ("fedavg", False)])
def test_each_round_checkpoints_the_server_optimizers_moments_when_it_has_some(tmp_path, strategy_name, with_state):
    from server.checkpoint import load_server_state, strategy_state
    from server.federation import run_rounds

    cfg = RunConfig.from_mapping(
        {**default_mapping(), "federation.strategy": strategy_name, "federation.min-train-nodes": 2}
    )
    inner, _ = build_strategy(cfg.federation, n_train=2)
    initial = ArrayRecord({k: Array(v) for k, v in SENT.items()})
    strategy = ValidatingStrategy(inner, expected_from(initial))
    run_rounds(
        _RecordingGrid([1, 2]),
        strategy,
        initial,
        num_rounds=2,
        start_round=0,
        roles={1: "train", 2: "train"},
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=cfg.model,
        task=cfg.task,
    )
    saved = load_server_state(tmp_path / "ck", 2, model=cfg.model)
    if not with_state:
        assert saved is None and not strategy_state(strategy)
        return
    assert saved is not None and set(saved) == {f"{slot}{k}" for slot in ("m_t.", "v_t.") for k in SENT}
    live = strategy_state(strategy)  # found through the validating wrapper
    assert (
        all(np.array_equal(saved[k], live[k]) for k in live)
        and np.abs(saved["v_t.base.adapter.trunk.weight"]).sum() > 0
    )
    assert load_server_state(tmp_path / "ck", 1, model=cfg.model) is not None


class _MarginGrid(_RecordingGrid):
    """A _RecordingGrid whose training nodes also answer the margin query: node n with ``answers[n]`` (a record, an
    exception text, or None for no reply)."""

    def __init__(self, node_ids, answers):
        super().__init__(node_ids)
        self.answers = answers
        self.queries: list[tuple[int, set]] = []  # (node, records sent)
        self.eval_configs: list[dict] = []

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        queries = [m for m in messages if m.metadata.message_type == "query"]
        out = []
        for m in queries:
            node = m.metadata.dst_node_id
            self.queries.append((node, set(m.content.keys())))
            self.sent.append(("query", True, timeout))
            answer = self.answers.get(node)
            if isinstance(answer, str):
                out.append(Message(Error(code=0, reason=answer), reply_to=m))
            elif answer is not None:
                out.append(Message(RecordDict({"margin": MetricRecord(answer)}), reply_to=m))
        for m in messages:
            if m.metadata.message_type == "evaluate":
                self.eval_configs.append(dict(m.content["config"]))
        return out + super().send_and_receive([m for m in messages if m.metadata.message_type != "query"], timeout)


def test_the_margin_is_chosen_from_the_training_nodes_sums_and_sent_to_the_final_evaluation_only(tmp_path):
    """After the last round the training nodes' margin sums are checked and added up; a failed, silent or malformed
    node is dropped and logged; the chosen margin and anchor go to rounds.jsonl and the final evaluation's config."""
    from server.federation import run_rounds
    from shared.hydra.candidates import anchors_for
    from shared.hydra.decision import CalibrationPoint, anchor_margin_sums, choose_margin, margin_sums
    from shared.tasks import get_task
    from shared.training.model import ModelConfig

    def per_anchor(points):  # LaMP-7's anchors; keeping the 0.8 edit gains 0.1 a question over the input
        return {
            a: [CalibrationPoint(p.advantage, p.gain, 0.1 if a == "edit-0.8" else 0.0) for p in points]
            for a in anchors_for(get_task("LaMP-7"))
        }

    mine = per_anchor([CalibrationPoint(0.9, 0.3), CalibrationPoint(0.4, -0.2)])
    theirs = per_anchor([CalibrationPoint(0.2, 0.1), CalibrationPoint(0.05, -0.5), CalibrationPoint(0.35, 0.4)])
    bad = anchor_margin_sums(theirs).to_record()
    bad["gain/0"] = float("nan")
    baseline_only = margin_sums(theirs["baseline"]).to_record()  # another task's grid: refused
    answers = {
        1: anchor_margin_sums(mine).to_record(),
        2: anchor_margin_sums(theirs).to_record(),
        5: "boom",
        6: bad,
        7: None,
        8: baseline_only,
    }
    grid = _MarginGrid([1, 2, 3, 4, 5, 6, 7, 8], answers)
    initial = ArrayRecord({k: Array(v) for k, v in SENT.items()})
    strategy = ValidatingStrategy(
        FedAvg(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1), expected_from(initial)
    )
    roles = {1: "train", 2: "train", 3: "test", 4: "test", 5: "train", 6: "train", 7: "train", 8: "train"}
    run_rounds(
        grid,
        strategy,
        initial,
        num_rounds=2,
        start_round=0,
        roles=roles,
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=ModelConfig(),
        task="LaMP-7",
        margin=True,
    )
    union = choose_margin({a: mine[a] + theirs[a] for a in mine})
    assert union.anchor == "edit-0.8"
    assert sorted(n for n, _ in grid.queries) == [1, 2, 5, 6, 7, 8]  # the training nodes, once, with the global base
    assert all(records == {"config", "arrays"} for _, records in grid.queries)
    kinds = [kind for kind, *_ in grid.sent]
    assert kinds.index("query") > max(i for i, k in enumerate(kinds) if k.startswith("train"))  # after the last round
    assert kinds.index("query") < kinds.index("evaluate", len(kinds) - 3)  # before the final evaluation
    # the first round's evaluation answers without a margin rule; the final one with the chosen margin
    assert ["margin" in c for c in grid.eval_configs] == [False, False, True, True]
    assert {c["margin"] for c in grid.eval_configs if "margin" in c} == {union.margin}
    assert {c["anchor"] for c in grid.eval_configs if "margin" in c} == {"edit-0.8"}
    rounds = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["margin"] is None
    margin = rounds[-1]["margin"]
    assert margin["margin"] == union.margin and margin["points"] == 5 and margin["left"] == union.left
    assert margin["anchor"] == "edit-0.8"
    assert margin["clients"] == 2 and len(margin["dropped"]) == 4
    dropped = " ".join(margin["dropped"])
    assert "node 5: failed: boom" in dropped and "node 6:" in dropped and "not finite" in dropped
    assert "node 7: no reply" in dropped and "node 8: margin sums with other keys" in dropped


def test_without_valid_margin_replies_the_test_users_answer_without_a_margin_rule(tmp_path):
    from server.federation import run_rounds
    from shared.training.model import ModelConfig

    grid = _MarginGrid([1, 2, 3], {1: "boom", 2: {"points": 1}})
    initial = ArrayRecord({k: Array(v) for k, v in SENT.items()})
    strategy = ValidatingStrategy(
        FedAvg(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1), expected_from(initial)
    )
    run_rounds(
        grid,
        strategy,
        initial,
        num_rounds=1,
        start_round=0,
        roles={1: "train", 2: "train", 3: "test"},
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=ModelConfig(),
        task="LaMP-7",
        margin=True,
    )
    assert grid.eval_configs and all("margin" not in c for c in grid.eval_configs)
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert "margin" not in row["margin"] and row["margin"]["clients"] == 0 and len(row["margin"]["dropped"]) == 2


def test_a_resumed_round_log_keeps_rounds_whose_strings_hold_line_separators(tmp_path):
    # issue 28, item 16: reset_round_log split at str.splitlines(), so a round whose reason holds U+0085, U+2028 or
    # U+2029 raw (a JSON string may) was read as two damaged lines and dropped from the resumed run's log
    separators = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    rows = [
        {"server_round": r, "rejected": [f"node {r}: bad{sep}update"], "note": separators}
        for r, sep in enumerate(separators, start=1)
    ]
    log = tmp_path / "rounds.jsonl"
    log.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert reset_round_log(log, 8) == rows[:8]
    assert [json.loads(line) for line in log.read_text(encoding="utf-8").split("\n") if line] == rows[:8]


def outlier_reply(delta: float, node: int) -> Message:
    arrays = ArrayRecord({k: Array(v + np.float32(delta)) for k, v in SENT.items()})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 4, **COUNTERS})})
    sent = Message(content=RecordDict(), dst_node_id=node, message_type="train")
    return Message(content, reply_to=sent)  # a reply comes from the node the instruction went to


def test_the_outlier_filter_drops_updates_over_10x_the_median_norm_and_only_those():
    # a fast unit test of _drop_outliers ("norm over 10x the median"); the slow one is test_robust_aggregation
    strategy = ValidatingStrategy(FedAvg(), expected_from(ArrayRecord({k: Array(v) for k, v in SENT.items()})))
    strategy._sent = dict(SENT)  # what configure_train keeps of the base it sent
    # every element moves by delta: norm = |delta| * sqrt(12); median of (1, 1, 1, 1, 9.9, 10.1, -50) is 1
    deltas = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 9.9, 6: 10.1, 7: -50.0}
    replies = [outlier_reply(d, node) for node, d in deltas.items()]
    strategy.current = record = RoundLog(server_round=1)
    kept = strategy._drop_outliers(1, replies)
    assert [m.metadata.src_node_id for m in kept] == [1, 2, 3, 4, 5]  # 9.9x kept, 10.1x and 50x (any sign) dropped
    assert len(record.rejected) == 2 and all(" x the median " in r for r in record.rejected)
    assert record.rejected[0].startswith("node 6: update norm 35") and "over 10 x the median 3.46" in record.rejected[0]
    # through aggregate_train: the scaled update does not reach the aggregate
    strategy.current = RoundLog(server_round=2)
    arrays, _ = strategy.aggregate_train(2, [outlier_reply(d, n) for n, d in ((1, 1.0), (2, 1.0), (3, 1000.0))])
    assert np.allclose(arrays["base.adapter.trunk.weight"].numpy(), 1.0)
    # off (factor 0), or too few replies for a median to mean anything: nothing is dropped
    strategy.norm_factor = 0.0
    assert len(strategy._drop_outliers(3, replies)) == 7
    strategy.norm_factor = 10.0
    assert len(strategy._drop_outliers(4, replies[-2:])) == 2


def test_the_style_model_of_the_base_is_averaged_like_every_shared_tensor():
    """Two clients fit the style model on different pairs; the server's FedAvg returns the mean of their tensors."""
    from shared.hydra.spec import EDITOR_PREFIX
    from shared.hydra.style_model import StyleModel
    from shared.style import RULE_NAMES

    initial = {f"{EDITOR_PREFIX}{k}": v for k, v in StyleModel().state().items()}
    strategy = ValidatingStrategy(FedAvg(), expected_from(ArrayRecord({k: Array(v) for k, v in initial.items()})))
    strategy.current = record = RoundLog(server_round=1)
    updates = []
    for label in (0, 1):
        model = StyleModel()
        model.fit([(RULE_NAMES.index("u"), 0, 3, label)] * 5)
        updates.append({f"{EDITOR_PREFIX}{k}": v for k, v in model.state().items()})
    replies = [
        Message(
            content=RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v) for k, v in u.items()}),
                    "metrics": MetricRecord({"num-examples": 4, **COUNTERS}),
                }
            ),
            dst_node_id=0,
            message_type="train",
        )
        for u in updates
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and record.accepted == 2
    for key in initial:
        mean = (updates[0][key] + updates[1][key]) / 2
        assert not np.array_equal(updates[0][key], updates[1][key]) or key.endswith("style_shared")
        assert np.allclose(arrays[key].numpy(), mean, atol=1e-6)
