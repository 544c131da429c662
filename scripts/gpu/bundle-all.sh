#!/usr/bin/env bash
# Builds the full GPU bundle into $GPU_BUNDLE_DIR (default .gpu, listed in .git/info/exclude):
# the CUDA test binaries and `tessera` with --features cuda,wgpu (scripts/build-gpu-bundle.sh,
# tessera xz-compressed), the release wgpu test binaries of core (bin/wgpu_*), the per-kernel
# cost example (bin/wgpu_kernel_cost) and the wgpu bench inputs (wgpu/: bench.sh,
# rebuild_gguf.py, the SmolLM2 GGUF's manifest, the Vulkan loader .debs). Then e.g.
#   run(command="bash .gpu/final-round.sh", carry=[".gpu"])
# CUDA_TESTS / WGPU_TESTS: the test binaries to carry (defaults: all CUDA ones, the wgpu ones
# that need a real GPU's subgroups or ulps).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE="${GPU_BUNDLE_DIR:-.gpu}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WGPU_TESTS="${WGPU_TESTS:-wgpu_ops wgpu_engine wgpu_sample wgpu_fused_kv wgpu_fused_merge wgpu_fused_norm}"
BUNDLE_FEATURES=cuda,wgpu BUNDLE_XZ=1 TESTS="${CUDA_TESTS:-cuda_ops cuda_models cuda_engine cuda_fused cuda_batch cuda_att256 cuda_att1 cuda_prefetch cuda_gemv1 cuda_qkv_kv}" \
    GPU_BUNDLE_DIR="$BUNDLE" scripts/build-gpu-bundle.sh
args=()
for t in $WGPU_TESTS; do args+=(--test "$t"); done
echo "== wgpu tests (release): $WGPU_TESTS"
cargo test --release --locked -p tessera-core --features wgpu "${args[@]}" --no-run --message-format=json-render-diagnostics 2>/dev/null |
    python3 -c '
import json, shutil, sys
bundle = sys.argv[1]
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        name = m["target"]["name"]
        shutil.copy(m["executable"], bundle + "/bin/" + name)
        print("  ", name)
' "$BUNDLE"
cargo build --release --locked -p tessera-core --features wgpu --example wgpu_kernel_cost
cp "$TARGET_DIR/release/examples/wgpu_kernel_cost" "$BUNDLE/bin/"
# Every binary travels xz-compressed (the round scripts' unxz_bins unpacks them).
for f in "$BUNDLE"/bin/*; do
    case $f in *.xz) ;; *) strip --strip-debug "$f" 2>/dev/null || true; xz -T2 -6 "$f" ;; esac
done
echo "== wgpu bench inputs"
MODEL="$(scripts/fetch-default-model.sh)"
mkdir -p "$BUNDLE/wgpu/gguf" "$BUNDLE/wgpu/deb"
python3 scripts/wgpu-bench/gguf_manifest.py "$MODEL" "$BUNDLE/wgpu/gguf"
cp scripts/wgpu-bench/bench.sh scripts/wgpu-bench/vulkan.sh scripts/wgpu-bench/rebuild_gguf.py "$BUNDLE/wgpu/"
(cd "$BUNDLE/wgpu/deb" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1) ||
    echo "warning: could not download the Vulkan loader / glvnd packages" >&2
du -sh "$BUNDLE"
size=$(du -sm "$BUNDLE" | cut -f1)
[ "$size" -lt 64 ] || { echo "bundle is ${size} MiB: over the 64 MiB a device call may carry" >&2; exit 1; }
