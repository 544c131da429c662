#!/usr/bin/env bash
# One device step for the single-stream GEMV work (branch cuda-gemv1: K splits for long K,
# the normed kernels' early W stage `TESSERA_GEMV_EARLY_W`, kernels/gemv.cu), from the bundle
# scripts/gpu/gemv1-bundle.sh builds through scripts/build-gpu-bundle.sh (bin/tessera of this
# branch, bin/tessera-base = main 3d73e15, bin/cuda_gemv1, bin/cuda_fused, bin/cuda_ops, xz'd
# binaries are fine, the fixtures, smollm3-3b/config.json, lib.sh and ncu_csv.py), then
#   run(command="bash .gpu-B/gemv1-round.sh", carry=[".gpu-B"])
# Default steps (about 100 s, cut at G1_BUDGET seconds, default 120): parity (cuda_gemv1: every
# K split x early W on/off x M 1-8 x f32/f16/bf16 vs the CPU and on vs off; cuda_fused
# norm_matmul_fused: fused vs unfused, bit for bit), the M = 1 product bench (early W on/off,
# K splits), bench latency 1 x (128 / 256) of this build, of main (base) and of this build
# with early W off (ew0). G1_STEPS picks others: lat_new2 / lat_base2 / lat_ew02 (second
# runs), ncu_new / ncu_base / ncu_ew0 (per-product node durations), lat4_new / lat4_base
# (batch 4), ops (cuda_ops GEMV cases). A summary is printed last.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_env "$B"
rm -rf /tmp/g1
unxz_bins "$B"
round_start /tmp/g1 "${G1_BUDGET:-120}"
LAT_LIMIT=60
prof() { # name binary env...: ncu node durations of the GEMV kernels of a short run
    local name=$1 bin=$2
    shift 2
    step "ncu_$name" 90 env "$@" "${NCU_NODES[@]}" -k regex:gemv --print-units base --log-file "$L/ncu_$name.csv" \
        "$bin" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 4 --num-iters 1 --num-iters-warmup 0
    python3 "$B/ncu_gemv.py" "$L/ncu_$name.csv" 36 > "$L/ncu_$name.txt" 2>&1
}
N="$B/bin/tessera" O="$B/bin/tessera-base"
for s in ${G1_STEPS:-parity fused bench lat_new lat_base lat_ew0}; do
    case $s in
        parity) step parity 60 "$B/bin/cuda_gemv1" gemv_split_parity --nocapture ;;
        bench) step bench 40 "$B/bin/cuda_gemv1" gemv1_bench --ignored --nocapture ;;
        lat_base | lat_base2) lat "${s#lat_}" 1 "$O" ;;
        lat_new | lat_new2) lat "${s#lat_}" 1 "$N" ;;
        lat_ew0 | lat_ew02) lat "${s#lat_}" 1 TESSERA_GEMV_EARLY_W=0 "$N" ;;
        lat4_base) lat 4_base 4 "$O" ;;
        lat4_new) lat 4_new 4 "$N" ;;
        ncu_base) prof base "$O" ;;
        ncu_new) prof new "$N" ;;
        ncu_ew0) prof ew0 "$N" TESSERA_GEMV_EARLY_W=0 ;;
        fused) step fused 60 "$B/bin/cuda_fused" norm_matmul_fused --nocapture ;;
        ops) step ops 90 "$B/bin/cuda_ops" gemv_shapes gemv_fused_ops --test-threads=2 --nocapture ;;
        *) echo "unknown step $s" ;;
    esac
done
{
    echo "=== device"; cat "$L/device.txt"
    parity_table 8 parity fused ops
    echo "=== M = 1 products (graph over rotating copies)"
    grep -a "^GEMV1" "$L/bench.log" 2> /dev/null
    echo "=== latency (128 / 256)"
    lat_table 8
    for f in "$L"/ncu_*.txt; do
        [ -f "$f" ] && { echo "=== $(basename "$f" .txt)"; cat "$f"; }
    done
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz g1-logs.tgz --exclude='*.csv'
cat "$L/summary.txt"
exit 0
