"""The ClientApp of fault-injection runs: the production one (:mod:`client.client_app`) plus the fault mod.

The mod sits where it always did, inside the privacy audit (which records what a faulty client really sends)
and outside DP clipping. A simulation names this app instead of the production one when ``FEDHYDRA_FAULTS`` is
set (:func:`simulations.federated.flower_app`); with the variable unset the mod does nothing.
"""

from __future__ import annotations

from client.client_app import build_app
from simulations.faults.mod import faults_mod

__all__ = ["app"]

app = build_app(faults_mod)
