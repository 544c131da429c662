#!/usr/bin/env bash
# The GPU suite, for device calls on the GPU machine (H100/H200, CUDA 13.0, no Rust):
#
#   GPU_BUNDLE_DIR=/work/main/.gpu scripts/build-gpu-bundle.sh       # here: builds the bundle
#   run(command="bash .gpu/gpu-suite.sh", carry=[".gpu"])           # there: everything
#   run(command="bash .gpu/gpu-suite.sh parity", carry=[".gpu"])    #   or parity only
#   run(command="bash .gpu/gpu-suite.sh bench", carry=[".gpu"])     #   or benchmarks only
#   run(command="bash .gpu/gpu-suite.sh quick bench", carry=[".gpu"]) # CUDA-only parity + benchmarks
#   run(command="bash .gpu/gpu-suite.sh graphs", carry=[".gpu"])   # CUDA graphs: equality + benches
#   run(command="bash .gpu/gpu-suite.sh attn", carry=[".gpu"])     # attention parity + before/after
#   run(command="bash .gpu/gpu-suite.sh final", carry=[".gpu"])    # one call: quick + benches + HF
#
# quick: parity's CUDA-only half (ops, batch-size ops, tiny models vs f32 references, engine,
#   L2 prefetch with graphs vs eager, generate).
# parity: op parity of every CUDA op vs the CPU backend (f32/f16/bf16, fresh seed printed),
#   model parity of the tiny HF fixtures (+ HF in the same dtype on this card), a full-size
#   SmolLM3-3B-config model with random weights (HF f32 reference made here), batch
#   invariance + preemption through the engine, `generate` and `serve --device cuda`.
# bench: the card's roofline (copy bandwidth, bf16 GEMM rate), `tessera bench latency`
#   (1 x 128/256) and `bench throughput` (256 x 512/256) on SmolLM3-3B dummy bf16, a kernel
#   profile, and the same workloads through HF transformers (generate; generate_batch
#   paged|sdpa), then one comparison table.
# graphs: decode-step CUDA graphs: the graphs-vs-eager greedy equality test (cuda_engine),
#   then bench latency (1 x 128/256) and bench throughput (256 x 512/256) with graphs and
#   with --enforce-eager, tessera only (~4 min); a summary of the lines that matter is
#   printed last.
# attn: the paged-attention op parity cases, the engine tests (graphs vs eager, mixed steps),
#   then bench latency / throughput and their kernel profiles for bin/tessera and, when the
#   bundle has one, bin/tessera-base (the version to compare with); a summary printed last.
# final: what a closing measurement needs in one call (~8 min): quick, serve, the roofline,
#   both benches (with the default step budget: 16384 tokens offline on >= 70 GiB GPUs, as
#   vLLM), the decode profile, and the HF baselines; no bf16 HF model parity.
# Modes run in the order given. Logs go to /tmp/gpu-suite, archived as
# $OUT/gpu-suite-logs.tgz (fetched with the call's files); tables are printed last.
# Exit status: 0 only if every step passed. Budget: parity ~5 min, bench ~6 min.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$HERE/bin/tessera" ]; then BUNDLE="$HERE"; else BUNDLE="$(cd "$HERE/.." && pwd)/.gpu"; fi
MODES="${*:-parity bench}"
LOG=/tmp/gpu-suite
mkdir -p "$LOG"
if [ ! -x "$BUNDLE/bin/cuda_ops" ]; then
    echo "no $BUNDLE/bin/cuda_ops: run scripts/build-gpu-bundle.sh here and carry .gpu" >&2
    exit 2
fi
S="$BUNDLE/scripts"
T="$BUNDLE/bin/tessera"

# Where the GPU machine keeps CUDA 13 (see shared/GPU.md).
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TESSERA_CUDA_INCLUDE="${TESSERA_CUDA_INCLUDE:-/usr/local/cuda/include}"
export TESSERA_KERNEL_CACHE="${TESSERA_KERNEL_CACHE:-/tmp/tessera-kernel-cache}"
export TESSERA_FIXTURES="$BUNDLE/fixtures"
export TESSERA_REQUIRE_GPU=1 RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
SEED="${TESSERA_SEED:-$(date +%s%N)}"
export TESSERA_SEED="$SEED"
BIG=/tmp/smollm3-3b-random
DUMMY="$BUNDLE/smollm3-3b"

{
    echo "bundle: $(tr '\n' ' ' < "$BUNDLE/COMMIT" 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
    echo "seed: $SEED   modes: $MODES"
} | tee "$LOG/device.txt"

: > "$LOG/steps.txt"
step() { # name timeout command...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc secs=$((SECONDS - t0))" | tee -a "$LOG/steps.txt"
    return 0
}

serve_check() { # tessera serve --device cuda on a tiny fixture, one completion by token ids
    "$T" serve "$BUNDLE/fixtures/llama" --device cuda --dtype float32 --port 8765 &
    local pid=$!
    local ok=1
    for _ in $(seq 1 60); do
        if curl -sf localhost:8765/v1/models > /dev/null 2>&1; then ok=0; break; fi
        sleep 0.5
    done
    if [ $ok -eq 0 ]; then
        curl -sf localhost:8765/v1/completions -H 'Content-Type: application/json' \
            -d '{"model":"'"$BUNDLE/fixtures/llama"'","prompt":[231,79,154,180,251],"max_tokens":8,"temperature":0,"ignore_eos":true}'
        ok=$?
        echo
    fi
    kill "$pid"
    wait "$pid" 2> /dev/null
    return $ok
}

parity() {
    # Op parity (tests run 3 at a time, each on its own stream; kernels compile once, cached).
    step cuda_ops 240 "$BUNDLE/bin/cuda_ops" --test-threads=3 --nocapture
    # The fused decode paths (RMSNorm in the GEMV, deferred RoPE) vs CPU and vs unfused.
    step cuda_fused 150 "$BUNDLE/bin/cuda_fused" --test-threads=2 --nocapture
    # q/k/v + RoPE + write_kv as one GEMV launch vs its ops and vs CPU.
    step cuda_qkv_kv 120 "$BUNDLE/bin/cuda_qkv_kv" --test-threads=1 --nocapture
    # The GEMV kernels over K splits and early W on/off (normed) vs CPU, and on vs off.
    step cuda_gemv1 150 "$BUNDLE/bin/cuda_gemv1" --test-threads=1 --nocapture
    step cuda_batch 120 "$BUNDLE/bin/cuda_batch" --test-threads=3 --nocapture
    # Single-stream decode: one-tile splits, unfilled split partials, multi-block argmax, graphs.
    step cuda_att1 120 "$BUNDLE/bin/cuda_att1" --test-threads=1 --nocapture
    # Model parity (f32 vs HF's f32 reference; bf16/f16 logits dumped), then HF in
    # bf16/f16/f32 on this card vs those dumps (the bf16 contract).
    TESSERA_LOGITS_DUMP="$LOG/logits" step cuda_models 150 "$BUNDLE/bin/cuda_models" tiny_models --test-threads=1 --nocapture
    step hf_parity 150 python3 "$S/hf_parity.py" "$BUNDLE/fixtures" "$LOG/logits"
    step cuda_engine 120 "$BUNDLE/bin/cuda_engine" --test-threads=1 --nocapture
    step cli_generate 90 "$T" generate --model "$BUNDLE/fixtures/llama" --device cuda --dtype float32 \
        --prompt-token-ids 231,79,154,180,251 --max-tokens 8 --temperature 0 --ignore-eos --json
    export T BUNDLE
    export -f serve_check
    step serve 90 bash -c serve_check
    # Full-size SmolLM3-3B config, random weights: HF writes weights + f32 reference here.
    step big_model_hf 240 python3 "$S/hf_big_model.py" "$DUMMY/config.json" "$BIG"
    TESSERA_BIG_MODEL="$BIG" step big_model 240 "$BUNDLE/bin/cuda_models" full_size --test-threads=1 --nocapture
    rm -rf "$BIG"
}

quick() { # parity without HF: ops, fused paths, tiny models vs their f32 references, engine, CLI
    step cuda_ops 240 "$BUNDLE/bin/cuda_ops" --test-threads=3 --nocapture
    step cuda_fused 150 "$BUNDLE/bin/cuda_fused" --test-threads=2 --nocapture
    step cuda_qkv_kv 120 "$BUNDLE/bin/cuda_qkv_kv" --test-threads=1 --nocapture
    step cuda_gemv1 150 "$BUNDLE/bin/cuda_gemv1" --test-threads=1 --nocapture
    step cuda_batch 120 "$BUNDLE/bin/cuda_batch" --test-threads=3 --nocapture
    # The pipelined decode-attention kernel (large decode grids; TESSERA_ATTN_DECODE_V2).
    step cuda_att256 120 "$BUNDLE/bin/cuda_att256" --test-threads=1 --nocapture
    # Single-stream decode: one-tile splits, unfilled split partials, multi-block argmax, graphs.
    step cuda_att1 120 "$BUNDLE/bin/cuda_att1" --test-threads=1 --nocapture
    step cuda_models 150 "$BUNDLE/bin/cuda_models" tiny_models --test-threads=1 --nocapture
    step cuda_engine 120 "$BUNDLE/bin/cuda_engine" --test-threads=1 --nocapture
    step cuda_prefetch 90 "$BUNDLE/bin/cuda_prefetch" --test-threads=1 --nocapture
    step cli_generate 90 "$T" generate --model "$BUNDLE/fixtures/llama" --device cuda --dtype float32 \
        --prompt-token-ids 231,79,154,180,251 --max-tokens 8 --temperature 0 --ignore-eos --json
}

bench() {
    step roofline 120 python3 "$S/hf_bench.py" "$DUMMY" "$LOG/roofline.json" --roofline
    step bench_latency 150 "$T" bench latency --model "$DUMMY" --load-format dummy --device cuda --dtype bfloat16 \
        --batch-size 1 --input-len 128 --output-len 256 --num-iters 3 --json
    step bench_throughput 240 "$T" bench throughput --model "$DUMMY" --load-format dummy --device cuda --dtype bfloat16 \
        --input-len 512 --output-len 256 --num-prompts 256 --json
    # Kernel profiles (each launch timed alone, so absolute times include sync gaps).
    TESSERA_CUDA_PROFILE=1 step profile_decode 90 "$T" bench latency --model "$DUMMY" --load-format dummy --device cuda \
        --dtype bfloat16 --batch-size 1 --input-len 128 --output-len 64 --num-iters 1 --num-iters-warmup 0 --json
    TESSERA_CUDA_PROFILE=1 step profile_throughput 150 "$T" bench throughput --model "$DUMMY" --load-format dummy \
        --device cuda --dtype bfloat16 --input-len 512 --output-len 32 --num-prompts 64 --json
    if [ -z "${GPU_SUITE_SKIP_HF:-}" ]; then
        step hf_latency 120 python3 "$S/hf_bench.py" "$DUMMY" "$LOG/hf_latency.json" --latency
        step hf_throughput 300 python3 "$S/hf_bench.py" "$DUMMY" "$LOG/hf_throughput.json" --throughput
    fi
}

graphs() {
    local m=(--model "$DUMMY" --load-format dummy --device cuda --dtype bfloat16)
    step cuda_engine_graphs 140 "$BUNDLE/bin/cuda_engine" gpu_decode_graphs_match_eager --test-threads=1 --nocapture
    step graphs_latency 50 "$T" bench latency "${m[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3
    step eager_latency 50 "$T" bench latency "${m[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3 --enforce-eager
    step graphs_throughput 70 "$T" bench throughput "${m[@]}" --input-len 512 --output-len 256 --num-prompts 256
    step eager_throughput 70 "$T" bench throughput "${m[@]}" --input-len 512 --output-len 256 --num-prompts 256 --enforce-eager
    for f in cuda_engine_graphs graphs_latency eager_latency graphs_throughput eager_throughput; do
        echo "--- $f"
        grep -aE "GRAPHS|test result|panicked|decode:|prefill:|Avg latency|Throughput:|Elapsed|decode-only|WARN|ERROR|rror" "$LOG/$f.log" | head -40
    done > "$LOG/graphs-summary.txt" 2>&1
}

attn() { # attention work: its op parity, the engine tests, then before/after benches
    step attn_ops 240 "$BUNDLE/bin/cuda_ops" paged_attention nvrtc --test-threads=3 --nocapture
    step cuda_engine 150 "$BUNDLE/bin/cuda_engine" --test-threads=1 --nocapture
    # Variants: new = bin/tessera; simt = the same with TESSERA_ATTN_TC=0 (prefill rows on the
    # SIMT kernel); base = bin/tessera-base when the bundle has one (e.g. main's binary).
    # ATTN_BENCH lists variant:step pairs (steps: latency, throughput, profile_decode,
    # profile_tput = 64 x (512 + 32), profile_tput256 = 256 x (512 + 32): decode at batch 256).
    local m=(--model "$DUMMY" --load-format dummy --device cuda --dtype bfloat16)
    local want="${ATTN_BENCH:-new:latency new:throughput new:profile_decode new:profile_tput base:latency base:throughput base:profile_decode base:profile_tput}"
    local vs v st bin env
    for vs in $want; do
        v=${vs%%:*} st=${vs#*:}
        bin="$T" env=()
        [ "$v" = base ] && bin="$BUNDLE/bin/tessera-base"
        [ "$v" = simt ] && env=(TESSERA_ATTN_TC=0)
        [ -x "$bin" ] || continue
        case "$st" in
            latency) step "${v}_latency" 90 env "${env[@]}" "$bin" bench latency "${m[@]}" --batch-size 1 --input-len 128 \
                --output-len 256 --num-iters 2 ;;
            throughput) step "${v}_throughput" 120 env "${env[@]}" "$bin" bench throughput "${m[@]}" --input-len 512 \
                --output-len 256 --num-prompts 256 ;;
            profile_decode) step "${v}_profile_decode" 90 env "${env[@]}" TESSERA_CUDA_PROFILE=1 "$bin" bench latency "${m[@]}" \
                --batch-size 1 --input-len 128 --output-len 32 --num-iters 1 --num-iters-warmup 0 ;;
            profile_tput) step "${v}_profile_tput" 120 env "${env[@]}" TESSERA_CUDA_PROFILE=1 "$bin" bench throughput "${m[@]}" \
                --input-len 512 --output-len 32 --num-prompts 64 ;;
            profile_tput256) step "${v}_profile_tput256" 150 env "${env[@]}" TESSERA_CUDA_PROFILE=1 "$bin" bench throughput \
                "${m[@]}" --input-len 512 --output-len 32 --num-prompts 256 ;;
        esac
    done
    {
        grep -aE "^PARITY .*FAIL|test result|panicked" "$LOG/attn_ops.log" | head -30
        grep -aE "test result|panicked|FAILED" "$LOG/cuda_engine.log" | head -10
        for f in "$LOG"/*_latency.log "$LOG"/*_throughput.log; do
            [ -f "$f" ] || continue
            echo "--- $(basename "$f" .log)"
            grep -aE "decode:|prefill:|Avg latency|Throughput:|decode-only|rror" "$f" | head -8
        done
        for f in "$LOG"/*_profile_*.log; do
            [ -f "$f" ] || continue
            echo "--- $(basename "$f" .log) (the top 8, then every attention row)"
            grep -a "^PROFILE" "$f" | head -9
            grep -a "^PROFILE.*attention" "$f" | head -8
        done
    } > "$LOG/attn-summary.txt" 2>&1
}

final() {
    quick
    export T BUNDLE
    export -f serve_check
    step serve 90 bash -c serve_check
    local m=(--model "$DUMMY" --load-format dummy --device cuda --dtype bfloat16)
    step roofline 120 python3 "$S/hf_bench.py" "$DUMMY" "$LOG/roofline.json" --roofline
    step bench_latency 120 "$T" bench latency "${m[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3 --json
    step bench_throughput 120 "$T" bench throughput "${m[@]}" --input-len 512 --output-len 256 --num-prompts 256 --json
    TESSERA_CUDA_PROFILE=1 step profile_decode 90 "$T" bench latency "${m[@]}" --batch-size 1 --input-len 128 \
        --output-len 64 --num-iters 1 --num-iters-warmup 0 --json
    step hf_latency 120 python3 "$S/hf_bench.py" "$DUMMY" "$LOG/hf_latency.json" --latency
    step hf_throughput 240 python3 "$S/hf_bench.py" "$DUMMY" "$LOG/hf_throughput.json" --throughput
    {
        for f in bench_throughput profile_decode; do
            echo "--- $f"
            grep -aE "^PROFILE|decode:|prefill:|Throughput:|decode-only|rror" "$LOG/$f.log" | head -14
        done
    } > "$LOG/final-summary.txt" 2>&1
}

for mode in $MODES; do
    case "$mode" in
        parity | quick | bench | graphs | attn | final) "$mode" ;;
        *) echo "unknown mode $mode (parity, quick, bench, graphs, attn, final)" >&2 ;;
    esac
done
python3 "$S/gpu_report.py" "$LOG" | tee "$LOG/report.txt"
rc=${PIPESTATUS[0]}
if [ -f "$LOG/final-summary.txt" ]; then
    echo "=== final summary"
    cat "$LOG/final-summary.txt"
    cat "$LOG/steps.txt"
fi
if [ -f "$LOG/attn-summary.txt" ]; then
    echo "=== attention summary"
    cat "$LOG/attn-summary.txt"
    cat "$LOG/steps.txt"
fi
if [ -f "$LOG/graphs-summary.txt" ]; then
    echo "=== graphs summary"
    cat "$LOG/graphs-summary.txt"
    cat "$LOG/steps.txt"
fi
# At most 8 files come back from \$OUT: one archive of every log.
[ -n "${OUT:-}" ] && tar czf "$OUT/gpu-suite-logs.tgz" -C "$LOG" . 2> /dev/null
exit "$rc"
