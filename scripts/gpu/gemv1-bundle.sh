#!/usr/bin/env bash
# Builds the bundle scripts/gpu/gemv1-round.sh runs (one device step for the GEMV work of
# branch cuda-gemv1), smaller than scripts/build-gpu-bundle.sh's: this checkout's tessera
# (xz'd), the cuda_gemv1 / cuda_fused / cuda_ops test binaries (stripped), the model fixtures,
# the SmolLM3-3B config, the round script and ncu_gemv.py, into DIR (default
# /work/main/.gpu-B, listed in that checkout's .git/info/exclude so it travels only when
# carried). The base binary: DIR/bin/tessera-base.xz is kept when present, else BASE_BIN
# (default /work/main/target/release/tessera, main at 3d73e15) is stripped and xz'd. Then:
#
#   scripts/gpu/gemv1-bundle.sh [DIR]
#   run(command="bash .gpu-B/gemv1-round.sh", carry=[".gpu-B"])
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR="${1:-/work/main/.gpu-B}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BASE_BIN="${BASE_BIN:-/work/main/target/release/tessera}"
mkdir -p "$DIR/bin"

echo "== building tessera and the GEMV tests (release, --features cuda)"
cargo build --release --locked -p tessera --features cuda --bin tessera
cargo test --release --locked -p tessera --features cuda --test cuda_gemv1 --test cuda_fused --test cuda_ops --no-run \
    --message-format=json-render-diagnostics > "$DIR/build.json"
python3 - "$DIR" <<'PY'
import json, shutil, sys
d = sys.argv[1]
found = {}
for line in open(f"{d}/build.json"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        found[m["target"]["name"]] = m["executable"]
for name in ("cuda_gemv1", "cuda_fused", "cuda_ops"):
    if name not in found:
        raise SystemExit(f"no test binary for {name} in cargo's output")
    shutil.copy(found[name], f"{d}/bin/{name}")
PY
rm -f "$DIR/build.json" "$DIR/bin/tessera" "$DIR/bin/tessera.xz"
cp "$TARGET_DIR/release/tessera" "$DIR/bin/tessera"
if [ ! -f "$DIR/bin/tessera-base.xz" ]; then
    cp "$BASE_BIN" "$DIR/bin/tessera-base"
    strip --strip-debug "$DIR/bin/tessera-base"
    xz -T2 -6 "$DIR/bin/tessera-base"
fi
for f in "$DIR"/bin/tessera "$DIR"/bin/cuda_*; do
    strip --strip-debug "$f"
done
xz -T2 -6 "$DIR/bin/tessera"

echo "== fixtures, config, scripts"
rm -rf "$DIR/fixtures"
cp -r tests/fixtures/models "$DIR/fixtures"
mkdir -p "$DIR/smollm3-3b"
cp scripts/gpu/smollm3-3b-config.json "$DIR/smollm3-3b/config.json"
cp scripts/gpu/gemv1-round.sh scripts/gpu/ncu_gemv.py "$DIR/"
git rev-parse --short HEAD > "$DIR/COMMIT"
git status --porcelain --untracked-files=no | wc -l | xargs -I{} echo "uncommitted tracked changes: {}" >> "$DIR/COMMIT"

du -sh "$DIR" "$DIR"/bin/*
size=$(du -sm "$DIR" | cut -f1)
if [ "$size" -ge 64 ]; then
    echo "bundle is ${size} MiB: over the 64 MiB a device call may carry" >&2
    exit 1
fi
echo "bundle ready in $DIR"
