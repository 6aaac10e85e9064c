"""The ClientApp of fault-injection runs: the production one (:mod:`client.client_app`) plus the fault mod.

The mod sits where it always did, inside the privacy audit (which records what a faulty client really sends)
and outside DP clipping. Its faults are those of the file :data:`lab.faults.mod.SPEC_FILE` beside this module, which
:func:`lab.faults.app.fault_app` writes into the app copy a fault-injection run submits; without that file (this
module imported from the repository) the mod does nothing.
"""

from __future__ import annotations

from pathlib import Path

from client.client_app import build_app
from lab.faults.mod import SPEC_FILE, FaultsMod, read_faults

__all__ = ["app", "faults_mod"]

faults_mod = FaultsMod(read_faults(Path(__file__).with_name(SPEC_FILE)))
"""The fault mod of this app, with the faults of its app copy."""

app = build_app(faults_mod)
