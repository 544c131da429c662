#!/usr/bin/env bash
# Session 9, last call (~3 min): a lone decode sequence's attention with one query head a
# block (the new default, attention_plan.rs `decode_heads_for`) checked and measured:
#   parity: cuda_att1 (default, GH forced 1 and 2), cuda_engine's graphs-vs-eager (batches
#           that shrink to one sequence), cuda_models' tiny models vs HF;
#   speed:  single stream 1 x (128 / 256) default vs TESSERA_ATTN_GH=4 (the group, as before),
#           alternated; batch 4 (unchanged: the group); a long context 1 x (2000 / 64).
#   run(command="bash .gpu/s9-final.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s9f "${V_BUDGET:-160}"
N="$B/bin/tessera"
test_bin cuda_att1 60 --test-threads=1 --nocapture
test_bin cuda_engine 60 gpu_decode_graphs_match_eager --test-threads=1 --nocapture
for r in 1 2; do
    lat "gh1_$r" 1 "$N"
    lat "gh4_$r" 1 TESSERA_ATTN_GH=4 "$N"
done
lat b4 4 "$N"
for gh in 0 4; do
    step "long_gh$gh" 30 env TESSERA_ATTN_GH=$gh "$N" bench latency "${M[@]}" --batch-size 1 --input-len 2000 --output-len 64 --num-iters 2
done
test_bin cuda_models 40 tiny_models --test-threads=1 --nocapture
{
    echo "=== device"; cat "$L/device.txt"
    for t in cuda_att1 cuda_engine cuda_models; do
        echo "=== $t"; grep -a -E "test result|panicked|FAIL|MISMATCH|mismatch" "$L/$t.log" | grep -av "mismatches=0" | head -8
        echo "PARITY lines: $(grep -ac PARITY "$L/$t.log"), not ok: $(grep -a PARITY "$L/$t.log" | grep -acv ' ok$')"
    done
    echo "=== latency"; lat_table 12
    for gh in 0 4; do echo "long_gh$gh $(grep -a -E 'decode:' "$L/long_gh$gh.log" | tail -1)"; done
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s9f-logs.tgz
cat "$L/summary.txt"
