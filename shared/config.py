"""One configuration source: each setting declared once, in :data:`SETTINGS` (its dotted key, default, range and
comment), mirrored by ``[tool.flwr.app.config]`` in ``pyproject.toml`` and turned once, at an entry point, into frozen,
validated dataclasses.

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


STRATEGIES: dict[str, str] = {
    "fedavg": "FedAvg: the mean of the replies, weighted by their examples",
    "fedprox": "FedProx: FedAvg, the clients' training pulled toward the global base (federation.proximal-mu)",
    "fedadam": "FedAdam: Adam on the server over the mean update (federation.server-lr)",
    "fedmedian": "FedMedian: the coordinate-wise median of the replies",
    "fedtrimmedavg": "FedTrimmedAvg: the mean without the federation.trim-beta fraction at each end",
}
"""The aggregation strategies a run may name (config key ``federation.strategy``) and what each does: the one list
that the config checks against; :mod:`server.strategies` builds each by the same name (a test checks the two agree)."""


@dataclass(frozen=True)
class Num:
    """A numeric key's range, both ends inclusive: int ends make an integer key, float ends a number."""

    low: int | float
    high: int | float

    def describe(self) -> str:
        def number(value: float) -> str:
            return str(value) if isinstance(value, int) else repr(float(value))

        return f"[{number(self.low)}, {number(self.high)}]"


@dataclass(frozen=True)
class OneOf:
    """A key whose value is one of a few names."""

    names: tuple[str, ...]

    def __init__(self, *names: str):
        object.__setattr__(self, "names", tuple(names))

    def describe(self) -> str:
        return "one of " + ", ".join(self.names)


@dataclass(frozen=True)
class Text:
    """A free-text key and its most characters."""

    limit: int

    def describe(self) -> str:
        return f"text of at most {self.limit} characters"


@dataclass(frozen=True)
class _Flag:
    def describe(self) -> str:
        return "true or false"


FLAG = _Flag()
"""The range of a key that is true or false."""


@dataclass(frozen=True)
class Setting:
    """One config key, declared once: its dotted ``key`` (group, then name), ``default``, ``range``, ``doc`` (its
    comment in pyproject, followed there by ``Range: <range>.``) and ``to``: the fields of the run's config it lands
    in, ``<part>.<field>`` (parts: ``run`` is :class:`RunConfig` itself, and its parts ``federation``, ``secagg``,
    ``model``, ``train``, ``episodes``, ``inference``, ``pool``); by default the key's group and name.

    >>> Setting("train.lr", 0.002, Num(0.0, 10.0), "Learning rate.").to
    ('train.lr',)
    """

    key: str
    default: Any
    range: Num | OneOf | Text | _Flag
    doc: str
    to: tuple[str, ...] | str = ()

    def __post_init__(self) -> None:
        if isinstance(self.to, str):
            object.__setattr__(self, "to", (self.to,))
        elif not self.to:
            group, name = self.key.split(".", 1)
            object.__setattr__(self, "to", (f"{group}.{name.replace('-', '_')}",))

    @property
    def group(self) -> str:
        return self.key.split(".", 1)[0]


GROUPS: dict[str, str] = {
    "data": "data and users (the first four keys are the ones to set first)",
    "llm": "the black-box LLM",
    "eval": "evaluation",
    "run": "seed, outputs, resuming",
    "prompt": "retrieval and prompts",
    "pool": "the candidate pool and the LLM's training labels",
    "model": "model",
    "train": "training",
    "federation": "federation",
    "dp": "differential privacy",
    "secagg": "secure aggregation",
    "device": "the device",
}
"""The groups of keys, in the order of the pyproject table, with their titles there."""

SETTINGS: tuple[Setting, ...] = (
    Setting("data.task", "LaMP-7", Text(32), "Which LaMP task (LaMP-1, 2, 2N, 3, 4, 5, 6, 7).", to="run.task"),
    Setting(
        "data.dir",
        "",
        Text(4096),
        "Directory of LaMP-format data (*_questions.json + *_outputs.json); empty = synthetic users (the embedded "
        "default).",
        to="run.data",
    ),
    Setting(
        "data.train-users",
        8,
        Num(0, 1_000_000),
        "Users whose questions (with golds) train the shared base.",
        to="run.train_users",
    ),
    Setting(
        "data.test-users",
        4,
        Num(0, 1_000_000),
        "New users (disjoint from training users) who fit heads on their history and answer their questions.",
        to="run.test_users",
    ),
    Setting(
        "data.split",
        "",
        Text(64),
        'File prefix when the directory holds several splits (e.g. "dev"); empty = the only one. "timeline": the '
        "time-based split built in memory from `data.dir`/user_histories.json (LaMP-3: each user's last "
        "`data.timeline-questions` reviews are questions, each answered from the reviews strictly before it; use "
        'with data.protocol = "history").',
        to="run.split",
    ),
    Setting(
        "data.timeline-questions",
        40,
        Num(1, 1000),
        'Questions per user of the "timeline" split (the user\'s last reviews; the user needs at least this + 2). '
        ">= 1.",
        to="run.timeline_questions",
    ),
    Setting(
        "data.synthetic-users",
        12,
        Num(1, 100_000),
        "Synthetic users to generate when `data.dir` is empty.",
        to="run.synthetic_users",
    ),
    Setting("data.synthetic-items", 24, Num(2, 10_000), "History items per synthetic user.", to="run.synthetic_items"),
    Setting(
        "data.free-train-users",
        0,
        Num(0, 1_000_000),
        "More training users, after `data.train-users`, who cost no LLM call: their questions (with golds) train "
        "the editor and the adapter on the candidates that cost no call (the input and its edits; the label pool) "
        "and count in the margin's cross-validation; they get no record labels, no LLM candidates and no "
        "pseudo-questions that need a call. Disjoint protocol only; in federated runs they are training nodes too "
        "(after the others) that never call the LLM.",
        to="run.free_train_users",
    ),
    Setting(
        "data.user-offset",
        0,
        Num(0, 10_000_000),
        "The user of the data (0-based, in data order) where the training users start; test users follow them, "
        "wrapping around past the last user (6 LaMP-3 users, offset 3, 3 + 3 users: users 3-5 train, users 0-2 "
        "are new).",
        to="run.user_offset",
    ),
    Setting(
        "data.protocol",
        "disjoint",
        OneOf("disjoint", "history"),
        '"disjoint": train and test users differ; "history": every user trains on pseudo-questions from the '
        "history before their first question and is tested on their questions (LaMP-3 here, 6 users).",
        to="run.protocol",
    ),
    Setting(
        "llm.url",
        "",
        Text(2048),
        "OpenAI-compatible base URL; empty = FEDHYDRA_LLM_BASE_URL, else the embedded server (started on demand).",
        to="run.llm_url",
    ),
    Setting(
        "llm.model",
        "",
        Text(256),
        "Model name sent to that endpoint (ignored by the embedded server).",
        to="run.llm_model",
    ),
    Setting("llm.timeout", 60.0, Num(0.001, 3600.0), "Seconds before an LLM request times out.", to="run.llm_timeout"),
    Setting(
        "llm.calls-per-user",
        60,
        Num(0, 10_000),
        "Most LLM calls one user's training data may cost (cache hits are free).",
        to=("run.llm_calls_per_user", "episodes.calls_per_user"),
    ),
    Setting(
        "llm.concurrency",
        4,
        Num(1, 256),
        "Most LLM requests in flight at once, per process. The embedded server serves this many in parallel (its "
        "slots); for a remote endpoint (vLLM, a hosted API) set it to what the endpoint allows, typically 16-64.",
        to="run.llm_concurrency",
    ),
    Setting(
        "eval.methods",
        "input style-rules user-mean rag hydra hydra-shared-head",
        Text(1024),
        "The methods the test users answer with (the rows of the table): names separated by spaces or commas "
        "(baselines of shared/baselines.py: input, style-rules, majority, user-mean, user-ridge, zero-shot, rag; "
        'variants of shared/hydra/variants.py), or "all" (every baseline that applies and every HYDRA variant). A '
        "baseline that does not apply to the task is left out: the default is the strongest fixed baselines "
        "(returning the input and writing it with the user's spellings, or the user's mean score), RAG, HYDRA "
        "and HYDRA with the shared heads. Fewer methods, fewer LLM calls.",
        to="run.eval_methods",
    ),
    Setting(
        "eval.every",
        1,
        Num(0, 10_000),
        "Evaluate the test users every this many rounds (the last round always; 0 = the last round only). With a "
        "real LLM every evaluation asks it anew (the reranker changed), so long runs evaluate less often.",
        to="federation.eval_every",
    ),
    Setting(
        "eval.report-metrics",
        True,
        FLAG,
        "Send test users' scalar metrics to the server (false: nothing leaves test clients).",
        to="federation.report_metrics",
    ),
    Setting(
        "run.seed",
        0,
        Num(0, 4_294_967_295),
        "Seed of every random choice (sampling, shuffles, initialization).",
        to=("run.seed", "pool.seed", "train.seed", "episodes.seed"),
    ),
    Setting(
        "run.out-dir",
        "",
        Text(4096),
        "Where the server writes per-round figures and its summary (empty = $FEDHYDRA_HOME/server).",
        to="federation.out_dir",
    ),
    Setting(
        "run.checkpoint-dir",
        "",
        Text(4096),
        "Where the server checkpoints the global base each round (empty = <run.out-dir>/checkpoints).",
        to="federation.checkpoint_dir",
    ),
    Setting(
        "run.resume",
        False,
        FLAG,
        "Resume: a federated run from the latest checkpoint in run.checkpoint-dir; a centralized run (`fedhydra "
        "run`) with the shared base (and margin) an earlier run of the same training settings and episodes left "
        "in <out>/trained.",
        to="federation.resume",
    ),
    Setting(
        "prompt.retrieve-m",
        5,
        Num(1, 100),
        "BM25 records the reranker scores (m).",
        to=("episodes.rerank_m", "inference.m"),
    ),
    Setting("prompt.k", 4, Num(1, 100), "Records put into the prompt (k).", to=("pool.k", "inference.k")),
    Setting(
        "prompt.style",
        "turns",
        OneOf("turns", "inline"),
        'Prompt format: "turns" (records as earlier chat turns, as HYDRA) or "inline" (the official LaMP format).',
        to="pool.style",
    ),
    Setting("pool.n-samples", 3, Num(0, 32), "Sampled LLM answers per query, besides the greedy one."),
    Setting("pool.temperature", 0.7, Num(0.0, 5.0), "Sampling temperature of those answers."),
    Setting(
        "pool.pseudo-questions",
        2,
        Num(0, 1000),
        "Pseudo-questions made from each user's history and labelled through the LLM.",
        to="episodes.pseudo_questions",
    ),
    Setting(
        "pool.free-questions",
        20,
        Num(0, 10_000),
        "More pseudo-questions without LLM candidates or record labels: the adapter learns from the candidates "
        "that cost no call (the label pool; for rewrite tasks the input and its edits). Free for rated/labelled "
        "items; for rewrite tasks (LaMP-7) each costs its paraphrase call.",
        to="episodes.free_questions",
    ),
    Setting(
        "pool.label-records",
        4,
        Num(1, 100),
        "Top records labelled per question by asking the LLM with that record alone.",
        to="episodes.label_records",
    ),
    Setting(
        "pool.margin-folds",
        3,
        Num(0, 100),
        "Folds of training users that choose the decision margin by cross-validation: the adapter leaves the "
        "strongest non-LLM answer (the input; for ratings the user's own rating model's score, else their mean) "
        "only when its predicted advantage passes it. 0 = no margin rule (the adapter's plain choice); otherwise "
        ">= 2. Federated runs only read 0 or not: after the last round every training client cross-fits personal "
        "heads on halves of its own examples under the global base and sends per-margin counts and sums; the "
        "server adds them up, chooses the margin and sends it to the test clients' final evaluation.",
        to="run.margin_folds",
    ),
    Setting("model.lora-rank", 4, Num(1, 64), "LoRA rank of the encoder adapters (query and value projections)."),
    Setting("model.lora-alpha", 8, Num(1, 1024), "LoRA alpha (scale = alpha / rank)."),
    Setting("model.trunk-dim", 24, Num(1, 4096), "Hidden units of the shared trunk."),
    Setting("model.max-query-tokens", 128, Num(8, 512), "Token budget of a query."),
    Setting("model.max-item-tokens", 96, Num(8, 512), "Token budget of a record or candidate."),
    Setting(
        "train.epochs",
        2,
        Num(0, 100),
        "Epochs through the encoder (LoRA trains) over the training examples, per stage (and per round on a client).",
    ),
    Setting(
        "train.head-epochs", 40, Num(0, 10_000), "Then epochs of trunk and heads only, on cached embeddings (cheap)."
    ),
    Setting("train.batch-size", 16, Num(1, 4096), "Examples per optimization step."),
    Setting("train.lr", 0.002, Num(0.0, 10.0), "Learning rate of trunks and heads."),
    Setting("train.lora-lr", 0.001, Num(0.0, 10.0), "Learning rate of the LoRA adapters."),
    Setting("train.lora", True, FLAG, "Train the LoRA adapters (false: only trunks and heads).", to="train.train_lora"),
    Setting(
        "train.fit-steps", 200, Num(0, 10_000), "Optimization steps when fitting a new user's heads (base frozen)."
    ),
    Setting("train.fit-lr", 0.05, Num(0.0, 10.0), "Learning rate of that fit."),
    Setting(
        "train.head-l2", 0.05, Num(0.0, 1000.0), "Pull of a personal head toward the shared head while fitting (L2)."
    ),
    Setting("federation.num-rounds", 3, Num(1, 10_000), "Federated rounds."),
    Setting("federation.fraction-train", 1.0, Num(0.0, 1.0), "Fraction of training clients sampled each round."),
    Setting("federation.min-train-nodes", 2, Num(1, 1_000_000), "Fewest training clients a round needs."),
    Setting("federation.local-epochs", 1, Num(1, 100), "Local epochs through the encoder per round on a client."),
    Setting(
        "federation.local-head-epochs",
        0,
        Num(0, 10_000),
        "Then local epochs of trunk and heads per round (0 = train.head-epochs / federation.num-rounds, rounded "
        "up: as many over the run as the centralized reference trains; 40 per round on one user's data made the "
        "averaged trunk drift).",
    ),
    Setting(
        "federation.local-episodes",
        0,
        Num(0, 1_000_000),
        "Episodes a training client trains on per round, drawn afresh each round from its own (0 = all): caps a "
        "round's client cost whatever the user's data (real LaMP-7 users have 10-23 episodes).",
    ),
    Setting(
        "federation.max-in-flight",
        0,
        Num(0, 1_000_000),
        "Messages the server keeps in flight at once in a round's training and evaluation (0 = all of a round's "
        "at once, as devices work in parallel). Flower's simulation engine scans its pending messages for every "
        "node ten times a second (N x K per scan): simulations of many users set a few more than the ClientApps "
        "that run at once (server/window.py).",
    ),
    Setting(
        "federation.strategy",
        "fedavg",
        OneOf(*STRATEGIES),
        "Aggregation: fedavg, fedprox, fedadam, fedmedian or fedtrimmedavg.",
    ),
    Setting("federation.proximal-mu", 0.01, Num(0.0, 1000.0), "FedProx proximal term."),
    Setting("federation.server-lr", 0.01, Num(0.0, 10.0), "FedAdam server learning rate."),
    Setting("federation.trim-beta", 0.2, Num(0.0, 0.5), "FedTrimmedAvg: fraction trimmed at each end."),
    Setting(
        "federation.outlier-norm-factor",
        10.0,
        Num(0.0, 1_000_000.0),
        "Reject an update more than this many times the round's median update size (0 = off).",
    ),
    Setting(
        "federation.round-timeout",
        3600.0,
        Num(1.0, 604_800.0),
        "Seconds the server waits for the replies of one round's training or evaluation before going on without "
        "the rest.",
    ),
    Setting(
        "dp.noise",
        0.0,
        Num(0.0, 1000.0),
        "Differential privacy: noise multiplier of server-side Gaussian noise (0 = off).",
        to="federation.dp_noise",
    ),
    Setting(
        "dp.clip",
        1.0,
        Num(0.0, 1_000_000.0),
        "Differential privacy: clipping norm applied by each client to its update.",
        to="federation.dp_clip",
    ),
    Setting(
        "secagg.enabled",
        False,
        FLAG,
        "Sum each round's shared-base updates with Flower's SecAgg+: every client masks its update, so the server "
        "learns only the round's weighted sum, never one update. Refused at start with what needs single updates "
        "(fedmedian, fedtrimmedavg, the outlier filter: set federation.outlier-norm-factor = 0); each client "
        "checks its own update before masking it. With dp.noise > 0: central DP on the sum (clients clip, the "
        "server adds the noise to the unmasked mean), each training client sampled each round with probability "
        "federation.fraction-train (Poisson) and that sampling accounted for in the epsilon.",
        to="federation.secure_aggregation",
    ),
    Setting(
        "secagg.num-shares",
        0,
        Num(0, 1_000_000),
        "SecAgg+: neighbours each client's key shares go to, itself included (0 = every client of the round, as "
        "SecAgg; else >= 3).",
    ),
    Setting(
        "secagg.threshold",
        0.67,
        Num(0.0, 1.0),
        "SecAgg+: fraction of a client's shares needed to rebuild its masks (0 < t <= 1; at least 2 shares): a "
        "round survives clients dropping out after sharing keys while every client keeps that many live "
        "neighbours, and unmasking one update would take that many colluding clients; above 1/2 a server lying "
        "about who dropped out cannot get both of a client's secrets (docs/privacy.md).",
    ),
    Setting(
        "secagg.clipping-range",
        16.0,
        Num(0.0, 1_000_000.0),
        "SecAgg+: each value a client masks, times its weight / secagg.max-weight, must lie in [-range, range]; a "
        "client whose update does not fit leaves the round rather than be clipped (the default base's largest "
        "value: 0.17, 3.4 after 3 rounds).",
    ),
    Setting(
        "secagg.quantization-range",
        8_388_608,
        Num(2, 2_147_483_647),
        "SecAgg+: integer levels over [-range, range] (2^23: a step of 3.8e-6 at range 16); a round sums at most "
        "2^32 / levels - 1 clients (511).",
    ),
    Setting(
        "secagg.max-weight",
        200.0,
        Num(0.0, 1_000_000_000.0),
        "SecAgg+: the largest weight (num-examples) one update carries: a client caps a larger one, which also "
        "bounds what one client can claim, as the server cannot check a masked weight. Each update is scaled by "
        "weight / this before quantization, so a larger value quantizes small clients more coarsely. Under DP "
        "every weight is 1.",
    ),
    Setting(
        "device.store-dir",
        "",
        Text(4096),
        "Node-local client store (empty = $FEDHYDRA_HOME/clients).",
        to="run.store_dir",
    ),
    Setting(
        "device.quantized",
        True,
        FLAG,
        "Devices answer with int8 ONNX encoders (false: fp32); both come in every bundle.",
        to="run.device_quantized",
    ),
)
"""Every config key, declared once, in the order of the pyproject table (:func:`pyproject_table`)."""

_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
_KEY_OF: dict[str, str] = {target: s.key for s in SETTINGS for target in s.to}
"""The key of each field a key lands in (``"federation.dp_noise" -> "dp.noise"``), for errors that name the key."""

BOUNDS: dict[str, tuple[int, int] | tuple[float, float]] = {
    s.key: (s.range.low, s.range.high) for s in SETTINGS if isinstance(s.range, Num)
}
"""Every numeric config key's range, ``key -> (min, max)``, both inclusive (int bounds: an integer key; float bounds:
a number). Some keys have one more rule, stated in their comment and checked where the key is read
(``pool.margin-folds`` is never 1; ``pool.temperature``, ``federation.fraction-train``, ``dp.clip``,
``secagg.threshold``, ``secagg.clipping-range`` and ``secagg.max-weight`` are above 0; ``secagg.num-shares`` is 0 or
at least 3). The maxima bound what a run may ask of a device: no epoch count, rank, sample count or token budget
beyond what a device can do in a round."""

CHOICES: dict[str, tuple[str, ...]] = {s.key: s.range.names for s in SETTINGS if isinstance(s.range, OneOf)}
"""Config keys whose value is one of a few names (each checked where it is read, naming the key and the names)."""

TEXT_LIMITS: dict[str, int] = {s.key: s.range.limit for s in SETTINGS if isinstance(s.range, Text)}
"""Free-text config keys and their most characters (``data.task`` and ``eval.methods`` are also checked against the
known tasks and methods)."""

FLAGS: tuple[str, ...] = tuple(s.key for s in SETTINGS if s.range is FLAG)
"""Config keys that are true or false."""

CAP_PREFIX = "cap-"
"""A node config key ``cap-<key>`` lowers the maximum of the numeric config key ``<key>`` on that device."""

_TABLE_HEAD = """\
# The single source of FedHydra's settings: `flwr run . --run-config "key=value"` and
# `fedhydra run|simulate --run-config "key=value"` override them (e.g. --run-config "data.train-users=4 llm.url='...'").
# Each key is declared once in shared/config.py (SETTINGS), with its default, its range and this comment; each key's
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
