#!/usr/bin/env bash
# End-to-end tests of the browser package (issue 7), on a machine without a GPU:
#   1. builds the wasm package (scripts/web-build.sh) and the native `tessera` binary
#   2. native references: `tessera generate --device cpu --gguf-dequantize --temperature 0
#      --json` for the test chats. --gguf-dequantize (GGUF weights dequantized to f32, f32
#      activations) is the numerics of the wgpu backend, which dequantizes GGUF blocks; the
#      CPU's default integer kernels quantize activations to Q8 and legitimately pick other
#      tokens at low-margin steps (for the test chat, from the first token on)
#   3. `npm pack` of web/, installed into a temp folder; under Node the wasm CPU backend runs
#      the model through the API (web/e2e/pack.test.mjs)
#   4. the demo page, served on 127.0.0.1 with the real SmolLM2-135M-Instruct GGUF, in headless
#      Chromium (WebGPU on SwiftShader) through playwright-core: the streamed greedy answer
#      equals the native f32 reference token for token; two concurrent requests are batched;
#      a reload loads from Cache Storage without downloading (web/e2e/demo.test.mjs).
# Screenshots: $ARTIFACTS_DIR (default target/artifacts)/demo.png, demo-reloaded.png.
# Installs what is missing (Debian): chromium, nodejs + npm, python3 (apt; root or sudo); the
# wasm32 target and wasm-bindgen-cli (cached in ~/.cache/tessera-tools); playwright-core from
# web/e2e/package-lock.json (npm ci; never downloads browsers).
# Env: E2E_MAX_TOKENS (the chat, default 8), E2E_PAIR_MAX_TOKENS (the concurrent pair, 4),
# SKIP_PACK=1, SKIP_BROWSER=1. WebGPU on SwiftShader is slow (seconds per decode step on 2
# cores), hence the short answers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    echo "== apt-get install ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "web-e2e: playwright-core needs Node >= 20 (found $(node -v)); Debian trixie's nodejs or NodeSource's" >&2
    exit 1
fi

max_tokens="${E2E_MAX_TOKENS:-8}"
pair_max_tokens="${E2E_PAIR_MAX_TOKENS:-4}"
artifacts="${ARTIFACTS_DIR:-$root/target/artifacts}"
mkdir -p "$artifacts"
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== default model"
gguf="${TESSERA_SMOLLM2_GGUF:-$(scripts/fetch-default-model.sh)}"

echo "== wasm package"
scripts/web-build.sh

echo "== native reference (tessera generate --device cpu)"
cargo build --locked -p tessera --bin tessera
bin="${CARGO_TARGET_DIR:-target}/debug/tessera"
chat="What is the capital of France?"
pair_a="Name three colors."
pair_b="Write a haiku about the sea."
# One JSON line per chat: {"messages": [{"role": "user", "content": ...}]}.
chats() { node -e 'for (const c of process.argv.slice(1)) console.log(JSON.stringify({ messages: [{ role: "user", content: c }] }))' "$@"; }
chats "$chat" >"$work/chat.jsonl"
chats "$pair_a" "$pair_b" >"$work/pair.jsonl"
gen() { # gen PROMPTS_FILE MAX_TOKENS
    "$bin" generate --model "$gguf" --device cpu --gguf-dequantize --temperature 0 --max-tokens "$2" \
        --max-model-len 1024 --prompts-file "$1" --json
}
gen "$work/chat.jsonl" "$max_tokens" >"$work/chat-ref.jsonl"
gen "$work/pair.jsonl" "$pair_max_tokens" >"$work/pair-ref.jsonl"
node -e '
  const fs = require("fs");
  const [maxTokens, pairMax, chatRef, pairRef, chat, a, b] = process.argv.slice(1);
  const rows = (f) => fs.readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const pick = (r, content) => ({ content, text: r.outputs[0].text, token_ids: r.outputs[0].token_ids });
  const [c] = rows(chatRef), p = rows(pairRef);
  const out = { max_tokens: Number(maxTokens), pair_max_tokens: Number(pairMax), chat: pick(c, chat), pair: [pick(p[0], a), pick(p[1], b)] };
  console.log(JSON.stringify(out));
' "$max_tokens" "$pair_max_tokens" "$work/chat-ref.jsonl" "$work/pair-ref.jsonl" "$chat" "$pair_a" "$pair_b" >"$work/expected.json"
cp "$work/expected.json" "$artifacts/web-e2e-expected.json"
cat "$work/expected.json"

echo "== e2e dependencies (npm ci)"
(cd web/e2e && npm ci --no-audit --no-fund --loglevel=error)

if [ "${SKIP_PACK:-0}" != 1 ]; then
    echo "== npm pack + the packed package under Node (wasm CPU backend)"
    tarball=$(cd web && npm pack --pack-destination "$work" --loglevel=error | tail -1)
    mkdir -p "$work/app"
    cp web/e2e/pack.test.mjs "$work/app/"
    (cd "$work/app" && echo '{"name":"app","private":true,"type":"module"}' >package.json \
        && npm install --no-audit --no-fund --loglevel=error "$work/$tarball" \
        && GGUF="$gguf" EXPECTED="$work/expected.json" timeout 900 node pack.test.mjs)
fi

if [ "${SKIP_BROWSER:-0}" != 1 ]; then
    echo "== demo page in headless Chromium (WebGPU)"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 web/demo/serve.py --port "$port" --models "$(dirname "$gguf")" >"$work/serve.log" 2>&1 &
    server_pid=$!
    python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/demo/", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
PY
    DEMO_URL="http://127.0.0.1:$port/demo/" EXPECTED="$work/expected.json" ARTIFACTS_DIR="$artifacts" \
        timeout 1800 node web/e2e/demo.test.mjs
    downloads=$(grep -c 'GET /models/.*\.gguf' "$work/serve.log" || true)
    echo "model downloads seen by the server: $downloads"
    [ "$downloads" = 1 ] || { echo "expected exactly one download of the model (Cache Storage)"; exit 1; }
fi
echo "== web e2e: ok (artifacts in $artifacts)"
