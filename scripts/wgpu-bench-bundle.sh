#!/usr/bin/env bash
# Builds the bundle the GPU machine runs for the WebGPU-vs-CUDA decode benchmark (it has no
# Rust and a call carries at most 64 MiB): a release `tessera` with `--features wgpu,cuda`,
# the SmolLM2 Q4_1 GGUF split by scripts/wgpu-bench/gguf_manifest.py (header + f32 tensors;
# the quantized blocks are regenerated there), the Vulkan loader and glvnd .debs in case the
# machine lacks them (NVIDIA's Vulkan ICD needs libGLdispatch), scripts/wgpu-bench/bench.sh and the
# dispatch-cost micro-bench (core/examples/wgpu_dispatch_cost.rs). Usage:
#
#   scripts/wgpu-bench-bundle.sh [BUNDLE_DIR]        (default: .gpu-wgpu, git-ignored locally)
#   run(command="bash .gpu-wgpu/bench.sh", carry=[".gpu-wgpu"])
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${1:-.gpu-wgpu}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
MODEL="${TESSERA_SMOLLM2_GGUF:-$HOME/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf}"

cargo build --locked --release -p tessera --features wgpu,cuda --bin tessera
cargo build --locked --release -p tessera-core --features wgpu --example wgpu_dispatch_cost
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/gguf" "$BUNDLE/deb"
cp "$TARGET_DIR/release/tessera" "$BUNDLE/tessera"
cp "$TARGET_DIR/release/examples/wgpu_dispatch_cost" "$BUNDLE/"
strip --strip-debug "$BUNDLE/tessera" "$BUNDLE/wgpu_dispatch_cost" 2>/dev/null || true
python3 scripts/wgpu-bench/gguf_manifest.py "$MODEL" "$BUNDLE/gguf"
cp scripts/wgpu-bench/bench.sh scripts/wgpu-bench/vulkan.sh scripts/wgpu-bench/rebuild_gguf.py "$BUNDLE/"
(cd "$BUNDLE/deb" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1) ||
    echo "warning: could not download the Vulkan loader / glvnd packages" >&2
git rev-parse --short HEAD > "$BUNDLE/COMMIT" 2>/dev/null || true
du -sh "$BUNDLE"
size=$(du -sm "$BUNDLE" | cut -f1)
if [ "$size" -ge 64 ]; then
    echo "bundle is ${size} MiB: over the 64 MiB a device call may carry" >&2
    exit 1
fi
echo "bundle ready: run(command=\"bash $BUNDLE/bench.sh\", carry=[\"$BUNDLE\"])"
