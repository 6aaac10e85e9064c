"""The node-local store of one user: history, episodes (LLM-labelled data), personal heads, predictions.

Layout of ``<root>/<user>/`` (format version :data:`STORE_VERSION`, recorded in ``meta.json``):

| file | what |
|---|---|
| ``meta.json`` | format version, user id, task, and counters |
| ``history.json`` | the user's profile items |
| ``episodes.jsonl`` | one labelled episode per line (see :mod:`shared.hydra.episodes`) |
| ``heads.safetensors`` | the personal heads (``head.`` keys only) |
| ``predictions.json`` | answers to the user's questions, per method (simulation output) |
| ``bundle/`` | the model bundle of the on-device SDK |

Every write goes to a temporary file that is renamed into place, so a process killed while writing
leaves the previous version; a file that does not parse is reported as :class:`StoreError`, never
silently replaced.

Example:
    >>> import tempfile
    >>> store = UserStore(tempfile.mkdtemp(), "alice", task="LaMP-7")
    >>> store.write_history([{"id": "1", "text": "hi"}])
    >>> store.read_history()
    [{'id': '1', 'text': 'hi'}]
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from shared.errors import FedHydraError
from shared.io import atomic_write_text

__all__ = ["STORE_VERSION", "StoreError", "UserStore"]

STORE_VERSION = 1
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class StoreError(FedHydraError):
    """A store file is unreadable or of another format version."""


class UserStore:
    """One user's folder in a node-local store."""

    def __init__(self, root: str | Path, user: str, *, task: str):
        self.user = user
        self.task = task
        self.path = Path(root) / (_SAFE.sub("_", user) or "_")
        self.path.mkdir(parents=True, exist_ok=True)
        meta = self.read_meta()
        if meta is None:
            self.write_meta({"format_version": STORE_VERSION, "user": user, "task": task})
        elif meta.get("format_version") != STORE_VERSION:
            raise StoreError(f"{self.path / 'meta.json'}: store format version {meta.get('format_version')}, "
                             f"this FedHydra reads version {STORE_VERSION}")
        elif meta.get("task") != task:
            raise StoreError(f"{self.path / 'meta.json'}: this store is for {meta.get('task')}, not {task}")

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

    # -- predictions ------------------------------------------------------------------------------------
    def write_predictions(self, predictions: Mapping[str, Any]) -> None:
        self._write_json("predictions.json", dict(predictions))

    def read_predictions(self) -> dict[str, Any] | None:
        return self._read_json("predictions.json")
