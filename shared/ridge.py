"""Ridge regression with an unpenalized intercept, its penalty chosen by exact leave-one-out (numpy only).

Used on the device for the user's own rating model (:class:`shared.hydra.context.UserContext`) and by the
ridge baselines (:mod:`shared.baselines`). Closed form through one SVD; the penalty is chosen from
:data:`ALPHAS` by exact leave-one-out squared error on the training rows (as scikit-learn's ``RidgeCV`` does by
default), unless given.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3))
    >>> model = fit_ridge(x, x @ np.array([1.0, -2.0, 0.5]) + 3.0)
    >>> bool(abs(model.predict(np.array([[0.0, 0.0, 0.0]]))[0] - 3.0) < 0.05), model.alpha <= 0.1
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ALPHAS", "RidgeModel", "fit_ridge", "loo_errors"]

ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))
"""Penalties tried by leave-one-out (10^-3 .. 10^3, half-decade steps)."""


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
        shrink = s**2 / (s**2 + alpha)
        fitted = y_mean + u @ (shrink * uty)
        leverage = (u**2) @ shrink + 1.0 / n
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
