"""The device install: the SDK with only what answering needs, in a fresh venv, answers through the stub LLM.

This is the README's command for app developers (``pip install -c requirements.txt .``, no extras), run in a
copy of the checkout into a new virtual environment; torch, transformers, peft, flwr and onnx must not be there
(a user's heads are scored in numpy; the encoders and shared scorers run in onnxruntime, which does not need onnx). The
bundle is exported here, in the full environment (exporting needs torch), as an app would receive it. The LLM
is the deterministic stub (:class:`lab.llm_stub.StubEndpoint`, not a language model), served from this
process. It needs the package registry (pip) and takes a minute or two.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.llm_stub import StubEndpoint
from shared.synthetic import generate

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RESEARCH_STACK = ("torch", "transformers", "peft", "flwr", "onnx", "ray", "matplotlib")
SITE_PACKAGES_LIMIT_MB = 400
"""Ceiling of the device install's size (the README gives the measured figure)."""

SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    import client.sdk
    from client.sdk import PersonalClient
    args = json.loads(sys.argv[1])
    me = PersonalClient(args["store"], task="LaMP-7", llm=args["url"], bundle=args["bundle"])
    me.add_history(args["history"])
    first = me.answer(args["input"])
    report = me.fit()
    result = me.answer(args["input"])
    print(json.dumps({"output": result.output, "first": first.output, "personal": result.personal,
                      "candidates": result.candidates, "records": result.records, "fit": report.examples,
                      "sdk": client.sdk.__file__,
                      "installed": [m for m in args["stack"] if importlib.util.find_spec(m) is not None],
                      "loaded": sorted(m for m in args["stack"] if m in sys.modules)}))
""")


def source_copy(dest: Path) -> Path:
    """What a clone holds of the distribution: pyproject, README, requirements and the packages' code."""
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    for package in ("server", "client", "shared", "simulations"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def site_packages_mb(venv: Path) -> float:
    (site,) = venv.glob("lib/python*/site-packages")
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def test_the_device_install_answers_without_torch_transformers_flwr_or_onnx(tmp_path, bundle):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["FEDHYDRA_HOME"] = str(tmp_path / "home")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    src = source_copy(tmp_path / "fedhydra")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", "requirements.txt", "."],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert install.returncode == 0, (install.stdout + install.stderr)[-4000:]

    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    with StubEndpoint(delay_s=0.0) as stub:
        args = {
            "url": stub.url,
            "store": str(tmp_path / "store"),
            "bundle": str(bundle),
            "stack": RESEARCH_STACK,
            "history": questions[0]["profile"],
            "input": questions[0]["input"],
        }
        # -I: the installed package only (not this checkout, not PYTHONPATH), run from outside the checkout
        done = subprocess.run(
            [python, "-I", "-c", SCRIPT, json.dumps(args)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert stub.served > 0
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["sdk"]).is_relative_to(venv)  # the installed SDK answered
    assert result["installed"] == [] and result["loaded"] == []
    assert result["output"] in [c["text"] for c in result["candidates"]] and result["personal"]
    assert 1 <= len(result["records"]) <= 4 and sum(result["fit"].values()) > 0
    assert site_packages_mb(venv) < SITE_PACKAGES_LIMIT_MB
