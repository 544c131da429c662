#!/usr/bin/env bash
# A profiling round for the next single-stream work (~3 min), from scripts/gpu/bundle-all.sh:
# ncu's per-node durations of one late replayed decode step (replay PROFILE_REPLAY, default
# 240: context ~370 keys) of `bench latency` 1 x (128 / 256), grouped per layer by
# att1_ncu.py (the graph + the eager tail), with PDL off (ncu serializes the nodes anyway)
# and on; then the host's queueing calls (TESSERA_CUDA_HOST_TIMES=1) and the plain latency.
#   run(command="bash .gpu/s9-profile.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s9p "${V_BUDGET:-300}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 "$N"  # the first process compiles the kernels
for pdl in 0 1; do
    step "ncu_pdl$pdl" 150 env TESSERA_CUDA_PDL=$pdl TESSERA_CUDA_PROFILER_REPLAYS="${PROFILE_REPLAY:-240}:2" "${NCU_NODES[@]}" \
        --profile-from-start off --print-units base --log-file "$L/ncu_pdl$pdl.csv" \
        "$N" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 1 --num-iters-warmup 0
    python3 "$B/att1_ncu.py" "$L/ncu_pdl$pdl.csv" 36 > "$L/ncu_pdl$pdl.txt" 2>&1
done
lat host 1 TESSERA_CUDA_HOST_TIMES=1 "$N"
{
    echo "=== device"; cat "$L/device.txt"
    for pdl in 0 1; do echo "=== ncu, PDL $pdl"; cat "$L/ncu_pdl$pdl.txt"; done
    echo "=== host times"; grep -aE "decode:|^host:|HOSTTIME" "$L/lat_host.log" | head -30
    lat_host_table 8
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s9p-logs.tgz
cat "$L/summary.txt"
