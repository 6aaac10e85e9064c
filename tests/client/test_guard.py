"""The device's guard (:mod:`client.guard`): every rule on a received base, on a round's heads and reply, the reference
kept in the store, and the SDK keeping its last good heads. Through a real client node: test_hostile_server.py."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest

from client.guard import LIMITS, Guard, Limits, check_base, check_heads, check_update, l2_norm
from client.store import StoreError, UserStore
from shared.errors import DivergedRound, FedHydraError, GuardError, UnsafeBase

SPEC = {"base.r.trunk.weight": (3, 4), "base.r.trunk.bias": (3,), "base.adapter.editor.dense": (2,)}


def base(scale: float = 1.0, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: (rng.normal(size=s) * scale).astype(dtype) for k, s in SPEC.items()}


def test_a_well_formed_base_passes_and_comes_back_as_float32():
    arrays, norm = check_base(base(), SPEC)
    assert all(v.dtype == np.float32 for v in arrays.values()) and norm == pytest.approx(l2_norm(base()))
    arrays, _ = check_base(base(dtype=np.float64), SPEC)  # Flower's FedAdam sends its global base in float64
    assert all(v.dtype == np.float32 for v in arrays.values())
    check_base(base(), SPEC, reference=l2_norm(base()) / 5)  # grown 5 times: plausible


def test_a_real_base_passes_with_the_shapes_of_the_model(trained_state):
    spec = {k: v.shape for k, v in trained_state.items()}
    _, norm = check_base(trained_state, spec)
    assert 5 < norm < 10 and norm < LIMITS.max_norm


@pytest.mark.parametrize(
    "edit, reason",
    [
        (
            lambda b: {**b, "base.r.trunk.bias": np.array([1.0, np.nan, 0.0], np.float32)},
            "'base.r.trunk.bias' holds NaN",
        ),
        (lambda b: {**b, "base.r.trunk.bias": np.array([1.0, -np.inf, 0.0], np.float32)}, "holds NaN or Inf"),
        (lambda b: {**b, "base.r.trunk.bias": np.array([1.0, 2e4, 0.0], np.float32)}, "magnitude 2e\\+04 > 10000"),
        (lambda b: {k: v * 1e3 for k, v in b.items()}, "over the bound 1000"),
        (lambda b: {**b, "base.r.extra": np.zeros(1, np.float32)}, "4 tensors; this device's base has 3"),
        (lambda b: {**b, "base.r.trunk.weight": np.zeros(1000, np.float32)}, "4,020 bytes of tensors"),
        (
            lambda b: {"head.r.weight" if k.endswith("dense") else k: v for k, v in b.items()},
            "personal key 'head.r.weight'",
        ),
        (
            lambda b: {"base.r.other" if k.endswith("dense") else k: v for k, v in b.items()},
            "unknown key 'base.r.other'",
        ),
        (lambda b: {"other" if k.endswith("dense") else k: v for k, v in b.items()}, "unknown key 'other'"),
        (lambda b: {k: v for k, v in b.items() if not k.endswith("dense")}, "lacks 1 shared tensors"),
        (lambda b: {**b, "base.r.trunk.weight": np.zeros((4, 3), np.float32)}, r"shape \(4, 3\), expected \(3, 4\)"),
        (lambda b: {**b, "base.r.trunk.bias": np.zeros(3, np.float16)}, "dtype float16"),
        (lambda b: {**b, "base.r.trunk.bias": np.zeros(3, np.int64)}, "dtype int64"),
        (lambda b: {**b, "base.r.trunk.bias": np.array(["a", "b", "c"])}, "dtype <U1"),
    ],
)
def test_every_rule_refuses_with_its_reason_logged(edit, reason, caplog):
    caplog.set_level(logging.WARNING, logger="client.guard")
    with pytest.raises(UnsafeBase, match=reason) as refused:
        check_base(edit(base()), SPEC)
    assert isinstance(refused.value, (GuardError, FedHydraError)) and refused.value.reason in caplog.text


def test_the_norm_may_grow_only_so_much_from_the_last_accepted_base():
    ref = l2_norm(base())
    check_base(base(9.9), SPEC, reference=ref)
    with pytest.raises(UnsafeBase, match="over 10 x the norm"):
        check_base(base(10.5), SPEC, reference=ref)
    check_base(base(1e-3), SPEC, reference=0.0)  # a reference near zero allows growth x floor
    with pytest.raises(UnsafeBase, match="over 10 x the norm 0"):
        check_base({k: np.full(s, 11.0 / np.sqrt(16), np.float32) for k, s in SPEC.items()}, SPEC, reference=0.0)


def test_a_rounds_heads_must_be_finite_bounded_and_not_diverged():
    before = {"head.a.weight": np.full((1, 4), 0.5, np.float32), "head.a.bias": np.zeros(1, np.float32)}
    check_heads({k: v * 3 for k, v in before.items()}, before)
    for after, reason in [
        ({**before, "head.a.bias": np.array([np.nan], np.float32)}, "'head.a.bias' holds NaN"),
        ({**before, "head.a.bias": np.array([2e4], np.float32)}, "magnitude"),
        ({k: v * 11 for k, v in before.items()}, "over 10 x their norm 1"),
        ({"head.a.weight": before["head.a.weight"]}, "keys"),
        ({**before, "head.a.weight": np.zeros((1, 5), np.float32)}, "shape"),
    ]:
        with pytest.raises(DivergedRound, match=reason):
            check_heads(after, before)
    check_update(base())
    with pytest.raises(DivergedRound, match="trained shared tensor 'base.r.trunk.bias' holds NaN"):
        check_update({**base(), "base.r.trunk.bias": np.array([np.nan, 0, 0], np.float32)})


def test_limits_are_validated_and_match_the_servers_bound_on_replies():
    from server.validation import validate_update

    assert inspect.signature(validate_update).parameters["max_abs"].default == LIMITS.max_abs
    with pytest.raises(ValueError, match="growth"):
        Limits(growth=0)
    with pytest.raises(ValueError, match="max_norm"):
        Limits(max_norm=float("nan"))


def test_the_guard_keeps_its_reference_in_the_store_and_moves_it_only_on_acceptance(tmp_path):
    guard = Guard(SPEC, tmp_path, "alice", task="LaMP-7")
    assert guard.reference() is None
    guard.check_base(base())
    assert not UserStore.exists(tmp_path, "alice")  # checking opens no store
    guard.accept()
    assert guard.reference() == pytest.approx(l2_norm(base()))
    with pytest.raises(UnsafeBase):
        Guard(SPEC, tmp_path, "alice", task="LaMP-7").check_base(base(20))
    assert guard.reference() == pytest.approx(l2_norm(base()))
    again = Guard(SPEC, tmp_path, "alice", task="LaMP-7")
    again.check_base(base(5))
    again.accept()
    assert again.reference() == pytest.approx(l2_norm(base(5)))
    with pytest.raises(RuntimeError, match="before a base passed"):
        Guard(SPEC, tmp_path, "bob", task="LaMP-7").accept()
    (tmp_path / "alice" / "accepted_base.json").write_text('{"norm": "big"}')
    with pytest.raises(StoreError, match="accepted_base.json: damaged"):
        again.reference()


def test_the_sdk_keeps_the_last_good_heads_when_a_fit_diverges(tmp_path, bundle, monkeypatch):
    """Against the deterministic stub endpoint (not a language model)."""
    import client.sdk
    from client.sdk import PersonalClient
    from lab.llm_stub import StubEndpoint
    from shared.llm import LLMClient, LLMConfig
    from shared.synthetic import generate

    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    fit_head = client.sdk.fit_head
    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, cache_path=""))
        device = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm, bundle=bundle)
        device.add_history(questions[0]["profile"])
        device.fit()
        good = device.store.heads_path.read_bytes()
        for broken, reason in [
            (lambda *a, **k: tuple(x * np.nan for x in fit_head(*a, **k)[:2]) + (0.0,), "NaN"),
            (lambda *a, **k: tuple(x * 1e3 for x in fit_head(*a, **k)[:2]) + (0.0,), "over 10 x"),
        ]:
            monkeypatch.setattr(client.sdk, "fit_head", broken)
            with pytest.raises(DivergedRound, match=reason):
                device.fit()
            assert device.store.heads_path.read_bytes() == good
