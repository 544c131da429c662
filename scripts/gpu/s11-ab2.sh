#!/usr/bin/env bash
# Session 11, second call (~8 min, same bundle as s11-ab.sh): the first call's A/Bs had one
# sample each, so again with repeats:
#   CUDA: TESSERA_ATTN_EARLY_KV on / off alternated three times, 1 x (128 / 256);
#   wgpu: TESSERA_WGPU_EARLY_W on / off alternated three times (decode rate of SmolLM2-135M),
#         then the GPU busy time a step of each (TESSERA_WGPU_PROFILE=step);
#   and, if the machine has Nsight Systems, a real timeline of two decode-graph replays
#   (kernel start / end in the PDL chain, which ncu's isolated nodes do not show).
#   run(command="bash .gpu/s11-ab2.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s11b "${V_BUDGET:-520}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 "$N"
for r in 1 2 3; do
    lat "on_$r" 1 "$N"
    lat "off_$r" 1 TESSERA_ATTN_EARLY_KV=0 "$N"
done
G1=TESSERA_WGPU_GRAPHS=1
step smollm2 200 env TESSERA_BIN="$N" DISPATCH_COST=0 CUDA_FIRST="cuda" CUDA_LAST="" OUT="$L" PROFILE=1 PROFILE_MODES=step \
    WGPU_ENVS="$G1 $G1,TESSERA_WGPU_EARLY_W=0 $G1 $G1,TESSERA_WGPU_EARLY_W=0 $G1 $G1,TESSERA_WGPU_EARLY_W=0" \
    bash "$B/wgpu/bench.sh"
mkdir -p "$L/p0"
step smollm2_prof_off 60 env TESSERA_BIN="$N" DISPATCH_COST=0 CUDA_FIRST="" WGPU_ENVS="" OUT="$L/p0" PROFILE=1 PROFILE_MODES=step \
    WGPU_PROFILE_ENV=TESSERA_WGPU_EARLY_W=0 bash "$B/wgpu/bench.sh"
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys 2> /dev/null | head -1)
echo "nsys: ${NSYS:-none}; nsight dirs: $(ls -d /opt/nvidia/* 2> /dev/null | tr '\n' ' ')" | tee "$L/nsys.txt"
if [ -n "$NSYS" ]; then
    step nsys 120 env TESSERA_CUDA_PROFILER_REPLAYS=240:2 "$NSYS" profile -c cudaProfilerApi -t cuda --cuda-graph-trace=node \
        -o "$L/tl" -f true "$N" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 1
    step nsys_stats 60 "$NSYS" stats -r cuda_gpu_trace -f csv -o "$L/tl" "$L/tl.nsys-rep"
    rm -f "$L"/tl.sqlite "$L"/tl.nsys-rep
fi
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== latency"; lat_table 12
    echo "=== smollm2"; cat "$L/table.txt" 2> /dev/null
    echo "=== profile (default, then EARLY_W=0)"; cat "$L/profile.txt" "$L/p0/profile.txt" 2> /dev/null | cut -c1-400
    echo "=== nsys"; cat "$L/nsys.txt"; ls -la "$L"/tl* 2> /dev/null
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s11b-logs.tgz
cat "$L/summary.txt"
