"""The on-device SDK: history validation, bundle updates, fitting and answering without torch or Flower."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from client.device import BundleInvalid
from client.sdk import PersonalClient
from shared.errors import ConfigError, DataFormatError
from shared.synthetic import generate
from shared.tasks import get_task


def test_add_history_validates_and_persists(tmp_path):
    client = PersonalClient(tmp_path, task="LaMP-3", llm="http://127.0.0.1:9/v1")
    assert client.add_history([{"text": "great", "score": 5}, {"id": "x", "text": "bad", "score": "1"}]) == 2
    with pytest.raises(DataFormatError, match="item 0, field 'score': missing"):
        client.add_history([{"text": "no score"}])
    with pytest.raises(DataFormatError, match="item 1, field 'text': expected text, got list"):
        client.add_history([{"text": "ok", "score": "3"}, {"text": ["x"], "score": "3"}])
    with pytest.raises(DataFormatError, match="'7' is not one of"):
        client.add_history([{"text": "ok", "score": "7"}])
    reopened = PersonalClient(tmp_path, task="LaMP-3", llm="http://127.0.0.1:9/v1")
    assert [h["score"] for h in reopened.history] == ["5", "1"] and reopened.history[1]["id"] == "x"
    with pytest.raises(ConfigError, match="no model bundle"):
        reopened.answer("What is the score ... review: fine")


def test_update_base_verifies_before_swapping(tmp_path, bundle):
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm="http://127.0.0.1:9/v1", bundle=bundle)
    first = client.models.id
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    (bad / "encoder-adapter.onnx").write_bytes(b"not a model")
    with pytest.raises(BundleInvalid):
        client.update_base(bad)
    assert client.models.id == first  # the installed bundle is untouched
    assert not [p for p in client.store.path.iterdir() if p.name.startswith(".bundle")]


SCRIPT = textwrap.dedent("""
    import json, sys, time
    from client.sdk import PersonalClient
    from shared.llm.embedded import embedded_config
    from shared.llm.client import LLMClient
    args = json.loads(sys.argv[1])
    llm = LLMClient(embedded_config(args["url"], cache_path=args["cache"]))
    client = PersonalClient(args["store"], task="LaMP-7", llm=llm, bundle=args["bundle"])
    client.add_history(args["history"])
    report = client.fit()
    result = client.answer(args["input"])
    print(json.dumps({"output": result.output, "records": result.records, "candidates": result.candidates,
                      "fit": report.examples, "fit_seconds": report.fit_seconds,
                      "loaded": sorted(m for m in ("torch", "flwr", "transformers", "peft") if m in sys.modules)}))
""")


@pytest.mark.llm
@pytest.mark.slow
def test_sdk_fits_and_answers_with_neither_torch_nor_flwr(tmp_path, bundle, llm_server):
    questions, outputs, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    args = {
        "url": llm_server.url,
        "cache": str(tmp_path / "cache.sqlite"),
        "store": str(tmp_path / "store"),
        "bundle": str(bundle),
        "history": questions[0]["profile"],
        "input": questions[0]["input"],
    }
    env = {**os.environ, "FEDHYDRA_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True, timeout=900, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["output"] in [c["text"] for c in result["candidates"]]
    assert 1 <= len(result["records"]) <= 4 and all("score" in r for r in result["records"])
    assert len(result["candidates"]) >= 3 and all(isinstance(c["score"], float) for c in result["candidates"])
    assert sum(result["fit"].values()) > 0


@pytest.mark.slow
def test_a_new_user_gets_answers_at_once_while_their_fit_runs_in_the_background(tmp_path, bundle):
    """Against a deterministic endpoint that takes 0.5 s a request (not a language model)."""
    from lab.llm_stub import StubEndpoint
    from shared.llm import LLMClient, LLMConfig

    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    with StubEndpoint(delay_s=0.5) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, cache_path=str(tmp_path / "cache.sqlite"), concurrency=4))
        client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm, bundle=bundle)
        client.add_history(questions[0]["profile"])
        fitting = client.fit_in_background()
        first = client.answer(questions[0]["input"], variant="hydra-calls-0")
        assert not fitting.done() and not first.personal  # the shared heads answered, without waiting
        assert first.cost["asked"] == 0
        report = fitting.result(timeout=600)
        later = client.answer(questions[0]["input"])
    assert later.personal and later.cost["asked"] == 4  # greedy + 3 samples
    assert 0 < report.llm_calls <= 20  # onboarding's budget
    assert sum(report.examples.values()) > 0 and client.store.heads_path.exists()


@pytest.mark.parametrize("margin", ["inf", "-1.0"])
def test_the_bundles_margin_decides_whether_the_adapter_may_leave_the_input(tmp_path, bundle, margin):
    """``inf``: every answer is the baseline (the input); below any advantage: the adapter's top candidate. Against
    a deterministic endpoint (not a language model); hydra-calls-0 asks it nothing."""
    from lab.llm_stub import StubEndpoint
    from shared.llm import LLMClient, LLMConfig

    folder = shutil.copytree(bundle, tmp_path / "bundle")
    manifest = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**manifest, "margin": margin}))
    questions, _, _ = generate("LaMP-7", n_users=3, items_per_user=12, seed=8)
    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, cache_path=""))
        client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm, bundle=folder)
        assert client.models.margin == float(margin)
        client.add_history(questions[0]["profile"])
        answers = [client.answer(q["input"], variant="hydra-calls-0") for q in questions]
    for q, a in zip(questions, answers):
        top = max(a.candidates, key=lambda c: c["score"])["text"]
        assert a.baseline == get_task("LaMP-7").extract_query(q["input"])
        assert a.output == (a.baseline if margin == "inf" else top)
        if top == a.baseline:
            assert a.advantage == pytest.approx(0.0, abs=1e-9)
        else:
            assert a.advantage > 0


LIFECYCLE = textwrap.dedent("""
    import json, sys
    from client.sdk import DeviceConfig, PersonalClient
    from shared.llm.embedded import running_server
    client = PersonalClient(sys.argv[1], task="LaMP-7", device=DeviceConfig(keep_llm_server=sys.argv[2] == "keep"))
    answer = client.llm.complete([{"role": "user", "content": "a b c"}], max_tokens=4)
    print(json.dumps({"pid": running_server().pid, "answer": answer}))
""")


@pytest.mark.parametrize("keep", [False, True])
def test_an_app_without_an_llm_url_leaves_no_server_running_unless_asked(tmp_path, fake_llama_server, keep):
    """The embedded server the SDK starts (a stand-in serving the stub endpoint, not a language model) stops when the
    app exits without closing the client; asked to keep it, the app says so and how to stop it."""
    from shared.llm.embedded import running_server, stop_server
    from shared.procs import pid_alive
    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", LIFECYCLE, str(tmp_path / "store"), "keep" if keep else "stop"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        assert result["answer"] and pid_alive(result["pid"]) is keep
        assert (running_server() is not None) is keep
        assert ("fedhydra llm stop" in done.stderr) is keep
    finally:
        stop_server()


def test_closing_the_client_stops_the_server_it_started(tmp_path, fake_llama_server):
    from shared.llm.embedded import running_server
    from shared.procs import pid_alive

    with PersonalClient(tmp_path / "store", task="LaMP-7") as client:
        assert client.llm.complete([{"role": "user", "content": "a b"}], max_tokens=4)
        info = running_server()
        assert info is not None and client.llm.config.base_url == info.url
    assert running_server() is None and not pid_alive(info.pid)
    client.close()  # idempotent


def test_the_bundles_anchor_is_what_an_infinite_margin_keeps_and_asks_the_llm_nothing(tmp_path, bundle):
    """A bundle whose margin is ``inf`` and anchor ``edit-1`` answers with the editor's edit at level 1.0 (the answer
    the margin rule keeps), through the real SDK and without an LLM call."""
    from lab.llm_stub import StubEndpoint
    from shared.hydra.candidates import EDIT_LEVELS, filler_edit
    from shared.llm import LLMClient, LLMConfig

    folder = shutil.copytree(bundle, tmp_path / "bundle")
    manifest = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**manifest, "margin": "inf", "anchor": "edit-1"}))
    questions, _, _ = generate("LaMP-7", n_users=2, items_per_user=12, seed=9)
    task = get_task("LaMP-7")
    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, cache_path=""))
        client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm, bundle=folder)
        assert client.models.anchor == "edit-1" and 1.0 in EDIT_LEVELS
        client.add_history(questions[0]["profile"])
        answers = [client.answer(q["input"]) for q in questions]
        assert stub.served == 0
    ctx = client._context()
    for q, a in zip(questions, answers):
        words = task.extract_query(q["input"]).split()
        edit = filler_edit(client.models.editor, words, ctx.counts, 1.0)
        assert a.output == a.baseline == edit


@pytest.mark.parametrize("calls", [0, 1])
def test_the_bundles_llm_calls_is_how_many_llm_answers_an_answer_asks_for(tmp_path, bundle, calls):
    """A bundle whose cross-validation chose ``llm_calls`` answers with that many LLM requests per question (a finite
    margin, so the LLM's answers could matter); ``hydra-calls-2`` still asks its own two."""
    from lab.llm_stub import StubEndpoint
    from shared.llm import LLMClient, LLMConfig

    folder = shutil.copytree(bundle, tmp_path / "bundle")
    manifest = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**manifest, "margin": "0.05", "llm_calls": calls}))
    questions, _, _ = generate("LaMP-7", n_users=2, items_per_user=12, seed=9)
    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, cache_path=""))
        client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm, bundle=folder)
        assert client.models.llm_calls == calls
        client.add_history(questions[0]["profile"])
        for q in questions:
            result = client.answer(q["input"])
            assert result.cost["asked"] == calls
            if calls == 0:  # nothing of the LLM's in the pool
                assert all(c["source"] != "llm" for c in result.candidates)
        assert client.answer(questions[0]["input"], variant="hydra-calls-2").cost["asked"] == 2
    for bad in (-1, 1000, "2", True):
        (folder / "bundle.json").write_text(json.dumps({**manifest, "llm_calls": bad}))
        with pytest.raises(BundleInvalid, match="llm_calls"):
            PersonalClient(tmp_path / f"store-{bad}", task="LaMP-7", llm=None, bundle=folder)


@pytest.mark.slow
def test_under_a_bundle_that_never_leaves_its_anchor_fit_asks_the_llm_nothing(tmp_path, trained_state):
    """Issue 27, item 4: where the cross-validation chose margin ``inf`` (no head can change an answer), a new user's
    fit costs no LLM call (the endpoint here is a closed port: any request would fail) and writes no heads; the
    answers are the anchor's."""
    from shared.training.export import export_bundle, template_encoder
    from shared.training.model import ModelConfig

    template = template_encoder(tmp_path / "onnx-cache")
    never = export_bundle(trained_state, ModelConfig(), tmp_path / "b", template=template, margin=float("inf"))
    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    client = PersonalClient(tmp_path / "store", task="LaMP-7", llm="http://127.0.0.1:9/v1", bundle=never)
    client.add_history(questions[0]["profile"])
    report = client.fit()
    assert not report.heads_needed and report.llm_calls == 0 and report.failed == 0 and report.examples == {}
    assert not client.store.heads_path.exists() and client.store.read_episodes() is None
    result = client.answer(questions[0]["input"])
    assert result.cost["asked"] == 0 and questions[0]["input"].endswith(": " + result.output)  # the input tweet
