"""One user's failure costs that user, not the run.

``fedhydra run`` and ``fedhydra simulate`` run each user's work (episodes, answering, gathering a test client's
predictions) through :meth:`UserFailures.guard`: an exception from one user is recorded (the user, the stage, the
error's type and the first line of its message) and the run goes on with the others. The run's outputs are
written for the users that finished; ``summary.json`` and ``metrics.json`` carry :meth:`UserFailures.as_dict`
(how many users failed, which, with the error type) and how many users the metrics were computed over; the
command exits with :data:`EXIT_USERS_FAILED` (outputs written, some users failed). When every test user fails
there is nothing to score: :class:`EveryUserFailed` (exit 2, nothing written).

Example:
    >>> failures = UserFailures()
    >>> def answer(user):
    ...     if user == "u2":
    ...         raise ValueError("line 1 damaged")
    ...     return user.upper()
    >>> [failures.guard(answer, "answer")(u) for u in ("u1", "u2")]
    ['U1', None]
    >>> failures.as_dict()["users"]
    [{'user': 'u2', 'stage': 'answer', 'error': 'ValueError', 'message': 'line 1 damaged'}]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TypeVar

from shared.errors import FedHydraError

__all__ = ["UserFailure", "UserFailures", "EveryUserFailed", "EXIT_USERS_FAILED"]

EXIT_USERS_FAILED = 3
"""Exit status of a run that finished and wrote its outputs, but where one or more users failed (2: refused or
failed with nothing written; 0: every user finished)."""

MESSAGE_CHARS = 200
"""How much of a failure's message the summary keeps (its first line, cut)."""

T = TypeVar("T")


class EveryUserFailed(FedHydraError):
    """Every test user of a run failed: there is nothing to score (names the count and the first error type)."""


@dataclass(frozen=True)
class UserFailure:
    """One user's failure: who, in which stage, the error's type and the start of its message."""

    user: str
    stage: str
    error: str
    message: str


class UserFailures:
    """The failures of one run's users, recorded from any thread; a user counts once (at its first failure)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, UserFailure] = {}

    def record(self, user: str, stage: str, exc: BaseException) -> None:
        lines = str(exc).strip().splitlines()
        failure = UserFailure(str(user), stage, type(exc).__name__, (lines[0] if lines else "")[:MESSAGE_CHARS])
        with self._lock:
            self._by_user.setdefault(failure.user, failure)

    def guard(
        self, fn: Callable[..., T], stage: str, *, user_of: Callable[..., str] | None = None
    ) -> Callable[..., T | None]:
        """``fn`` that records an exception (``Exception``, not interrupts) as the user's failure and returns None.
        The user is ``user_of(arg)``, default the argument's ``user_id`` attribute, else the argument itself."""

        def run(arg):
            try:
                return fn(arg)
            except Exception as exc:  # noqa: BLE001 - any error of one user is that user's failure
                who = user_of(arg) if user_of is not None else getattr(arg, "user_id", arg)
                self.record(who, stage, exc)
                return None

        return run

    def failed(self, user: str) -> bool:
        with self._lock:
            return user in self._by_user

    def users(self) -> list[str]:
        with self._lock:
            return list(self._by_user)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_user)

    def as_dict(self) -> dict[str, object]:
        """``{"count": n, "users": [{"user", "stage", "error", "message"}, ...]}`` in the order they failed."""
        with self._lock:
            return {"count": len(self._by_user), "users": [asdict(f) for f in self._by_user.values()]}

    def check_some_left(self, users: Iterable[str], what: str) -> None:
        """Raise :class:`EveryUserFailed` when every one of ``users`` failed (and there was at least one)."""
        users = list(users)
        with self._lock:
            failed = [self._by_user[u] for u in users if u in self._by_user]
        if users and len(failed) == len(users):
            raise EveryUserFailed(
                f"every one of the {len(users)} {what} failed (first: {failed[0].error} in "
                f"{failed[0].stage}); nothing to score"
            )

    def report_line(self, total: int) -> str:
        """One line for the terminal: how many failed, which, with the error type."""
        with self._lock:
            named = ", ".join(f"{f.user} ({f.stage}: {f.error})" for f in self._by_user.values())
            return f"{len(self._by_user)} of {total} users failed: {named}; outputs written for the others"
