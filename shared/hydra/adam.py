"""Adam in numpy: the one optimizer of what trains without torch, the on-device head fit
(:func:`client.device.fit_head`) and the input editor (:meth:`shared.hydra.editor.InputEditor.fit`).

It updates the caller's arrays in place, with Adam's usual constants (beta1 0.9, beta2 0.999, eps 1e-8) and bias
correction; the arithmetic keeps the arrays' dtype (float32 weights stay float32).

Example (the minimum of ``x**2``):
    >>> x = np.array([3.0])
    >>> adam = Adam([x], lr=0.1)
    >>> for _ in range(300):
    ...     adam.step([2 * x])
    >>> adam.t, bool(abs(x[0]) < 0.05)
    (300, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Adam"]


class Adam:
    """Adam over ``params`` (numpy arrays, updated in place by :meth:`step`) at learning rate ``lr``."""

    def __init__(self, params: Sequence[np.ndarray], lr: float):
        self.params = list(params)
        self.lr = lr
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        """Steps taken."""

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """One update of every parameter by its gradient (``grads`` in the order of ``params``)."""
        self.t += 1
        t = self.t
        for x, gx, mx, vx in zip(self.params, grads, self.m, self.v):
            mx *= 0.9
            mx += 0.1 * gx
            vx *= 0.999
            vx += 0.001 * gx * gx
            x -= self.lr * (mx / (1 - 0.9**t)) / (np.sqrt(vx / (1 - 0.999**t)) + 1e-8)
