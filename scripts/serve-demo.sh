#!/usr/bin/env bash
# Serves the tessera-web demo page on http://127.0.0.1:${PORT:-8123}/demo/ together with the
# default model (SmolLM2-135M-Instruct Q4_1 GGUF, fetched once into ~/.cache/tessera/models)
# under /models/. Builds the wasm package first when web/pkg/ is missing (REBUILD=1 forces it).
# A tiny Python static server (web/demo/serve.py), listening on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
gguf="${TESSERA_SMOLLM2_GGUF:-$(scripts/fetch-default-model.sh)}"
if [ ! -f web/pkg/tessera_web_bg.wasm ] || [ "${REBUILD:-0}" = 1 ]; then
    scripts/web-build.sh
fi
exec python3 web/demo/serve.py --port "${PORT:-8123}" --models "$(dirname "$gguf")"
