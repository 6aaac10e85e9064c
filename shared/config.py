"""One configuration source: each setting declared once, in :data:`SETTINGS` (its dotted key, default, range and
comment; :mod:`shared.settings` holds the declarations, re-exported here), mirrored by ``[tool.flwr.app.config]`` in
``pyproject.toml`` and turned once, at an entry point, into frozen, validated dataclasses.

The keys are grouped with dotted names (``data.train-users``, ``llm.url``, ``train.lr``, ``federation.num-rounds``),
as Flower's flowertune apps do: TOML reads ``data.task = ...`` as a nested table and Flower flattens it back to the
key ``"data.task"`` in ``context.run_config`` (``flwr.common.config.flatten_dict``); the ``fedhydra`` command reads
the same table from the project's ``pyproject.toml`` and applies ``--run-config`` and its own flags on top.
Everything below the entry point receives the dataclasses.

From the declarations follow: the ranges (:data:`BOUNDS` for numbers, :data:`CHOICES` for names,
:data:`TEXT_LIMITS` for free text, :data:`FLAGS`), the pyproject table with each key's comment and its
``Range: ...`` (:func:`pyproject_table`; ``tests/shared/test_config_settings.py`` checks that the table is exactly
that), the checks of :meth:`RunConfig.from_mapping` and where each value lands in the dataclasses (``Setting.to``).
A value outside its range is refused before anything uses it with one typed error, :class:`shared.errors.OutOfRange`,
that names the key and the bound. A device lowers the maximum of any numeric key a server's run config may ask of it
with a node config key ``cap-<key>`` (e.g. ``cap-federation.local-epochs = 2``: :func:`node_caps`); a run config above
the cap is refused, naming the cap.

Example:
    >>> cfg = RunConfig.from_mapping({**default_mapping(), "data.train-users": 3, "pool.n-samples": 2})
    >>> cfg.train_users, cfg.pool.n_samples, cfg.model.lora_rank
    (3, 2, 4)
    >>> RunConfig.from_mapping({**default_mapping(), "data.train-userz": 3})
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: unknown config key 'data.train-userz' (did you mean 'data.train-users'?)
"""

from __future__ import annotations

import difflib
import math
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, OutOfRange, SecureAggregationConflict, check_minimums
from shared.hydra.candidates import PoolConfig
from shared.hydra.episodes import EpisodeConfig
from shared.hydra.infer import InferenceConfig
from shared.hydra.settings import TrainConfig
from shared.hydra.spec import ModelConfig
from shared.settings import (
    _BY_KEY,
    _KEY_OF,
    BOUNDS,
    CHOICES,
    FLAG,
    FLAGS,
    GROUPS,
    SETTINGS,
    STRATEGIES,
    TEXT_LIMITS,
    Num,
    OneOf,
    Setting,
    Text,
)

__all__ = [
    "RunConfig",
    "FederationConfig",
    "STRATEGIES",
    "default_mapping",
    "pyproject_path",
    "parse_overrides",
    "parse_methods",
    "Setting",
    "SETTINGS",
    "Num",
    "OneOf",
    "Text",
    "FLAG",
    "GROUPS",
    "pyproject_table",
    "BOUNDS",
    "CHOICES",
    "TEXT_LIMITS",
    "FLAGS",
    "CAP_PREFIX",
    "check_number",
    "describe_range",
    "node_caps",
    "SecureAggregationConfig",
    "SECAGG_MODULUS",
    "SECURE_AGGREGATION_REFUSES",
    "secure_aggregation_conflicts",
]


def pyproject_path() -> Path:
    """The project's ``pyproject.toml`` (the repository root of this checkout)."""
    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not path.exists():
        raise ConfigError(f"{path} not found: FedHydra's configuration lives in the project's pyproject.toml")
    return path


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested TOML table as dotted keys, as Flower flattens it.

    >>> _flatten({"data": {"task": "LaMP-3", "test-users": 2}, "run": {"seed": 1}})
    {'data.task': 'LaMP-3', 'data.test-users': 2, 'run.seed': 1}
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(pyproject_path(), "rb") as fh:
        data = tomllib.load(fh)
    try:
        return _flatten(data["tool"]["flwr"]["app"]["config"])
    except KeyError:
        raise ConfigError(f"{pyproject_path()}: no [tool.flwr.app.config] table") from None


def default_mapping() -> dict[str, Any]:
    """A copy of ``[tool.flwr.app.config]``, flattened to dotted keys."""
    return dict(_defaults())


def parse_overrides(text: str) -> dict[str, Any]:
    """Parse Flower-style ``"key=value key2='text'"`` overrides with TOML value syntax.

    >>> parse_overrides("federation.num-rounds=5 data.task='LaMP-3' train.lora=false")
    {'federation.num-rounds': 5, 'data.task': 'LaMP-3', 'train.lora': False}
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


CAP_PREFIX = "cap-"
"""A node config key ``cap-<key>`` lowers the maximum of the numeric config key ``<key>`` on that device."""

_TABLE_HEAD = """\
# The single source of FedHydra's settings: `flwr run . --run-config "key=value"` and
# `fedhydra run|simulate --run-config "key=value"` override them (e.g. --run-config "data.train-users=4 llm.url='...'").
# Each key is declared once in shared/settings.py (SETTINGS), with its default, its range and this comment; each key's
# "Range:" is checked before the value is used (a value outside is refused naming the key and the bound). A device
# lowers the maximum of any numeric key for itself with a node config key `cap-<key>` (e.g. `--node-config
# "cap-federation.local-epochs=2 cap-train.fit-steps=100"`): a run asking more is refused."""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def pyproject_table() -> str:
    """The body of ``[tool.flwr.app.config]`` as the declarations give it: each group's title, then each key's comment,
    its ``Range:`` and ``key = default``.

    >>> print("\\n".join(pyproject_table().splitlines()[6:10]))
    # --- data and users (the first four keys are the ones to set first) ---
    # Which LaMP task (LaMP-1, 2, 2N, 3, 4, 5, 6, 7).
    # Range: text of at most 32 characters.
    data.task = "LaMP-7"
    """
    lines = _TABLE_HEAD.split("\n")
    group = None
    for s in SETTINGS:
        if s.group != group:
            group = s.group
            lines.append(f"# --- {GROUPS[group]} ---")
        lines += ["# " + line for line in textwrap.wrap(s.doc, 118, break_long_words=False, break_on_hyphens=False)]
        lines.append(f"# Range: {s.range.describe()}.")
        lines.append(f"{s.key} = {_toml(s.default)}")
    return "\n".join(lines) + "\n"


def describe_range(key: str) -> str:
    """The range of a config key as its pyproject comment states it (after ``Range: ``).

    >>> describe_range("train.lr"), describe_range("federation.local-epochs"), describe_range("data.protocol")
    ('[0.0, 10.0]', '[1, 100]', 'one of disjoint, history')
    >>> describe_range("run.resume"), describe_range("device.store-dir")
    ('true or false', 'text of at most 4096 characters')
    """
    if key not in _BY_KEY:
        raise ConfigError(f"config key {key!r} has no declared range")
    return _BY_KEY[key].range.describe()


def check_number(key: str, value: Any, caps: Mapping[str, float] | None = None) -> int | float:
    """``value`` of the numeric config key ``key`` once it is a number of the key's kind within :data:`BOUNDS` (and at
    most ``caps[key]``, a device's cap); else :class:`shared.errors.OutOfRange` naming the key and the bound.

    >>> check_number("federation.local-epochs", 3.0)
    3
    >>> check_number("federation.local-epochs", 1e9)
    Traceback (most recent call last):
    ...
    shared.errors.OutOfRange: config key 'federation.local-epochs' must be >= 1 and <= 100, got 1000000000.0
    >>> check_number("federation.local-epochs", 3, {"federation.local-epochs": 2})
    Traceback (most recent call last):
    ...
    shared.errors.OutOfRange: config key 'federation.local-epochs' must be >= 1 and <= 2 (capped by this device's node config), got 3
    """
    low, high = BOUNDS[key]
    cap = caps.get(key) if caps is not None else None
    capped = cap is not None and cap < high
    if cap is not None and capped:
        high = cap
    integer = isinstance(BOUNDS[key][0], int)
    kind = "int" if integer else "float"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OutOfRange(key, value, low, high, kind=kind)
    if integer and isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise (
                OutOfRange(key, value, low, high, kind=kind)
                if math.isfinite(value)
                else OutOfRange(key, value, low, high, capped=capped)
            )
        if low <= value <= high:
            value = int(value)
    if not (low <= value <= high):  # NaN fails every comparison
        raise OutOfRange(key, value, low, high, capped=capped)
    return value if integer else float(value)


def _check(key: str, value: Any, caps: Mapping[str, float] | None) -> Any:
    """``value`` of ``key`` checked against its declared range (numbers also against ``caps``)."""
    rng = _BY_KEY[key].range
    if isinstance(rng, Num):
        return check_number(key, value, caps)
    kind = bool if rng is FLAG else str
    if not isinstance(value, kind):
        raise ConfigError(f"config key {key!r} must be {kind.__name__}, got {str(value)[:40]!r}")
    if isinstance(rng, Text) and isinstance(value, str) and len(value) > rng.limit:
        raise ConfigError(f"config key {key!r} must be at most {rng.limit} characters, got {len(value)}")
    return value


def node_caps(node_config: Mapping[str, Any]) -> dict[str, float]:
    """A device's caps on what a run may ask of it: its node config keys ``cap-<key>`` (see :data:`CAP_PREFIX`), each
    a number within ``<key>``'s own range.

    >>> node_caps({"user-id": "u1", "cap-federation.local-epochs": 2, "cap-train.lr": 0.01})
    {'federation.local-epochs': 2, 'train.lr': 0.01}
    """
    out: dict[str, float] = {}
    for name, value in node_config.items():
        if not str(name).startswith(CAP_PREFIX):
            continue
        key = str(name)[len(CAP_PREFIX) :]
        if key not in BOUNDS:
            raise ConfigError(f"node config key {str(name)[:64]!r}: {key[:60]!r} is no numeric config key")
        out[key] = check_number(key, value)
    return out


def parse_methods(text: str) -> tuple[str, ...]:
    """The ``eval.methods`` setting as names (empty: all); each must be a baseline or a HYDRA variant.

    >>> parse_methods("all"), parse_methods("user-ridge, hydra hydra-shared-head")
    ((), ('user-ridge', 'hydra', 'hydra-shared-head'))
    >>> parse_methods("hydra-best")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'eval.methods': unknown method 'hydra-best'; known: input, style-rules, ..., hydra-stable
    """
    from shared.baselines import METHODS
    from shared.hydra.variants import VARIANTS

    names = tuple(n for n in text.replace(",", " ").split() if n)
    if names == ("all",):
        return ()
    for name in names:
        if name not in METHODS and name not in VARIANTS:
            raise ConfigError(
                f"config key 'eval.methods': unknown method {name!r}; known: {', '.join([*METHODS, *VARIANTS])}"
            )
    return names


def _one_of(names: Mapping[str, Any]) -> str:
    """``"a, b or c"``.

    >>> _one_of({"a": 1, "b": 2, "c": 3})
    'a, b or c'
    """
    *first, last = names
    return f"{', '.join(first)} or {last}" if first else last


def _namer(part: str):
    """How an error names a field of the run's config part ``part``: by its key in ``[tool.flwr.app.config]``.

    >>> _namer("federation")("dp_noise")
    "config key 'dp.noise'"
    """
    return lambda attr: f"config key {_KEY_OF.get(f'{part}.{attr}', attr)!r}"


SECAGG_MODULUS = 2**32
"""The modulus of SecAgg+'s masked sums (Flower's default and its largest): a round's clients times
``secagg.quantization-range`` must stay below it, or the sum wraps around."""


@dataclass(frozen=True)
class SecureAggregationConfig:
    """How SecAgg+ masks and sums a round's shared-base updates when ``secagg.enabled = true`` (keys ``secagg.*``;
    Flower's ``SecAggPlusWorkflow`` on the server, ``secaggplus_mod`` on the clients).

    >>> SecureAggregationConfig(threshold=1.5)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'secagg.threshold' must be in (0, 1], got 1.5
    >>> SecureAggregationConfig(quantization_range=2 ** 23).max_clients
    511
    """

    num_shares: int = 0
    """Neighbours each client's key shares go to, itself included; 0 = every client of the round (SecAgg)."""
    threshold: float = 0.67
    """Fraction of a client's shares needed to rebuild its masks (at least 2 shares)."""
    clipping_range: float = 16.0
    """Every value a client masks (times its weight / ``max_weight``) must lie in [-range, range]."""
    quantization_range: int = 2**23
    """Integer levels over [-clipping_range, clipping_range]."""
    max_weight: float = 200.0
    """The largest weight (``num-examples``) one update may carry; a larger one is capped by its client."""

    def __post_init__(self) -> None:
        name = _namer("secagg")
        for attr, kind in (
            ("num_shares", int),
            ("quantization_range", int),
            ("threshold", (int, float)),
            ("clipping_range", (int, float)),
            ("max_weight", (int, float)),
        ):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"{name(attr)} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        if self.num_shares != 0 and self.num_shares < 3:
            raise ConfigError(
                f"{name('num_shares')} must be 0 (every client of the round) or >= 3, got {self.num_shares}"
            )
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"{name('threshold')} must be in (0, 1], got {self.threshold}")
        if not self.clipping_range > 0 or not self.max_weight > 0:
            bad = "clipping_range" if not self.clipping_range > 0 else "max_weight"
            raise ConfigError(f"{name(bad)} must be > 0, got {getattr(self, bad)}")
        if not 2 <= self.quantization_range < SECAGG_MODULUS // 2:
            raise ConfigError(f"{name('quantization_range')} must be in [2, 2^31), got {self.quantization_range}")

    @property
    def max_clients(self) -> int:
        """The most clients one round can sum without the masked sum wrapping around the modulus."""
        return (SECAGG_MODULUS - 1) // self.quantization_range


SECURE_AGGREGATION_REFUSES: dict[str, str] = {
    "fedmedian": "takes the coordinate-wise median of every update",
    "fedtrimmedavg": "trims the largest and smallest values of every update",
}
"""Strategies that cannot run under secure aggregation, and why: they need each update, the server sees only the
sum (FedAvg, FedProx and FedAdam need only the weighted mean)."""


def secure_aggregation_conflicts(fed: FederationConfig) -> list[str]:
    """Why ``fed`` cannot run with ``secagg.enabled = true`` (empty: it can). Under SecAgg+ the server sees the
    round's masked sum only, so whatever needs a single client's update is refused, never silently dropped."""
    out = []
    if fed.strategy in SECURE_AGGREGATION_REFUSES:
        out.append(
            f"federation.strategy = {fed.strategy!r} {SECURE_AGGREGATION_REFUSES[fed.strategy]}, and the "
            f"server sees only their sum (use fedavg, fedprox or fedadam)"
        )
    if fed.outlier_norm_factor > 0:
        out.append(
            f"federation.outlier-norm-factor = {fed.outlier_norm_factor:g} compares each update's norm with the "
            f"round's median, and the server sees no single update (set federation.outlier-norm-factor = 0: "
            f"each client checks its own update before masking it, and with dp.noise > 0 clips it to dp.clip)"
        )
    if fed.min_train_nodes < 2:
        out.append(
            "federation.min-train-nodes = 1: the sum of one update is that update (secure aggregation needs "
            ">= 2 clients a round)"
        )
    return out


@dataclass(frozen=True)
class FederationConfig:
    """The federated run (keys ``federation.*``, ``dp.*``, ``eval.every``, ``eval.report-metrics``, ``run.out-dir``,
    ``run.checkpoint-dir``, ``run.resume``, ``secagg.*``), checked on construction.

    >>> from dataclasses import replace
    >>> federation = RunConfig.from_mapping(default_mapping()).federation
    >>> replace(federation, fraction_train=1.5)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'federation.fraction-train' must be in (0, 1], got 1.5
    """

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
    local_episodes: int = 0
    """Episodes a training client trains on per round, drawn afresh each round (0 = all of them): bounds a round's
    client cost whatever the user's data (:func:`shared.hydra.episodes.round_sample`)."""
    max_in_flight: int = 0
    """Messages the server keeps in flight at once in a round (0 = all of the round's at once): a simulation's
    engine scans its pending messages for every node, so large simulations send a few at a time
    (:mod:`server.window`)."""
    secure_aggregation: bool = False
    """Sum each round's updates with SecAgg+ (:class:`SecureAggregationConfig`): the server sees no single update."""
    secagg: SecureAggregationConfig = field(default_factory=SecureAggregationConfig)

    def __post_init__(self) -> None:
        name = _namer("federation")
        check_minimums(
            self,
            {
                "num_rounds": 1,
                "min_train_nodes": 1,
                "local_epochs": 1,
                "local_head_epochs": 0,
                "local_episodes": 0,
                "max_in_flight": 0,
                "eval_every": 0,
                "round_timeout": 1.0,
            },
            name=name,
        )
        if not isinstance(self.fraction_train, (int, float)) or not 0 < self.fraction_train <= 1:
            raise ConfigError(f"{name('fraction_train')} must be in (0, 1], got {self.fraction_train}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"{name('strategy')} must be {_one_of(STRATEGIES)}, got {self.strategy!r}")
        conflicts = secure_aggregation_conflicts(self) if self.secure_aggregation else []
        if conflicts:
            raise SecureAggregationConflict("secagg.enabled = true cannot combine with: " + "; ".join(conflicts))


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a FedHydra run, validated: each part checks itself on construction (so a config built or
    :func:`dataclasses.replace`-d directly is checked too), :meth:`from_mapping` checks the keys and their ranges."""

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
    eval_methods: tuple[str, ...]
    """The methods test users answer with (empty: all that apply, :func:`parse_methods`)."""
    federation: FederationConfig
    model: ModelConfig
    train: TrainConfig
    episodes: EpisodeConfig
    inference: InferenceConfig
    pool: PoolConfig
    store_dir: str
    device_quantized: bool

    def __post_init__(self) -> None:
        from shared.tasks import get_task

        name = _namer("run")
        get_task(self.task)  # UnknownTaskError names the known ones
        if self.protocol not in ("disjoint", "history"):
            raise ConfigError(f"{name('protocol')} must be 'disjoint' or 'history', got {self.protocol!r}")
        check_minimums(
            self,
            {
                "timeline_questions": 1,
                "synthetic_users": 1,
                "synthetic_items": 2,
                "train_users": 0,
                "free_train_users": 0,
                "test_users": 0,
                "user_offset": 0,
                "llm_calls_per_user": 0,
                "llm_concurrency": 1,
                "margin_folds": 0,
            },
            name=name,
        )
        if self.free_train_users and self.protocol != "disjoint":
            raise ConfigError(
                f"{name('free_train_users')} needs data.protocol = 'disjoint' (in the history protocol "
                f"every user is a test user), got {self.free_train_users}"
            )
        if self.margin_folds == 1:
            raise ConfigError(f"{name('margin_folds')} must be 0 (no margin rule) or >= 2 (folds of training users)")
        parse_methods(" ".join(self.eval_methods))  # names each unknown one

    def to_mapping(self) -> dict[str, Any]:
        """The run config as dotted keys, each read from the first field its declaration names (what
        :meth:`from_mapping` turns back into an equal RunConfig; a derived value, e.g. ``federation.local-head-epochs``,
        as derived).

        >>> cfg = RunConfig.from_mapping({**default_mapping(), "eval.methods": "rag hydra"})
        >>> mapping = cfg.to_mapping()
        >>> mapping["eval.methods"], mapping["federation.local-head-epochs"], RunConfig.from_mapping(mapping) == cfg
        ('rag hydra', 14, True)
        """
        out: dict[str, Any] = {}
        for s in SETTINGS:
            part, attr = s.to[0].split(".")
            owner = self if part == "run" else self.federation.secagg if part == "secagg" else getattr(self, part)
            value = getattr(owner, attr)
            out[s.key] = (" ".join(value) or "all") if s.key == "eval.methods" else value
        return out

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], *, complete: bool = False, caps: Mapping[str, float] | None = None
    ) -> RunConfig:
        """Validate a mapping of dotted keys (the pyproject table plus overrides) into a RunConfig.

        With ``complete`` the mapping is a whole run config (Flower's ``context.run_config``) and serves as its
        own defaults, so an installed app bundle without the project's pyproject works (a key it lacks takes its
        declared default). Every value is checked against its declared range (:data:`SETTINGS`) before anything
        reads it; ``caps`` (a device's :func:`node_caps`) lower the maxima. Each value then lands in the fields its
        declaration names (``Setting.to``), and each part checks its own further rules on construction.
        """
        from shared.tasks import get_task

        for key in mapping:
            if key not in _BY_KEY:
                near = difflib.get_close_matches(key, list(_BY_KEY), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"unknown config key {key!r}{hint}")
        defaults = {s.key: s.default for s in SETTINGS}
        values = {**defaults, **({} if complete else _defaults()), **mapping}
        parts: dict[str, dict[str, Any]] = {
            p: {} for p in ("run", "federation", "secagg", "model", "train", "episodes", "inference", "pool")
        }
        for s in SETTINGS:
            value = _check(s.key, values[s.key], caps)
            for target in s.to:
                part, attr = target.split(".")
                parts[part][attr] = value
        run = parts["run"]
        run["task"] = get_task(run["task"]).name
        run["eval_methods"] = parse_methods(run["eval_methods"])
        if parts["pool"]["style"] not in CHOICES["prompt.style"]:
            raise ConfigError(
                f"config key 'prompt.style' must be one of {CHOICES['prompt.style']}, got {parts['pool']['style']!r}"
            )
        if parts["pool"]["temperature"] <= 0:
            raise ConfigError(f"config key 'pool.temperature' must be > 0, got {parts['pool']['temperature']}")
        fed = parts["federation"]
        # 0: the run's head epochs spread over its rounds, so a federated run trains trunk and heads as long as
        # the centralized reference (-(-a // b) is the ceiling of a / b)
        fed["local_head_epochs"] = fed["local_head_epochs"] or -(-parts["train"]["head_epochs"] // fed["num_rounds"])
        pool = PoolConfig(**parts["pool"])
        try:
            model = ModelConfig(**parts["model"])
            train = TrainConfig(**parts["train"])
        except OutOfRange:
            raise
        except ConfigError as exc:
            raise ConfigError(f"config: {exc}") from None
        return cls(
            **run,
            federation=FederationConfig(**fed, secagg=SecureAggregationConfig(**parts["secagg"])),
            model=model,
            train=train,
            episodes=EpisodeConfig(**parts["episodes"], pool=pool),
            inference=InferenceConfig(**parts["inference"], pool=pool),
            pool=pool,
        )
