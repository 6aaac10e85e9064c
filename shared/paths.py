"""Where FedHydra keeps its own files (LLM response cache, the embedded server's state, models).

``FEDHYDRA_HOME`` overrides the default ``~/.cache/fedhydra`` (``$XDG_CACHE_HOME/fedhydra`` when set).

Example:
    >>> import os
    >>> os.environ["FEDHYDRA_HOME"] = "/tmp/fh-doc"
    >>> str(fedhydra_home())
    '/tmp/fh-doc'
    >>> del os.environ["FEDHYDRA_HOME"]
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fedhydra_home", "llm_cache_path", "llm_state_dir"]


def fedhydra_home() -> Path:
    """The root of FedHydra's own files."""
    if os.environ.get("FEDHYDRA_HOME"):
        return Path(os.environ["FEDHYDRA_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fedhydra"


def llm_cache_path() -> Path:
    """The default LLM response cache (``FEDHYDRA_LLM_CACHE`` overrides it)."""
    if os.environ.get("FEDHYDRA_LLM_CACHE"):
        return Path(os.environ["FEDHYDRA_LLM_CACHE"]).expanduser()
    return fedhydra_home() / "llm-cache.sqlite"


def llm_state_dir() -> Path:
    """Where the embedded LLM server records its pid, port and log."""
    return fedhydra_home() / "llm-server"
