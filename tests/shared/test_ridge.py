"""The ridge of shared/ridge.py against scikit-learn, and its closed-form leave-one-out error against refitting."""

from __future__ import annotations

import numpy as np
import pytest

from shared.ridge import ALPHAS, fit_ridge, loo_errors


def test_loo_and_fit_match_scikit_learn():
    from sklearn.linear_model import Ridge, RidgeCV

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 8))
    y = x @ rng.normal(size=8) + rng.normal(scale=2.0, size=60) + 4.0
    ours = fit_ridge(x, y)
    ref = RidgeCV(alphas=ALPHAS).fit(x, y)
    assert ours.alpha == pytest.approx(ref.alpha_)
    np.testing.assert_allclose(ours.coef, ref.coef_, rtol=1e-6, atol=1e-9)
    assert ours.intercept == pytest.approx(ref.intercept_)
    # the closed-form leave-one-out error equals refitting without each row
    alpha = 3.0
    brute = np.mean(
        [
            (y[i] - Ridge(alpha=alpha).fit(np.delete(x, i, 0), np.delete(y, i)).predict(x[i : i + 1])[0]) ** 2
            for i in range(len(y))
        ]
    )
    assert loo_errors(x, y, [alpha])[0] == pytest.approx(brute)
