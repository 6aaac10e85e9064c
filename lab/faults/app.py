"""The Flower app a fault-injection simulation submits: a copy of the app's code whose pyproject names the
fault-injection ClientApp (:mod:`lab.faults.client_app`), with the lab's code and the run's faults in it.

Flower reads the ClientApp from the app's pyproject only, and a ClientApp runs in processes of Flower's own, so the
faults travel inside the copy (:data:`lab.faults.mod.SPEC_FILE`), made afresh in ``out/flwr-app`` for each run. The
caller chooses it explicitly::

    simulate(mapping, out, app=fault_app({"0": "raise", "dropout": 1 / 3}))

A plain run submits the repository itself and its production ClientApp (:func:`simulations.federated.production_app`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lab import LAB_CODE
from lab.faults import CLIENT_APP
from lab.faults.mod import SPEC_FILE
from shared.io import atomic_write_text
from simulations.federated import app_copy

__all__ = ["fault_app"]


def fault_app(faults: Mapping[str, Any]) -> Callable[[Path], Path]:
    """The ``app`` argument of :func:`simulations.federated.simulate` for a run with ``faults`` (see
    :mod:`lab.faults.mod`): given the run's output folder, it makes the app copy there and returns its folder.

    >>> import tempfile, tomllib
    >>> with tempfile.TemporaryDirectory() as out:
    ...     app = fault_app({"0": "raise"})(Path(out))
    ...     components = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["components"]
    ...     spec = json.loads((app / "lab" / "faults" / SPEC_FILE).read_text())
    >>> components["clientapp"], spec
    ('lab.faults.client_app:app', {'0': 'raise'})
    """
    spec = json.dumps(dict(faults), sort_keys=True)

    def make(out: Path) -> Path:
        app = app_copy(out, CLIENT_APP, include=(*LAB_CODE, f"lab/faults/{SPEC_FILE}"))
        atomic_write_text(app / "lab" / "faults" / SPEC_FILE, spec)
        return app

    return make
