#!/usr/bin/env bash
# Runs every test tessera has on a machine without a GPU: the core builds for wasm32, the
# CUDA-free workspace builds, and the whole test suite passes.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null
echo "== core and web build for wasm32-unknown-unknown"
cargo build --locked -p tessera-core -p tessera-web --target wasm32-unknown-unknown

echo "== cargo test (workspace)"
cargo test --locked --workspace
