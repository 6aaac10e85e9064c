"""The input editor: edit candidates for rewrite tasks (LaMP-7), where the input is a draft of the answer.

A logistic model gives each word of the input the probability that it survives into the user's own
wording: a hashed-vocabulary weight of the word, plus dense features (its position, whether it is an
@mention or ends a clause, how often this user wrote it in their history). The weights are part of the
shared base (``base.adapter.editor.*``): learned from training users' (input, gold) pairs, federated like
every other shared tensor; the history counts make each prediction personal without any personal weight.
The editor also holds the learned style model (:class:`~shared.hydra.style_model.StyleModel`,
``base.adapter.editor.style_*``): which of the informal rewrites of :data:`shared.style.STYLE_RULES` a user's
wording takes, learned from the same pairs and made personal by the user's own rule counts.

Given the keep probabilities ``p``, :func:`f1_optimal_keep` picks the subset that maximizes the expected
ROUGE-style F1 ``2 * sum(p_kept) / (n_kept + G)`` for an expected gold length ``G``: the top words by ``p``,
as many as pay off, in their original order. A few ``G`` give a few candidates; the adapter chooses.

Pure numpy: the same code runs on a device without torch.

Example:
    >>> ed = InputEditor()
    >>> words = "Although I am busy today, I am bored".split()
    >>> p = ed.keep_probabilities(words, {})
    >>> p.shape
    (8,)
    >>> f1_optimal_keep(words, np.array([.9, .1, .9, .2, .9, .9, .1, .9]), 5)
    'Although am today, I bored'
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from shared.hydra.adam import Adam
from shared.hydra.style_model import StyleModel

__all__ = ["InputEditor", "f1_optimal_keep", "word_key", "word_tokens", "history_counts", "EDITOR_BUCKETS", "N_DENSE"]

EDITOR_BUCKETS = 4096
N_DENSE = 9
_ALNUM = re.compile(r"[^a-z0-9]+")


def word_tokens(word: str) -> list[str]:
    """The ROUGE tokens of a word (rouge-score's tokenizer: lowercase, split on non-[a-z0-9])."""
    return _ALNUM.sub(" ", word.lower()).split()


def word_key(word: str) -> str:
    """The key of a word for the vocabulary and the history counts: its first ROUGE token ('' if none)."""
    tokens = word_tokens(word)
    return tokens[0] if tokens else ""


def history_counts(texts: Sequence[str]) -> Counter:
    """How often the user wrote each word (in :func:`word_key` form)."""
    return Counter(k for t in texts for k in (_ALNUM.sub(" ", t.lower()).split()))


def _bucket(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % EDITOR_BUCKETS


class InputEditor:
    """Logistic keep model over the words of an input (weights: ``vocab``, ``dense``, ``bias``)."""

    def __init__(
        self,
        vocab: np.ndarray | None = None,
        dense: np.ndarray | None = None,
        bias: float = 0.0,
        style: StyleModel | None = None,
    ):
        self.vocab = np.zeros(EDITOR_BUCKETS, dtype=np.float32) if vocab is None else np.asarray(vocab, np.float32)
        self.dense = np.zeros(N_DENSE, dtype=np.float32) if dense is None else np.asarray(dense, np.float32)
        self.bias = np.asarray([bias], dtype=np.float32).reshape(1)
        self.style = StyleModel() if style is None else style
        """The learned style model (which informal rewrites a user's wording takes); shared like the rest."""

    # -- features -----------------------------------------------------------------------------------
    @staticmethod
    def features(words: Sequence[str], counts: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """(bucket index per word, dense features per word)."""
        n = len(words)
        total = max(1, sum(counts.values()))
        buckets = np.zeros(n, dtype=np.int64)
        dense = np.zeros((n, N_DENSE), dtype=np.float32)
        for i, w in enumerate(words):
            key = word_key(w)
            buckets[i] = _bucket(key)
            c = counts.get(key, 0)
            dense[i] = [
                i / max(1, n - 1),
                i == 0,
                i == n - 1,
                w.startswith("@"),
                w.endswith((",", ";")),
                np.log1p(c),
                100.0 * c / total,
                min(len(key), 12) / 12.0,
                key == "",
            ]
        return buckets, dense

    def logits(self, buckets: np.ndarray, dense: np.ndarray) -> np.ndarray:
        return self.vocab[buckets] + dense @ self.dense + self.bias[0]

    def keep_probabilities(self, words: Sequence[str], counts: Mapping[str, int]) -> np.ndarray:
        """P(word survives) for each word."""
        b, d = self.features(words, counts)
        return 1.0 / (1.0 + np.exp(-self.logits(b, d)))

    # -- training -----------------------------------------------------------------------------------
    def fit(
        self,
        examples: Sequence[tuple[Sequence[str], Mapping[str, int], Sequence[int]]],
        *,
        epochs: int = 200,
        lr: float = 0.05,
        l2: float = 1e-4,
    ) -> float:
        """Full-batch Adam on the log loss; ``examples`` are (words, history counts, 0/1 labels).

        Returns the final mean log loss. Continues from the current weights (federated rounds call it again).
        """
        if not examples:
            return float("nan")
        feats = [self.features(w, c) for w, c, _ in examples]
        buckets = np.concatenate([b for b, _ in feats])
        dense = np.concatenate([d for _, d in feats])
        y = np.concatenate([np.asarray(lab, dtype=np.float32) for _, _, lab in examples])
        n = len(y)
        adam = Adam([self.vocab, self.dense, self.bias], lr)
        loss = float("nan")
        for _ in range(epochs):
            z = self.logits(buckets, dense)
            p = 1.0 / (1.0 + np.exp(-z))
            g = (p - y) / n
            grads = [
                np.bincount(buckets, weights=g, minlength=EDITOR_BUCKETS).astype(np.float32) + l2 * self.vocab,
                (dense.T @ g).astype(np.float32) + l2 * self.dense,
                np.array([g.sum()], dtype=np.float32),
            ]
            adam.step(grads)
            loss = float(-np.mean(y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9)))
        return loss

    @staticmethod
    def labels(words: Sequence[str], gold: str) -> list[int]:
        """1 for a word whose ROUGE form appears in the gold, else 0."""
        gold_keys = set(_ALNUM.sub(" ", gold.lower()).split())
        return [int(any(t in gold_keys for t in word_tokens(w))) for w in words]

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"vocab": self.vocab.copy(), "dense": self.dense.copy(), "bias": self.bias.copy(), **self.style.state()}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> InputEditor:
        """The editor of a state with every one of :meth:`state`'s keys (a bundle or checkpoint of the current
        format; older formats are refused when they are read, :data:`shared.hydra.bundle.FORMAT_VERSION`)."""
        return cls(
            np.asarray(state["vocab"]),
            np.asarray(state["dense"]),
            float(np.asarray(state["bias"]).reshape(-1)[0]),
            StyleModel.from_state(state),
        )


def f1_optimal_keep(words: Sequence[str], p: np.ndarray, expected_len: float) -> str:
    """Keep the top words by ``p`` that maximize ``2 * sum(p) / (n + expected_len)``; original order."""
    if not words:
        return ""
    order = np.argsort(-p, kind="stable")
    best_value, best_n, running = -1.0, 1, 0.0
    for n, i in enumerate(order, start=1):
        running += float(p[i])
        value = 2.0 * running / (n + expected_len)
        if value > best_value:
            best_value, best_n = value, n
    keep = set(order[:best_n].tolist())
    return " ".join(w for i, w in enumerate(words) if i in keep)
