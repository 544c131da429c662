#!/usr/bin/env bash
# Session 9, call 6 (~3 min): the decode attention with fewer query heads a block
# (TESSERA_ATTN_GH: SmolLM3's group of 4 as 4 blocks of 1 or 2 of 2 instead of 1 of 4, so a
# batch-1 step's 32 blocks become 128 / 64 and each warp's serial chain shorter). ncu (s9-ncu)
# had the g4 cluster kernel's SMs busy ~9.8 of its 11.3 us at 6 % occupancy: instruction
# latency, not bytes. Parity (cuda_att1 with GH forced to 1), then single stream alternated.
#   run(command="bash .gpu/s9-gh.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s9gh "${V_BUDGET:-280}"
N="$B/bin/tessera"
export TESSERA_ATTN_GH=1
test_bin cuda_att1 120 --test-threads=1 --nocapture
unset TESSERA_ATTN_GH
LAT_LIMIT=100 lat warm 1 "$N"
for r in 1 2; do
    lat "gh4_$r" 1 "$N"
    lat "gh1_$r" 1 TESSERA_ATTN_GH=1 "$N"
    lat "gh2_$r" 1 TESSERA_ATTN_GH=2 "$N"
done
lat gh1_b4 4 TESSERA_ATTN_GH=1 "$N"
lat gh4_b4 4 "$N"
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== cuda_att1 (GH 1)"; grep -a -E "test result|panicked|FAIL|PARITY" "$L/cuda_att1.log" | head -20
    echo "=== latency"; lat_table 12
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s9gh-logs.tgz
cat "$L/summary.txt"
