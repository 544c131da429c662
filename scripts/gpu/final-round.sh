#!/usr/bin/env bash
# The session's closing measurement in ONE device call (~9 min), from a bundle built with
# `BUNDLE_FEATURES=cuda,wgpu GPU_BUNDLE_DIR=.gpu scripts/build-gpu-bundle.sh` (binaries may be
# xz-compressed to fit the carry limit) plus the wgpu bench inputs in .gpu/wgpu/:
#
#   run(command="bash .gpu/final-round.sh", carry=[".gpu"])
#
# 1. gpu-suite.sh final: parity (ops, fused paths, batch/att256/prefetch cases, models,
#    engine), serve, roofline, bench latency + throughput, decode profile, HF baselines.
# 2. wgpu vs CUDA SmolLM2 decode (wgpu/bench.sh) with the same binary, and the wgpu step's
#    GPU busy / idle time (TESSERA_WGPU_PROFILE=step).
# 3. The carried wgpu test binaries (bin/wgpu_*), while time is left.
# 4. While time is left: single-stream latency with each of session 5's defaults off once
#    (TESSERA_ATTN_TILE_SPLITS=0, TESSERA_GEMV_EARLY_W=0), against step 1.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
unxz_bins "$B"
bash "$B/gpu-suite.sh" final
gpu_env "$B"
echo "=== wgpu vs CUDA (t=${SECONDS}s)"
TESSERA_BIN="$B/bin/tessera" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step timeout 150 bash "$B/wgpu/bench.sh"
# The wgpu test binaries carried in bin/ (core --features wgpu), on this GPU's Vulkan driver.
vulkan_env "$B/wgpu/deb"
for t in "$B"/bin/wgpu_*; do
    [ -x "$t" ] && [ "$SECONDS" -lt 500 ] || continue
    echo "=== $(basename "$t") (t=${SECONDS}s)"
    timeout 60 "$t" --test-threads=1 2>&1 | grep -aE "^test |test result|panicked" | tail -12
done
for sw in TESSERA_ATTN_TILE_SPLITS=0 TESSERA_GEMV_EARLY_W=0; do
    [ "$SECONDS" -lt 530 ] || break
    echo "=== $sw latency (t=${SECONDS}s)"
    env "$sw" timeout 40 "$B/bin/tessera" bench latency "${M[@]}" --batch-size 1 --input-len 128 \
        --output-len 256 --num-iters 3 2>&1 | grep -aE "decode:|rror"
done
echo "=== done (t=${SECONDS}s)"
