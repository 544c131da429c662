#!/usr/bin/env bash
# Needs a bundle of the local branch `cuda-s14-oproj` (not merged: BENCHMARKS.md, session 14).
# Session 14, first call (~6 min): the attention + o_proj launch (attention_oproj.rs) against
# CPU (cuda_att_oproj), then single stream fused (default) against the ops
# (TESSERA_CUDA_FUSE_OPROJ=0), alternated twice, then cuda_att1 and cuda_engine.
#   run(command="bash .gpu-k/s14-oproj.sh", carry=[".gpu-k"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s14o "${V_BUDGET:-420}"
N="$B/bin/tessera"
test_bin cuda_att_oproj 200 --test-threads=1 --nocapture
LAT_LIMIT=150 lat warm 1 "$N"
for r in 1 2; do
    lat "fused_$r" 1 "$N"
    lat "ops_$r" 1 TESSERA_CUDA_FUSE_OPROJ=0 "$N"
done
test_bin cuda_att1 120 --test-threads=1 --nocapture
test_bin cuda_engine 60 --test-threads=1 --nocapture
kcache_save
{
    echo "=== device"; cat "$L/device.txt"
    parity_table 8 cuda_att_oproj cuda_att1 cuda_engine
    grep -a "cases fused\|panicked\|FAIL" "$L/cuda_att_oproj.log" | head -20
    echo "=== latency"; lat_table 12
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s14o-logs.tgz
cat "$L/summary.txt"
