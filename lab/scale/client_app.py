"""The ClientApp of scale runs: the production one (:mod:`client.client_app`) plus the probe mod
(:mod:`lab.scale.probe`), which records every message it handles in the folder its staged app names
(:mod:`lab.scale.probe_target`, written by :func:`lab.scale.app.scale_app`)."""

from __future__ import annotations

from client.client_app import build_app
from lab.scale.probe import probe_mod_for
from lab.scale.probe_target import PROBE_DIR

__all__ = ["app"]

app = build_app(probe_mod_for(PROBE_DIR))
