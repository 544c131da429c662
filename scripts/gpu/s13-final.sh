#!/usr/bin/env bash
# Session 13, fourth call (~6 min): single stream with the even persistent grid (default)
# against every resident block (TESSERA_GEMV_EVEN_GRID=0), alternated twice, the card's
# roofline, and the GEMV / fused / engine parity on the GPU.
#   run(command="bash .gpu/s13-final.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s13f "${V_BUDGET:-330}"
N="$B/bin/tessera"
LAT_LIMIT=200 lat warm 1 "$N"
for r in 1 2; do
    lat "even_$r" 1 "$N"
    lat "uneven_$r" 1 TESSERA_GEMV_EVEN_GRID=0 "$N"
done
lat even_b4 4 "$N"
step roofline 120 python3 "$B/scripts/hf_bench.py" "$B/smollm3-3b" "$L/roofline.json" --roofline
test_bin cuda_gemv1 120 gemv_split_parity --test-threads=1 --nocapture
test_bin cuda_engine 60 --test-threads=1 --nocapture
test_bin cuda_fused 90 --test-threads=2 --nocapture
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== roofline"; cat "$L/roofline.json" 2> /dev/null; echo
    parity_table 8 cuda_gemv1 cuda_engine cuda_fused
    echo "=== latency"; lat_table 12
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s13f-logs.tgz
cat "$L/summary.txt"
