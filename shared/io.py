r"""Atomic file writes (a reader sees the old file or the new one, never a half-written one) and JSON Lines reads.

JSON Lines are split at ``"\n"`` only: ``str.splitlines()`` also splits at U+000B, U+000C, U+001C-U+001E, U+0085,
U+2028 and U+2029, which JSON leaves raw inside strings (``json.dumps(..., ensure_ascii=False)``), so a line holding
one of them would be read as two damaged ones.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "x.txt"
    >>> _ = atomic_write_text(p, "hello")
    >>> p.read_text()
    'hello'
    >>> _ = atomic_write_text(p, '{"t": "a\u2028b"}\n\n{"t": 2}\n{"cut')
    >>> read_jsonl(p)
    [{'t': 'a\u2028b'}, {'t': 2}]
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "jsonl_lines", "read_jsonl"]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file in the same directory, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    r"""The non-blank lines of JSON Lines ``text`` with their 1-based numbers, split at ``"\n"`` only (a ``"\r"``
    before it stays on the line: JSON ignores it). Every other line separator stays inside its line.

    >>> list(jsonl_lines('{"a": "x\u2028y\u0085z"}\r\n\n  \n[1]'))
    [(1, '{"a": "x\u2028y\x85z"}\r'), (4, '[1]')]
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip(" \t\r"):
            yield number, line


def read_jsonl(path: str | Path) -> list[Any]:
    r"""The values of the JSON Lines file ``path`` in file order (see :func:`jsonl_lines`), for files this program
    appends to: a line that is not UTF-8 JSON (cut short by a killed writer) is skipped. A missing file reads as
    no values.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    values = []
    for line in data.split(b"\n"):
        if not line.strip(b" \t\r"):
            continue
        try:
            values.append(json.loads(line.decode("utf-8")))
        except ValueError:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
            continue
    return values
