#!/usr/bin/env bash
# Where a batch-256 decode step's time goes (device call): the base throughput bench, then
# ncu per-node and per-graph durations of a few replayed decode graphs at batch 256 (contexts
# ~640), then torch GEMM times of the same shapes. Bundle: bin/tessera (with
# TESSERA_CUDA_PROFILER_REPLAYS), bin/tessera-base, smollm3-3b/config.json, scripts/.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_env "$B"
O="${OUT:-/tmp/out}"; mkdir -p "$O"
L=$O
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
echo "ncu: $NCU"

step base_tput 90 "$B/bin/tessera-base" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256 --json
# 256 x (512 + 136): replays 120..121 are batch-256 decode steps at contexts ~632.
TESSERA_CUDA_PROFILER_REPLAYS=120:2 step ncu_nodes 240 "${NCU_NODES[@]}" --profile-from-start off --page raw \
    "$B/bin/tessera" bench throughput "${M[@]}" --input-len 512 --output-len 136 --num-prompts 256 --json
TESSERA_CUDA_PROFILER_REPLAYS=120:3 step ncu_graph 120 "$NCU" --profile-from-start off --graph-profiling graph \
    --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --page raw \
    "$B/bin/tessera" bench throughput "${M[@]}" --input-len 512 --output-len 136 --num-prompts 256 --json
step gemms 90 python3 "$B/scripts/gemm_shapes.py" 256 2048 16384
step attn_split2 90 env TESSERA_ATTN_SPLITS=2 "$B/bin/tessera-base" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256 --json
step tput_16k 90 "$B/bin/tessera-base" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256 --max-num-batched-tokens 16384 --json

echo "=== summary"
for f in base_tput attn_split2 tput_16k; do echo "--- $f"; grep -aE '^\{' "$O/$f.log" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print({k: d[k] for k in ("tokens_per_second","decode_only_steps","decode_only_secs","prefill_steps_secs","steps","gpu")})' 2>&1; grep -aiE "error|panic" "$O/$f.log" | head -3; done
echo "--- ncu graph"; grep -a '^"' "$O/ncu_graph.log" | cut -c1-300 | tail -5; grep -aE "==PROF==|==ERROR==|==WARNING==" "$O/ncu_graph.log" | head -5
echo "--- ncu nodes"; grep -a '^"' "$O/ncu_nodes.log" > "$O/nodes.csv"; python3 "$B/scripts/ncu_nodes.py" "$O/nodes.csv" 2 2>&1 | head -75
grep -aE "==PROF==|==ERROR==|==WARNING==" "$O/ncu_nodes.log" | head -5
grep -aE '^\{' "$O/ncu_nodes.log" | cut -c1-400
echo "--- gemms"; cat "$O/gemms.log"
cat "$O/steps.txt"
