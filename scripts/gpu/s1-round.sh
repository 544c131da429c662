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
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_env "$B"
round_start /tmp/s1 "${S1_BUDGET:-520}"
prof() { # name binary: ncu node durations of a short run, then its last decode step per layer
    step "ncu_$1" 150 "${NCU_NODES[@]}" --print-units base --log-file "$L/ncu_$1.csv" \
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
        lat_new | lat_new2) lat "${s#lat_}" 1 "$N" ;;
        lat_base | lat_base2) lat "${s#lat_}" 1 "$O" ;;
        lat_norm_off) lat norm_off 1 TESSERA_CUDA_FUSE_NORM=0 "$N" ;;
        lat_rope_off) lat rope_off 1 TESSERA_CUDA_FUSE_ROPE=0 "$N" ;;
        lat_both_off) lat both_off 1 TESSERA_CUDA_FUSE_NORM=0 TESSERA_CUDA_FUSE_ROPE=0 "$N" ;;
        ncu_new) prof new "$N" ;;
        ncu_base) prof base "$O" ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    parity_table 12 cuda_fused cuda_ops cuda_engine cuda_models
    grep -aE "^PARITY (norm|rope_deferred).* bfloat16 .*(M1 K2048 residual=true offset=0|vs_unfused.*M4 K2048|D128 rope)" "$L/cuda_fused.log" 2> /dev/null | head -8
    echo "=== latency 1 x (128 / 256)"
    lat_table 10
    for v in new base; do
        [ -f "$L/ncu_$v.txt" ] && { echo "=== ncu $v (last decode step)"; cat "$L/ncu_$v.txt"; }
    done
    echo "=== steps"; cat "$L/steps.txt"
} | tee "$L/summary.txt"
logs_tgz s1-logs.tgz
exit 0
