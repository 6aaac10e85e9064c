"""The message protocol between server and clients: the node roles and the keys both sides read and write.

Both the ClientApp (:mod:`client.client_app`, :mod:`client.node`) and the ServerApp (:mod:`server`) use these
names; neither imports the other. How many nodes a federation has is :func:`shared.users.node_count`.

Example:
    >>> "llm-failures" in FAULT_COUNTERS, DP_WEIGHT_KEY
    (True, 'dp-weight')
    >>> NodeRole.from_index(3, train_users=2).value, NodeRole.BOTH in TRAINING_ROLES and NodeRole.BOTH in TESTING_ROLES
    ('test', True)
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "FAULT_COUNTERS",
    "WEIGHT_KEY",
    "DP_WEIGHT_KEY",
    "NodeRole",
    "ROLE_KEY",
    "TRAINING_ROLES",
    "TESTING_ROLES",
    "ASK_KEY",
    "ASK_ROLE",
    "ASK_MARGIN",
    "MARGIN_RECORD",
    "MARGIN_KEY",
    "ANCHOR_KEY",
    "LLM_CALLS_KEY",
    "SECAGG_KEYS",
    "ERROR_REPLIES",
    "ERROR_FAILED",
    "ARRAYS_RECORD",
    "CONFIG_RECORD",
    "METRICS_RECORD",
    "SERVER_ROUND_KEY",
    "FINAL_KEY",
    "METHODS_KEY",
    "METHODS_ALL",
    "METHODS_HYDRA",
]


class NodeRole(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() of a role
    """A training user, a new (test) user, or both (the "history" protocol: train on history, answer later)."""

    TRAIN = "train"
    TEST = "test"
    BOTH = "both"

    @classmethod
    def from_index(cls, index: int, *, train_users: int) -> NodeRole:
        """The role of the node with partition ``index`` in the disjoint protocol (training users come first)."""
        return cls.TRAIN if index < train_users else cls.TEST


ARRAYS_RECORD = "arrays"
"""The record name of a message's tensors (the shared base out, its update back; Flower's strategies' default)."""
CONFIG_RECORD = "config"
"""The record name of a message's config (what the server asks or sets for a round; Flower's strategies' default)."""
METRICS_RECORD = "metrics"
"""The record name of a reply's metrics (Flower's strategies' default)."""
SERVER_ROUND_KEY = "server-round"
"""The key of the round number in a train or query message's config record."""
FINAL_KEY = "final"
"""The key of an evaluation's config record that says whether it is the last round's (bool)."""
METHODS_KEY = "methods"
"""The key of an evaluation's config record that says which methods the test nodes answer with:
:data:`METHODS_ALL` (the final evaluation: the run's ``eval-methods``) or :data:`METHODS_HYDRA` (HYDRA only)."""
METHODS_ALL = "all"
"""Evaluation: every method of the node's ``eval-methods``."""
METHODS_HYDRA = "hydra"
"""Evaluation: HYDRA only (a round's evaluation before the last)."""
ROLE_KEY = "role"
"""The key of a node's role in its reply to the server's role query."""
ASK_KEY = "ask"
"""The key of a query message's config record that says what the server asks: :data:`ASK_ROLE` or
:data:`ASK_MARGIN`."""
ASK_ROLE = "role"
"""Query: the node's role (the reply's config record holds :data:`ROLE_KEY` only)."""
ASK_MARGIN = "margin"
"""Query, sent to training nodes after the last round with the global base: the node's per-margin counts and sums
(:class:`shared.hydra.decision.MarginSums`), in a metric record named :data:`MARGIN_RECORD`."""
MARGIN_RECORD = "margin"
"""The record name of a node's margin sums in its reply to the margin query."""
MARGIN_KEY = "margin"
"""The key of the decision margin in the final evaluation's config record (absent: answer without a margin rule;
``inf``: keep the strongest non-LLM answer)."""
ANCHOR_KEY = "anchor"
"""The key of the answer the margin rule keeps (chosen with the margin; absent: the strongest non-LLM answer) in the
final evaluation's config record."""
LLM_CALLS_KEY = "llm-calls"
"""The key of how many LLM answers an answer asks for (chosen with the margin; absent: the whole pool's) in the final
evaluation's config record."""
TRAINING_ROLES = (NodeRole.TRAIN.value, NodeRole.BOTH.value)
"""Roles whose nodes train (the server sends them train messages)."""
TESTING_ROLES = (NodeRole.TEST.value, NodeRole.BOTH.value)
"""Roles whose nodes answer (the server sends them evaluate messages)."""

FAULT_COUNTERS = (
    "skipped-examples",
    "offlabel-answers",
    "degraded-answers",
    "failed-answers",
    "llm-failures",
    "llm-retries",
    "llm-refused",
)
"""Counters a client reports beside its metrics: what the LLM's faults cost it (training examples skipped,
LLM answers outside the label set, answers given without the LLM, LLM calls failed, retried or refused by the
circuit breaker). The server sums them per round (:class:`server.federation.RoundLog`)."""

WEIGHT_KEY = "num-examples"
"""The metric a training reply weighs itself by in aggregation (its examples; Flower's strategies read this key)."""
DP_WEIGHT_KEY = "dp-weight"
"""With DP accounting every client weighs the same; clients report this key as 1."""

SECAGG_KEYS = "tensor-keys"
"""Under secure aggregation (SecAgg+, Flower's legacy ``fitins`` layout, whose tensors have no names): the key of the
training config's list of the shared tensors' names, in the order the tensors travel both ways."""

ERROR_FAILED = 100
"""The code of a client's error reply for any failure without a code of its own in :data:`ERROR_REPLIES`."""
ERROR_REPLIES: dict[int, tuple[str, str]] = {
    101: ("UnsafeBase", "refused the global base: it breaks a rule of the device's guard"),
    102: ("DivergedRound", "round discarded: local training diverged; nothing was kept or sent"),
    103: ("UnsafeUpdate", "update not sent: it failed the device's own checks"),
    104: ("PackingError", "the packed message does not fit its layout"),
    105: ("WrongRole", "this node's role does not do what the message asks"),
    106: ("ConfigError", "a config value is missing, of the wrong type or out of range"),
    107: ("StoreError", "the device's store is damaged or unreadable"),
    108: ("LLMError", "the LLM endpoint failed"),
    109: ("DataFormatError", "the device's data does not follow the expected layout"),
    ERROR_FAILED: ("Exception", "the client failed to handle the message"),
}
"""What a client's error reply carries (``Error(code, reason)``): per code, the exception class it stands for (the
first match in this order, subclasses included) and the fixed reason sent; never the exception's own text, which may
name a user, a path or data (it is logged on the device only). Flower's own codes are 0-8; these do not overlap, and
the server counts every error reply as a failed client whatever its code."""
