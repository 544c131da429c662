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
# 4. While time is left: single-stream latency once with each FINAL_SWITCHES word (default:
#    async scheduling off, then on again), against step 1; then throughput with async off.
# wgpu/bench.sh runs CUDA and wgpu each with the defaults and with async scheduling off.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
unxz_bins "$B"
bash "$B/gpu-suite.sh" final
gpu_env "$B"
echo "=== wgpu vs CUDA (t=${SECONDS}s)"
TESSERA_BIN="$B/bin/tessera" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step CUDA_FIRST="cuda cuda+TESSERA_ASYNC_SCHEDULING=0" \
    WGPU_ENVS="TESSERA_WGPU_GRAPHS=1 TESSERA_WGPU_GRAPHS=1,TESSERA_ASYNC_SCHEDULING=0" timeout 200 bash "$B/wgpu/bench.sh"
# The wgpu test binaries carried in bin/ (core --features wgpu), on this GPU's Vulkan driver.
vulkan_env "$B/wgpu/deb"
for t in "$B"/bin/wgpu_*; do
    [ -x "$t" ] && [ "$SECONDS" -lt 500 ] && [ "$(basename "$t")" != wgpu_kernel_cost ] || continue
    echo "=== $(basename "$t") (t=${SECONDS}s)"
    timeout 60 "$t" --test-threads=1 2>&1 | grep -aE "^test |test result|panicked" | tail -12
done
for sw in ${FINAL_SWITCHES:-TESSERA_ASYNC_SCHEDULING=0 TESSERA_ASYNC_SCHEDULING=1 TESSERA_ASYNC_SCHEDULING=0}; do
    [ "$SECONDS" -lt 530 ] || break
    echo "=== $sw latency (t=${SECONDS}s)"
    env "$sw" timeout 40 "$B/bin/tessera" bench latency "${M[@]}" --batch-size 1 --input-len 128 \
        --output-len 256 --num-iters 3 2>&1 | grep -aE "decode:|host:|rror"
done
if [ "$SECONDS" -lt 520 ]; then
    echo "=== TESSERA_ASYNC_SCHEDULING=0 throughput (t=${SECONDS}s)"
    TESSERA_ASYNC_SCHEDULING=0 timeout 60 "$B/bin/tessera" bench throughput "${M[@]}" --input-len 512 --output-len 256 \
        --num-prompts 256 2>&1 | grep -aE "^Throughput|decode-only|rror"
fi
echo "=== done (t=${SECONDS}s)"
