from __future__ import annotations

import numpy as np

from shared.hydra.editor import InputEditor, f1_optimal_keep, history_counts, word_tokens
from shared.metrics import rouge_pair


def test_labels_follow_rouge_tokens():
    assert word_tokens("Can't!") == ["can", "t"]
    assert InputEditor.labels(["I", "can't,", "currently", "@bob"], "i can go bob") == [1, 1, 0, 1]


def test_editor_learns_which_words_survive_and_improves_rouge():
    rng = np.random.default_rng(0)
    filler = ["currently", "moreover", "indeed", "however", "additionally"]
    content = ["cat", "dog", "pizza", "game", "rain", "music", "beach", "exam"]
    examples, pairs = [], []
    for _ in range(200):
        words = list(rng.choice(content, 4)) + list(rng.choice(filler, 2))
        rng.shuffle(words)
        gold = " ".join(w for w in words if w not in filler)
        examples.append((words, {}, InputEditor.labels(words, gold)))
        pairs.append((words, gold))
    editor = InputEditor()
    loss = editor.fit(examples)
    assert loss < 0.3
    p = editor.keep_probabilities(["currently", "cat", "moreover", "dog"], {})
    assert p[1] > 0.8 and p[3] > 0.8 and p[0] < 0.2 and p[2] < 0.2
    before = np.mean([rouge_pair(" ".join(w), g)[1] for w, g in pairs[:50]])
    after = np.mean(
        [rouge_pair(f1_optimal_keep(w, editor.keep_probabilities(w, {}), len(w) * 0.8), g)[1] for w, g in pairs[:50]]
    )
    assert after > before + 0.1
    clone = InputEditor.from_state(editor.state())
    np.testing.assert_allclose(clone.keep_probabilities(["cat"], {}), editor.keep_probabilities(["cat"], {}))


def test_history_counts_make_predictions_personal():
    editor = InputEditor()
    examples = []
    for i in range(100):
        counts = {"lol": 5} if i % 2 else {}
        examples.append((["lol", "ok"], counts, [int(bool(i % 2)), 1]))
    editor.fit(examples)
    with_hist = editor.keep_probabilities(["lol"], {"lol": 5})[0]
    without = editor.keep_probabilities(["lol"], {})[0]
    assert with_hist > 0.7 > 0.3 > without


def test_f1_optimal_keep_edge_cases():
    assert f1_optimal_keep([], np.zeros(0), 3) == ""
    assert f1_optimal_keep(["a", "b"], np.array([0.9, 0.9]), 2) == "a b"
    assert f1_optimal_keep(["a", "b", "c"], np.array([0.9, 0.01, 0.9]), 2) == "a c"
    assert history_counts(["Hi hi!", "ho"]) == {"hi": 2, "ho": 1}
