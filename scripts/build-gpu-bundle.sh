#!/usr/bin/env bash
# Builds what the GPU machine runs (it has no Rust): the CUDA test binaries and the tessera
# binary, release, with `--features cuda`, the suite and its Python scripts, the model
# fixtures and the SmolLM3-3B config, into $GPU_BUNDLE_DIR (default .gpu/, listed in
# .git/info/exclude, so it travels only when carried). The device tool sends the session's
# checkout, so from another worktree point GPU_BUNDLE_DIR at that checkout's .gpu. Then:
#
#   run(command="bash .gpu/gpu-suite.sh [parity] [bench]", carry=[".gpu"])
#
# TESTS: the test binaries to build and carry (default: all the CUDA tests below; a round
# that needs fewer carries less). BASE_BIN: a binary to compare with (e.g. main's
# target/release/tessera), stripped into bin/tessera-base. BUNDLE_XZ=1: xz the tessera
# binaries (bin/*.xz; the round scripts decompress them, scripts/gpu/lib.sh unxz_bins) to
# fit the 64 MiB carry limit.
#
# Needs no CUDA here: cudarc loads the driver, NVRTC and cuBLAS at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE="${GPU_BUNDLE_DIR:-.gpu}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin"

TESTS="${TESTS:-cuda_ops cuda_models cuda_engine cuda_fused cuda_batch cuda_att256 cuda_att1 cuda_prefetch cuda_gemv1 cuda_qkv_kv}"
test_args=()
for t in $TESTS; do test_args+=(--test "$t"); done
echo "== building the CUDA tests (release): $TESTS"
cargo test --release --locked -p tessera --features cuda "${test_args[@]}" --no-run \
    --message-format=json-render-diagnostics > "$BUNDLE/build.json"
python3 - "$BUNDLE" $TESTS <<'PY'
import json, shutil, sys
bundle, names = sys.argv[1], sys.argv[2:]
found = {}
for line in open(f"{bundle}/build.json"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        found[m["target"]["name"]] = m["executable"]
for name in names:
    if name not in found:
        raise SystemExit(f"no test binary for {name} in cargo's output")
    shutil.copy(found[name], f"{bundle}/bin/{name}")
    print(f"   {name} <- {found[name]}")
PY
rm -f "$BUNDLE/build.json"

# BUNDLE_FEATURES=cuda,wgpu gives a binary that also runs the wgpu bench (scripts/wgpu-bench).
FEATURES="${BUNDLE_FEATURES:-cuda}"
echo "== building tessera (release, --features $FEATURES)"
cargo build --release --locked -p tessera --features "$FEATURES" --bin tessera
cp "$TARGET_DIR/release/tessera" "$BUNDLE/bin/tessera"
if [ -n "${BASE_BIN:-}" ]; then
    echo "== base binary: $BASE_BIN"
    cp "$BASE_BIN" "$BUNDLE/bin/tessera-base"
fi

# Debug info is not needed there and would crowd the 64 MiB carry limit.
for f in "$BUNDLE"/bin/*; do
    objcopy --strip-debug "$f" 2>/dev/null || strip --strip-debug "$f" 2>/dev/null || true
done
if [ "${BUNDLE_XZ:-0}" = 1 ]; then
    for f in "$BUNDLE"/bin/tessera "$BUNDLE"/bin/tessera-base; do
        if [ -f "$f" ]; then xz -T2 -6 "$f"; fi
    done
fi

echo "== fixtures, scripts"
cp -r tests/fixtures/models "$BUNDLE/fixtures"
mkdir -p "$BUNDLE/scripts" "$BUNDLE/smollm3-3b"
cp scripts/gpu-suite.sh "$BUNDLE/gpu-suite.sh"
cp scripts/hf_parity.py scripts/hf_bench.py scripts/hf_big_model.py scripts/gpu_report.py "$BUNDLE/scripts/"
cp scripts/gpu/smollm3-3b-config.json "$BUNDLE/smollm3-3b/config.json"
# Round scripts (bash .gpu-X/<name>.sh), lib.sh which they source from their own folder, and
# their Python helpers (ncu_csv.py beside the parsers, in both places).
cp scripts/gpu/*.sh scripts/gpu/*.py "$BUNDLE/"
cp scripts/gpu/*.py "$BUNDLE/scripts/"
git rev-parse --short HEAD > "$BUNDLE/COMMIT" 2>/dev/null || true
git status --porcelain --untracked-files=no | wc -l | xargs -I{} echo "uncommitted tracked changes: {}" >> "$BUNDLE/COMMIT"

du -sh "$BUNDLE" "$BUNDLE"/bin/* "$BUNDLE/fixtures"
size=$(du -sm "$BUNDLE" | cut -f1)
if [ "$size" -ge 64 ]; then
    echo "bundle is ${size} MiB: over the 64 MiB a device call may carry" >&2
    exit 1
fi
echo "bundle ready in $BUNDLE: run(command=\"bash .gpu/gpu-suite.sh\", carry=[\".gpu\"])"
