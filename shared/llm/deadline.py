"""A total deadline for an HTTP request made with :mod:`requests`, and a bounded read of its body.

requests' ``timeout`` bounds each socket read, not the request: a server that sends a byte within every timeout
keeps a request alive forever. A session that mounts :class:`DeadlineAdapter` makes connections that attach to the
:class:`Deadline` of the request running in their thread (:func:`watching`); when it expires, a timer shuts the
connection's socket down, which ends any read in progress (status line, headers or body) at once, and the caller
sees ``Deadline.expired``. :func:`read_capped` reads a streamed body up to a byte bound, checking the deadline between
reads. Limits: the TLS handshake is bounded only by the connect timeout of each read (its socket is not reachable
until the handshake ends).

Example (the client of :mod:`shared.llm.client` does this for every attempt)::

    session = requests.Session(); session.mount("http://", DeadlineAdapter())
    deadline = Deadline(2.0)
    with watching(deadline):
        response = session.post(url, json=body, timeout=2.0, stream=True)
        body = read_capped(response, 1 << 20, time.monotonic() + 2.0, cut=False)
    deadline.cancel()
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.errors import LLMResponseError

__all__ = ["Deadline", "DeadlineAdapter", "watching", "read_capped"]

_CHUNK_BYTES = 65536
_current = threading.local()


class Deadline:
    """Shuts down the socket of the connection attached to it ``seconds`` after :meth:`start`.

    >>> d = Deadline(0.01); d.start(); time.sleep(0.2); d.expired
    True
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._conn: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        """Stop the timer and forget the connection: once this returns, nothing is shut down any more."""
        self._timer.cancel()
        with self._lock:
            self._conn = None

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn
            if self.expired:
                _shutdown(conn)

    def _expire(self) -> None:
        with self._lock:  # under the lock: a cancel() that returned has no shutdown still to come
            self.expired = True
            if self._conn is not None:
                _shutdown(self._conn)


def _shutdown(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:  # socket.socket's own shutdown, also for an SSLSocket (whose override drops its TLS state)
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


@contextlib.contextmanager
def watching(deadline: Deadline | None) -> Iterator[None]:
    """Start ``deadline`` and attach the connections this thread uses in the block to it (None: no deadline)."""
    if deadline is None:
        yield
        return
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    deadline.start()
    try:
        yield
    finally:
        _current.deadline = previous


def read_capped(response: requests.Response, limit: int, ends: float, *, cut: bool) -> bytes:
    """The body of a response made with ``stream=True``, at most ``limit`` bytes (after content decoding): over it,
    the first ``limit`` bytes (``cut``) or an :class:`~shared.errors.LLMResponseError` naming the bound, without
    reading further. Raises ``requests.Timeout`` once ``time.monotonic()`` passes ``ends`` between reads; reads
    return what has arrived (``read1``), so a slow body is checked at every piece.
    """
    declared = response.headers.get("Content-Length", "")
    if not cut and declared.isdigit() and int(declared) > limit:
        raise LLMResponseError(f"answer of {int(declared)} bytes is over max_response_bytes = {limit}")
    raw = response.raw
    read = raw.read1 if hasattr(raw, "read1") else raw.read
    body = bytearray()
    while True:
        if time.monotonic() > ends:
            raise requests.Timeout("the deadline passed while reading the body")
        chunk = read(_CHUNK_BYTES, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            if cut:
                return bytes(body[:limit])
            raise LLMResponseError(f"answer is over max_response_bytes = {limit} (not read further)")


class _WatchedConnection:
    """Mixin of urllib3 connections: attach to the current thread's deadline when a request starts on them and once
    connected (a socket made after the deadline passed is shut down at once)."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(self)


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections (direct or through a proxy) obey :class:`Deadline` (see the module)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS proxies keep their own connections (no watchdog)
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
