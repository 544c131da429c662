#!/usr/bin/env bash
# The pipelined decode-attention kernel (TESSERA_ATTN_DECODE_V2, kernels/attention_decode.cu)
# A/B, meant to run in the same device call after `gpu-suite.sh final` (~90 s):
#
#   run(command="bash .gpu/gpu-suite.sh final; bash .gpu/att256-ab.sh .gpu", carry=[".gpu"])
#
# $1 = the bundle dir (scripts/build-gpu-bundle.sh; needs bin/tessera, bin/cuda_att256 and
# smollm3-3b/config.json). Steps:
#   cuda_att256: the pipelined kernel vs the CPU backend (f32/f16/bf16, batches 64-256);
#   bench throughput 256 x (512 in / 256 out), SmolLM3-3B config, dummy bf16, with the
#   variant off, on (TESSERA_ATTN_DECODE_V2=1: grids of >= 6 blocks an SM), off, on;
#   ATT256_NCU=1 adds, per variant, ncu's per-node durations of one replayed batch-256
#   decode graph (~40 s each), the decode-attention rows printed.
# One summary line per run is printed last: total tok/s, decode-only seconds, the batch-256
# decode step. Logs go to $OUT/att256 (or /tmp/att256).
set -uo pipefail
B="$(cd "${1:-$(dirname "$0")}" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
unxz_bins "$B"
# The suite's kernel cache (kept when set): modules it compiled are loaded, not compiled again.
gpu_env "$B"
O="${OUT:-/tmp}/att256"
mkdir -p "$O"
L=$O
T=(bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256 --json)
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader; echo "seed $TESSERA_SEED"; tr '\n' ' ' < "$B/COMMIT"; echo; } | tee "$O/steps.txt"

step cuda_att256 90 "$B/bin/cuda_att256" --test-threads=1 --nocapture
step off1 60 env TESSERA_ATTN_DECODE_V2=0 "$B/bin/tessera" "${T[@]}"
step on1 60 env TESSERA_ATTN_DECODE_V2=1 "$B/bin/tessera" "${T[@]}"
step off2 60 env TESSERA_ATTN_DECODE_V2=0 "$B/bin/tessera" "${T[@]}"
step on2 60 env TESSERA_ATTN_DECODE_V2=1 "$B/bin/tessera" "${T[@]}"
if [ "${ATT256_NCU:-0}" = 1 ]; then
    for v in 0 1; do
        TESSERA_ATTN_DECODE_V2=$v TESSERA_CUDA_PROFILER_REPLAYS=60:1 step "ncu_v$v" 90 "${NCU_NODES[@]}" --profile-from-start off \
            --page raw "$B/bin/tessera" bench throughput "${M[@]}" --input-len 512 --output-len 136 --num-prompts 256 --json
    done
fi

echo "=== att256 summary"
echo "--- cuda_att256: $(grep -acE '^PARITY .* ok$' "$O/cuda_att256.log") PARITY ok, $(grep -acE '^PARITY .*FAIL' "$O/cuda_att256.log") FAIL"
grep -aE "^PARITY .*FAIL|test result|panicked" "$O/cuda_att256.log" | head -8
grep -aE "^PARITY" "$O/cuda_att256.log" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^rel=/) { r = substr($i, 5) + 0; if (!($3 in w) || r > w[$3]) w[$3] = r }}
    END { for (d in w) printf "    worst rel error %s: %.2e\n", d, w[d] }'
for f in off1 on1 off2 on2; do
    printf '%-5s ' "$f"
    grep -aE '^\{' "$O/$f.log" | tail -1 | python3 -c 'import json,sys
d=json.loads(sys.stdin.read())
s=d.get("decode_full_steps") or 0
step = " | batch-%s step %.2f ms wall, %.2f ms waiting" % (d.get("decode_full_batch"), 1e3*d["decode_full_secs"]/s, 1e3*d["decode_full_wait_secs"]/s) if s else ""
print("total %.0f tok/s | decode_only_secs %.3f (%s steps) | prefill steps %.3f s%s" % (d["tokens_per_second"], d["decode_only_secs"], d.get("decode_only_steps"), d.get("prefill_steps_secs") or 0, step))' 2>&1 | tail -1
    grep -aiE "error|panic" "$O/$f.log" | head -2
done
if [ "${ATT256_NCU:-0}" = 1 ]; then
    for v in 0 1; do
        echo "--- ncu, TESSERA_ATTN_DECODE_V2=$v (one batch-256 decode graph): attention rows"
        grep -a '^"' "$O/ncu_v$v.log" > "$O/nodes_v$v.csv"
        python3 "$B/scripts/ncu_nodes.py" "$O/nodes_v$v.csv" 1 2>&1 | sed '/^first 40 nodes/,$d' | grep -aE "^nodes|attention" | head -5
    done
fi
cat "$O/steps.txt"
