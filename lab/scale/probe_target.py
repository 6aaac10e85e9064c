"""Where the probed ClientApp of a scale run (:mod:`lab.scale.client_app`) writes its probe lines: :data:`PROBE_DIR`.

The repository's copy names no folder (the probe records nothing); :func:`lab.scale.app.scale_app` writes the run's
folder into the staged app's copy of this module, so the folder reaches every ClientApp process (a Ray worker, a
SuperNode's) with the app's code, as an argument of the run rather than an environment variable.

Example:
    >>> PROBE_DIR is None
    True
"""

from __future__ import annotations

__all__ = ["PROBE_DIR"]

PROBE_DIR: str | None = None
