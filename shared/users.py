"""Which users train and which are tested, from a LaMP-format dataset and the run's protocol.

- ``disjoint``: starting at user ``user_offset`` of the data (wrapping around past the last user), the next
  ``train_users`` users train (their questions, with golds, and pseudo-questions from their history), the
  following ``test_users`` users are new users (their history only fits their heads; their questions are answered
  and scored). With 6 users, offset 3, 3 training and 3 test users, users 3-5 train and users 0-2 are new: the
  reverse of offset 0.
- ``history``: each of ``test_users`` users trains on pseudo-questions from the history before their first
  question and is tested on their questions (LaMP-3 here: 6 users, 30 questions).

A user's *history* is the profile of their first question (the shortest, in time-based data), so no
later question's gold is ever part of it (:func:`user_history`).

A federation has one node per user that trains or answers: :func:`node_users` lists them in partition order
(the node with ``partition-id`` i is the i-th) and :func:`node_count` is their number, computed from the
configuration alone (the server's expectation) or from the split's sizes (the simulation's SuperNodes). Free
training users (``data.free-train-users``) are training nodes after the others (:func:`is_free_train_node`).

Example:
    >>> from shared.synthetic import generate
    >>> import json, tempfile, pathlib
    >>> from shared.synthetic import write_synthetic
    >>> from shared.data import load_split
    >>> ds = load_split(write_synthetic(tempfile.mkdtemp(), "LaMP-3", n_users=5, items_per_user=4), "LaMP-3")
    >>> train, test = split_users(ds, train_users=2, test_users=2, protocol="disjoint")
    >>> [u.user_id for u in train], [u.user_id for u in test]
    (['s0u0000', 's0u0001'], ['s0u0002', 's0u0003'])
    >>> len(node_users(train, test, "disjoint")) == node_count("disjoint", train_users=2, test_users=2) == 4
    True
    >>> train, test = split_users(ds, train_users=2, test_users=2, protocol="disjoint", offset=4)
    >>> [u.user_id for u in train], [u.user_id for u in test]
    (['s0u0004', 's0u0000'], ['s0u0001', 's0u0002'])
    >>> list(PROTOCOLS), get_protocol("history").same_users
    (['disjoint', 'history'], True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.data import Dataset, Question, group_by_user
from shared.errors import ConfigError

__all__ = [
    "User",
    "split_users",
    "find_user",
    "user_history",
    "node_users",
    "node_count",
    "is_free_train_node",
    "HISTORY_PROTOCOL",
    "UserProtocol",
    "PROTOCOLS",
    "get_protocol",
]

HISTORY_PROTOCOL = "history"
"""The protocol in which the same users train and answer (one node each, in both roles)."""


@dataclass(frozen=True)
class UserProtocol:
    """A user protocol (see the module docstring): its ``name`` and whether the ``same_users`` train (on
    pseudo-questions from their history, without golds) and answer, one node each in both roles."""

    name: str
    same_users: bool


PROTOCOLS: dict[str, UserProtocol] = {
    p.name: p for p in (UserProtocol("disjoint", same_users=False), UserProtocol(HISTORY_PROTOCOL, same_users=True))
}
"""The user protocols by name."""


def get_protocol(name: str) -> UserProtocol:
    """The protocol called ``name``.

    Raises:
        ConfigError: no such protocol.
    """
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol must be {' or '.join(map(repr, PROTOCOLS))}, got {name!r}")
    return PROTOCOLS[name]


@dataclass(frozen=True)
class User:
    """One user's history and questions; ``golds`` is filled only for training users in the disjoint protocol."""

    user_id: str
    history: tuple[Mapping[str, str], ...]
    questions: tuple[Question, ...]
    golds: Mapping[str, str]

    def training_questions(self) -> list[tuple[str, str, str]]:
        """(id, input, gold) of the questions whose golds may train the base."""
        return [(q.id, q.input, self.golds[q.id]) for q in self.questions if q.id in self.golds]


def split_users(
    dataset: Dataset,
    *,
    train_users: int,
    test_users: int,
    protocol: str = "disjoint",
    offset: int = 0,
    free_train_users: int = 0,
) -> tuple[list[User], list[User]]:
    """(training users, test users) as described in the module docstring; in the disjoint protocol
    ``free_train_users`` more training users follow the first ``train_users`` (the test users come after them)."""
    groups = list(group_by_user(dataset.questions).items())
    if groups and offset >= len(groups):
        raise ConfigError(
            f"data.user-offset is {offset}, the data has {len(groups)} users (offsets 0-{len(groups) - 1})"
        )
    groups = groups[offset:] + groups[:offset]
    history = user_history
    if get_protocol(protocol).same_users:
        chosen = groups[:test_users] if test_users else groups
        users = [User(u, history(qs), tuple(qs), {}) for u, qs in chosen]
        return users, users
    train_users += free_train_users
    if train_users + test_users > len(groups):
        raise ConfigError(f"asked for {train_users} training and {test_users} test users, the data has {len(groups)}")
    train = [
        User(u, history(qs), tuple(qs), {q.id: dataset.golds[q.id] for q in qs if q.id in dataset.golds})
        for u, qs in groups[:train_users]
    ]
    test = [User(u, history(qs), tuple(qs), {}) for u, qs in groups[train_users : train_users + test_users]]
    return train, test


def find_user(dataset: Dataset, user_id: str, *, with_golds: bool) -> User | None:
    """The user ``user_id`` of ``dataset`` (a device's own data), with golds only when ``with_golds``."""
    questions = group_by_user(dataset.questions).get(user_id)
    if not questions:
        return None
    history = user_history(questions)
    golds = {q.id: dataset.golds[q.id] for q in questions if q.id in dataset.golds} if with_golds else {}
    return User(user_id, history, tuple(questions), golds)


def user_history(questions: Sequence[Question]) -> tuple[Mapping[str, str], ...]:
    """A user's history: the profile of their first question (the shortest)."""
    return min(questions, key=lambda q: len(q.profile)).profile


def node_users(train: Sequence[User], test: Sequence[User], protocol: str) -> list[User]:
    """The federation's nodes' users in partition order: the training users, then the test users (in the
    ``history`` protocol the same users do both, one node each)."""
    return list(train) + ([] if get_protocol(protocol).same_users else list(test))


def node_count(protocol: str, *, train_users: int, test_users: int, free_train_users: int = 0) -> int:
    """How many nodes a federation of ``train_users`` (+ ``free_train_users``) training and ``test_users`` test users
    has (``len(node_users(...))`` for a split of those sizes).

    >>> node_count("disjoint", train_users=3, test_users=2, free_train_users=4), node_count("history", train_users=3, test_users=2)
    (9, 2)
    """
    return test_users if get_protocol(protocol).same_users else train_users + free_train_users + test_users


def is_free_train_node(protocol: str, index: int, *, train_users: int, free_train_users: int) -> bool:
    """Whether the node with partition ``index`` is a free training user's (``data.free-train-users``: after the first
    ``train_users`` training nodes, before the test nodes; disjoint protocol only).

    >>> [is_free_train_node("disjoint", i, train_users=2, free_train_users=1) for i in range(4)]
    [False, False, True, False]
    """
    return not get_protocol(protocol).same_users and train_users <= index < train_users + free_train_users
