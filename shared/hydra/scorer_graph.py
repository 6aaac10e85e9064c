"""The scoring head as an ONNX graph and as numpy, with no torch: trunk + head on pair features.

``scores = [gelu(W_t [q*c, |q-c|, x] + b_t), x] @ w_h + b_h`` for a query embedding ``q`` ([1, D] or
[N, D]), item embeddings ``c`` ([N, D]) and extras ``x`` ([N, E]). :func:`build_scorer_model` writes it with
``onnx.helper`` from plain arrays (so a device can re-export its freshly fitted head), and
:func:`numpy_scores` computes the same in numpy (used to fit heads on a device).

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

__all__ = ["ScorerWeights", "build_scorer_model", "numpy_scores", "numpy_hidden", "gelu"]


@dataclass
class ScorerWeights:
    """Trunk ``[H, 2D+E]`` / ``[H]`` and head ``[1, H+E]`` / ``[1]`` weights (torch Linear layout)."""

    trunk_w: np.ndarray
    trunk_b: np.ndarray
    head_w: np.ndarray
    head_b: np.ndarray

    @classmethod
    def from_state(cls, base: Mapping[str, np.ndarray], head: Mapping[str, np.ndarray], role: str, *,
                   head_prefix: str | None = None) -> ScorerWeights:
        """From ``base.<role>.trunk.*`` and a head (``head.<role>.*``, or ``base.<role>.shared_head.*``)."""
        hp = head_prefix or f"head.{role}."
        return cls(np.asarray(base[f"base.{role}.trunk.weight"], np.float32), np.asarray(base[f"base.{role}.trunk.bias"], np.float32),
                   np.asarray(head[hp + "weight"], np.float32), np.asarray(head[hp + "bias"], np.float32))


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


def build_scorer_model(w: ScorerWeights, embed_dim: int, n_extra: int):
    """The scorer as an ONNX model (opset 17): inputs ``query`` [Q, D], ``items`` [N, D], ``extras`` [N, E]."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ascontiguousarray(w.trunk_w.T), "trunk_wt"),
             numpy_helper.from_array(w.trunk_b, "trunk_b"),
             numpy_helper.from_array(np.ascontiguousarray(w.head_w.T), "head_wt"),
             numpy_helper.from_array(w.head_b, "head_b"),
             numpy_helper.from_array(np.asarray(1.0 / math.sqrt(2.0), np.float32), "inv_sqrt2"),
             numpy_helper.from_array(np.asarray(0.5, np.float32), "half"),
             numpy_helper.from_array(np.asarray(1.0, np.float32), "one"),
             numpy_helper.from_array(np.asarray([-1], np.int64), "flat")]
    nodes = [
        helper.make_node("Mul", ["query", "items"], ["qc"]),
        helper.make_node("Sub", ["query", "items"], ["qmc"]),
        helper.make_node("Abs", ["qmc"], ["absdiff"]),
        helper.make_node("Concat", ["qc", "absdiff", "extras"], ["feats"], axis=-1),
        helper.make_node("MatMul", ["feats", "trunk_wt"], ["t0"]),
        helper.make_node("Add", ["t0", "trunk_b"], ["t1"]),
        helper.make_node("Mul", ["t1", "inv_sqrt2"], ["t2"]),
        helper.make_node("Erf", ["t2"], ["t3"]),
        helper.make_node("Add", ["t3", "one"], ["t4"]),
        helper.make_node("Mul", ["t1", "t4"], ["t5"]),
        helper.make_node("Mul", ["t5", "half"], ["hidden"]),
        helper.make_node("Concat", ["hidden", "extras"], ["z"], axis=-1),
        helper.make_node("MatMul", ["z", "head_wt"], ["s0"]),
        helper.make_node("Add", ["s0", "head_b"], ["s1"]),
        helper.make_node("Reshape", ["s1", "flat"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "fedhydra_scorer",
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, ["q", embed_dim]),
         helper.make_tensor_value_info("items", TensorProto.FLOAT, ["n", embed_dim]),
         helper.make_tensor_value_info("extras", TensorProto.FLOAT, ["n", n_extra])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fedhydra")
    model.ir_version = 8
    return model
