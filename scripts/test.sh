#!/usr/bin/env bash
# Runs every test tessera has on a machine without a GPU (this is what CI runs):
#   - system packages (Mesa lavapipe for the wgpu tests) and the default model (SmolLM2 GGUF)
#   - core (+ wgpu) and web build for wasm32-unknown-unknown
#   - the whole Rust test suite, wgpu backend included (on lavapipe)
#   - a bounded fuzz run of the GGUF reader (cargo-fuzz, libFuzzer)
#   - the CUDA backend builds (tests compiled, not run: no GPU) and every kernel compiles to PTX
#   - the OpenAI-compatible server against the official Python client
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system packages"
scripts/ci-deps.sh
echo "== default model"
TESSERA_SMOLLM2_GGUF="$(scripts/fetch-default-model.sh)"
export TESSERA_SMOLLM2_GGUF

rustup target add wasm32-unknown-unknown >/dev/null
echo "== core and web build for wasm32-unknown-unknown"
cargo build --locked -p tessera-core -p tessera-web --target wasm32-unknown-unknown
cargo build --locked -p tessera-core --features wgpu --target wasm32-unknown-unknown

echo "== cargo test (workspace, with the wgpu backend)"
cargo test --locked --workspace --features tessera/wgpu --no-fail-fast

echo "== fuzz the GGUF reader (bounded run)"
cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
scripts/fuzz-gguf.sh "${TESSERA_FUZZ_SECONDS:-30}"

echo "== CUDA backend builds without CUDA; kernels compile with NVRTC"
cargo build --locked -p tessera --features cuda --tests
scripts/check-kernels.sh

echo "== server tests (official openai client)"
scripts/test-server.sh
