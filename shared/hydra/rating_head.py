"""The shared rating head: one ridge of score on history embeddings for every user (ratings tasks).

For a rating task the user's own **rating model** (:meth:`shared.hydra.context.UserContext.rating_model`, a
ridge fitted on the device on the user's rated history) is the personal part that predicts a score; this is its
shared counterpart, part of the shared base under ``base.adapter.rating.{weight,bias}``: fitted in closed form on
the training users' rated items (:func:`shared.training.stages.train_stage`; in a federation each client fits it on
its own user and the server averages the fits like every other shared tensor). The ``hydra-shared-head`` variant
answers with it in place of the user's own model (:func:`shared.hydra.infer.answer`), so that variant has no
parameter fitted to the user at all. All zeros means not fitted (other tasks, or no rated items yet).

Pure numpy: the same code runs on a device without torch.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, EMBED_DIM))
    >>> head = SharedRatingHead.fit(x, 3.0 + x[:, 0])
    >>> head.model() is not None, SharedRatingHead().model() is None
    (True, True)
    >>> restored = SharedRatingHead.from_state(head.state())
    >>> bool(np.allclose(restored.model().predict(x[:2]), head.model().predict(x[:2])))
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from shared.hydra.spec import EMBED_DIM
from shared.ridge import RidgeModel, fit_ridge

__all__ = ["SharedRatingHead"]


@dataclass(frozen=True)
class SharedRatingHead:
    """``score = bias + embedding @ weight`` (float32 tensors of the shared base); zeros: not fitted."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros(EMBED_DIM, np.float32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> SharedRatingHead:
        """A ridge of ``y`` on embeddings ``x`` (penalty by leave-one-out, :func:`shared.ridge.fit_ridge`)."""
        model = fit_ridge(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return cls(np.asarray(model.coef, np.float32), np.array([model.intercept], np.float32))

    def model(self) -> RidgeModel | None:
        """The head as a :class:`~shared.ridge.RidgeModel`, or None when it was never fitted."""
        if not np.any(self.weight) and not np.any(self.bias):
            return None
        return RidgeModel(
            coef=self.weight.astype(np.float64), intercept=float(self.bias.reshape(-1)[0]), alpha=float("nan")
        )

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight.copy(), "bias": self.bias.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> SharedRatingHead:
        return cls(
            np.asarray(state["weight"], np.float32).reshape(EMBED_DIM), np.asarray(state["bias"], np.float32).reshape(1)
        )
