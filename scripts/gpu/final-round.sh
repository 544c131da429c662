#!/usr/bin/env bash
# The session's closing measurement in ONE device call (~9 min), from a bundle built with
# `BUNDLE_FEATURES=cuda,wgpu GPU_BUNDLE_DIR=.gpu scripts/build-gpu-bundle.sh` (binaries may be
# xz-compressed to fit the carry limit) plus the wgpu bench inputs in .gpu/wgpu/:
#
#   run(command="bash .gpu/final-round.sh", carry=[".gpu"])
#
# 1. gpu-suite.sh final: parity (ops, fused paths, batch/att256/prefetch cases, models,
#    engine), serve, roofline, bench latency + throughput, decode profile, HF baselines.
# 2. wgpu vs CUDA SmolLM2 decode (wgpu/bench.sh) with the same binary.
# 3. While time is left: the opt-in switches once each (TESSERA_CUDA_PREFETCH=1 on latency,
#    TESSERA_ATTN_DECODE_V2=1 on throughput; the default since), against step 1.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
unxz_bins "$B"
bash "$B/gpu-suite.sh" final
gpu_env "$B"
echo "=== wgpu vs CUDA (t=${SECONDS}s)"
TESSERA_BIN="$B/bin/tessera" DISPATCH_COST=0 timeout 150 bash "$B/wgpu/bench.sh"
if [ "$SECONDS" -lt 520 ]; then
    echo "=== TESSERA_CUDA_PREFETCH=1 latency (t=${SECONDS}s)"
    TESSERA_CUDA_PREFETCH=1 timeout 40 "$B/bin/tessera" bench latency "${M[@]}" --batch-size 1 --input-len 128 \
        --output-len 256 --num-iters 3 2>&1 | grep -aE "decode:|rror"
fi
if [ "$SECONDS" -lt 545 ]; then
    echo "=== TESSERA_ATTN_DECODE_V2=1 throughput (t=${SECONDS}s)"
    TESSERA_ATTN_DECODE_V2=1 timeout 45 "$B/bin/tessera" bench throughput "${M[@]}" --input-len 512 --output-len 256 \
        --num-prompts 256 --json 2>&1 | grep -aE '^\{|rror' | cut -c1-420
fi
echo "=== done (t=${SECONDS}s)"
