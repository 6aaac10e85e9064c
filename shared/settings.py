"""Every setting of FedHydra declared once (:data:`SETTINGS`: its dotted key, default, range and comment), and what
follows from the declarations alone: the ranges (:data:`BOUNDS`, :data:`CHOICES`, :data:`TEXT_LIMITS`, :data:`FLAGS`)
and each dataclass field's default (:func:`default_for`). A leaf module (it imports nothing of FedHydra but
:mod:`shared.errors`), so the config dataclasses of the device (``shared/hydra/``, :mod:`client.device_config`) take
their defaults and ranges from here without the run's config (:mod:`shared.config`, which validates a run and names
the training methods).

Example:
    >>> BOUNDS["train.epochs"], default_for("train.epochs"), default_for("episodes.free_questions")
    ((0, 100), 2, 20)
    >>> setting("pool.pseudo-questions").to
    ('episodes.pseudo_questions',)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigError

__all__ = [
    "STRATEGIES",
    "Num",
    "OneOf",
    "Text",
    "FLAG",
    "Setting",
    "GROUPS",
    "SETTINGS",
    "BOUNDS",
    "CHOICES",
    "TEXT_LIMITS",
    "FLAGS",
    "setting",
    "default_for",
]

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


_DEFAULT_OF: dict[str, Any] = {target: s.default for s in SETTINGS for target in s.to}


def setting(key: str) -> Setting:
    """The declaration of the config key ``key``.

    >>> setting("train.lora").to
    ('train.train_lora',)
    """
    if key not in _BY_KEY:
        raise ConfigError(f"unknown config key {key!r}")
    return _BY_KEY[key]


def default_for(target: str) -> Any:
    """The declared default of the dataclass field ``target`` (``<part>.<field>``, as a declaration's ``to`` names it:
    ``train.train_lora`` is ``train.lora``'s, ``episodes.rerank_m`` is ``prompt.retrieve-m``'s).

    >>> default_for("train.train_lora"), default_for("episodes.rerank_m"), default_for("inference.k")
    (True, 5, 4)
    """
    if target not in _DEFAULT_OF:
        raise ConfigError(f"no config key lands in {target!r}")
    return _DEFAULT_OF[target]
