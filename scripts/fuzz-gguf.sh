#!/usr/bin/env bash
# Short bounded run of the GGUF reader fuzz target (fuzz/fuzz_targets/gguf_reader.rs).
#   scripts/fuzz-gguf.sh [SECONDS]      (default 20)
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler; uses the stable toolchain
# with RUSTC_BOOTSTRAP=1 (libFuzzer's -Z flags), so no nightly is required. Seeds the corpus with
# tests/fixtures/gguf/tiny.gguf. Exits non-zero on any crash (the input is kept in
# fuzz/artifacts/gguf_reader/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: run 'cargo install cargo-fuzz'" >&2
    exit 1
fi
corpus=fuzz/corpus/gguf_reader
mkdir -p "$corpus"
cp tests/fixtures/gguf/tiny.gguf "$corpus/tiny.gguf"
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz gguf_reader "$corpus" -- \
    -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=10
