"""The Flower app a scale run submits: a copy of the repository's code whose pyproject names the probed ClientApp.

Flower reads the ClientApp from the app's pyproject only, so, as for fault injection
(:func:`simulations.federated.flower_app`), the production app does not carry the probe: a run submits this copy,
made afresh in ``out/flwr-app``.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from shared.io import atomic_write_text
from simulations.scale import CLIENT_APP

__all__ = ["scale_app", "REPO"]

REPO = Path(__file__).resolve().parents[2]


def scale_app(out: Path, client_app: str = CLIENT_APP) -> Path:
    """A copy of the app's code (``fab-include``) in ``out/flwr-app`` with ``client_app`` as its ClientApp."""
    import tomli_w

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    config["tool"]["flwr"]["app"]["components"]["clientapp"] = client_app
    app = Path(out) / "flwr-app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir(parents=True)
    for pattern in config["tool"]["flwr"]["app"]["fab-include"]:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                target = app / path.relative_to(REPO)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    atomic_write_text(app / "pyproject.toml", tomli_w.dumps(config))
    return app
