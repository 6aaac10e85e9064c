"""Bounded command-line arguments: every value the ``fedhydra`` command reads is checked when it is parsed.

One rule for every subcommand: a number outside its documented range, a non-finite float, a name that is not a
plain name, an ``--out`` that is an existing file, an ``--llm-cache`` that is no SQLite file are refused by
argparse itself, before anything runs or is written, with one line on stderr and exit status 2
(:class:`Parser`). The ranges are the table :data:`BOUNDS`; a flag takes its type from :func:`bounded`, so no
flag has a check of its own. Keys of the run config (``--train-users``, ``--num-rounds``, ...) are bounded by
:mod:`shared.config` instead, when ``fedhydra run`` or ``simulate`` builds the config.

Example:
    >>> bounded("users")("3")
    3
    >>> bounded("users")("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer in 1..1000000, got '0'
    >>> bounded("llm-timeout")("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number in 0.001..3600, got 'nan'
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from shared.settings import BOUNDS as SETTING_BOUNDS

__all__ = [
    "Parser",
    "Bound",
    "BOUNDS",
    "bounded",
    "plain_name",
    "text",
    "out_path",
    "llm_cache_file",
    "SQLITE_HEADER",
    "TEXT_MAX",
]


@dataclass(frozen=True)
class Bound:
    """The closed range ``lo..hi`` of one numeric flag; ``integer`` False: a finite float."""

    lo: float
    hi: float
    integer: bool = True

    def describe(self) -> str:
        if self.integer:
            return f"an integer in {int(self.lo)}..{int(self.hi)}"
        return f"a number in {self.lo:g}..{self.hi:g}"


BOUNDS: dict[str, Bound] = {
    # fedhydra baseline
    "users": Bound(1, 1_000_000),  # users to run (baseline) or to write (synth: at most 100,000, see synth-users)
    "offset": Bound(0, 1_000_000),  # users to skip; also below the number of users the data has (checked on load)
    "k": Bound(1, 100),  # records in the RAG prompt
    # flags of run config keys (baseline's BASELINE_FLAGS): the key's declared range
    "timeline-questions": Bound(*SETTING_BOUNDS["data.timeline-questions"]),
    "llm-timeout": Bound(SETTING_BOUNDS["llm.timeout"][0], SETTING_BOUNDS["llm.timeout"][1], integer=False),
    "llm-concurrency": Bound(*SETTING_BOUNDS["llm.concurrency"]),  # requests in flight
    # fedhydra simulate
    "client-cpus": Bound(1, 1024),
    # fedhydra synth
    "synth-users": Bound(1, 100_000),
    "items": Bound(1, 10_000),
    "questions": Bound(1, 1_000),
    "seed": Bound(0, 2**32 - 1),
    # fedhydra llm serve
    "port": Bound(0, 65_535),  # 0: a free port
    "threads": Bound(1, 1024),
    "slots": Bound(1, 256),
    "ctx": Bound(128, 131_072),  # context tokens per slot
}
"""The range of every numeric flag of every subcommand (the keys name the flag without its dashes)."""

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SQLITE_HEADER = b"SQLite format 3\x00"
TEXT_MAX = 4096
"""The longest free-text flag (a URL, a model name, ``--run-config``, a task name), in characters."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose refusals are one line on stderr (``fedhydra <command>: error: ...``), exit status 2;
    its subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def bounded(flag: str) -> Callable[[str], int | float]:
    """The argparse ``type`` of a numeric flag: its text as an int (or a finite float) within ``BOUNDS[flag]``, else
    :class:`argparse.ArgumentTypeError` naming the range (argparse adds the flag's name)."""
    bound = BOUNDS[flag]

    def parse(text: str) -> int | float:
        text = str(text).strip()
        value: int | float | None = None
        if len(text) <= 32 and _NUMBER.fullmatch(text):
            number = float(text)
            if bound.integer:
                value = int(text) if re.fullmatch(r"[+-]?\d+", text) else None
            elif math.isfinite(number):
                value = number
        if value is None or not bound.lo <= value <= bound.hi:
            raise argparse.ArgumentTypeError(f"must be {bound.describe()}, got {text[:40]!r}")
        return value

    parse.__name__ = flag
    return parse


def plain_name(text: str) -> str:
    """A name that can become part of a file name (a split's prefix, a model name): letters, digits, ``_.-``, at
    most 64 characters, not starting with a dot or a dash; never a path."""
    if not _NAME.fullmatch(text) or ".." in text:
        raise argparse.ArgumentTypeError(
            "must be a plain name (letters, digits, '_', '.', '-'; at most 64 characters; no path)"
        )
    return text


def text(value: str) -> str:
    """A free-text flag: at most :data:`TEXT_MAX` characters, no control characters (checked further where used:
    a URL by the LLM client, ``--run-config`` by the run config, a task by the task registry)."""
    if len(value) > TEXT_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {TEXT_MAX} characters, got {len(value)}")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise argparse.ArgumentTypeError("must not hold control characters")
    return value


def out_path(text: str) -> Path:
    """An output folder: a directory or a path not there yet; not an existing file, not below one."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise argparse.ArgumentTypeError("must be a folder, but names (or lies below) an existing file")
    return path


def llm_cache_file(text: str) -> str:
    """An LLM response cache: a file not there yet, an empty file, or an SQLite database (by its header); not a
    folder. A cache whose header is fine but whose pages are damaged is refused when opened
    (:class:`~shared.errors.FedHydraError`, one line too)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a file, got an empty string")
    path = Path(text)
    if path.exists():
        if not path.is_file():
            raise argparse.ArgumentTypeError("must be a file, but names a folder or another kind of entry")
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot be read ({exc.strerror})") from None
        if head and head != SQLITE_HEADER:
            raise argparse.ArgumentTypeError("is not an LLM cache (an SQLite database)")
    return text
