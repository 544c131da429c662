#!/usr/bin/env bash
# Session 10, first call (~5 min): the baselines both open goals are measured against, no
# parity (the code is session 9's, verified then):
#   roofline  copy bandwidth and bf16 GEMM rate (hf_bench.py --roofline)
#   CUDA      single stream 1 x (128 / 256), SmolLM3-3B dummy bf16, twice
#   wgpu      SmolLM2-135M decode, wgpu vs CUDA (wgpu/bench.sh), with the per-entry GPU
#             timestamps profile (TESSERA_WGPU_PROFILE=1) of both models
#   chains    wgpu_kernel_cost (per-op dependent-dispatch costs, Q4_1 and f16)
#   run(command="bash .gpu/s10-base.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s10b "${V_BUDGET:-420}"
N="$B/bin/tessera"
step roofline 120 python3 "$B/scripts/hf_bench.py" "$B/smollm3-3b" "$L/roofline.json" --roofline
lat base_1 1 "$N"
lat base_2 1 "$N"
kcache_save
step wgpu_bench 200 env TESSERA_BIN="$N" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES="step 1" OUT="$L" bash "$B/wgpu/bench.sh"
step chains 90 "$B/bin/wgpu_kernel_cost" q4_1 f16
kcache_save
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== roofline"; grep -a -iE "copy|gemm|GB/s|TFLOP" "$L/roofline.log" | head -6
    echo "=== latency"; lat_table 12
    echo "=== wgpu"; cat "$L/table.txt" 2> /dev/null; cat "$L/profile.txt" 2> /dev/null
    echo "=== chains"; cat "$L/chains.log"
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s10b-logs.tgz
cat "$L/summary.txt"
