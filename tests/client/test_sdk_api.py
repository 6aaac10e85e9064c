"""Issue 29, item 4: the SDK's public surface is small. ``PersonalClient(store, bundle, llm=..., task=...,
device=DeviceConfig(...))``: nothing for simulations in its signature, the device knobs in one frozen, validated
dataclass, and no replay mode on ``answer`` (an evaluation replays through :mod:`client.evaluation`)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from client.device_config import DeviceConfig
from client.sdk import PersonalClient
from client.store import UserStore
from shared.errors import ConfigError

NOWHERE = "http://127.0.0.1:9/v1"  # never called: these tests build no episodes and answer nothing


def test_the_constructor_takes_store_bundle_llm_task_and_device_only():
    params = inspect.signature(PersonalClient.__init__).parameters
    assert list(params) == ["self", "store", "bundle", "llm", "task", "device"]
    kinds = {name: p.kind for name, p in params.items()}
    assert kinds["store"] == kinds["bundle"] == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert kinds["llm"] == kinds["task"] == kinds["device"] == inspect.Parameter.KEYWORD_ONLY
    assert params["device"].default == DeviceConfig()


def test_answer_has_no_replay_mode():
    assert list(inspect.signature(PersonalClient.answer).parameters) == ["self", "input", "task", "variant"]


def test_the_device_config_is_frozen():
    config = DeviceConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.threads = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("threads", 0, "DeviceConfig.threads must be an integer in 1..1024, got 0"),
        ("threads", 2.0, "DeviceConfig.threads must be an integer in 1..1024, got 2.0"),
        ("threads", True, "DeviceConfig.threads must be an integer in 1..1024, got bool"),
        ("fit_steps", 10_001, "DeviceConfig.fit_steps must be an integer in 0..10000"),
        ("fit_lr", float("nan"), "DeviceConfig.fit_lr must be a number in 0..10, got nan"),
        ("head_l2", -0.1, "DeviceConfig.head_l2 must be a number in 0..1000"),
        ("llm_timeout", 0, "DeviceConfig.llm_timeout must be a number in 0.001..3600, got 0"),
        ("llm_concurrency", 257, "DeviceConfig.llm_concurrency must be an integer in 1..256"),
        ("llm_concurrency", "4", "DeviceConfig.llm_concurrency must be an integer in 1..256, got str"),
        ("quantized", "yes", "DeviceConfig.quantized must be true or false, got str"),
        ("keep_llm_server", 1, "DeviceConfig.keep_llm_server must be true or false, got int"),
        ("inference", {"m": 5}, "DeviceConfig.inference must be an InferenceConfig, got dict"),
        ("episodes", {"pseudo_questions": 2}, "DeviceConfig.episodes must be an EpisodeConfig or None, got dict"),
    ],
)
def test_a_device_config_out_of_range_is_refused_naming_the_field_and_the_range(field, value, needle):
    with pytest.raises(ConfigError) as refused:
        DeviceConfig(**{field: value})
    assert needle in str(refused.value)


def test_the_client_refuses_a_device_that_is_no_device_config(tmp_path):
    with pytest.raises(ConfigError, match="device must be a DeviceConfig, got dict"):
        PersonalClient(tmp_path, llm=NOWHERE, task="LaMP-3", device={"threads": 2})  # type: ignore[arg-type]


def test_a_folder_opens_the_users_store_and_an_open_store_names_its_user(tmp_path):
    me = PersonalClient(tmp_path, llm=NOWHERE, task="LaMP-3")
    assert me.store.user == "me" and me.store.path.parent == tmp_path
    alice = PersonalClient(UserStore(tmp_path, "alice", task="LaMP-3"), llm=NOWHERE, task="LaMP-3")
    assert alice.store.user == "alice"
    assert alice.add_history([{"text": "fine", "score": "4"}]) == 1 and me.history == []


def test_a_store_of_another_task_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="store is for LaMP-7, this client for LaMP-3"):
        PersonalClient(UserStore(tmp_path, "bob", task="LaMP-7"), llm=NOWHERE, task="LaMP-3")


def test_the_device_configs_ranges_and_defaults_are_the_run_configs_of_the_same_settings():
    from client.device_config import _RANGES
    from shared.config import BOUNDS, default_mapping

    same = {
        "fit_steps": "train.fit-steps",
        "fit_lr": "train.fit-lr",
        "head_l2": "train.head-l2",
        "llm_timeout": "llm.timeout",
        "llm_concurrency": "llm.concurrency",
    }
    assert {field: _RANGES[field] for field in same} == {field: BOUNDS[key] for field, key in same.items()}
    table, device = default_mapping(), DeviceConfig()
    same["quantized"] = "device.quantized"
    assert {field: getattr(device, field) for field in same} == {field: table[key] for field, key in same.items()}
