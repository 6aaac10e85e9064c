"""The node-local store of one user: history, episodes (LLM-labelled data), personal heads, predictions.

Layout of ``<root>/<folder>/`` (format version :data:`STORE_VERSION`; the folder is :func:`user_folder` of the
user id):

| file | what |
|---|---|
| ``meta.json`` | the store's identity card: format version, user id, task; written once, when the store is made |
| ``store.sqlite`` | SQLite (WAL mode): the history, the episodes and the metadata counters (:meth:`UserStore.update_meta`) |
| ``heads.safetensors`` | the personal heads (``head.`` keys only) |
| ``predictions.json`` | answers to the user's questions, per method (simulation output) |
| ``embeddings.safetensors`` | the encoder's embeddings of the history records (a cache, see below) |
| ``accepted_base.json`` | the norm of the last global base this device accepted (:mod:`client.guard`) |
| ``bundle/`` | the model bundle of the on-device SDK |
| ``.lock`` | the writers' lock (see below) |

**Several processes at once.** History, episodes and metadata live in one SQLite database in WAL mode: every
change is one transaction (``BEGIN IMMEDIATE``, waiting up to :data:`BUSY_TIMEOUT_S` for another writer), so two
processes adding history items at the same time keep every item, and adding one item inserts one row instead of
rewriting the history (``tests/client/test_store_concurrency.py``). Readers never wait for writers.

**Killed writers.** The other files are written to a temporary file in the same folder (``.<name>.<random>.tmp``),
flushed and renamed into place (:func:`shared.io.atomic_write_bytes`), so a process killed while writing leaves each
file at its previous version or its new one, never a mix (``tests/client/test_store.py`` SIGKILLs writers). While it
writes, a process holds a shared lock on ``.lock`` (:meth:`UserStore.writing`; the SDK's ``update_base`` holds it
while it stages a bundle). Opening the store takes that lock exclusively if it can: then no writer is alive, and every
temporary file and staging folder (``.bundle-*``) left by a killed one is removed, whatever its age; if a writer is
alive, only the temporaries older than :data:`STALE_TEMP_S` go. A ``bundle/`` that a kill left missing between the two
renames of a swap is restored from the previous bundle. What a killed process leaves is thus bounded by what live
processes are writing. The user's ONNX scorer graphs an earlier SDK wrote (``scorer-<role>.onnx``: heads are now
scored in numpy) are removed too, when no writer is alive.

**Damage.** A file that does not parse, a history row that lacks one of the task's fields, an episode that does not
load, heads that are not finite or beyond :data:`HEAD_MAX_ABS`, are reported as :class:`StoreError` (naming the
file, the row and the field, never the user's data or the store's path), never silently replaced. The exception is
``embeddings.safetensors``, a cache of what the frozen encoder makes of each history record (records never change
once added): it is keyed by each record's text digest and by the identity of the encoder that made it
(:func:`client.device.embedding_id`), and a file that is unreadable, of another version, made by another encoder, or
holding a non-finite or mis-shaped vector is ignored and rebuilt, never trusted.

**User ids.** :func:`user_folder` maps ids to folder names injectively: an id of lower-case letters, digits, ``_``
and ``-`` (at most 64, not starting with ``_`` or ``-``) is its own folder; any other id becomes a readable prefix,
``~`` and the SHA-256 of the exact id (``"alice smith"`` -> ``alice_smith~038b...``, ``".."`` -> ``__~...``), so no
id is a path and two ids never share a folder. Opening checks the user recorded in ``meta.json`` (a different one:
:class:`StoreError`).

**Version 1** stores (``history.json``, ``episodes.jsonl``, ``meta.json`` of format version 1) are migrated on open:
their rows are checked and copied into ``store.sqlite`` in one transaction, then ``meta.json`` is rewritten at
version 2 and the old files removed; a process killed half way migrates again on the next open (the copy is done
once). A version-1 store whose folder name is not the id's :func:`user_folder` (ids outside the verbatim set) is not
found under its new folder.

Example:
    >>> import tempfile
    >>> store = UserStore(tempfile.mkdtemp(), "alice", task="LaMP-7")
    >>> store.write_history([{"id": "1", "text": "hi"}])
    >>> store.append_history([{"text": "there"}])
    2
    >>> store.read_history()
    [{'id': '1', 'text': 'hi'}, {'text': 'there', 'id': 'h1'}]
    >>> user_folder("alice"), user_folder("alice smith")[:13]
    ('alice', 'alice_smith~0')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.errors import FedHydraError
from shared.io import atomic_write_text

try:  # POSIX (Linux, macOS, Android); elsewhere the sweep goes by age only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "STORE_VERSION",
    "EMBEDDINGS_FORMAT",
    "EMBEDDINGS_VERSION",
    "BUSY_TIMEOUT_S",
    "HEAD_MAX_ABS",
    "MAX_USER_ID",
    "StoreError",
    "UserStore",
    "text_digest",
    "user_folder",
]

STORE_VERSION = 2
"""2: history, episodes and metadata in ``store.sqlite`` (WAL); 1: ``history.json``, ``episodes.jsonl``, counters in
``meta.json`` (migrated on open)."""
STALE_TEMP_S = 600.0
"""Temporary files older than this (seconds) are left-overs of a killed writer even while another writer is alive."""
BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's transaction before it fails (:class:`StoreError`)."""
HEAD_MAX_ABS = 1e4
"""Largest magnitude of a stored head's value (the guard's ``max_abs``, :class:`client.guard.Limits`)."""
MAX_USER_ID = 1024
"""Longest user id, in characters."""
DATABASE = "store.sqlite"
LOCK = ".lock"
_TEMP = re.compile(r"^\..+\.tmp$")
_STAGING = re.compile(r"^\.bundle-(old-)?[0-9a-f]+$")
_RETIRED = re.compile(r"^scorer-[a-z]+\.onnx$")
"""Files an earlier SDK wrote into the store (a user's scorer graphs, before heads were scored in numpy)."""
_VERBATIM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_IDENTITY = ("format_version", "user", "task")
EMBEDDINGS_FORMAT = "fedhydra-embeddings"
EMBEDDINGS_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (seq INTEGER PRIMARY KEY AUTOINCREMENT, episode TEXT NOT NULL);
"""


class StoreError(FedHydraError):
    """A store file is unreadable, damaged, of another format version, or of another user or task."""


def text_digest(text: str) -> bytes:
    """The 16-byte key of a text in the embedding cache (SHA-256 of its UTF-8 bytes, cut)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def user_folder(user: str) -> str:
    """The folder name of a user id: the id itself when it is lower-case letters, digits, ``_`` and ``-`` (at most 64,
    starting with a letter or digit), else a readable prefix, ``~`` and the SHA-256 of the exact id. Injective: the
    two forms never meet (only the second holds ``~``), and every name is lower case (case-insensitive file systems
    cannot merge two).

    >>> user_folder("s0u0001"), user_folder("..")[:3], user_folder("Alice") != user_folder("alice")
    ('s0u0001', '__~', True)

    Raises:
        StoreError: the id is not a string, or is empty or longer than :data:`MAX_USER_ID` characters.
    """
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_ID:
        raise StoreError(f"a user id must be a string of 1 to {MAX_USER_ID} characters")
    if _VERBATIM.match(user):
        return user
    prefix = re.sub(r"[^a-z0-9_-]", "_", user.lower())[:32]
    return f"{prefix}~{hashlib.sha256(user.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def _dumps(value: Any) -> str:
    """JSON with every non-ASCII character escaped: any string (line separators, lone surrogates) stores as it is."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


class UserStore:
    """One user's folder in a node-local store (see the module docstring)."""

    @staticmethod
    def exists(root: str | Path, user: str) -> bool:
        """Whether ``user`` has a store under ``root`` (opening one creates it; this does not)."""
        return (Path(root) / user_folder(user) / "meta.json").exists()

    def __init__(self, root: str | Path, user: str, *, task: str):
        self.user = user
        self.task = task
        self.path = Path(root) / user_folder(user)
        self.db_path = self.path / DATABASE
        self._local = threading.local()
        self._fields: tuple[str, ...] | None = None
        self.path.mkdir(parents=True, exist_ok=True)
        self.sweep()
        identity = self._read_json("meta.json")
        if identity is not None and not isinstance(identity, dict):
            raise StoreError("meta.json: damaged (not an object)")
        if identity is not None and identity.get("format_version") == 1:
            identity = self._migrate_v1(identity)
        if identity is None:
            self._execute_script()
            atomic_write_text(
                self.path / "meta.json",
                json.dumps(
                    {"format_version": STORE_VERSION, "user": user, "task": task, "database": DATABASE}, indent=1
                ),
            )
            return
        if identity.get("format_version") != STORE_VERSION:
            raise StoreError(
                f"meta.json: store format version {identity.get('format_version')!r}, "
                f"this FedHydra reads version {STORE_VERSION}"
            )
        if identity.get("user") != user:
            raise StoreError("meta.json: this store belongs to another user id (field 'user')")
        if identity.get("task") != task:
            raise StoreError(f"meta.json: this store is for {identity.get('task')!r}, not {task!r}")
        self._execute_script()

    # -- the database ---------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (one per thread and process; opened on first use)."""
        local = self._local
        con = getattr(local, "con", None)
        if con is None or getattr(local, "pid", None) != os.getpid():
            try:
                con = sqlite3.connect(
                    self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            local.con, local.pid = con, os.getpid()
        return con

    def _error(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreError(f"{DATABASE}: busy (another process held it for over {BUSY_TIMEOUT_S:g} s)")
        return StoreError(f"{DATABASE}: damaged or unreadable ({type(exc).__name__}: {exc})")

    def _execute_script(self) -> None:
        with self._transaction() as con:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                con.execute(statement)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once, waiting for another's)."""
        con = self._connection()
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield con
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise self._error(exc) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._connection().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        """Close this thread's database connection (others close when the store is collected)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- the writers' lock and the sweep ---------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the shared writers' lock: while any process holds it, opening the store sweeps by age only."""
        if fcntl is None:
            yield
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def sweep(self, max_age_s: float = STALE_TEMP_S) -> list[Path]:
        """Remove what killed writers left: every temporary file and staging folder when no writer is alive (the
        writers' lock is free), else those older than ``max_age_s``; restore ``bundle/`` from the previous bundle if a
        kill left it missing. Returns what was removed."""
        fd = None
        alone = False
        if fcntl is not None:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except OSError:
                alone = False
        try:
            return self._sweep(max_age_s, alone)
        finally:
            if fd is not None:
                os.close(fd)

    def _sweep(self, max_age_s: float, alone: bool) -> list[Path]:
        removed = []
        now = time.time()
        entries = sorted(self.path.iterdir())
        bundle = self.path / "bundle"
        if alone and not (bundle / "bundle.json").exists():  # a kill between the two renames of a swap
            previous = [p for p in entries if p.name.startswith(".bundle-old-") and (p / "bundle.json").exists()]
            if previous:
                if bundle.exists():
                    shutil.rmtree(bundle, ignore_errors=True)
                os.replace(previous[0], bundle)
                entries = sorted(self.path.iterdir())
        for entry in entries:
            temp, staging = _TEMP.match(entry.name), _STAGING.match(entry.name)
            if alone and _RETIRED.match(entry.name) and entry.is_file():  # no earlier SDK is writing it now
                entry.unlink(missing_ok=True)
                removed.append(entry)
                continue
            if not (temp or staging):
                continue
            try:
                if not alone and now - entry.stat().st_mtime < max_age_s:
                    continue
                if staging and entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                elif temp and entry.is_file():
                    entry.unlink()
                else:
                    continue
                removed.append(entry)
            except FileNotFoundError:  # its writer renamed it, or another process swept it
                pass
        return removed

    # -- files ----------------------------------------------------------------------------------------
    def _read_json(self, name: str) -> Any:
        file = self.path / name
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{name}: damaged ({type(exc).__name__} at {getattr(exc, 'pos', '?')})") from None

    def _write_json(self, name: str, data: Any) -> None:
        with self.writing():
            atomic_write_text(self.path / name, json.dumps(data, ensure_ascii=False, indent=1))

    # -- version 1 ------------------------------------------------------------------------------------
    def _migrate_v1(self, identity: Mapping[str, Any]) -> dict[str, Any]:
        """Copy a version-1 store into ``store.sqlite`` (once, in one transaction), then mark it version 2."""
        if identity.get("user") != self.user:
            raise StoreError("meta.json: this store belongs to another user id (field 'user')")
        if identity.get("task") != self.task:
            raise StoreError(f"meta.json: this store is for {identity.get('task')!r}, not {self.task!r}")
        self._execute_script()
        with self._transaction() as con:
            if not con.execute("SELECT 1 FROM state WHERE key = 'migrated-v1'").fetchall():
                history = self._read_json("history.json")
                if history is not None:
                    if not isinstance(history, list):
                        raise StoreError("history.json: damaged (not a list)")
                    for n, row in enumerate(history):
                        self._check_row(row, n, "history.json")
                    con.execute("DELETE FROM history")
                    con.executemany("INSERT INTO history (item) VALUES (?)", [(_dumps(r),) for r in history])
                episodes = self.path / "episodes.jsonl"
                if episodes.exists():
                    lines = self._v1_episode_lines(episodes)
                    con.execute("DELETE FROM episodes")
                    con.executemany("INSERT INTO episodes (episode) VALUES (?)", [(line,) for line in lines])
                    con.execute("INSERT OR REPLACE INTO state VALUES ('episodes', '1')")
                con.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [(k, _dumps(v)) for k, v in identity.items() if k not in _IDENTITY],
                )
                con.execute("INSERT OR REPLACE INTO state VALUES ('migrated-v1', '1')")
        new = {"format_version": STORE_VERSION, "user": self.user, "task": self.task, "database": DATABASE}
        with self.writing():
            atomic_write_text(self.path / "meta.json", json.dumps(new, indent=1))
        for name in ("history.json", "episodes.jsonl"):
            (self.path / name).unlink(missing_ok=True)
        return new

    def _v1_episode_lines(self, file: Path) -> list[str]:
        from shared.hydra.episodes import Episode

        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise StoreError("episodes.jsonl: damaged (not UTF-8)") from None
        lines = []
        for n, line in enumerate(text.split("\n"), start=1):  # only "\n" ends a JSON line: JSON leaves U+2028 raw
            if not line.strip():
                continue
            try:
                Episode.from_json(line)
            except (ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"episodes.jsonl: line {n} damaged ({type(exc).__name__})") from None
            lines.append(_dumps(json.loads(line)))
        return lines

    # -- meta -----------------------------------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        """The identity (format version, user, task) and every counter set by :meth:`update_meta`."""
        identity = self._read_json("meta.json")
        if identity is None:
            return None
        counters = {}
        for key, value in self._query("SELECT key, value FROM meta"):
            try:
                counters[key] = json.loads(value)
            except ValueError:
                raise StoreError(f"{DATABASE}: meta field {key!r} damaged") from None
        return {**counters, **{k: identity.get(k) for k in _IDENTITY}}

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Replace the counters by ``meta``'s (its identity fields are the store's and are not rewritten)."""
        with self._transaction() as con:
            con.execute("DELETE FROM meta")
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)", [(str(k), _dumps(v)) for k, v in meta.items() if k not in _IDENTITY]
            )

    def onboarding_failed(self) -> int:
        """LLM labels the last onboarding lost to an outage (meta ``onboarding_failed``): above 0, the SDK's next
        ``fit()`` and a node's next message build the episodes again."""
        value = (self.read_meta() or {}).get("onboarding_failed") or 0
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    def update_meta(self, **fields: Any) -> None:
        """Set these counters, in one transaction (concurrent updates of other fields are kept)."""
        with self._transaction() as con:
            con.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, _dumps(v)) for k, v in fields.items() if k not in _IDENTITY],
            )

    def _state(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    # -- history --------------------------------------------------------------------------------------
    def _profile_fields(self) -> tuple[str, ...]:
        if self._fields is None:
            from shared.errors import UnknownTaskError
            from shared.tasks import get_task

            try:
                self._fields = tuple(get_task(self.task).profile_fields)
            except UnknownTaskError:
                self._fields = ()
        return self._fields

    def _check_row(self, row: Any, n: int, where: str = "history") -> dict[str, Any]:
        if not isinstance(row, dict):
            raise StoreError(f"{where}: row {n} is not an object")
        for name in self._profile_fields():
            if name not in row:
                raise StoreError(f"{where}: row {n}, field {name!r} missing")
            if not isinstance(row[name], str):
                raise StoreError(f"{where}: row {n}, field {name!r} is not text")
        return row

    def read_history(self) -> list[dict[str, str]]:
        """The history items, in the order added.

        Raises:
            StoreError: a row does not parse or lacks one of the task's profile fields (named).
        """
        out = []
        for n, (text,) in enumerate(self._query("SELECT item FROM history ORDER BY seq")):
            try:
                row = json.loads(text)
            except ValueError:
                raise StoreError(f"history: row {n} damaged (not JSON)") from None
            out.append(self._check_row(row, n))
        return out

    def write_history(self, items: Sequence[Mapping[str, str]]) -> None:
        """Replace the history by ``items`` (one transaction)."""
        rows = [self._check_row(dict(i), n) for n, i in enumerate(items)]
        with self._transaction() as con:
            con.execute("DELETE FROM history")
            con.executemany("INSERT INTO history (item) VALUES (?)", [(_dumps(r),) for r in rows])

    def append_history(self, items: Sequence[Mapping[str, str]]) -> int:
        """Add ``items`` after the stored ones, in one transaction (no rewrite); an item without ``id`` gets
        ``h<its position>``. Returns the number of items now stored."""
        rows = [self._check_row(dict(i), n) for n, i in enumerate(items)]
        with self._transaction() as con:
            count = con.execute("SELECT count(*) FROM history").fetchone()[0]
            for i, row in enumerate(rows):
                row.setdefault("id", f"h{count + i}")
            con.executemany("INSERT INTO history (item) VALUES (?)", [(_dumps(r),) for r in rows])
        return count + len(rows)

    def history_version(self) -> tuple[int]:
        """A key that changes whenever the history does (for caches of it; an index lookup, not a scan): the last
        row's number, never reused (rows are numbered ``AUTOINCREMENT``: every append and rewrite makes new ones)."""
        return (int(self._query("SELECT coalesce(max(seq), 0) FROM history")[0][0]),)

    # -- episodes -------------------------------------------------------------------------------------
    def read_episodes(self):
        """The stored episodes, or None if none were ever written (an empty list: written, none usable)."""
        from shared.hydra.episodes import Episode

        if not self.has_episodes():
            return None
        out = []
        for n, (text,) in enumerate(self._query("SELECT episode FROM episodes ORDER BY seq")):
            try:
                out.append(Episode.from_json(text))
            except KeyError as exc:
                raise StoreError(f"episodes: row {n}, field {exc.args[0]!r} missing") from None
            except (ValueError, TypeError) as exc:
                raise StoreError(f"episodes: row {n} damaged ({type(exc).__name__})") from None
        return out

    def has_episodes(self) -> bool:
        """Whether episodes were written (:meth:`read_episodes` is not None), without reading them."""
        return self._state("episodes") is not None

    def write_episodes(self, episodes) -> None:
        """Replace the episodes (one transaction)."""
        rows = [(_dumps(json.loads(ep.to_json())),) for ep in episodes]
        with self._transaction() as con:
            con.execute("DELETE FROM episodes")
            con.executemany("INSERT INTO episodes (episode) VALUES (?)", rows)
            con.execute("INSERT OR REPLACE INTO state VALUES ('episodes', '1')")

    def clear_episodes(self) -> None:
        """Forget the episodes (:meth:`read_episodes` is None again)."""
        with self._transaction() as con:
            con.execute("DELETE FROM episodes")
            con.execute("DELETE FROM state WHERE key = 'episodes'")

    # -- heads ----------------------------------------------------------------------------------------
    @property
    def heads_path(self) -> Path:
        return self.path / "heads.safetensors"

    def read_heads(self, model) -> dict[str, Any] | None:
        """The personal heads, checked: the architecture ``model``, every value finite and within
        :data:`HEAD_MAX_ABS`; else :class:`StoreError` naming the tensor (never used)."""
        import numpy as np

        from shared.hydra.bundle import BundleError, load_tensors

        if not self.heads_path.exists():
            return None
        try:
            tensors = load_tensors(self.heads_path, kind="heads", model=model)[0]
        except BundleError as exc:
            raise StoreError(str(exc).replace(str(self.heads_path), "heads.safetensors")) from None
        for key, value in tensors.items():
            value = np.asarray(value)
            if value.dtype.kind != "f":
                raise StoreError(f"heads.safetensors: tensor {key!r} has dtype {value.dtype}, not float")
            if not np.isfinite(value).all():
                raise StoreError(f"heads.safetensors: tensor {key!r} holds NaN or Inf")
            if value.size and float(np.max(np.abs(value))) > HEAD_MAX_ABS:
                raise StoreError(f"heads.safetensors: tensor {key!r} holds a value beyond {HEAD_MAX_ABS:g}")
        return tensors

    def write_heads(self, tensors: Mapping[str, Any], model, **meta: object) -> None:
        from shared.hydra.bundle import save_tensors

        with self.writing():
            save_tensors(self.heads_path, tensors, kind="heads", model=model, user=self.user, **meta)

    def clear_heads(self) -> None:
        """Remove the personal heads (a damaged file: the next fit makes them again)."""
        self.heads_path.unlink(missing_ok=True)

    # -- the history embedding cache -------------------------------------------------------------------
    @property
    def embeddings_path(self) -> Path:
        return self.path / "embeddings.safetensors"

    def embeddings_model(self) -> str | None:
        """The encoder identity the cached embeddings were made under, or None (no readable cache)."""
        return self._read_embeddings()[0]

    def read_embeddings(self, model_id: str) -> dict[bytes, Any]:
        """Cached embeddings made under ``model_id``, by :func:`text_digest` of the text; empty if there are
        none, they were made under another encoder, or the file is unreadable or holds a non-finite or mis-shaped
        vector (it is a cache: rebuilt, never trusted)."""
        model, vectors = self._read_embeddings()
        return vectors if model == model_id else {}

    def _read_embeddings(self) -> tuple[str | None, dict[bytes, Any]]:
        import numpy as np
        from safetensors import safe_open

        from shared.hydra.spec import EMBED_DIM

        file = self.embeddings_path
        if not file.exists():
            return None, {}
        try:
            with safe_open(str(file), framework="numpy") as fh:
                meta = dict(fh.metadata() or {})
                keys, vectors = fh.get_tensor("keys"), fh.get_tensor("vectors")
            if (
                meta.get("format") != EMBEDDINGS_FORMAT
                or meta.get("version") != EMBEDDINGS_VERSION
                or keys.ndim != 2
                or keys.shape[1] != 16
                or vectors.ndim != 2
                or len(keys) != len(vectors)
                or (
                    len(vectors)
                    and (vectors.shape[1] != EMBED_DIM or vectors.dtype != np.float32 or not np.isfinite(vectors).all())
                )
            ):
                return None, {}
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt (safetensors raises several types)
            return None, {}
        return meta.get("model"), {bytes(k): v for k, v in zip(keys, vectors)}

    def write_embeddings(self, model_id: str, vectors: Mapping[bytes, Any]) -> None:
        """Replace the cache by ``vectors`` (:func:`text_digest` -> embedding) made under ``model_id``."""
        import numpy as np
        from safetensors.numpy import save

        from shared.io import atomic_write_bytes

        keys = list(vectors)
        stacked = np.stack([np.asarray(vectors[k], np.float32) for k in keys]) if keys else np.zeros((0, 0), np.float32)
        arrays: dict[str, np.ndarray] = {
            "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16),
            "vectors": stacked,
        }
        metadata = {"format": EMBEDDINGS_FORMAT, "version": EMBEDDINGS_VERSION, "model": model_id, "user": self.user}
        with self.writing():
            atomic_write_bytes(self.embeddings_path, save(arrays, metadata=metadata))

    def clear_embeddings(self) -> None:
        self.embeddings_path.unlink(missing_ok=True)

    # -- the last global base the device's guard accepted ------------------------------------------------
    def read_accepted_base(self) -> dict[str, Any] | None:
        """What :mod:`client.guard` recorded of the last global base this device accepted (``{"norm": ...}``)."""
        return self._read_json("accepted_base.json")

    def write_accepted_base(self, record: Mapping[str, Any]) -> None:
        self._write_json("accepted_base.json", dict(record))

    # -- predictions ------------------------------------------------------------------------------------
    def write_predictions(self, predictions: Mapping[str, Any]) -> None:
        self._write_json("predictions.json", dict(predictions))

    def read_predictions(self) -> dict[str, Any] | None:
        return self._read_json("predictions.json")
