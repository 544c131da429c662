#!/usr/bin/env bash
# Session 9, call 1 (~7 min): where the big M = 1 products stand against the H200's read
# bandwidth, and the L2 prefetch hint re-measured under PDL + the cluster merge.
#   1. gemv1_bench: tessera's GEMVs in a graph over rotating copies (compiles the kernels)
#   2. gemv_probe.py (CuPy): a warp-a-row ldg GEMV vs a TMA bulk-streaming one vs the bulk
#      stream alone, on the same shapes
#   3. s9-prefetch's sweep: single stream, prefetch off / on at several budgets, alternated
#   run(command="bash .gpu/s9-round1.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s9r1 "${V_BUDGET:-540}"
N="$B/bin/tessera"
test_bin cuda_gemv1 200 gemv1_bench --ignored --nocapture --test-threads 1
step probe 120 python3 "$B/gemv_probe.py" 16 32 64
LAT_LIMIT=100 lat warm 1 "$N"
for r in 1 2; do
    lat "off$r" 1 TESSERA_CUDA_PREFETCH=0 "$N"
    for mb in ${PF_MBS:-8 24 48}; do
        lat "pf${mb}_$r" 1 TESSERA_CUDA_PREFETCH=1 TESSERA_CUDA_PREFETCH_MB="$mb" "$N"
    done
done
kcache_save
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== gemv1_bench"; grep -a "GEMV1" "$L/cuda_gemv1.log"
    echo "=== probe"; grep -a -E "PROBE|Error|error" "$L/probe.log" | head -40
    echo "=== latency"; lat_table 12
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s9r1-logs.tgz
cat "$L/summary.txt"
