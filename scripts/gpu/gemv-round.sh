#!/usr/bin/env bash
# One device call for the GEMV work (branch cuda-gemv): parity of the GEMV paths, the GEMV
# micro-bench (cuBLAS vs GEMV per SmolLM3-3B decode product, inside CUDA graphs), tiny-model
# parity and graphs-vs-eager, then `bench latency` / `bench throughput` with this build and
# with a baseline binary (bin/tessera-base) in the same call. Prints a summary last.
#
#   GPU_BUNDLE_DIR=/work/main/.gpu-gemv scripts/build-gpu-bundle.sh
#   cp <main's stripped tessera> /work/main/.gpu-gemv/bin/tessera-base
#   cp scripts/gpu/gemv-round.sh /work/main/.gpu-gemv/
#   run(command="bash .gpu-gemv/gemv-round.sh", carry=[".gpu-gemv"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_env "$B"
L=/tmp/g
mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $L/device.txt
cat "$B/COMMIT"
STEP_PREFIX="STEP "
OPS="${GEMV_OPS_TESTS:-gemv_shapes gemv_fused_ops embedding_matmul_add norms_and_activations nvrtc}"
step ops 200 "$B/bin/cuda_ops" $OPS --test-threads=3 --nocapture
step bench_gemv 120 "$B/bin/cuda_ops" gemv_bench --ignored --nocapture
step models 100 "$B/bin/cuda_models" tiny_models --test-threads=1 --nocapture
step engine 120 "$B/bin/cuda_engine" --test-threads=1 --nocapture
LAT=(bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3)
TPUT=(bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256)
step lat_base 60 "$B/bin/tessera-base" "${LAT[@]}"
step lat_new 60 "$B/bin/tessera" "${LAT[@]}"
step tput_base 80 "$B/bin/tessera-base" "${TPUT[@]}"
step tput_new 80 "$B/bin/tessera" "${TPUT[@]}"
step tput_base2 80 "$B/bin/tessera-base" "${TPUT[@]}"
step tput_new2 80 "$B/bin/tessera" "${TPUT[@]}"
[ -n "${OUT:-}" ] && tar czf "$OUT/logs.tgz" -C $L .
echo "=== parity: failures and results"
grep -ahE "FAIL|panicked|test result|GRAPHS .* batch 1:" $L/ops.log $L/models.log $L/engine.log | head -30
echo "=== gemv bench (bf16, each product timed inside a CUDA graph over rotating weight copies)"
grep -a "^GEMV_BENCH" $L/bench_gemv.log | grep -E "cublas|default|device" | head -60
grep -a "panicked" $L/bench_gemv.log | head
echo "=== benches"
for f in lat_base lat_new tput_base tput_new tput_base2 tput_new2; do
    echo "--- $f"
    grep -aE "iter [0-9]|decode:|prefill:|Avg latency|Throughput:|decode-only|rror" $L/$f.log | head -8
done
cat $L/steps.txt
