"""The cost ledger: what a run's LLM work cost, per stage and per unit of work (a training user, a new user's
onboarding, one answer of a method).

Costs are counted from :class:`~shared.llm.client.LLMMeter` blocks. ``asked`` is the number of LLM answers the
work used (network requests plus cache hits): what it costs on a cold cache, whatever this run found cached.
``sent`` is the requests that reached the endpoint in this run, ``llm_seconds`` their summed latency (requests
in flight together overlap, so it can exceed the wall time) and ``wall_seconds`` the elapsed time.

Example:
    >>> ledger = Ledger()
    >>> with ledger.stage("episodes"):
    ...     ledger.record("training user", Cost(asked=9, sent=9, llm_seconds=6.0))
    ...     ledger.record("training user", Cost(asked=7, sent=0))
    >>> summary = ledger.as_dict()
    >>> summary["per_unit"]["training user"]["asked"], summary["stages"]["episodes"]["sent"]
    (8.0, 9)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

__all__ = ["Cost", "Ledger", "cost_of"]


@dataclass
class Cost:
    """LLM answers used, requests sent, their seconds, and wall seconds."""

    asked: int = 0
    sent: int = 0
    llm_seconds: float = 0.0
    wall_seconds: float = 0.0

    def __iadd__(self, other: Cost) -> Cost:
        self.asked += other.asked
        self.sent += other.sent
        self.llm_seconds += other.llm_seconds
        self.wall_seconds += other.wall_seconds
        return self

    def as_dict(self) -> dict[str, float]:
        return {
            "asked": self.asked,
            "sent": self.sent,
            "llm_seconds": round(self.llm_seconds, 2),
            "wall_seconds": round(self.wall_seconds, 2),
        }


def cost_of(meter, wall_seconds: float = 0.0) -> Cost:
    """The :class:`Cost` of an :class:`~shared.llm.client.LLMMeter` (or anything with ``requests``,
    ``cache_hits`` and ``seconds``)."""
    return Cost(
        asked=meter.requests + meter.cache_hits,
        sent=meter.requests,
        llm_seconds=meter.seconds,
        wall_seconds=wall_seconds,
    )


class Ledger:
    """Stages (in order) and units of work; thread-safe (units may be recorded from worker threads)."""

    def __init__(self) -> None:
        self.stages: dict[str, Cost] = {}
        self.units: dict[str, tuple[Cost, int]] = {}
        self._stage: str | None = None
        self._timed: dict[str, bool] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str, *, timed: bool = True) -> Iterator[Cost]:
        """A stage: units recorded inside it add to it; its wall time is the block's (``timed=False``: the block
        only gathers what was measured elsewhere, as a federated run's clients do, and the wall time is not kept)."""
        self._timed[name] = timed
        with self._lock:
            cost = self.stages.setdefault(name, Cost())
            outer, self._stage = self._stage, name
        started = time.perf_counter()
        try:
            yield cost
        finally:
            with self._lock:
                if timed:
                    cost.wall_seconds += time.perf_counter() - started
                self._stage = outer

    def record(self, unit: str, cost: Cost, n: int = 1) -> None:
        """The cost of ``n`` units of work (its wall time is not added to the stage: the stage has its own)."""
        with self._lock:
            total, count = self.units.get(unit, (Cost(), 0))
            total += cost
            self.units[unit] = (total, count + n)
            if self._stage is not None:
                stage = self.stages[self._stage]
                stage.asked += cost.asked
                stage.sent += cost.sent
                stage.llm_seconds += cost.llm_seconds

    def as_dict(self) -> dict:
        """``{"stages": {name: cost}, "per_unit": {unit: mean cost and n}}``, JSON-ready."""
        per_unit = {}
        for unit, (total, n) in self.units.items():
            per_unit[unit] = {"n": n, **{k: round(v / max(n, 1), 3) for k, v in asdict(total).items()}}
        return {"stages": {k: v.as_dict() for k, v in self.stages.items()}, "per_unit": per_unit}

    def table(self) -> str:
        """The ledger as two markdown tables (a stage entered with ``timed=False`` shows no wall time)."""
        data = self.as_dict()
        timed = self._timed
        lines = ["| stage | LLM answers used | requests sent | LLM s | wall s |", "|---|---|---|---|---|"]
        for name, c in data["stages"].items():
            wall = f"{c['wall_seconds']:.1f}" if timed.get(name, True) else "-"
            lines.append(f"| {name} | {c['asked']} | {c['sent']} | {c['llm_seconds']:.1f} | {wall} |")
        lines += ["", "| per | n | LLM answers used | requests sent | LLM s |", "|---|---|---|---|---|"]
        for unit, c in data["per_unit"].items():
            lines.append(f"| {unit} | {c['n']} | {c['asked']:.2f} | {c['sent']:.2f} | {c['llm_seconds']:.2f} |")
        return "\n".join(lines) + "\n"
