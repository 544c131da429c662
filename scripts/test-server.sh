#!/usr/bin/env bash
# Tests of `tessera serve` with real clients: builds the binary, installs the pinned Python
# test dependencies (official `openai` client, pytest, httpx, schemathesis) into a venv, and
# runs tests/server against servers it starts on loopback ports. Bounded: ~5 minutes.
#   scripts/test-server.sh [pytest args...]     e.g. -k errors
# Env: TESSERA_SERVER_VENV (venv path), TESSERA_REAL_MODEL (also test a real model),
#      CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${TESSERA_SERVER_VENV:-$HOME/.cache/tessera/venv-server}"
REQ=tests/server/requirements.txt
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "== creating the test venv in $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  echo "$want" > "$STAMP"
fi

echo "== cargo build -p tessera"
cargo build --locked -p tessera
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export TESSERA_BIN="$(cd "$TARGET_DIR" && pwd)/debug/tessera"

echo "== pytest tests/server"
export TESSERA_LOG="${TESSERA_LOG:-warn}"
timeout 900 "$VENV/bin/python" -m pytest tests/server -q -p no:cacheprovider "$@"
