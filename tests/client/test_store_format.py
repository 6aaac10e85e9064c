"""The store's on-disk format: user ids mapped to folders injectively, the stored user checked, any text
round-tripping, damaged rows and corrupt heads refused by name, bad caches rebuilt, version-1 stores migrated."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from client.store import STORE_VERSION, StoreError, UserStore, user_folder
from shared.hydra.episodes import Episode
from shared.hydra.spec import EMBED_DIM, ModelConfig

SEPARATORS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character ``str.splitlines`` splits at (U+000A..U+000D, U+001C..U+001E, U+0085, U+2028, U+2029)."""


def test_user_ids_that_looked_alike_get_their_own_folders_and_never_leave_the_root(tmp_path):
    root = tmp_path / "root"
    ids = ["alice smith", "alice_smith", "Alice_smith", "..", ".", "../x", "a/b", "a\\b", "~", "\u00e9", "x" * 200]
    folders = {user: user_folder(user) for user in ids}
    assert len(set(folders.values())) == len(ids)  # injective
    for user in ids:
        store = UserStore(root, user, task="LaMP-7")
        assert store.path.parent == root and store.path.resolve().parent == root.resolve()
        store.write_history([{"id": "1", "text": f"{user}'s own"}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # ".." wrote nothing beside the root
    for user in ids:  # each sees only its own history
        assert UserStore(root, user, task="LaMP-7").read_history() == [{"id": "1", "text": f"{user}'s own"}]
        assert UserStore.exists(root, user)
    assert not UserStore.exists(root, "alice  smith")
    assert user_folder("s0u0001") == "s0u0001" and user_folder("310") == "310"  # plain ids stay readable
    for bad in ("", "x" * 5000):
        with pytest.raises(StoreError, match="user id must be"):
            UserStore(root, bad, task="LaMP-7")


def test_a_store_of_another_user_or_task_is_refused_on_open(tmp_path):
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    store.write_history([{"id": "1", "text": "mine"}])
    meta = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**meta, "user": "mallory"}))
    with pytest.raises(StoreError, match="another user id") as refused:
        UserStore(tmp_path, "alice", task="LaMP-7")
    assert "mallory" not in str(refused.value) and str(tmp_path) not in str(refused.value)
    (store.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="is for 'LaMP-7', not 'LaMP-3'"):
        UserStore(tmp_path, "alice", task="LaMP-3")


def test_text_with_every_line_separator_round_trips(tmp_path):
    texts = [f"a{sep}b" for sep in SEPARATORS] + [SEPARATORS, "\ud800 lone surrogate", 'tab\tand "quotes"']
    history = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    store.write_history(history[:3])
    store.append_history(history[3:])
    episodes = [
        Episode(
            qid=f"q{i}",
            input=t,
            query=t,
            gold=t,
            corpus=tuple(history),
            top=[0],
            bm25=[1.0],
            rerank_answers=[t],
            greedy=t,
            samples=[t, t],
        )
        for i, t in enumerate(texts)
    ]
    store.write_episodes(episodes)
    reopened = UserStore(tmp_path, "alice", task="LaMP-7")
    assert reopened.read_history() == history
    assert reopened.read_episodes() == episodes


def test_a_history_row_missing_a_field_is_a_store_error_naming_it(tmp_path):
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    store.write_history([{"id": "1", "text": "fine"}, {"id": "2", "text": "flipped"}])
    with sqlite3.connect(store.db_path) as con:  # one flipped byte in a key: "text" -> "tfxt"
        con.execute("UPDATE history SET item = replace(item, '\"text\"', '\"tfxt\"') WHERE item LIKE '%flipped%'")
    with pytest.raises(StoreError, match="history: row 1, field 'text' missing"):
        store.read_history()
    with sqlite3.connect(store.db_path) as con:
        con.execute('UPDATE history SET item = \'{"id": "2", "te\' WHERE item LIKE \'%flipped%\'')
    with pytest.raises(StoreError, match="history: row 1 damaged"):
        store.read_history()
    with pytest.raises(StoreError, match="row 0, field 'text' missing"):
        store.write_history([{"id": "3"}])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e30])
def test_heads_that_are_not_finite_or_out_of_range_are_refused_on_load(tmp_path, bad):
    """The header (format, version, architecture) is intact; only the values are corrupt."""
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    heads = {"head.adapter.weight": np.ones((1, 8), np.float32), "head.adapter.bias": np.zeros(1, np.float32)}
    store.write_heads(heads, ModelConfig())
    assert store.read_heads(ModelConfig())["head.adapter.weight"].sum() == 8
    heads["head.adapter.weight"][0, 3] = bad
    store.write_heads(heads, ModelConfig())
    with pytest.raises(StoreError, match="tensor 'head.adapter.weight' holds"):
        store.read_heads(ModelConfig())


@pytest.mark.parametrize("bad", ["nan", "inf", "shape"])
def test_an_embedding_cache_with_non_finite_or_mis_shaped_vectors_is_ignored(tmp_path, bad):
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    good = {bytes([i]) * 16: np.full(EMBED_DIM, 0.1, np.float32) for i in range(3)}
    store.write_embeddings("enc", good)
    assert len(store.read_embeddings("enc")) == 3
    damaged = dict(good)
    damaged[bytes([1]) * 16] = np.full(EMBED_DIM, np.nan if bad == "nan" else np.inf, np.float32)
    if bad == "shape":
        damaged = {k: v[:10] for k, v in good.items()}
    store.write_embeddings("enc", damaged)
    assert store.read_embeddings("enc") == {} and store.embeddings_model() is None


def test_a_version_1_store_is_migrated_on_open(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    history = [{"id": str(i), "text": f"tweet {i}\u2028with a separator"} for i in range(5)]
    episode = Episode(qid="q", input="in\u2029put", query="q", gold="g\x85", corpus=tuple(history), top=[1], bm25=[0.5])
    (folder / "history.json").write_text(json.dumps(history, ensure_ascii=False, indent=1))
    (folder / "episodes.jsonl").write_text(episode.to_json() + "\n" + episode.to_json() + "\n")
    (folder / "meta.json").write_text(
        json.dumps({"format_version": 1, "user": "alice", "task": "LaMP-7", "episodes": 2, "role": "test"})
    )
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    assert store.read_history() == history and store.read_episodes() == [episode, episode]
    meta = store.read_meta()
    assert meta["format_version"] == STORE_VERSION and meta["episodes"] == 2 and meta["role"] == "test"
    assert not (folder / "history.json").exists() and not (folder / "episodes.jsonl").exists()
    assert UserStore(tmp_path, "alice", task="LaMP-7").read_history() == history  # once only


def test_a_damaged_version_1_store_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "bob"
    folder.mkdir()
    (folder / "history.json").write_text('[{"id": "1", "tfxt": "x"}]')
    (folder / "meta.json").write_text(json.dumps({"format_version": 1, "user": "bob", "task": "LaMP-7"}))
    with pytest.raises(StoreError, match="history.json: row 0, field 'text' missing"):
        UserStore(tmp_path, "bob", task="LaMP-7")
    assert (folder / "history.json").read_text() == '[{"id": "1", "tfxt": "x"}]'
    assert json.loads((folder / "meta.json").read_text())["format_version"] == 1
