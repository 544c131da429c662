#!/usr/bin/env bash
# Session 13, fifth call (~2 min): cuda_gemv1's split parity replayed with the fourth call's
# seed (the K 33 tolerance) and with a fresh one, then batch 4 and single stream with the
# even grid limited to one row of x.
#   run(command="bash .gpu/s13-check.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s13c "${V_BUDGET:-150}"
N="$B/bin/tessera"
step gemv1_replay 60 env TESSERA_SEED=1795964585292775594 "$B/bin/cuda_gemv1" gemv_split_parity --test-threads=1 --nocapture
test_bin cuda_gemv1 60 gemv_split_parity --test-threads=1 --nocapture
LAT_LIMIT=100 lat b4 4 "$N"
lat b4_uneven 4 TESSERA_GEMV_EVEN_GRID=0 "$N"
lat b1 1 "$N"
{
    echo "=== device"; cat "$L/device.txt"
    for f in gemv1_replay cuda_gemv1; do
        echo "--- $f: $(grep -ac '^PARITY' "$L/$f.log") parity lines, $(grep -aE '^PARITY .*FAIL' -c "$L/$f.log") FAIL"
        grep -aE '^PARITY .*FAIL|test result|panicked' "$L/$f.log" | head -4
    done
    echo "=== latency"; lat_table 12
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
cat "$L/summary.txt"
