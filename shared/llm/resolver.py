"""The one way to reach the LLM: :func:`resolve_llm` picks the endpoint, and the :class:`LLMEndpoint` it returns
owns any embedded server it started.

The endpoint, first that applies:

1. an explicit :class:`~shared.llm.client.LLMConfig`, used as it is;
2. an explicit URL: with the embedded server's model name (:data:`~shared.llm.embedded.EMBEDDED_MODEL`) the
   embedded server's config, whose cache identity is the model file, not the port
   (:func:`~shared.llm.embedded.embedded_config`); with any other model ``LLMConfig.from_env(base_url=url, ...)``
   (the API key and, without a model, the model name come from the environment);
3. ``FEDHYDRA_LLM_BASE_URL`` (and the other ``FEDHYDRA_LLM_*`` variables: :meth:`LLMConfig.from_env`);
4. the embedded server already running (recorded under ``$FEDHYDRA_HOME/llm-server``): used, and left running
   unless the process that started it asked for it to stop when unused;
5. a new embedded server, started here. Unless ``keep=True`` it stops when the last process using it releases it:
   :meth:`LLMEndpoint.close` (leaving its ``with`` block, or the process's exit) releases this process's hold once no
   other endpoint of the process holds it. With ``keep=True`` it is logged, plainly and at once, that the server stays
   and that ``fedhydra llm stop`` stops it.

Processes resolve one at a time per state folder (:func:`~shared.llm.embedded.server_lock`), so two runs started
together share one server, and the first to finish does not stop it under the other.

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
    auto_stops,
    embedded_config,
    hold_server,
    release_server,
    running_server,
    server_lock,
    set_auto_stop,
    start_server,
    stop_server,
)
from shared.paths import llm_state_dir

__all__ = ["LLMEndpoint", "resolve_llm", "STOP_HINT"]

log = logging.getLogger(__name__)

STOP_HINT = "stop it with `fedhydra llm stop`"
"""How a user stops an embedded server that was left running."""


@dataclass
class _Held:
    """The embedded server this process uses: whether this process started it, and how many of its endpoints hold it."""

    info: ServerInfo
    started: bool = False
    holders: int = 0


_HELD: dict[Path, _Held] = {}
"""The embedded servers this process uses, by state folder."""
_LOCK = threading.Lock()


class LLMEndpoint:
    """A resolved LLM endpoint: its ``config``, where it came from (``source``) and, when it started the embedded
    server, that server (``server``, or ``kept`` when asked to keep it). A context manager: :meth:`close` releases
    the embedded server it holds."""

    def __init__(
        self,
        config: LLMConfig,
        source: str,
        *,
        server: ServerInfo | None = None,
        kept: ServerInfo | None = None,
        held: ServerInfo | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.server = server
        """The embedded server this process started and holds through this endpoint (stops when unused)."""
        self.kept = kept
        """The embedded server this endpoint started and was asked to keep (:meth:`close` says it stays)."""
        self.state_dir = state_dir
        self._held = held
        if held is not None or kept is not None:
            atexit.register(self.close)

    def __repr__(self) -> str:
        return f"LLMEndpoint({self.config.base_url!r}, source={self.source!r}, owns_server={self.server is not None})"

    def __enter__(self) -> LLMEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> ServerInfo | None:
        """Release the embedded server this endpoint holds. Once no endpoint of this process and no other live
        process holds it, it stops if it was started to stop when unused (not kept). Idempotent; returns the server
        stopped."""
        held, self._held = self._held, None
        self.server = None
        kept, self.kept = self.kept, None
        if held is None and kept is None:
            return None
        atexit.unregister(self.close)
        if kept is not None:
            log.warning(
                "the embedded LLM server (pid %d, %s) is left running, as asked; %s", kept.pid, kept.url, STOP_HINT
            )
        if held is None:
            return None
        key = _state_key(self.state_dir)
        with _LOCK, server_lock(self.state_dir):
            entry = _HELD.get(key)
            if entry is None or entry.info.pid != held.pid:
                return None  # stopped or replaced meanwhile
            entry.holders -= 1
            if entry.holders > 0:
                return None
            del _HELD[key]
            others = release_server(held, self.state_dir)
            if others:
                log.info("the embedded LLM server (pid %d) stays: %d other process(es) use it", held.pid, others)
                return None
            if not auto_stops(held, self.state_dir):
                return None
            current = running_server(self.state_dir)
            if current is None or current.pid != held.pid:
                return None
            stopped = stop_server(self.state_dir)
        log.info("stopped the embedded LLM server (pid %d, %s): no process uses it any more", held.pid, held.url)
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
    with _LOCK, server_lock(state_dir):
        existing = running_server(state_dir)
        entry = _HELD.get(key)
        if entry is not None and (existing is None or existing.pid != entry.info.pid):
            del _HELD[key]  # stopped meanwhile (``fedhydra llm stop``): this process no longer holds it
            entry = None
        started = existing is None
        if existing is None:
            info = start_server(threads=threads, slots=slots, state_dir=state_dir)
            _announce(info, keep)
            set_auto_stop(info, not keep, state_dir)
        else:
            info = existing
        if keep:  # it stays whoever holds it: nothing to hold (a node resolves once per message)
            set_auto_stop(info, False, state_dir)
            return LLMEndpoint(
                embedded_config(info.url, **overrides),
                "embedded server (kept)",
                kept=info if started else None,
                state_dir=state_dir,
            )
        if entry is None:
            entry = _HELD[key] = _Held(info, started=started)
            hold_server(info, state_dir)
        entry.holders += 1
    return LLMEndpoint(
        embedded_config(info.url, **overrides),
        "embedded server (started)" if entry.started else "embedded server (running)",
        server=info if entry.started else None,
        held=info,
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
            "started the embedded LLM server (pid %d, %s); it stops when no process uses it any more",
            info.pid,
            info.url,
        )
