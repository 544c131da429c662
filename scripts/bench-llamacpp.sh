#!/usr/bin/env bash
# Builds llama.cpp (CPU only) from the llama-cpp-python sdist on PyPI, which vendors its
# source, and runs llama-bench on a GGUF file — the peer tessera's CPU backend is measured
# against (BENCHMARKS.md).
#
#   scripts/bench-llamacpp.sh [MODEL.gguf] [extra llama-bench args...]
#
# Environment: THREADS (default 2), REPS (default 5), LLAMA_CPP_PYTHON_VERSION (default
# 0.3.36), LLAMACPP_DIR (build place, default ~/.cache/tessera/llamacpp; never the repo).
# Default run: pp512 and tg128 on an empty context, plus tg128 after a 512-token prompt
# (-d 512), which is what `tessera bench latency --input-len 512 --output-len 128` decodes.
set -euo pipefail

MODEL="${1:-$HOME/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
shift || true
THREADS="${THREADS:-2}"
REPS="${REPS:-5}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
WORK="${LLAMACPP_DIR:-$HOME/.cache/tessera/llamacpp}"
BENCH="$WORK/build/bin/llama-bench"

if [ ! -f "$MODEL" ]; then
    echo "model not found: $MODEL (scripts/fetch-default-model.sh fetches the default one)" >&2
    exit 1
fi

if [ ! -x "$BENCH" ]; then
    mkdir -p "$WORK"
    if ! command -v cmake >/dev/null; then
        echo "installing cmake" >&2
        apt-get install -y cmake >/dev/null
    fi
    SDIST="$WORK/llama_cpp_python-$VERSION.tar.gz"
    if [ ! -f "$SDIST" ]; then
        # Only this package as source; its build tools may come as wheels (metadata step).
        pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$WORK" >&2
    fi
    tar xzf "$SDIST" -C "$WORK"
    SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
    # GGML_NATIVE: the same -march=native build a user makes; CPU backend only.
    cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$WORK/build" --target llama-bench -j "$(nproc)" >&2
fi

echo "# llama.cpp $("$BENCH" --version 2>&1 | head -1 || true)"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$#" -gt 0 ]; then
    exec "$BENCH" -m "$MODEL" -t "$THREADS" -r "$REPS" "$@"
fi
"$BENCH" -m "$MODEL" -t "$THREADS" -r "$REPS" -p 512 -n 128
"$BENCH" -m "$MODEL" -t "$THREADS" -r "$REPS" -p 0 -n 128 -d 512
