"""The scoring head in numpy, with no torch and no onnx: trunk + head on pair features.

``scores = [gelu(W_t [q*c, |q-c|, x] + b_t), x] @ w_h + b_h`` for a query embedding ``q`` ([1, D] or
[N, D]), item embeddings ``c`` ([N, D]) and extras ``x`` ([N, E]). :func:`numpy_scores` computes it: a device
scores a user's own head with it, and fits heads on :func:`numpy_hidden`. The same function as an ONNX graph (the
bundle's shared scorers) is :func:`shared.training.export.build_scorer_model`.

Example:
    >>> import numpy as np
    >>> w = ScorerWeights(np.zeros((2, 5), np.float32), np.zeros(2, np.float32), np.ones((1, 3), np.float32), np.zeros(1, np.float32))
    >>> numpy_scores(w, np.ones((1, 2), np.float32), np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32)).shape
    (4,)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["ScorerWeights", "numpy_scores", "numpy_hidden", "gelu"]


@dataclass
class ScorerWeights:
    """Trunk ``[H, 2D+E]`` / ``[H]`` and head ``[1, H+E]`` / ``[1]`` weights (torch Linear layout)."""

    trunk_w: np.ndarray
    trunk_b: np.ndarray
    head_w: np.ndarray
    head_b: np.ndarray

    @classmethod
    def from_state(
        cls,
        base: Mapping[str, np.ndarray],
        head: Mapping[str, np.ndarray],
        role: str,
        *,
        head_prefix: str | None = None,
    ) -> ScorerWeights:
        """From ``base.<role>.trunk.*`` and a head (``head.<role>.*``, or ``base.<role>.shared_head.*``)."""
        hp = head_prefix or f"head.{role}."
        return cls(
            np.asarray(base[f"base.{role}.trunk.weight"], np.float32),
            np.asarray(base[f"base.{role}.trunk.bias"], np.float32),
            np.asarray(head[hp + "weight"], np.float32),
            np.asarray(head[hp + "bias"], np.float32),
        )


_ERF = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch's default."""
    return (0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)))).astype(np.float32)


def numpy_hidden(w: ScorerWeights, q: np.ndarray, c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``[hidden, extras]`` of each item: the head's input."""
    q = np.broadcast_to(q, c.shape)
    feats = np.concatenate([q * c, np.abs(q - c), x], axis=-1).astype(np.float32)
    hidden = gelu(feats @ w.trunk_w.T + w.trunk_b)
    return np.concatenate([hidden, x], axis=-1).astype(np.float32)


def numpy_scores(w: ScorerWeights, q: np.ndarray, c: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (numpy_hidden(w, q, c, x) @ w.head_w.T + w.head_b)[:, 0]
