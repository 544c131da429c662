#!/usr/bin/env bash
# One device call for the fused single-stream decode work (RMSNorm in the GEMV prologue,
# RoPE deferred into write_kv / decode attention), from a bundle built by
#   BUNDLE_FEATURES=cuda GPU_BUNDLE_DIR=/work/main/.gpu-s1 scripts/build-gpu-bundle.sh
# plus bin/tessera-base (the binary to compare with) and this script, then
#   run(command="bash .gpu-s1/s1-round.sh", carry=[".gpu-s1"])
#
# 1. parity: cuda_fused (fused vs CPU and vs unfused), then the ops / engine suites that
#    the fused paths touch (rope, gemv, norms, attention; graphs vs eager; tiny models);
# 2. bench latency 1 x (128 / 256) bf16 SmolLM3-3B dummy: new, base, new with each switch
#    off (TESSERA_CUDA_FUSE_NORM=0, TESSERA_CUDA_FUSE_ROPE=0), new and base again;
# 3. ncu per-node durations (--graph-profiling node) of a short run of new and base: the
#    last decode step's nodes per layer (scripts/gpu/ncu_step.py).
# Steps run most telling first and stop at S1_BUDGET seconds (default 520); a summary is
# printed last and the logs come back as $OUT/s1-logs.tgz.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TESSERA_CUDA_INCLUDE=/usr/local/cuda/include TESSERA_KERNEL_CACHE=/tmp/tessera-kernel-cache
export TESSERA_FIXTURES="$B/fixtures" TESSERA_REQUIRE_GPU=1 RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH="$PATH:/usr/local/cuda/bin:$(ls -d /opt/nvidia/nsight-compute/*/ 2>/dev/null | head -1)"
export TESSERA_SEED="${TESSERA_SEED:-$(date +%s%N)}"
L=/tmp/s1
mkdir -p "$L"
M=(--model "$B/smollm3-3b" --load-format dummy --device cuda --dtype bfloat16)
{
    echo "bundle: $(tr '\n' ' ' < "$B/COMMIT")"
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
    echo "seed $TESSERA_SEED"
} | tee "$L/device.txt"
: > "$L/steps.txt"
DEADLINE=$((SECONDS + ${S1_BUDGET:-520}))
step() { # name timeout command... (cut to the call's deadline; skipped past it)
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 15 ]; then echo "$name skipped (deadline)" | tee -a "$L/steps.txt"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    timeout "$limit" "$@" > "$L/$name.log" 2>&1
    echo "$name rc=$? secs=$((SECONDS - t0))" | tee -a "$L/steps.txt"
}

lat() { # name env... binary
    local name=$1
    shift
    step "lat_$name" 90 env "$@" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3
}
prof() { # name binary: ncu node durations of a short run, then its last decode step per layer
    step "ncu_$1" 150 ncu --graph-profiling node --metrics gpu__time_duration.sum --clock-control none \
        --cache-control none --csv --print-units base --log-file "$L/ncu_$1.csv" \
        "$2" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 6 --num-iters 1 --num-iters-warmup 0
    python3 "$B/ncu_step.py" "$L/ncu_$1.csv" 36 > "$L/ncu_$1.txt" 2>&1
}
N="$B/bin/tessera" O="$B/bin/tessera-base"
# Most telling first: the call's time may run out (steps past the deadline are skipped).
# S1_STEPS picks and orders the steps.
for s in ${S1_STEPS:-cuda_fused lat_new lat_base ncu_base ncu_new lat_norm_off lat_rope_off cuda_engine cuda_ops lat_new2 lat_base2 lat_both_off cuda_models}; do
    case $s in
        cuda_fused) step cuda_fused 120 "$B/bin/cuda_fused" --test-threads=2 --nocapture ;;
        cuda_engine) step cuda_engine 150 "$B/bin/cuda_engine" --test-threads=1 --nocapture ;;
        cuda_ops) step cuda_ops 200 "$B/bin/cuda_ops" ${S1_OPS_FILTER:-} --test-threads=3 --nocapture ;;
        cuda_models) step cuda_models 100 "$B/bin/cuda_models" tiny_models --test-threads=1 --nocapture ;;
        lat_new | lat_new2) lat "${s#lat_}" "$N" ;;
        lat_base | lat_base2) lat "${s#lat_}" "$O" ;;
        lat_norm_off) lat norm_off TESSERA_CUDA_FUSE_NORM=0 "$N" ;;
        lat_rope_off) lat rope_off TESSERA_CUDA_FUSE_ROPE=0 "$N" ;;
        lat_both_off) lat both_off TESSERA_CUDA_FUSE_NORM=0 TESSERA_CUDA_FUSE_ROPE=0 "$N" ;;
        ncu_new) prof new "$N" ;;
        ncu_base) prof base "$O" ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    for f in cuda_fused cuda_ops cuda_engine cuda_models; do
        [ -f "$L/$f.log" ] || continue
        echo "--- $f: $(grep -ac '^PARITY' "$L/$f.log") parity lines, $(grep -aE '^PARITY .*FAIL' -c "$L/$f.log") FAIL"
        grep -aE "^PARITY .*FAIL|test result|panicked" "$L/$f.log" | head -12
    done
    grep -aE "^PARITY (norm|rope_deferred).* bfloat16 .*(M1 K2048 residual=true offset=0|vs_unfused.*M4 K2048|D128 rope)" "$L/cuda_fused.log" 2> /dev/null | head -8
    echo "=== latency 1 x (128 / 256)"
    for f in "$L"/lat_*.log; do
        [ -f "$f" ] || continue
        printf '%-10s %s | %s\n' "$(basename "$f" .log | cut -c5-)" "$(grep -a 'decode:' "$f" | tr -s ' ')" "$(grep -a 'Avg latency' "$f")"
    done
    for v in new base; do
        [ -f "$L/ncu_$v.txt" ] && { echo "=== ncu $v (last decode step)"; cat "$L/ncu_$v.txt"; }
    done
    echo "=== steps"; cat "$L/steps.txt"
} | tee "$L/summary.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/s1-logs.tgz" -C "$L" . 2> /dev/null
exit 0
