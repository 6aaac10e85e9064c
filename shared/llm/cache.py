"""A persistent, multi-process-safe cache of LLM responses (SQLite in WAL mode).

The key is the SHA-256 of the canonical JSON of everything that decides an answer: the endpoint's
identity, the model, the messages and the sampling parameters. Several processes may read and write
the same file at once (SQLite serializes writers; readers never see a half-written row), so reruns
and parallel simulated clients share answers and cost no LLM calls.

On-disk format, version 1: table ``responses(key TEXT PRIMARY KEY, request TEXT, response TEXT,
created REAL)`` and ``meta(name, value)`` holding ``format_version``.

Example:
    >>> import tempfile, pathlib
    >>> cache = ResponseCache(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")
    >>> k = request_key({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> cache.get(k) is None
    True
    >>> cache.put(k, {"model": "m"}, "hello")
    >>> cache.get(k)
    'hello'
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.errors import FedHydraError

__all__ = ["ResponseCache", "request_key", "CACHE_FORMAT_VERSION"]

CACHE_FORMAT_VERSION = 1


def request_key(request: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the request's canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Key-value store of LLM answers shared by threads and processes."""

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._init_schema()

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout_s * 1000)}")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _init_schema(self) -> None:
        conn = self._connect()
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
            "response TEXT NOT NULL, created REAL NOT NULL)"
        )
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(CACHE_FORMAT_VERSION),))
        row = conn.execute("SELECT value FROM meta WHERE name='format_version'").fetchone()
        if row is None or int(row[0]) != CACHE_FORMAT_VERSION:
            raise FedHydraError(
                f"{self.path}: LLM cache format version {row[0] if row else None}, "
                f"this FedHydra reads version {CACHE_FORMAT_VERSION}; move the file away"
            )

    def get(self, key: str) -> str | None:
        """The cached answer for ``key``, or None."""
        row = self._connect().execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, request: Mapping[str, Any], response: str) -> None:
        """Store an answer; the first writer of a key wins (answers for one key are interchangeable)."""
        self._connect().execute(
            "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?)",
            (key, json.dumps(request, sort_keys=True, ensure_ascii=False), response, time.time()),
        )

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM responses").fetchone()[0])
