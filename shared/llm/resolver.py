"""The one way to reach the LLM: :func:`resolve_llm` picks the endpoint, and the :class:`LLMEndpoint` it returns
owns any embedded server it started.

The endpoint, first that applies:

1. an explicit :class:`~shared.llm.client.LLMConfig`, used as it is;
2. an explicit URL: with the embedded server's model name (:data:`~shared.llm.embedded.EMBEDDED_MODEL`) the
   embedded server's config, whose cache identity is the model file, not the port
   (:func:`~shared.llm.embedded.embedded_config`); with any other model ``LLMConfig.from_env(base_url=url, ...)``
   (the API key and, without a model, the model name come from the environment);
3. ``FEDHYDRA_LLM_BASE_URL`` (and the other ``FEDHYDRA_LLM_*`` variables: :meth:`LLMConfig.from_env`);
4. the embedded server already running (recorded under ``$FEDHYDRA_HOME/llm-server``): used, left running;
5. a new embedded server, started here. The endpoint owns it: :meth:`LLMEndpoint.close` (leaving its ``with``
   block, or the process's exit) stops it, unless ``keep=True``, in which case it is logged, plainly and at once,
   that the server stays and that ``fedhydra llm stop`` stops it. Endpoints of one process that resolve to the
   server this process started share it: it stops when the last of them closes.

``fedhydra run``, ``simulate`` and ``baseline`` (:mod:`simulations.cli`), the SDK (:class:`client.sdk.PersonalClient`)
and a federated node (:func:`client.node.make_llm`) all resolve here; ``overrides`` are LLMConfig fields
(``timeout_s``, ``concurrency``, ``cache_path``, ...), None meaning "the default".

Example (an explicit endpoint: nothing is started):
    >>> with resolve_llm(url="http://127.0.0.1:8080/v1", model="m", concurrency=8) as endpoint:
    ...     endpoint.source, endpoint.config.base_url, endpoint.config.concurrency, endpoint.server
    ('url', 'http://127.0.0.1:8080/v1', 8, None)
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.llm.client import LLMConfig
from shared.llm.embedded import (
    EMBEDDED_MODEL,
    EMBEDDED_SLOTS,
    EMBEDDED_THREADS,
    ServerInfo,
    embedded_config,
    running_server,
    start_server,
    stop_server,
)
from shared.paths import llm_state_dir

__all__ = ["LLMEndpoint", "resolve_llm", "STOP_HINT"]

log = logging.getLogger(__name__)

STOP_HINT = "stop it with `fedhydra llm stop`"
"""How a user stops an embedded server that was left running."""


@dataclass
class _Started:
    """An embedded server this process started: how many endpoints hold it, and whether one asked to keep it."""

    info: ServerInfo
    holders: int = 0
    keep: bool = False


_STARTED: dict[Path, _Started] = {}
"""The embedded servers this process started, by state folder."""
_LOCK = threading.Lock()


class LLMEndpoint:
    """A resolved LLM endpoint: its ``config``, where it came from (``source``) and, when it started the embedded
    server, that server (``server``), which :meth:`close` stops unless ``keep``. A context manager."""

    def __init__(
        self,
        config: LLMConfig,
        source: str,
        *,
        server: ServerInfo | None = None,
        kept: ServerInfo | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.server = server
        """The embedded server this endpoint started and holds (stopped by :meth:`close`)."""
        self.kept = kept
        """The embedded server this endpoint started and was asked to keep (:meth:`close` says it stays)."""
        self.state_dir = state_dir
        if server is not None or kept is not None:
            atexit.register(self.close)

    def __repr__(self) -> str:
        return f"LLMEndpoint({self.config.base_url!r}, source={self.source!r}, owns_server={self.server is not None})"

    def __enter__(self) -> LLMEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> ServerInfo | None:
        """Release the embedded server this endpoint started: it stops once no other endpoint of this process holds
        it, unless one asked to keep it (then it is logged that it stays). Idempotent; returns the server stopped."""
        server, self.server = self.server, None
        kept, self.kept = self.kept, None
        if server is None and kept is None:
            return None
        atexit.unregister(self.close)
        if kept is not None:
            log.warning(
                "the embedded LLM server (pid %d, %s) is left running, as asked; %s", kept.pid, kept.url, STOP_HINT
            )
            return None
        assert server is not None
        key = _state_key(self.state_dir)
        with _LOCK:
            entry = _STARTED.get(key)
            if entry is None or entry.info.pid != server.pid:
                return None  # stopped or replaced meanwhile
            entry.holders -= 1
            if entry.holders > 0:
                return None
            del _STARTED[key]
        if entry.keep:
            log.warning(
                "the embedded LLM server (pid %d, %s) is left running, as asked; %s", server.pid, server.url, STOP_HINT
            )
            return None
        current = running_server(self.state_dir)
        if current is None or current.pid != server.pid:
            return None
        stopped = stop_server(self.state_dir)
        log.info("stopped the embedded LLM server (pid %d, %s) that this process started", server.pid, server.url)
        return stopped


def _state_key(state_dir: Path | None) -> Path:
    return Path(state_dir or llm_state_dir()).resolve()


def resolve_llm(
    config: LLMConfig | None = None,
    *,
    url: str | None = None,
    model: str | None = None,
    keep: bool = False,
    state_dir: Path | None = None,
    threads: int = EMBEDDED_THREADS,
    slots: int = EMBEDDED_SLOTS,
    **overrides: Any,
) -> LLMEndpoint:
    """The LLM endpoint (see the module docstring for the order); starts the embedded server when nothing else
    applies, owned by the returned endpoint unless ``keep``.

    Args:
        config: an explicit endpoint; url, model: an explicit URL and its model name (None: not given).
        keep: leave an embedded server started here running when the endpoint closes and the process exits.
        state_dir, threads, slots: the embedded server's state folder (default ``$FEDHYDRA_HOME/llm-server``),
            decoding threads and parallel slots, when it is started here.
        overrides: LLMConfig fields for the resolved config; None values are left out (the default applies).

    Raises:
        ConfigError: an invalid URL or setting. LLMServerError: the embedded server could not be started.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if config is not None:
        return LLMEndpoint(config, "config")
    if url is not None:
        if model == EMBEDDED_MODEL:  # the embedded server at a known URL: cache by model file, not by port
            return LLMEndpoint(embedded_config(url, **overrides), "url")
        return LLMEndpoint(LLMConfig.from_env(base_url=url, model=model, **overrides), "url")
    if os.environ.get("FEDHYDRA_LLM_BASE_URL"):
        return LLMEndpoint(LLMConfig.from_env(**overrides), "environment")
    key = _state_key(state_dir)
    with _LOCK:
        entry = _STARTED.get(key)
        existing = running_server(state_dir)
        if existing is not None and (entry is None or entry.info.pid != existing.pid):
            return LLMEndpoint(embedded_config(existing.url, **overrides), "embedded server (running)")
        started = existing is None
        if started:
            entry = _STARTED[key] = _Started(start_server(threads=threads, slots=slots, state_dir=state_dir))
            _announce(entry.info, keep)
        assert entry is not None
        if keep:
            entry.keep = True
            return LLMEndpoint(
                embedded_config(entry.info.url, **overrides),
                "embedded server (kept)",
                kept=entry.info if started else None,
                state_dir=state_dir,
            )
        entry.holders += 1
    return LLMEndpoint(
        embedded_config(entry.info.url, **overrides),
        "embedded server (started)",
        server=entry.info,
        state_dir=state_dir,
    )


def _announce(info: ServerInfo, keep: bool) -> None:
    if keep:
        log.warning(
            "started the embedded LLM server (pid %d, %s); it keeps running after this process ends, as asked; %s",
            info.pid,
            info.url,
            STOP_HINT,
        )
    else:
        log.info(
            "started the embedded LLM server (pid %d, %s); it stops when its last user closes or this process exits",
            info.pid,
            info.url,
        )
