#!/usr/bin/env bash
# Session 10, last call (~4 min): where a layer's time goes after q/k/v + RoPE + write_kv
# became one launch: ncu's per-node durations of replayed decode step PROFILE_REPLAY (default
# 240, ~370 keys) of `bench latency` 1 x (128 / 256) with PDL on, grouped per layer by
# att1_ncu.py (s9-profile.sh's PDL-on half).
#   run(command="bash .gpu/s10-profile.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s10p "${V_BUDGET:-330}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 "$N"  # the first process compiles the kernels
step ncu 150 env TESSERA_CUDA_PROFILER_REPLAYS="${PROFILE_REPLAY:-240}:2" "${NCU_NODES[@]}" \
    --profile-from-start off --print-units base --log-file "$L/ncu.csv" \
    "$N" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 1 --num-iters-warmup 0
python3 "$B/att1_ncu.py" "$L/ncu.csv" 36 > "$L/ncu.txt" 2>&1
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== ncu, PDL on"; cat "$L/ncu.txt"
    lat_table 8
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s10p-logs.tgz
cat "$L/summary.txt"
