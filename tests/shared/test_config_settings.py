"""Each setting is declared once (shared/settings.py, :data:`SETTINGS`: dotted key, default, range, comment, where it
lands) and the pyproject table is exactly what the declarations give: same keys, same order, same defaults, each key's
comment followed by its ``Range:``. Every field of the run's config is set by exactly one key (or derived from one),
and the config's dataclasses import no torch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import fields

from shared.config import (
    GROUPS,
    SETTINGS,
    FederationConfig,
    RunConfig,
    SecureAggregationConfig,
    default_mapping,
    pyproject_path,
    pyproject_table,
)
from shared.hydra.candidates import PoolConfig
from shared.hydra.episodes import EpisodeConfig
from shared.hydra.infer import InferenceConfig
from shared.hydra.settings import TrainConfig
from shared.hydra.spec import ModelConfig


def _table_text() -> str:
    text = pyproject_path().read_text()
    start = text.index("[tool.flwr.app.config]\n") + len("[tool.flwr.app.config]\n")
    end = text.find("\n[", start)
    return text[start:] if end < 0 else text[start : end + 1]


def test_the_pyproject_table_is_exactly_the_declarations():
    assert _table_text() == pyproject_table()


def test_each_key_is_declared_once_grouped_and_documented_with_its_range():
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert list(default_mapping()) == keys
    assert all(s.group in GROUPS for s in SETTINGS)
    groups = [s.group for s in SETTINGS]
    assert [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g] == list(GROUPS)  # each group one block
    for s in SETTINGS:
        assert s.doc.strip() == s.doc and len(s.doc) > 10, s.key
        assert f"# Range: {s.range.describe()}.\n{s.key} = " in pyproject_table(), s.key


def test_the_pyproject_defaults_are_the_declared_defaults_and_in_range():
    table = default_mapping()
    for s in SETTINGS:
        assert table[s.key] == s.default and type(table[s.key]) is type(s.default), s.key
    assert RunConfig.from_mapping({}, complete=True) == RunConfig.from_mapping(default_mapping())


_PARTS = {
    "federation": FederationConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "episodes": EpisodeConfig,
    "inference": InferenceConfig,
    "pool": PoolConfig,
    "secagg": SecureAggregationConfig,
}


def test_every_field_of_the_run_config_comes_from_one_key():
    """Each field of RunConfig and of its parts is set by exactly one key, except the nested parts themselves and the
    few fields no key sets (fixed in code)."""
    targets = [t for s in SETTINGS for t in s.to]
    assert len(targets) == len(set(targets))
    fields_ = {f"run.{f.name}" for f in fields(RunConfig) if f.name not in _PARTS}
    fields_ |= {f"{part}.{f.name}" for part, kind in _PARTS.items() for f in fields(kind)}
    nested = {"federation.secagg", "episodes.pool", "inference.pool"}
    fixed = {"model.lora_targets", "episodes.label_questions"}
    assert set(targets) == fields_ - nested - fixed


def test_every_default_of_a_config_dataclass_is_its_keys_declared_default():
    """The dataclasses declare no default of their own: a field a key lands in defaults to that key's default, so a
    config built in code (a test, the SDK) is the one the pyproject table gives."""
    from dataclasses import MISSING

    declared = {t: s.default for s in SETTINGS for t in s.to}
    checked = 0
    for part, kind in _PARTS.items():
        for f in fields(kind):
            if f"{part}.{f.name}" in declared and f.default is not MISSING:
                assert f.default == declared[f"{part}.{f.name}"], f"{part}.{f.name}"
                checked += 1
    assert checked >= 25  # every field of train, episodes, inference, pool and model that a key sets


def test_the_config_imports_no_torch():
    code = (
        "import sys, shared.config, shared.hydra.settings; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'flwr', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_table_is_valid_toml_with_one_table_per_group():
    with open(pyproject_path(), "rb") as fh:
        table = tomllib.load(fh)["tool"]["flwr"]["app"]["config"]
    assert list(table) == list(GROUPS)


def test_a_run_config_goes_back_to_its_keys_and_comes_back_equal():
    """What a simulation writes for Flower (:meth:`RunConfig.to_mapping`) reads back to the same run config."""
    for overrides in (
        {},
        {"eval.methods": "rag hydra", "federation.local-head-epochs": 5, "run.seed": 7},
        {"secagg.enabled": True, "federation.outlier-norm-factor": 0.0, "secagg.num-shares": 4},
        {"train.head-epochs": 0, "prompt.style": "inline", "data.protocol": "history"},
    ):
        cfg = RunConfig.from_mapping({**default_mapping(), **overrides})
        mapping = cfg.to_mapping()
        assert list(mapping) == [s.key for s in SETTINGS]
        assert RunConfig.from_mapping(mapping, complete=True) == cfg
