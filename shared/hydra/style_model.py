"""The learned style model: which informal rewrites of :data:`shared.style.STYLE_RULES` pay for a user.

Per rule ``r`` a logistic model gives P(the user's own wording uses the informal side | the input has the formal
side), from the user's own counts of the rule in their history (the personal part, never leaving the device):
features ``[1, logit(share), log1p(uses)]`` with ``share = (informal + 1/2) / (uses + 1)`` and ``uses = formal +
informal``. The weights are a shared row (``shared``, every rule) plus a row per rule (``rule``, L2-shrunk to 0, so a
rule seen in few training pairs follows the shared row). They are part of the shared base, beside the input editor's
(``base.adapter.editor.style_shared`` and ``base.adapter.editor.style_rule``, :class:`~shared.hydra.editor.InputEditor`
holds them): learned from training users' (input, gold) pairs and federated like every other shared tensor. Only
weights and the rule table's indices enter them; no string of a user does.

A rule is applied where P > 1/2: an applied rule gains a ROUGE token where the gold writes the informal side and loses
one where it writes the formal side (the pairs that count are those whose gold writes either), so it pays in
expectation where the informal side is the likelier.

Pure numpy: the same code runs on a device without torch.

Example:
    >>> from shared.style import RULE_NAMES, rule_counts
    >>> u = RULE_NAMES.index("u")
    >>> examples = [(u, 5, 0, 0), (u, 0, 5, 1)] * 20  # a rule the gold adopts after the user's own uses
    >>> model = StyleModel()
    >>> _ = model.fit(examples)
    >>> model.rules(rule_counts(["see u", "u rock", "love u"]))
    ('u',)
    >>> model.rules(rule_counts(["see you", "you rock"]))
    ()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from shared.errors import DataFormatError
from shared.hydra.adam import Adam
from shared.style import RULE_NAMES, STYLE_RULES, rule_counts

__all__ = ["StyleModel", "StyleExample", "style_examples", "style_features", "N_STYLE_FEATURES", "N_RULES"]

N_STYLE_FEATURES = 3
N_RULES = len(STYLE_RULES)

StyleExample = tuple[int, int, int, int]
"""(rule index, the user's formal uses of it, their informal uses, 1 if the gold writes the informal side)."""


def style_features(formal: np.ndarray, informal: np.ndarray) -> np.ndarray:
    """``(n, 3)`` features of history counts: ``[1, logit(share), log1p(uses)]``.

    >>> style_features(np.array([0, 3]), np.array([0, 1])).astype(float).round(2).tolist()
    [[1.0, 0.0, 0.0], [1.0, -0.85, 1.61]]
    """
    formal = np.asarray(formal, dtype=np.float64)
    informal = np.asarray(informal, dtype=np.float64)
    uses = formal + informal
    share = (informal + 0.5) / (uses + 1.0)
    return np.stack([np.ones_like(uses), np.log(share / (1.0 - share)), np.log1p(uses)], axis=1).astype(np.float32)


def style_examples(query: str, gold: str, history: Sequence[tuple[int, int]]) -> list[StyleExample]:
    """The examples of one (input, gold) pair: each rule whose formal side is in ``query`` and whose formal or
    informal side is in ``gold``, labelled 1 where the gold writes the informal side more; ``history`` is the user's
    :func:`shared.style.rule_counts`.

    >>> from shared.style import rule_counts
    >>> style_examples("I love you", "luv u", rule_counts(["u ok?"]))[-1][3]
    1
    """
    out = []
    for r, rule in enumerate(STYLE_RULES):
        if rule.counts(query)[0] == 0:
            continue
        formal, informal = rule.counts(gold)
        if formal + informal:
            out.append((r, history[r][0], history[r][1], int(informal > formal)))
    return out


class StyleModel:
    """Per-rule logistic model of whether the user's wording takes a rule (weights ``shared`` and ``rule``)."""

    def __init__(self, shared: np.ndarray | None = None, rule: np.ndarray | None = None):
        self.shared = np.zeros(N_STYLE_FEATURES, np.float32) if shared is None else np.asarray(shared, np.float32)
        self.rule = np.zeros((N_RULES, N_STYLE_FEATURES), np.float32) if rule is None else np.asarray(rule, np.float32)
        if self.shared.shape != (N_STYLE_FEATURES,) or self.rule.shape != (N_RULES, N_STYLE_FEATURES):
            raise DataFormatError(
                "shared base",
                f"style_shared must have shape ({N_STYLE_FEATURES},) and style_rule ({N_RULES}, {N_STYLE_FEATURES}); "
                f"got {self.shared.shape} and {self.rule.shape}",
                field="style model",
            )
        if not (np.isfinite(self.shared).all() and np.isfinite(self.rule).all()):
            raise DataFormatError("shared base", "style_shared and style_rule must be finite", field="style model")

    def probabilities(self, history: Sequence[tuple[int, int]]) -> np.ndarray:
        """P(the user writes the informal side) per rule, from their :func:`shared.style.rule_counts`."""
        counts = np.asarray(history, dtype=np.float64).reshape(N_RULES, 2)
        x = style_features(counts[:, 0], counts[:, 1])
        z = np.sum(x * (self.shared + self.rule), axis=1)
        return 1.0 / (1.0 + np.exp(-z))

    def rules(self, history: Sequence[tuple[int, int]]) -> tuple[str, ...]:
        """The names of the rules that pay for this user (P > 1/2), in table order."""
        return tuple(name for name, p in zip(RULE_NAMES, self.probabilities(history)) if p > 0.5)

    def rules_of(self, texts: Sequence[str]) -> tuple[str, ...]:
        """:meth:`rules` of a user's own ``texts``."""
        return self.rules(rule_counts(texts))

    def fit(self, examples: Sequence[StyleExample], *, epochs: int = 300, lr: float = 0.05, l2: float = 1e-2) -> float:
        """Full-batch Adam on the mean log loss, the per-rule rows L2-shrunk by ``l2``; continues from the current
        weights (federated rounds call it again). Returns the final loss (NaN without examples)."""
        if not examples:
            return float("nan")
        data = np.asarray(examples, dtype=np.int64).reshape(-1, 4)
        r = data[:, 0]
        x = style_features(data[:, 1], data[:, 2])
        y = data[:, 3].astype(np.float32)
        n = len(y)
        adam = Adam([self.shared, self.rule], lr)
        loss = float("nan")
        for _ in range(epochs):
            z = np.sum(x * (self.shared + self.rule[r]), axis=1)
            p = 1.0 / (1.0 + np.exp(-z))
            g = ((p - y) / n)[:, None] * x
            grad_rule = np.zeros_like(self.rule)
            np.add.at(grad_rule, r, g)
            adam.step([g.sum(axis=0).astype(np.float32), (grad_rule + l2 * self.rule).astype(np.float32)])
            loss = float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
        return loss

    def state(self) -> dict[str, np.ndarray]:
        return {"style_shared": self.shared.copy(), "style_rule": self.rule.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> StyleModel:
        return cls(np.asarray(state["style_shared"]), np.asarray(state["style_rule"]))
