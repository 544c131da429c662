#!/usr/bin/env bash
# The wgpu op-parity suite inside headless Chromium (WebGPU on its SwiftShader adapter):
# core/tests/wgpu_ops_web.rs through wasm-bindgen-test-runner and chromedriver.
# Installs what is missing: chromium + chromium-driver (apt, needs root) and
# wasm-bindgen-cli at exactly Cargo.lock's wasm-bindgen version (cargo install, 2-5 min).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -qF "$version"; then
    cargo install wasm-bindgen-cli --version "$version"
fi
rustup target add wasm32-unknown-unknown >/dev/null

config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
# The runner adds --headless and --no-sandbox itself.
cat >"$config/webdriver.json" <<'JSON'
{ "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": ["--enable-unsafe-webgpu"] } }
JSON
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$config/webdriver.json"
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
cargo test --locked -p tessera-core --features wgpu --target wasm32-unknown-unknown --test wgpu_ops_web -- --nocapture "$@"
