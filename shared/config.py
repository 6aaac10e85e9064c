"""One configuration source: ``[tool.flwr.app.config]`` in ``pyproject.toml`` (kebab-case keys, each
commented there), turned once, at an entry point, into frozen, validated dataclasses.

Flower passes the table (with ``--run-config`` overrides) as ``context.run_config``; the ``fedhydra``
command reads the same table from the project's ``pyproject.toml`` and applies ``--run-config`` and its
own flags on top. Everything below the entry point receives plain values.

Example:
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "train-users": 3, "n-samples": 2})
    >>> cfg.train_users, cfg.pool.n_samples, cfg.model.lora_rank
    (3, 2, 4)
    >>> RunConfig.from_mapping({**default_mapping(), "train-userz": 3})
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: unknown config key 'train-userz' (did you mean 'train-users'?)
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from shared.errors import ConfigError

__all__ = ["RunConfig", "FederationConfig", "default_mapping", "pyproject_path", "parse_overrides"]


_REQUIRED = ("task", "data", "train-users", "test-users", "protocol", "seed", "num-rounds", "strategy", "out-dir")


def pyproject_path() -> Path:
    """The project's ``pyproject.toml`` (the repository root of this checkout)."""
    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not path.exists():
        raise ConfigError(f"{path} not found: FedHydra's configuration lives in the project's pyproject.toml")
    return path


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(pyproject_path(), "rb") as fh:
        data = tomllib.load(fh)
    try:
        return dict(data["tool"]["flwr"]["app"]["config"])
    except KeyError:
        raise ConfigError(f"{pyproject_path()}: no [tool.flwr.app.config] table") from None


def default_mapping() -> dict[str, Any]:
    """A copy of ``[tool.flwr.app.config]``."""
    return dict(_defaults())


def parse_overrides(text: str) -> dict[str, Any]:
    """Parse Flower-style ``"key=value key2='text'"`` overrides with TOML value syntax.

    >>> parse_overrides("num-rounds=5 task='LaMP-3' train-lora=false")
    {'num-rounds': 5, 'task': 'LaMP-3', 'train-lora': False}
    """
    import shlex

    out: dict[str, Any] = {}
    for part in shlex.split(text, posix=False):
        if "=" not in part:
            raise ConfigError(f"override {part!r} is not key=value")
        key, value = part.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip("'\"")
    return out


@dataclass(frozen=True)
class FederationConfig:
    """The federated run (see ``[tool.flwr.app.config]``)."""

    num_rounds: int
    fraction_train: float
    min_train_nodes: int
    local_epochs: int
    local_head_epochs: int
    strategy: str
    proximal_mu: float
    server_lr: float
    trim_beta: float
    outlier_norm_factor: float
    dp_noise: float
    dp_clip: float
    report_metrics: bool
    checkpoint_dir: str
    resume: bool
    out_dir: str
    eval_every: int = 1
    round_timeout: float = 3600.0


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a FedHydra run, validated."""

    task: str
    data: str
    split: str
    timeline_questions: int
    synthetic_users: int
    synthetic_items: int
    train_users: int
    free_train_users: int
    test_users: int
    user_offset: int
    protocol: str
    seed: int
    llm_url: str
    llm_model: str
    llm_timeout: float
    llm_calls_per_user: int
    llm_concurrency: int
    margin_folds: int
    federation: FederationConfig
    model: Any
    train: Any
    episodes: Any
    inference: Any
    pool: Any
    store_dir: str
    device_quantized: bool

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, complete: bool = False) -> "RunConfig":
        """Validate a kebab-case mapping (the pyproject table plus overrides) into a RunConfig.

        With ``complete`` the mapping is a whole run config (Flower's ``context.run_config``) and serves as its
        own defaults, so an installed app bundle without the project's pyproject works.
        """
        from shared.hydra.candidates import PoolConfig
        from shared.hydra.episodes import EpisodeConfig
        from shared.hydra.infer import InferenceConfig
        from shared.hydra.model import ModelConfig
        from shared.hydra.train import TrainConfig
        from shared.prompts import PROMPT_STYLES
        from shared.tasks import get_task

        defaults = dict(mapping) if complete else _defaults()
        known = set(defaults)
        for key in mapping:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"unknown config key {key!r}{hint}")
        values = {**defaults, **mapping}
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise ConfigError(f"config lacks {missing[:5]}")

        def get(key: str, kind: type) -> Any:
            value = values[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if kind is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"config key {key!r} must be {kind.__name__}, got {value!r}")
            return value

        def positive(key: str, kind: type = int, minimum: float = 1) -> Any:
            value = get(key, kind)
            if value < minimum:
                raise ConfigError(f"config key {key!r} must be >= {minimum}, got {value}")
            return value

        task = get_task(get("task", str)).name
        protocol = get("protocol", str)
        if protocol not in ("disjoint", "history"):
            raise ConfigError(f"config key 'protocol' must be 'disjoint' or 'history', got {protocol!r}")
        style = get("prompt-style", str)
        if style not in PROMPT_STYLES:
            raise ConfigError(f"config key 'prompt-style' must be one of {PROMPT_STYLES}, got {style!r}")
        strategy = get("strategy", str)
        if strategy not in ("fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg"):
            raise ConfigError(f"config key 'strategy' must be fedavg, fedprox, fedadam, fedmedian or fedtrimmedavg, "
                              f"got {strategy!r}")
        fraction = get("fraction-train", float)
        if not 0 < fraction <= 1:
            raise ConfigError(f"config key 'fraction-train' must be in (0, 1], got {fraction}")
        temperature = get("temperature", float)
        if temperature <= 0:
            raise ConfigError(f"config key 'temperature' must be > 0, got {temperature}")
        pool = PoolConfig(n_samples=positive("n-samples", int, 0), temperature=temperature,
                          k=positive("prompt-k"), style=style, seed=get("seed", int))
        try:
            model = ModelConfig(lora_rank=positive("lora-rank"), lora_alpha=positive("lora-alpha"),
                                trunk_dim=positive("trunk-dim"), max_query_tokens=positive("max-query-tokens", int, 8),
                                max_item_tokens=positive("max-item-tokens", int, 8))
            train = TrainConfig(epochs=positive("epochs", int, 0), head_epochs=positive("head-epochs", int, 0),
                                batch_size=positive("batch-size"),
                                lr=get("lr", float), lora_lr=get("lora-lr", float), train_lora=get("train-lora", bool),
                                fit_steps=positive("fit-steps", int, 0), fit_lr=get("fit-lr", float),
                                head_l2=get("head-l2", float), seed=get("seed", int))
        except ConfigError as exc:
            raise ConfigError(f"config: {exc}") from None
        episodes = EpisodeConfig(pseudo_questions=positive("pseudo-questions", int, 0),
                                 free_questions=positive("free-questions", int, 0), rerank_m=positive("retrieve-m"),
                                 label_records=positive("label-records"), pool=pool,
                                 calls_per_user=positive("llm-calls-per-user", int, 0), seed=get("seed", int))
        inference = InferenceConfig(m=positive("retrieve-m"), k=positive("prompt-k"), pool=pool)
        margin_folds = positive("margin-folds", int, 0)
        free_train_users = positive("free-train-users", int, 0)
        if free_train_users and protocol != "disjoint":
            raise ConfigError("config key 'free-train-users' needs protocol = 'disjoint' (in the history protocol every "
                              f"user is a test user), got {free_train_users}")
        if margin_folds == 1:
            raise ConfigError("config key 'margin-folds' must be 0 (no margin rule) or >= 2 (folds of training users)")
        head_epochs = positive("head-epochs", int, 0)
        rounds = positive("num-rounds")
        # 0: the run's head epochs spread over its rounds, so a federated run trains trunk and heads as long as
        # the centralized reference (-(-a // b) is the ceiling of a / b)
        local_head_epochs = positive("local-head-epochs", int, 0) or -(-head_epochs // rounds)
        federation = FederationConfig(
            num_rounds=rounds, fraction_train=fraction, min_train_nodes=positive("min-train-nodes"),
            local_epochs=positive("local-epochs"), strategy=strategy, proximal_mu=get("proximal-mu", float),
            server_lr=get("server-lr", float), trim_beta=get("trim-beta", float),
            outlier_norm_factor=get("outlier-norm-factor", float), dp_noise=get("dp-noise", float),
            dp_clip=get("dp-clip", float), report_metrics=get("report-metrics", bool),
            checkpoint_dir=get("checkpoint-dir", str), resume=get("resume", bool), out_dir=get("out-dir", str),
            eval_every=positive("eval-every", int, 0), round_timeout=positive("round-timeout", float, 1.0),
            local_head_epochs=local_head_epochs)
        return cls(task=task, data=get("data", str), split=get("split", str),
                   timeline_questions=positive("timeline-questions"),
                   synthetic_users=positive("synthetic-users"), synthetic_items=positive("synthetic-items", int, 2),
                   train_users=positive("train-users", int, 0), free_train_users=free_train_users, test_users=positive("test-users", int, 0),
                   user_offset=positive("user-offset", int, 0), protocol=protocol, seed=get("seed", int),
                   llm_url=get("llm-url", str), llm_model=get("llm-model", str), llm_timeout=get("llm-timeout", float),
                   llm_calls_per_user=positive("llm-calls-per-user", int, 0),
                   llm_concurrency=positive("llm-concurrency"), margin_folds=margin_folds, federation=federation, model=model,
                   train=train, episodes=episodes, inference=inference, pool=pool, store_dir=get("store-dir", str),
                   device_quantized=get("device-quantized", bool))

    def field_names(self) -> list[str]:
        return [f.name for f in fields(self)]
