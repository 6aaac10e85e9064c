"""The node-local store of one user: history, episodes (LLM-labelled data), personal heads, predictions.

Layout of ``<root>/<user>/`` (format version :data:`STORE_VERSION`, recorded in ``meta.json``):

| file | what |
|---|---|
| ``meta.json`` | format version, user id, task, and counters |
| ``history.json`` | the user's profile items |
| ``episodes.jsonl`` | one labelled episode per line (see :mod:`shared.hydra.episodes`) |
| ``heads.safetensors`` | the personal heads (``head.`` keys only) |
| ``predictions.json`` | answers to the user's questions, per method (simulation output) |
| ``embeddings.safetensors`` | the encoder's embeddings of the history records (a cache, see below) |
| ``accepted_base.json`` | the norm of the last global base this device accepted (:mod:`client.guard`) |
| ``bundle/`` | the model bundle of the on-device SDK |

Every write goes to a temporary file in the same folder (``.<name>.<random>.tmp``), flushed to disk and
renamed into place (:func:`shared.io.atomic_write_bytes`), so a process killed while writing leaves each file
at its previous version or its new one, never a mix (``tests/client/test_store.py`` SIGKILLs writers to check
it). What a killed writer leaves behind is its temporary file: opening the store removes those older than
:data:`STALE_TEMP_S` (a live write takes milliseconds). A file that does not parse is reported as
:class:`StoreError`, never silently replaced. The one exception is ``embeddings.safetensors``, a cache
of what the frozen encoder makes of each history record (records never change once added): it is keyed
by each record's text digest and by the identity of the encoder that made it
(:func:`client.device.embedding_id`), and a file that is unreadable, of another version or made by
another encoder is ignored and rebuilt, never trusted.

Example:
    >>> import tempfile
    >>> store = UserStore(tempfile.mkdtemp(), "alice", task="LaMP-7")
    >>> store.write_history([{"id": "1", "text": "hi"}])
    >>> store.read_history()
    [{'id': '1', 'text': 'hi'}]
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from shared.errors import FedHydraError
from shared.io import atomic_write_text

__all__ = ["STORE_VERSION", "EMBEDDINGS_FORMAT", "EMBEDDINGS_VERSION", "StoreError", "UserStore", "text_digest"]

STORE_VERSION = 1
STALE_TEMP_S = 600.0
"""Temporary files older than this (seconds) are left-overs of a killed writer."""
_TEMP = re.compile(r"^\..+\.tmp$")
EMBEDDINGS_FORMAT = "fedhydra-embeddings"
EMBEDDINGS_VERSION = "1"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class StoreError(FedHydraError):
    """A store file is unreadable or of another format version."""


def text_digest(text: str) -> bytes:
    """The 16-byte key of a text in the embedding cache (SHA-256 of its UTF-8 bytes, cut)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class UserStore:
    """One user's folder in a node-local store."""

    @staticmethod
    def exists(root: str | Path, user: str) -> bool:
        """Whether ``user`` has a store under ``root`` (opening one creates it; this does not)."""
        return (Path(root) / (_SAFE.sub("_", user) or "_") / "meta.json").exists()

    def __init__(self, root: str | Path, user: str, *, task: str):
        self.user = user
        self.task = task
        self.path = Path(root) / (_SAFE.sub("_", user) or "_")
        self.path.mkdir(parents=True, exist_ok=True)
        self.sweep()
        meta = self.read_meta()
        if meta is None:
            self.write_meta({"format_version": STORE_VERSION, "user": user, "task": task})
        elif meta.get("format_version") != STORE_VERSION:
            raise StoreError(f"{self.path / 'meta.json'}: store format version {meta.get('format_version')}, "
                             f"this FedHydra reads version {STORE_VERSION}")
        elif meta.get("task") != task:
            raise StoreError(f"{self.path / 'meta.json'}: this store is for {meta.get('task')}, not {task}")

    def sweep(self, max_age_s: float = STALE_TEMP_S) -> list[Path]:
        """Remove the temporary files that killed writers left (older than ``max_age_s``); return them."""
        removed = []
        now = time.time()
        for file in self.path.iterdir():
            if not _TEMP.match(file.name):
                continue
            try:
                if file.is_file() and now - file.stat().st_mtime >= max_age_s:
                    file.unlink()
                    removed.append(file)
            except FileNotFoundError:  # its writer renamed it, or another process swept it
                pass
        return removed

    # -- helpers ------------------------------------------------------------------------------------
    def _read_json(self, name: str) -> Any:
        file = self.path / name
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{file}: damaged ({exc})") from None

    def _write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, ensure_ascii=False, indent=1))

    # -- meta -----------------------------------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        return self._read_json("meta.json")

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        self._write_json("meta.json", dict(meta))

    def update_meta(self, **fields: Any) -> None:
        self.write_meta({**(self.read_meta() or {}), **fields})

    # -- history --------------------------------------------------------------------------------------
    def read_history(self) -> list[dict[str, str]]:
        return self._read_json("history.json") or []

    def write_history(self, items: Sequence[Mapping[str, str]]) -> None:
        self._write_json("history.json", [dict(i) for i in items])

    # -- episodes -------------------------------------------------------------------------------------
    def read_episodes(self):
        from shared.hydra.episodes import Episode

        file = self.path / "episodes.jsonl"
        if not file.exists():
            return None
        out = []
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append(Episode.from_json(line))
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{file}: line {n} damaged ({exc})") from None
        return out

    def write_episodes(self, episodes) -> None:
        atomic_write_text(self.path / "episodes.jsonl", "".join(ep.to_json() + "\n" for ep in episodes))

    # -- heads ----------------------------------------------------------------------------------------
    @property
    def heads_path(self) -> Path:
        return self.path / "heads.safetensors"

    def read_heads(self, model) -> dict[str, Any] | None:
        from shared.hydra.bundle import BundleError, load_tensors

        if not self.heads_path.exists():
            return None
        try:
            return load_tensors(self.heads_path, kind="heads", model=model)[0]
        except BundleError as exc:
            raise StoreError(str(exc)) from None

    def write_heads(self, tensors: Mapping[str, Any], model, **meta: object) -> None:
        from shared.hydra.bundle import save_tensors

        save_tensors(self.heads_path, tensors, kind="heads", model=model, user=self.user, **meta)

    # -- the history embedding cache -------------------------------------------------------------------
    @property
    def embeddings_path(self) -> Path:
        return self.path / "embeddings.safetensors"

    def embeddings_model(self) -> str | None:
        """The encoder identity the cached embeddings were made under, or None (no readable cache)."""
        return self._read_embeddings()[0]

    def read_embeddings(self, model_id: str) -> dict[bytes, Any]:
        """Cached embeddings made under ``model_id``, by :func:`text_digest` of the text; empty if there are
        none, they were made under another encoder, or the file is unreadable (it is a cache: rebuilt, never trusted)."""
        model, vectors = self._read_embeddings()
        return vectors if model == model_id else {}

    def _read_embeddings(self) -> tuple[str | None, dict[bytes, Any]]:
        from safetensors import safe_open

        file = self.embeddings_path
        if not file.exists():
            return None, {}
        try:
            with safe_open(str(file), framework="numpy") as fh:
                meta = dict(fh.metadata() or {})
                keys, vectors = fh.get_tensor("keys"), fh.get_tensor("vectors")
            if (meta.get("format") != EMBEDDINGS_FORMAT or meta.get("version") != EMBEDDINGS_VERSION
                    or keys.ndim != 2 or keys.shape[1] != 16 or vectors.ndim != 2 or len(keys) != len(vectors)):
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
        arrays = {"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16), "vectors": stacked}
        metadata = {"format": EMBEDDINGS_FORMAT, "version": EMBEDDINGS_VERSION, "model": model_id, "user": self.user}
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
