#!/usr/bin/env bash
# Builds the tessera-web npm package's wasm: tessera-web for wasm32-unknown-unknown (release),
# then wasm-bindgen --target web into web/pkg/ (JS glue, .wasm, .d.ts). Installs what is
# missing: the wasm32 target (rustup) and wasm-bindgen-cli at exactly Cargo.lock's
# wasm-bindgen version (cargo install, 2-5 min once, into $HOME/.cache/tessera-tools; an
# existing wasm-bindgen of that version on PATH is used as is).
# Env: WEB_PROFILE=release|dev (default release).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${WEB_PROFILE:-release}"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
tools="$HOME/.cache/tessera-tools/wasm-bindgen-$version"
bindgen="$tools/bin/wasm-bindgen"
if ! [ -x "$bindgen" ]; then
    if command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -qF " $version"; then
        bindgen=$(command -v wasm-bindgen)
    else
        echo "== installing wasm-bindgen-cli $version (once, into $tools)" >&2
        # --locked first (the CLI's own lockfile); when a crate it pins is missing from the
        # registry (seen here: webpki-roots 1.0.11), resolve afresh as `cargo install` does.
        cargo install --locked --root "$tools" wasm-bindgen-cli --version "$version" \
            || cargo install --root "$tools" wasm-bindgen-cli --version "$version"
    fi
fi

target_dir="${CARGO_TARGET_DIR:-target}"
if [ "$profile" = release ]; then
    cargo build --locked --release -p tessera-web --target wasm32-unknown-unknown
    wasm="$target_dir/wasm32-unknown-unknown/release/tessera_web.wasm"
else
    cargo build --locked -p tessera-web --target wasm32-unknown-unknown
    wasm="$target_dir/wasm32-unknown-unknown/debug/tessera_web.wasm"
fi
rm -rf web/pkg
"$bindgen" --target web --out-dir web/pkg "$wasm"
rm -f web/pkg/.gitignore
ls -l web/pkg >&2
