"""The embedding caches of the device runtime: cached and uncached scores equal, history embeddings kept in
the store under the encoder's identity, dropped when a new base arrives, rebuilt when damaged."""

from __future__ import annotations

import numpy as np
import pytest

from client.device import PERSONAL, DeviceModels, embedding_id, length_batches
from client.sdk import HISTORY_ROLE, DeviceConfig, PersonalClient
from shared.hydra.examples import RoleExample
from shared.hydra.spec import N_EXTRA

HISTORY = [
    {"id": str(i), "text": t}
    for i, t in enumerate(
        [
            "omg cant wait 4 the game tonight lol",
            "my cat knocked the coffee over again",
            "rainy monday, back to bed",
            "finally finished the book, what an ending",
            "who else is watching the finals",
            "new phone who dis",
        ]
    )
]
LLM = "http://127.0.0.1:9/v1"  # never called: these tests build no episodes
FLOAT = DeviceConfig(quantized=False)


def example(query: str, items: list[str], role: str = "reranker") -> RoleExample:
    rng = np.random.default_rng(len(items))
    return RoleExample("u", query, items, rng.normal(size=(len(items), N_EXTRA[role])).astype(np.float32))


@pytest.mark.parametrize("lengths", [[], [7], [30, 5, 6, 29], [10, 12, 11], list(range(1, 80, 3)) * 2])
def test_length_batches_cover_every_index_once(lengths):
    batches = length_batches(lengths, max_batch=16)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(0 < len(b) <= 16 for b in batches)


def test_cached_and_uncached_scores_equal(bundle):
    models = DeviceModels(bundle, threads=2, quantized=False)
    texts = [h["text"] for h in HISTORY]
    ex = example("is the game on tonight", texts)
    cold = models.score("reranker", ex, None)
    assert models.encoded == 1 + len(texts)
    vectors = models.embed("reranker", texts)
    models.clear_cache()
    models.pin_history("reranker", texts, vectors)  # as read back from a store
    before = models.encoded
    warm = models.score("reranker", ex, None)
    assert models.encoded == before + 1  # only the query
    np.testing.assert_allclose(warm, cold, atol=1e-6)
    models.clear_cache(history=False)  # the pinned history survives
    models.score("reranker", ex, None)
    assert models.encoded == before + 2
    # a query that is also an item (LaMP-7's input among its candidates) is encoded once
    models.clear_cache()
    before = models.encoded
    models.score("adapter", example(texts[0], texts[:3], "adapter"), None)
    assert models.encoded == before + 3


@pytest.mark.slow
def test_history_embeddings_are_kept_in_the_store(tmp_path, bundle):
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM, bundle=bundle, device=FLOAT)
    client.add_history(HISTORY[:4])
    models = client.models
    ident = models.embedding_id(HISTORY_ROLE)
    assert client.store.embeddings_model() == ident == embedding_id(models.manifest, HISTORY_ROLE, False)
    assert len(client.store.read_embeddings(ident)) == 4
    client.add_history(HISTORY[4:])
    assert len(client.store.read_embeddings(ident)) == 6 and models.encoded == 6  # each record encoded once

    reopened = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM, device=FLOAT)
    texts = [h["text"] for h in HISTORY]
    ex = example("who won the game", texts)
    warm = reopened.models.score("reranker", ex, PERSONAL)
    assert reopened.models.encoded == 1  # the history came from the store: only the query was encoded
    reopened.models.clear_cache()
    cold = reopened.models.score("reranker", ex, PERSONAL)
    assert reopened.models.encoded == 1 + 1 + len(texts)
    np.testing.assert_allclose(warm, cold, atol=1e-6)
    stored = reopened.store.read_embeddings(ident)
    np.testing.assert_allclose(np.stack(list(stored.values())), models.embed("reranker", texts), atol=1e-6)


@pytest.mark.slow
def test_update_base_invalidates_the_cache(tmp_path, bundle, trained_state):
    from shared.training.export import export_bundle
    from shared.training.model import ModelConfig

    rng = np.random.default_rng(1)
    other_state = {
        k: v + rng.normal(scale=0.05, size=v.shape).astype(np.float32) if "lora_B" in k else v
        for k, v in trained_state.items()
    }
    # the first bundle's encoder as template: LoRA merged once more, a different encoder (fast, no torch export)
    other = export_bundle(
        other_state, ModelConfig(), tmp_path / "other", quantize=False, template=bundle / "encoder-reranker.onnx"
    )
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM, bundle=bundle, device=FLOAT)
    client.add_history(HISTORY)
    old_id = client.store.embeddings_model()
    old = client.store.read_embeddings(old_id)

    client.update_base(bundle)  # the same base again: the cache stays valid, nothing is encoded
    assert client.store.embeddings_model() == old_id and client.models.encoded == 0

    client.update_base(other)
    new_id = client.models.embedding_id(HISTORY_ROLE)
    assert new_id != old_id and client.store.embeddings_model() == new_id
    assert client.store.read_embeddings(old_id) == {}
    new = client.store.read_embeddings(new_id)
    assert new.keys() == old.keys()
    fresh = DeviceModels(other, threads=1, quantized=False).embed("reranker", [h["text"] for h in HISTORY])
    np.testing.assert_allclose(np.stack(list(new.values())), fresh, atol=1e-6)
    assert max(float(np.abs(new[k] - old[k]).max()) for k in new) > 1e-3


@pytest.mark.slow
def test_a_damaged_cache_is_rebuilt(tmp_path, bundle):
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM, bundle=bundle, device=FLOAT)
    client.add_history(HISTORY[:3])
    client.store.embeddings_path.write_bytes(b"\x00garbage")
    reopened = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM, device=FLOAT)
    assert reopened.store.embeddings_model() is None
    reopened.add_history(HISTORY[3:])  # re-encodes the whole history and writes a good cache
    assert reopened.models.encoded == len(HISTORY)
    assert len(reopened.store.read_embeddings(reopened.models.embedding_id(HISTORY_ROLE))) == len(HISTORY)


def test_answer_context_is_rebuilt_only_when_the_history_changes(tmp_path):
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM)
    client.add_history(HISTORY[:2])
    first = client._context()
    assert client._context() is first and len(first.items) == 2
    client.add_history(HISTORY[2:])
    assert len(client._context().items) == len(HISTORY)
    other = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM)  # another writer of the same store
    other.add_history([{"id": "x", "text": "one more"}])
    assert len(client._context().items) == len(HISTORY) + 1


def test_models_verify_the_files_they_load(tmp_path, bundle):
    import shutil

    from client.device import BundleInvalid, read_manifest

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with open(copy / "encoder-reranker.onnx", "ab") as fh:  # the fp32 encoder, which int8 models do not load
        fh.write(b"tampered")
    assert DeviceModels(copy, threads=1, quantized=True).quantized
    with pytest.raises(BundleInvalid, match="hash does not match"):
        DeviceModels(copy, threads=1, quantized=False)
    with pytest.raises(BundleInvalid, match="hash does not match"):
        read_manifest(copy)  # what update_base checks: every file
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=LLM)
    with pytest.raises(BundleInvalid):
        client.update_base(copy)
