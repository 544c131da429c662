#!/usr/bin/env bash
# The wgpu op-parity suite inside headless Chromium (WebGPU on its SwiftShader adapter: f32
# only, <= 256 invocations per workgroup): core/tests/wgpu_ops_web.rs (the table of
# core/tests/wgpu_ops/cases.rs — dense and GGUF-quantized matmul, embedding, norms, RoPE,
# attention, argmax — plus device sampling) through wasm-bindgen-test-runner and chromedriver.
#
# Self-installing on a fresh Debian/Ubuntu machine: chromium + chromium-driver (apt; root or
# sudo), the wasm32 target (rustup) and wasm-bindgen-cli at exactly Cargo.lock's
# wasm-bindgen version (cargo install, 2-5 min the first time). Offline once installed.
# Extra arguments go to the test binary (e.g. a name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
chromium_bin=$(command -v chromium)
chromedriver_bin=$(command -v chromedriver)

version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if [ -z "$version" ]; then
    echo "web-ops: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -qF "$version"; then
    echo "== installing wasm-bindgen-cli $version (matches Cargo.lock)"
    cargo install wasm-bindgen-cli --version "$version" --force
fi
if command -v rustup >/dev/null; then
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi

config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
# The runner adds --headless and --no-sandbox itself.
cat >"$config/webdriver.json" <<JSON
{ "goog:chromeOptions": { "binary": "$chromium_bin", "args": ["--enable-unsafe-webgpu", "--disable-gpu-sandbox", "--disable-dev-shm-usage"] } }
JSON
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$config/webdriver.json"
export CHROMEDRIVER="$chromedriver_bin"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
echo "== wgpu op parity in headless $("$chromium_bin" --version 2>/dev/null || echo chromium) (wasm-bindgen $version)"
cargo test --locked -p tessera-core --features wgpu --target wasm32-unknown-unknown --test wgpu_ops_web -- --nocapture "$@"
echo "web-ops: passed in $(( $(date +%s) - start ))s"
