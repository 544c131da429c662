#!/usr/bin/env bash
# Session 11, third call (~7 min): the card's roofline, then single stream for the base
# binary (bin/tessera-base: main with the early K/V) against the bundle's (plus the q/k/v
# epilogue's slot and RoPE angle read before pdl_wait) alternated three times, the early K/V
# off once, and the parity of the changed kernels; throughput last while time is left.
#   run(command="bash .gpu/s11-final.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s11f "${V_BUDGET:-480}"
N="$B/bin/tessera"
O="$B/bin/tessera-base"
step roofline 120 python3 "$B/scripts/hf_bench.py" "$B/smollm3-3b" "$L/roofline.json" --roofline
LAT_LIMIT=150 lat warm 1 "$N"
LAT_LIMIT=150 lat warm_base 1 "$O"
for r in 1 2 3; do
    lat "new_$r" 1 "$N"
    lat "base_$r" 1 "$O"
done
lat new_kv_off 1 TESSERA_ATTN_EARLY_KV=0 "$N"
lat new_b4 4 "$N"
lat base_b4 4 "$O"
test_bin cuda_qkv_kv 90 --test-threads=1 --nocapture
test_bin cuda_att1 60 --test-threads=1 --nocapture
test_bin cuda_engine 60 --test-threads=1 --nocapture
test_bin cuda_models 60 tiny_models --test-threads=1 --nocapture
test_bin cuda_fused 90 --test-threads=2 --nocapture
step throughput 90 "$N" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256
{
    echo "=== device"; cat "$L/device.txt"
    echo "=== roofline"; cat "$L/roofline.json" 2> /dev/null; echo
    parity_table 8 cuda_qkv_kv cuda_att1 cuda_engine cuda_models cuda_fused
    echo "=== latency"; lat_table 12
    echo "=== throughput"; grep -aE "^Throughput|decode-only|rror" "$L/throughput.log"
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s11f-logs.tgz
cat "$L/summary.txt"
