#!/usr/bin/env bash
# Session 9, call 3 (~3 min): ncu's detail pages (speed of light, launch, occupancy, warp
# states, memory, source hot spots) of one decode layer's kernels in a late replayed step
# (replay PROFILE_REPLAY, default 240: ~370 keys) of `bench latency` 1 x (128 / 256): the q/k/v
# normed GEMV, write_kv, the cluster decode attention, o_proj, gate/up, down (NCU_KERNELS,
# NCU_COUNT override). The KV cache is kept small (--gpu-memory-utilization NCU_UTIL, default
# 0.08): ncu backs up device memory before each replay pass, and at 0.9 (~120 GB) the
# cluster attention's passes ran past 200 s.
#   run(command="bash .gpu/s9-ncu.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s9n "${V_BUDGET:-300}"
N="$B/bin/tessera"
SECTIONS=()
for s in SpeedOfLight LaunchStats Occupancy WarpStateStats SchedulerStats MemoryWorkloadAnalysis SourceCounters; do
    SECTIONS+=(--section "$s")
done
step ncu 170 env TESSERA_CUDA_PROFILER_REPLAYS="${PROFILE_REPLAY:-240}:1" "$NCU" --graph-profiling node \
    --profile-from-start off --clock-control none -k "regex:${NCU_KERNELS:-paged_attention_decode|write_kv|gemv_norm_m1|gemv_m1|gemv_gated_norm_m1}" \
    --launch-count "${NCU_COUNT:-6}" "${SECTIONS[@]}" -f -o "$L/deep" \
    "$N" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 1 --num-iters-warmup 0 \
    --gpu-memory-utilization "${NCU_UTIL:-0.08}"
step report 60 "$NCU" --import "$L/deep.ncu-rep" --page details --print-units base
kcache_save
logs_tgz s9n-logs.tgz
grep -a -E "^  [a-z_]+.*\(|Duration|Elapsed Cycles|SM Active Cycles|Memory Throughput|DRAM Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Warp Cycles Per Issued|Stall|No Eligible|Block Limit|Waves Per SM|L2 Hit|One or More" "$L/report.log" | head -150
cat "$L/steps.txt"
