"""The ClientApp of scale runs: the production one (:mod:`client.client_app`) plus the probe mod
(:mod:`lab.scale.probe`), which records every message it handles when ``FEDHYDRA_PROBE_DIR`` is set."""

from __future__ import annotations

from client.client_app import build_app
from lab.scale.probe import probe_mod

__all__ = ["app"]

app = build_app(probe_mod)
