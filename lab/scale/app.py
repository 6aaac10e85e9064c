"""The Flower app a scale run submits: a copy of the repository's code whose pyproject names the probed ClientApp.

Flower reads the ClientApp from the app's pyproject only, so, as for fault injection (:func:`lab.faults.app.fault_app`),
the production app does not carry the probe: a run submits this copy, with the lab's code in it, made afresh in
``out/flwr-app``.
"""

from __future__ import annotations

from pathlib import Path

from lab import LAB_CODE
from lab.scale import CLIENT_APP
from simulations.federated import REPO, app_copy

__all__ = ["scale_app", "REPO"]


def scale_app(out: Path, probe_dir: Path | None = None, client_app: str = CLIENT_APP) -> Path:
    """A copy of the app's code in ``out/flwr-app`` with ``client_app`` (the probed one) as its ClientApp, whose
    probe writes its lines under ``probe_dir`` (None: records nothing; :mod:`lab.scale.probe_target`)."""
    app = app_copy(out, client_app, include=LAB_CODE)
    if probe_dir is not None:
        target = app / "lab" / "scale" / "probe_target.py"
        text = target.read_text(encoding="utf-8")
        unset = "PROBE_DIR: str | None = None\n"
        if unset not in text:
            raise ValueError(f"{target}: no {unset.strip()!r} line to name the probe folder in")
        folder = str(Path(probe_dir).resolve())
        target.write_text(text.replace(unset, f"PROBE_DIR: str | None = {folder!r}\n"), encoding="utf-8")
    return app
