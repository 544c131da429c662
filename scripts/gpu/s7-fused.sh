#!/usr/bin/env bash
# Session 7: the split decode attention merged by its last block (TESSERA_ATTN_FUSED_COMBINE,
# default on) against the combine launch, one binary: parity (cuda_att1, the attention cases
# of cuda_ops, cuda_engine), then single-stream latency alternating on / off twice and
# throughput once each.
#   run(command="bash .gpu/s7-fused.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s7f "${V_BUDGET:-330}"
N="$B/bin/tessera"
step cuda_att1 150 "$B/bin/cuda_att1" --test-threads=1 --nocapture
step cuda_ops_attn 120 "$B/bin/cuda_ops" paged_attention --test-threads=3 --nocapture
step cuda_engine 90 "$B/bin/cuda_engine" --test-threads=1 --nocapture
for r in 1 2; do
    lat "fused_$r" 1 TESSERA_ATTN_FUSED_COMBINE=1 "$N"
    lat "combine_$r" 1 TESSERA_ATTN_FUSED_COMBINE=0 "$N"
done
for f in 1 0; do
    step "tput_fused$f" 60 env TESSERA_ATTN_FUSED_COMBINE=$f "$N" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256
done
for f in "$L"/*.log; do
    echo "=== $(basename "$f" .log)"
    grep -aE "decode:|^host:|^Throughput|decode-only|PARITY .*FAIL|panicked|test result" "$f" | head -8
done
cat "$L/steps.txt"
