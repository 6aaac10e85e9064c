"""One configuration source: ``[tool.flwr.app.config]`` in ``pyproject.toml`` (kebab-case keys, each
commented there), turned once, at an entry point, into frozen, validated dataclasses.

Flower passes the table (with ``--run-config`` overrides) as ``context.run_config``; the ``fedhydra``
command reads the same table from the project's ``pyproject.toml`` and applies ``--run-config`` and its
own flags on top. Everything below the entry point receives plain values.

Every key has a documented range, declared once here (:data:`BOUNDS` for numbers, :data:`CHOICES` for names,
:data:`TEXT_LIMITS` for free text, the rest true or false) and stated in its comment in ``pyproject.toml``
(``Range: ...``, the text :func:`describe_range` gives; ``tests/shared/test_config.py`` checks the two agree). A value
outside its range is refused before anything uses it with one typed error, :class:`shared.errors.OutOfRange`, that
names the key and the bound. A device lowers the maximum of any numeric key a server's run config may ask of it with
a node config key ``cap-<key>`` (e.g. ``cap-local-epochs = 2``: :func:`node_caps`); a run config above the cap is
refused, naming the cap.

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
import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from shared.errors import ConfigError, OutOfRange, SecureAggregationConflict, check_minimums

if TYPE_CHECKING:  # imported where used (from_mapping): shared.training.train needs torch, which a device lacks
    from shared.hydra.candidates import PoolConfig
    from shared.hydra.episodes import EpisodeConfig
    from shared.hydra.infer import InferenceConfig
    from shared.hydra.spec import ModelConfig
    from shared.training.train import TrainConfig

__all__ = ["RunConfig", "FederationConfig", "STRATEGIES", "default_mapping", "pyproject_path", "parse_overrides",
           "parse_methods", "BOUNDS", "CHOICES", "TEXT_LIMITS", "FLAGS", "CAP_PREFIX", "check_number", "describe_range",
           "node_caps",
           "SecureAggregationConfig", "SECAGG_MODULUS", "SECURE_AGGREGATION_REFUSES", "secure_aggregation_conflicts"]


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


STRATEGIES: dict[str, str] = {
    "fedavg": "FedAvg: the mean of the replies, weighted by their examples",
    "fedprox": "FedProx: FedAvg, the clients' training pulled toward the global base (proximal-mu)",
    "fedadam": "FedAdam: Adam on the server over the mean update (server-lr)",
    "fedmedian": "FedMedian: the coordinate-wise median of the replies",
    "fedtrimmedavg": "FedTrimmedAvg: the mean without the trim-beta fraction at each end",
}
"""The aggregation strategies a run may name (config key ``strategy``) and what each does: the one list that the
config checks against; :mod:`server.strategies` builds each by the same name (a test checks the two agree)."""


BOUNDS: dict[str, tuple[int, int] | tuple[float, float]] = {
    # data and users
    "timeline-questions": (1, 1000), "synthetic-users": (1, 100_000), "synthetic-items": (2, 10_000),
    "train-users": (0, 1_000_000), "free-train-users": (0, 1_000_000), "test-users": (0, 1_000_000),
    "user-offset": (0, 10_000_000), "seed": (0, 2 ** 32 - 1),
    # the black-box LLM
    "llm-timeout": (0.001, 3600.0), "llm-calls-per-user": (0, 10_000), "llm-concurrency": (1, 256),
    # retrieval, prompts and the candidate pool
    "retrieve-m": (1, 100), "prompt-k": (1, 100), "n-samples": (0, 32), "temperature": (0.0, 5.0),
    "pseudo-questions": (0, 1000), "free-questions": (0, 10_000), "label-records": (1, 100), "margin-folds": (0, 100),
    # model
    "lora-rank": (1, 64), "lora-alpha": (1, 1024), "trunk-dim": (1, 4096), "max-query-tokens": (8, 512),
    "max-item-tokens": (8, 512),
    # training
    "epochs": (0, 100), "head-epochs": (0, 10_000), "batch-size": (1, 4096), "lr": (0.0, 10.0),
    "lora-lr": (0.0, 10.0), "fit-steps": (0, 10_000), "fit-lr": (0.0, 10.0), "head-l2": (0.0, 1000.0),
    # federation
    "num-rounds": (1, 10_000), "fraction-train": (0.0, 1.0), "min-train-nodes": (1, 1_000_000),
    "local-epochs": (1, 100), "local-head-epochs": (0, 10_000), "local-episodes": (0, 1_000_000),
    "max-in-flight": (0, 1_000_000), "proximal-mu": (0.0, 1000.0), "server-lr": (0.0, 10.0), "trim-beta": (0.0, 0.5),
    "outlier-norm-factor": (0.0, 1e6), "dp-noise": (0.0, 1000.0), "dp-clip": (0.0, 1e6),
    "secagg-num-shares": (0, 1_000_000), "secagg-threshold": (0.0, 1.0), "secagg-clipping-range": (0.0, 1e6),
    "secagg-quantization-range": (2, 2 ** 31 - 1), "secagg-max-weight": (0.0, 1e9), "eval-every": (0, 10_000),
    "round-timeout": (1.0, 604_800.0),
}
"""Every numeric config key's range, ``key -> (min, max)``, both inclusive (int bounds: an integer key; float bounds:
a number). Some keys have one more rule, stated in their comment and checked where the key is read (``margin-folds``
is never 1; ``temperature``, ``fraction-train``, ``dp-clip``, ``secagg-threshold``, ``secagg-clipping-range`` and
``secagg-max-weight`` are above 0; ``secagg-num-shares`` is 0 or at least 3). The maxima bound what a run may ask of a device: no epoch
count, rank, sample count or token budget beyond what a device can do in a round."""

CHOICES: dict[str, tuple[str, ...]] = {
    "protocol": ("disjoint", "history"),
    "strategy": tuple(STRATEGIES),
    "prompt-style": ("turns", "inline"),
}
"""Config keys whose value is one of a few names (each checked where it is read, naming the key and the names)."""

TEXT_LIMITS: dict[str, int] = {
    "task": 32, "data": 4096, "split": 64, "eval-methods": 1024, "llm-url": 2048, "llm-model": 256, "out-dir": 4096,
    "checkpoint-dir": 4096, "store-dir": 4096,
}
"""Free-text config keys and their most characters (``task`` and ``eval-methods`` are also checked against the known
tasks and methods)."""

FLAGS = ("train-lora", "secure-aggregation", "report-metrics", "resume", "device-quantized")
"""Config keys that are true or false."""

CAP_PREFIX = "cap-"
"""A node config key ``cap-<key>`` lowers the maximum of the numeric config key ``<key>`` on that device."""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def describe_range(key: str) -> str:
    """The range of a config key as its pyproject comment states it (after ``Range: ``).

    >>> describe_range("lr"), describe_range("local-epochs"), describe_range("protocol"), describe_range("resume")
    ('[0.0, 10.0]', '[1, 100]', 'one of disjoint, history', 'true or false')
    >>> describe_range("store-dir")
    'text of at most 4096 characters'
    """
    if key in BOUNDS:
        low, high = BOUNDS[key]
        return f"[{_number(low)}, {_number(high)}]"
    if key in CHOICES:
        return "one of " + ", ".join(CHOICES[key])
    if key in TEXT_LIMITS:
        return f"text of at most {TEXT_LIMITS[key]} characters"
    if key in FLAGS:
        return "true or false"
    raise ConfigError(f"config key {key!r} has no declared range")


def check_number(key: str, value: Any, caps: Mapping[str, float] | None = None) -> int | float:
    """``value`` of the numeric config key ``key`` once it is a number of the key's kind within :data:`BOUNDS` (and at
    most ``caps[key]``, a device's cap); else :class:`shared.errors.OutOfRange` naming the key and the bound.

    >>> check_number("local-epochs", 3.0)
    3
    >>> check_number("local-epochs", 1e9)
    Traceback (most recent call last):
    ...
    shared.errors.OutOfRange: config key 'local-epochs' must be >= 1 and <= 100, got 1000000000.0
    >>> check_number("local-epochs", 3, {"local-epochs": 2})
    Traceback (most recent call last):
    ...
    shared.errors.OutOfRange: config key 'local-epochs' must be >= 1 and <= 2 (capped by this device's node config), got 3
    """
    low, high = BOUNDS[key]
    capped = caps is not None and key in caps and caps[key] < high
    if capped:
        high = caps[key]
    integer = isinstance(BOUNDS[key][0], int)
    kind = "int" if integer else "float"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OutOfRange(key, value, low, high, kind=kind)
    if integer and isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise OutOfRange(key, value, low, high, kind=kind) if math.isfinite(value) else \
                OutOfRange(key, value, low, high, capped=capped)
        if low <= value <= high:
            value = int(value)
    if not (low <= value <= high):  # NaN fails every comparison
        raise OutOfRange(key, value, low, high, capped=capped)
    return value if integer else float(value)


def node_caps(node_config: Mapping[str, Any]) -> dict[str, float]:
    """A device's caps on what a run may ask of it: its node config keys ``cap-<key>`` (see :data:`CAP_PREFIX`), each
    a number within ``<key>``'s own range.

    >>> node_caps({"user-id": "u1", "cap-local-epochs": 2, "cap-lr": 0.01})
    {'local-epochs': 2, 'lr': 0.01}
    """
    out: dict[str, float] = {}
    for name, value in node_config.items():
        if not str(name).startswith(CAP_PREFIX):
            continue
        key = str(name)[len(CAP_PREFIX):]
        if key not in BOUNDS:
            raise ConfigError(f"node config key {str(name)[:64]!r}: {key[:60]!r} is no numeric config key")
        out[key] = check_number(key, value)
    return out


def parse_methods(text: str) -> tuple[str, ...]:
    """The ``eval-methods`` setting as names (empty: all); each must be a baseline or a HYDRA variant.

    >>> parse_methods("all"), parse_methods("user-ridge, hydra hydra-shared-head")
    ((), ('user-ridge', 'hydra', 'hydra-shared-head'))
    >>> parse_methods("hydra-best")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'eval-methods': unknown method 'hydra-best'; known: input, style-rules, ..., hydra-stable
    """
    from shared.baselines import METHODS
    from shared.hydra.variants import VARIANTS

    names = tuple(n for n in text.replace(",", " ").split() if n)
    if names == ("all",):
        return ()
    for name in names:
        if name not in METHODS and name not in VARIANTS:
            raise ConfigError(f"config key 'eval-methods': unknown method {name!r}; known: "
                              f"{', '.join([*METHODS, *VARIANTS])}")
    return names


def _one_of(names: Mapping[str, Any]) -> str:
    """``"a, b or c"``.

    >>> _one_of({"a": 1, "b": 2, "c": 3})
    'a, b or c'
    """
    *first, last = names
    return f"{', '.join(first)} or {last}" if first else last


def _key(attr: str) -> str:
    """How an error names a field of a run's config: by its key in ``[tool.flwr.app.config]``."""
    return f"config key {attr.replace('_', '-')!r}"


SECAGG_MODULUS = 2 ** 32
"""The modulus of SecAgg+'s masked sums (Flower's default and its largest): a round's clients times
``secagg-quantization-range`` must stay below it, or the sum wraps around."""


@dataclass(frozen=True)
class SecureAggregationConfig:
    """How SecAgg+ masks and sums a round's shared-base updates when ``secure-aggregation = true`` (keys
    ``secagg-*``; Flower's ``SecAggPlusWorkflow`` on the server, ``secaggplus_mod`` on the clients).

    >>> SecureAggregationConfig(threshold=1.5)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'secagg-threshold' must be in (0, 1], got 1.5
    >>> SecureAggregationConfig(quantization_range=2 ** 23).max_clients
    511
    """

    num_shares: int = 0
    """Neighbours each client's key shares go to, itself included; 0 = every client of the round (SecAgg)."""
    threshold: float = 0.67
    """Fraction of a client's shares needed to rebuild its masks (at least 2 shares)."""
    clipping_range: float = 16.0
    """Every value a client masks (times its weight / ``max_weight``) must lie in [-range, range]."""
    quantization_range: int = 2 ** 23
    """Integer levels over [-clipping_range, clipping_range]."""
    max_weight: float = 200.0
    """The largest weight (``num-examples``) one update may carry; a larger one is capped by its client."""

    def __post_init__(self) -> None:
        def name(attr: str) -> str:
            return f"config key 'secagg-{attr.replace('_', '-')}'"

        for attr, kind in (("num_shares", int), ("quantization_range", int), ("threshold", (int, float)),
                           ("clipping_range", (int, float)), ("max_weight", (int, float))):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"{name(attr)} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        if self.num_shares != 0 and self.num_shares < 3:
            raise ConfigError(f"{name('num_shares')} must be 0 (every client of the round) or >= 3, "
                              f"got {self.num_shares}")
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


def secure_aggregation_conflicts(fed: "FederationConfig") -> list[str]:
    """Why ``fed`` cannot run with ``secure-aggregation = true`` (empty: it can). Under SecAgg+ the server sees the
    round's masked sum only, so whatever needs a single client's update is refused, never silently dropped."""
    out = []
    if fed.strategy in SECURE_AGGREGATION_REFUSES:
        out.append(f"strategy = {fed.strategy!r} {SECURE_AGGREGATION_REFUSES[fed.strategy]}, and the server sees "
                   f"only their sum (use fedavg, fedprox or fedadam)")
    if fed.outlier_norm_factor > 0:
        out.append(f"outlier-norm-factor = {fed.outlier_norm_factor:g} compares each update's norm with the round's "
                   f"median, and the server sees no single update (set outlier-norm-factor = 0: each client checks "
                   f"its own update before masking it, and with dp-noise > 0 clips it to dp-clip)")
    if fed.min_train_nodes < 2:
        out.append("min-train-nodes = 1: the sum of one update is that update (secure aggregation needs >= 2 "
                   "clients a round)")
    return out


@dataclass(frozen=True)
class FederationConfig:
    """The federated run (see ``[tool.flwr.app.config]``), checked on construction.

    >>> from dataclasses import replace
    >>> federation = RunConfig.from_mapping(default_mapping()).federation
    >>> replace(federation, fraction_train=1.5)
    Traceback (most recent call last):
    ...
    shared.errors.ConfigError: config key 'fraction-train' must be in (0, 1], got 1.5
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
        check_minimums(self, {"num_rounds": 1, "min_train_nodes": 1, "local_epochs": 1, "local_head_epochs": 0,
                              "local_episodes": 0, "max_in_flight": 0, "eval_every": 0, "round_timeout": 1.0},
                       name=_key)
        if not isinstance(self.fraction_train, (int, float)) or not 0 < self.fraction_train <= 1:
            raise ConfigError(f"config key 'fraction-train' must be in (0, 1], got {self.fraction_train}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"config key 'strategy' must be {_one_of(STRATEGIES)}, got {self.strategy!r}")
        conflicts = secure_aggregation_conflicts(self) if self.secure_aggregation else []
        if conflicts:
            raise SecureAggregationConflict("secure-aggregation = true cannot combine with: " + "; ".join(conflicts))


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a FedHydra run, validated: each part checks itself on construction (so a config built or
    :func:`dataclasses.replace`-d directly is checked too), :meth:`from_mapping` checks the keys and their types."""

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

        get_task(self.task)  # UnknownTaskError names the known ones
        if self.protocol not in ("disjoint", "history"):
            raise ConfigError(f"config key 'protocol' must be 'disjoint' or 'history', got {self.protocol!r}")
        check_minimums(self, {"timeline_questions": 1, "synthetic_users": 1, "synthetic_items": 2, "train_users": 0,
                              "free_train_users": 0, "test_users": 0, "user_offset": 0, "llm_calls_per_user": 0,
                              "llm_concurrency": 1, "margin_folds": 0}, name=_key)
        if self.free_train_users and self.protocol != "disjoint":
            raise ConfigError("config key 'free-train-users' needs protocol = 'disjoint' (in the history protocol every "
                              f"user is a test user), got {self.free_train_users}")
        if self.margin_folds == 1:
            raise ConfigError("config key 'margin-folds' must be 0 (no margin rule) or >= 2 (folds of training users)")
        parse_methods(" ".join(self.eval_methods))  # names each unknown one

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, complete: bool = False,
                     caps: Mapping[str, float] | None = None) -> "RunConfig":
        """Validate a kebab-case mapping (the pyproject table plus overrides) into a RunConfig.

        With ``complete`` the mapping is a whole run config (Flower's ``context.run_config``) and serves as its
        own defaults, so an installed app bundle without the project's pyproject works. Every value is checked
        against its declared range (:data:`BOUNDS`, :data:`CHOICES`, :data:`TEXT_LIMITS`, :data:`FLAGS`) before
        anything reads it; ``caps`` (a device's :func:`node_caps`) lower the maxima.
        """
        from shared.hydra.candidates import PoolConfig
        from shared.hydra.episodes import EpisodeConfig
        from shared.hydra.infer import InferenceConfig
        from shared.training.model import ModelConfig
        from shared.training.train import TrainConfig
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
            if key in BOUNDS:
                value = check_number(key, value, caps)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if kind is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"config key {key!r} must be {kind.__name__}, got {str(value)[:40]!r}")
            if kind is str and key in TEXT_LIMITS and len(value) > TEXT_LIMITS[key]:
                raise ConfigError(f"config key {key!r} must be at most {TEXT_LIMITS[key]} characters, got "
                                  f"{len(value)}")
            return value

        def positive(key: str, kind: type = int, minimum: float = 1) -> Any:
            value = get(key, kind)
            if value < minimum:
                raise ConfigError(f"config key {key!r} must be >= {minimum}, got {value}")
            return value

        task = get_task(get("task", str)).name
        protocol = get("protocol", str)
        style = get("prompt-style", str)
        if style not in PROMPT_STYLES:
            raise ConfigError(f"config key 'prompt-style' must be one of {PROMPT_STYLES}, got {style!r}")
        strategy = get("strategy", str)
        fraction = get("fraction-train", float)
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
        except OutOfRange:
            raise
        except ConfigError as exc:
            raise ConfigError(f"config: {exc}") from None
        episodes = EpisodeConfig(pseudo_questions=positive("pseudo-questions", int, 0),
                                 free_questions=positive("free-questions", int, 0), rerank_m=positive("retrieve-m"),
                                 label_records=positive("label-records"), pool=pool,
                                 calls_per_user=positive("llm-calls-per-user", int, 0), seed=get("seed", int))
        inference = InferenceConfig(m=positive("retrieve-m"), k=positive("prompt-k"), pool=pool)
        margin_folds = positive("margin-folds", int, 0)
        free_train_users = positive("free-train-users", int, 0)
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
            local_head_epochs=local_head_epochs, local_episodes=positive("local-episodes", int, 0),
            max_in_flight=positive("max-in-flight", int, 0),
            secure_aggregation=get("secure-aggregation", bool),
            secagg=SecureAggregationConfig(num_shares=get("secagg-num-shares", int),
                                           threshold=get("secagg-threshold", float),
                                           clipping_range=get("secagg-clipping-range", float),
                                           quantization_range=get("secagg-quantization-range", int),
                                           max_weight=get("secagg-max-weight", float)))
        return cls(task=task, data=get("data", str), split=get("split", str),
                   timeline_questions=positive("timeline-questions"),
                   synthetic_users=positive("synthetic-users"), synthetic_items=positive("synthetic-items", int, 2),
                   train_users=positive("train-users", int, 0), free_train_users=free_train_users, test_users=positive("test-users", int, 0),
                   user_offset=positive("user-offset", int, 0), protocol=protocol, seed=get("seed", int),
                   llm_url=get("llm-url", str), llm_model=get("llm-model", str), llm_timeout=get("llm-timeout", float),
                   llm_calls_per_user=positive("llm-calls-per-user", int, 0),
                   llm_concurrency=positive("llm-concurrency"), margin_folds=margin_folds,
                   eval_methods=parse_methods(get("eval-methods", str)), federation=federation, model=model,
                   train=train, episodes=episodes, inference=inference, pool=pool, store_dir=get("store-dir", str),
                   device_quantized=get("device-quantized", bool))
