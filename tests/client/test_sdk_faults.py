"""What the SDK does with an LLM outage at onboarding, corrupt stored state, a bundle that cannot answer, and the
leftovers of a killed ``update_base``: against a deterministic OpenAI-compatible stub endpoint (not a language
model, :mod:`lab.llm_stub`) and a real bundle in onnxruntime."""

from __future__ import annotations

import json
import math
import shutil
import socket
import time

import numpy as np
import pytest

from client.device import BundleInvalid
from client.sdk import HISTORY_ROLE, PersonalClient
from lab.llm_stub import StubEndpoint
from shared.hydra.bundle import load_tensors, save_tensors
from shared.hydra.spec import EMBED_DIM
from shared.llm import LLMClient, LLMConfig
from shared.synthetic import generate

pytestmark = pytest.mark.slow  # each loads a bundle in onnxruntime (seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def user():
    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    return questions[0]


BREAKER_COOLDOWN_S = 0.01
"""How long the test clients' LLM breaker refuses calls after an outage opened it."""


def llm_for(url: str, tmp_path) -> LLMClient:
    return LLMClient(
        LLMConfig(
            base_url=url,
            cache_path=str(tmp_path / "cache.sqlite"),
            max_retries=0,
            breaker_cooldown_s=BREAKER_COOLDOWN_S,
            concurrency=4,
        )
    )


def test_an_llm_outage_at_onboarding_is_counted_and_the_next_fit_retries_it(tmp_path, bundle, user):
    port = free_port()
    client = PersonalClient(
        tmp_path / "store", task="LaMP-7", llm=llm_for(f"http://127.0.0.1:{port}/v1", tmp_path), bundle=bundle
    )
    client.add_history(user["profile"])
    down = client.fit()  # nothing listens on the port
    assert down.failed > 0 and sum(down.examples.values()) == 0
    assert client.store.read_meta()["onboarding_failed"] == down.failed
    with StubEndpoint(delay_s=0.0, port=port) as stub:
        # the endpoint is back, and the client's breaker (opened by the outage) has cooled down: without the wait a
        # fast fit() came back within the 0.01 s cooldown and was refused by the breaker
        time.sleep(BREAKER_COOLDOWN_S * 5)
        up = client.fit()  # the failed labels are asked again
        assert up.failed == 0 and up.llm_calls > 0 and stub.served == up.llm_calls
        assert sum(up.examples.values()) > 0
        again = client.fit()  # complete now: no more onboarding
        assert again.llm_calls == 0 and again.failed == 0 and stub.served == up.llm_calls
    assert client.store.read_meta()["onboarding_failed"] == 0


@pytest.fixture()
def fitted(tmp_path, bundle, user):
    with StubEndpoint(delay_s=0.0) as stub:
        client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm_for(stub.url, tmp_path), bundle=bundle)
        client.add_history(user["profile"])
        assert sum(client.fit().examples.values()) > 0
        assert client.answer(user["input"], variant="hydra-calls-0").personal
        yield client, stub


@pytest.mark.parametrize("bad", [float("nan"), 1e30])
def test_heads_overwritten_with_nan_or_huge_values_are_refused_and_the_shared_heads_answer(fitted, user, bad, caplog):
    client, stub = fitted
    tensors, meta = load_tensors(client.store.heads_path, kind="heads")
    tensors["head.adapter.weight"][..., :5] = bad  # the header intact
    save_tensors(
        client.store.heads_path,
        tensors,
        kind="heads",
        model=client.models.config,
        **{k: v for k, v in meta.items() if k not in ("format", "version", "model")},
    )
    reopened = PersonalClient(client.store.path.parent, task="LaMP-7", llm=client.llm)
    result = reopened.answer(user["input"], variant="hydra-calls-0")
    assert not result.personal  # never used
    assert all(math.isfinite(c["score"]) for c in result.candidates + result.records)
    assert "stored heads refused" in caplog.text and not reopened.store.heads_path.exists()
    reopened.fit()  # made again from the stored episodes
    assert reopened.answer(user["input"], variant="hydra-calls-0").personal


def test_a_nan_embedding_cache_is_rebuilt_and_fit_works(fitted, user):
    client, stub = fitted
    ident = client.models.embedding_id(HISTORY_ROLE)
    cached = client.store.read_embeddings(ident)
    assert cached
    client.store.write_embeddings(ident, {k: np.full(EMBED_DIM, np.nan, np.float32) for k in cached})
    reopened = PersonalClient(client.store.path.parent, task="LaMP-7", llm=client.llm)
    report = reopened.fit()  # not a DivergedRound
    assert sum(report.examples.values()) > 0
    rebuilt = reopened.store.read_embeddings(ident)
    assert set(rebuilt) == set(cached) and all(np.isfinite(v).all() for v in rebuilt.values())


def edited(bundle, tmp_path, name, change) -> object:
    folder = shutil.copytree(bundle, tmp_path / name)
    manifest = json.loads((folder / "bundle.json").read_text())
    change(manifest)
    (folder / "bundle.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("case", ["unknown anchor", "model config unlike its base", "nan margin"])
def test_update_base_refuses_a_bundle_that_cannot_answer_and_keeps_the_old_one(fitted, tmp_path, bundle, user, case):
    client, stub = fitted

    def change(manifest: dict) -> None:
        if case == "unknown anchor":
            manifest["anchor"] = "edit-7"
        elif case == "nan margin":
            manifest["margin"] = "nan"
        else:
            manifest["model"] = {**manifest["model"], "max_item_tokens": manifest["model"]["max_item_tokens"] + 1}

    bad = edited(bundle, tmp_path, "bad", change)
    first = client.models.id
    with pytest.raises(BundleInvalid):
        client.update_base(bad)
    assert client.models.id == first
    assert not [p for p in client.store.path.iterdir() if p.name.startswith(".bundle")]
    reopened = PersonalClient(client.store.path.parent, task="LaMP-7", llm=client.llm)
    assert reopened.answer(user["input"], variant="hydra-calls-0").personal  # the old bundle still answers


def test_leftovers_of_a_killed_update_base_are_swept_and_a_missing_bundle_restored(tmp_path, bundle):
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm="http://127.0.0.1:9/v1", bundle=bundle)
    folder = client.store.path
    first = client.models.id
    staging = shutil.copytree(bundle, folder / ".bundle-0badc0de")  # killed while copying or proving
    (staging / "encoder-adapter.onnx").write_bytes(b"half")
    # killed between the swap's two renames: the installed bundle moved aside, the new one not in place yet
    (folder / "bundle").rename(folder / ".bundle-old-1234abcd")
    shutil.copytree(bundle, folder / ".bundle-5678ef01")
    reopened = PersonalClient(tmp_path / "store", task="LaMP-7", llm="http://127.0.0.1:9/v1")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".bundle")) == []
    assert reopened.models.id == first  # the previous bundle, restored
