"""The Flower ServerApp: translates the run into calls of :mod:`server.federation` and friends."""

from __future__ import annotations

import json
from logging import INFO, WARNING
from typing import cast

from flwr.app import Array, ArrayRecord, Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from server.aggregation import aggregation_name, build_aggregation
from server.federation import discover_roles, run_rounds
from server.packing import PackedGrid
from server.plan import paths, restore_accountant, restore_server_state, starting_point
from server.window import WindowedGrid
from shared.config import RunConfig
from shared.hydra.candidates import decision_keys
from shared.io import atomic_write_text
from shared.protocol import METHODS_ALL, TESTING_ROLES, TRAINING_ROLES
from shared.tasks import get_task
from shared.users import node_count

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = RunConfig.from_mapping(context.run_config, complete=True)
    out_dir, checkpoint_dir = paths(cfg)
    done, arrays = starting_point(cfg)
    initial = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    # one node per user (shared.users.node_count; history protocol: every one of the `data.test-users` users trains and
    # is tested on one node; free training users are training nodes too)
    expected = node_count(
        cfg.protocol, train_users=cfg.train_users, test_users=cfg.test_users, free_train_users=cfg.free_train_users
    )
    roles = discover_roles(grid, expected)
    n_train = sum(r in TRAINING_ROLES for r in roles.values())
    n_test = sum(r in TESTING_ROLES for r in roles.values())
    log(INFO, "FedHydra: %d training and %d test clients; starting after round %d", n_train, n_test, done)
    # the registry of server/aggregation.py: plain (every reply validated) or secagg+ (the server sees only sums)
    strategy, accountant = build_aggregation(cfg, n_train=max(n_train, 1), initial=initial)
    if done and accountant is not None:
        try:
            restored = restore_accountant(cfg, done, accountant)
        except ValueError as exc:  # another population or noise: the old ledger does not apply
            log(WARNING, "the privacy ledger of round %d does not apply to this run: %s", done, exc)
            restored = False
        if not restored:
            log(WARNING, "resuming a DP run without its privacy ledger: epsilon counts the resumed rounds only")
    if done and not restore_server_state(cfg, done, strategy):
        log(
            WARNING,
            "resuming %s without its optimizer state of round %d: its moments start again from zero",
            cfg.federation.strategy,
            done,
        )
    strategy.summary()
    # the role query above goes out at once (small, quick messages); the rounds keep federation.max-in-flight in flight,
    # and their tensors travel packed (one array per dtype, not one object per tensor: server/packing.py)
    window = cfg.federation.max_in_flight
    rounds_grid = PackedGrid(WindowedGrid(grid, window) if window else grid)
    run_rounds(
        cast(Grid, rounds_grid),
        strategy,
        initial,
        num_rounds=cfg.federation.num_rounds,
        start_round=done,
        roles=roles,
        out_dir=out_dir,
        checkpoint_dir=checkpoint_dir,
        model=cfg.model,
        task=cfg.task,
        accountant=accountant,
        final_methods=METHODS_ALL,
        timeout=cfg.federation.round_timeout,
        eval_every=cfg.federation.eval_every,
        margin=cfg.margin_folds != 0,
        decisions=decision_keys(get_task(cfg.task), cfg.pool),
    )
    summary = {
        "train_clients": n_train,
        "test_clients": n_test,
        "rounds": cfg.federation.num_rounds,
        "resumed_after": done,
        "strategy": cfg.federation.strategy,
        "dp_noise": cfg.federation.dp_noise,
        "margin_rule": cfg.margin_folds != 0,
        "aggregation": aggregation_name(cfg.federation),
    }
    if accountant is not None and accountant.num_releases:
        spent = accountant.get_privacy_spent()
        summary["privacy"] = {
            "epsilon": spent.epsilon,
            "delta": spent.delta,
            "releases": spent.num_releases,
            **(dp.report() if (dp := getattr(strategy, "dp", None)) is not None else {}),
        }
    atomic_write_text(out_dir / "server_summary.json", json.dumps(summary, indent=1))
