#!/usr/bin/env bash
# Throughput A/B in one device call (bundle: BUNDLE_FEATURES=cuda GPU_BUNDLE_DIR=... 
# scripts/build-gpu-bundle.sh, plus bin/tessera-base = main before this work):
#   parity: cuda_ops (all), cuda_batch (paired GEMMs at M 16..256), cuda_engine (graphs vs eager)
#   bench throughput 256 x (512 in / 256 out), SmolLM3-3B config, dummy bf16:
#     new (defaults: 16384-token steps on >= 70 GiB GPUs, one GEMM each),
#     new with TESSERA_CUDA_PAIRED_GEMM=1 (gate/up and k/v paired), base (2048-token steps)
# (The measured call, BENCHMARKS.md, ran f2341c4, where pairing was the default and the
# second run set it to 0.)
#   ncu: per-node durations of one replayed batch-256 decode graph (new_paired), table by kernel
# A summary is printed last; logs go to $OUT.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Binaries may travel xz-compressed (the 64 MiB carry limit).
unxz_bins "$B"
gpu_env "$B"
O="${OUT:-/tmp/out}"; mkdir -p "$O"
L=$O
T=(bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256 --json)
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader; echo "seed $TESSERA_SEED"; cat "$B/COMMIT"; } | tee "$O/steps.txt"

step cuda_ops 150 "$B/bin/cuda_ops" --test-threads=3 --nocapture
step cuda_batch 90 "$B/bin/cuda_batch" --test-threads=2 --nocapture
step cuda_engine 90 "$B/bin/cuda_engine" --test-threads=1 --nocapture
step new 60 "$B/bin/tessera" "${T[@]}"
step new_paired 60 env TESSERA_CUDA_PAIRED_GEMM=1 "$B/bin/tessera" "${T[@]}"
step base 60 "$B/bin/tessera-base" "${T[@]}"
TESSERA_CUDA_PAIRED_GEMM=1 TESSERA_CUDA_PROFILER_REPLAYS=60:1 step ncu 90 "${NCU_NODES[@]}" --profile-from-start off --page raw \
    "$B/bin/tessera" bench throughput "${M[@]}" --input-len 512 --output-len 136 --num-prompts 256 --json

echo "=== summary"
for f in cuda_ops cuda_batch cuda_engine; do
    echo "--- $f: $(grep -acE '^PARITY .* ok$' "$O/$f.log") PARITY ok, $(grep -acE '^PARITY .*FAIL' "$O/$f.log") FAIL"
    grep -aE "^PARITY .*FAIL|test result|panicked" "$O/$f.log" | head -8
done
grep -a "PAIRED-vs-TWO" "$O/cuda_batch.log" | sort -t= -k2 -g | tail -2
for f in new new_paired base; do
    echo "--- $f"
    grep -aE '^\{' "$O/$f.log" | python3 -c 'import json,sys
d=json.loads(sys.stdin.read())
s=d.get("decode_full_steps") or 0
print({k: d.get(k) for k in ("tokens_per_second","max_num_batched_tokens","steps","decode_only_steps","decode_only_secs","prefill_steps_secs","decode_full_batch","decode_full_steps","decode_full_secs","decode_full_wait_secs","gpu")})
if s: print("full-batch decode step: %.2f ms wall, %.2f ms waiting for the device" % (1e3*d["decode_full_secs"]/s, 1e3*d["decode_full_wait_secs"]/s))' 2>&1
    grep -aiE "error|panic" "$O/$f.log" | head -3
done
echo "--- ncu (one batch-256 decode graph, new)"
grep -a '^"' "$O/ncu.log" > "$O/nodes.csv"
python3 "$B/scripts/ncu_nodes.py" "$O/nodes.csv" 1 2>&1 | head -48
grep -aE "==ERROR==" "$O/ncu.log" | head -3
cat "$O/steps.txt"
