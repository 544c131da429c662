#!/usr/bin/env bash
# One device call for the single-stream decode work of branch cuda-att1 (one-tile decode key
# splits for small grids, split partials with no zero fill, multi-block argmax), from a
# bundle built by
#   BUNDLE_FEATURES=cuda,wgpu GPU_BUNDLE_DIR=/work/main/.gpu-A scripts/build-gpu-bundle.sh
# plus bin/tessera-base (main's binary to compare with; binaries may be .xz), then
#   run(command="bash .gpu-A/att1-round.sh", carry=[".gpu-A"])
#
# Steps, most telling first, cut at ATT1_BUDGET seconds (default 420); ATT1_STEPS picks them:
#   cuda_att1 (new parity cases), lat_new / lat_base twice interleaved (bench latency 1 x
#   (128 / 256) bf16 SmolLM3-3B dummy), ncu per-node of one late decode step (replay
#   ATT1_REPLAY, default 240: context ~370) of new and base (att1_ncu.py: the graph + the
#   eager tail), the switch (TESSERA_ATTN_TILE_SPLITS=0: the older split rule), then the
#   existing parity suites the change touches (cuda_ops, cuda_att256, cuda_batch, cuda_fused,
#   cuda_engine; cuda_ops_att: only cuda_ops' paged_attention tests). A summary is printed
#   last; logs come back as $OUT/att1-logs.tgz. The lead's short verification (~200 s):
#   ATT1_BUDGET=190 ATT1_STEPS="cuda_att1 cuda_ops_att cuda_att256 cuda_fused cuda_batch
#   lat_new lat_base lat_tile_off" bash .gpu-A/att1-round.sh
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
unxz_bins "$B"
gpu_env "$B"
round_start /tmp/att1 "${ATT1_BUDGET:-420}"
prof() { # name binary: ncu node durations of one late replayed decode step (+ its eager tail)
    step "ncu_$1" 150 env TESSERA_CUDA_PROFILER_REPLAYS="${ATT1_REPLAY:-240}:2" "${NCU_NODES[@]}" --profile-from-start off \
        --print-units base --log-file "$L/ncu_$1.csv" \
        "$2" bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 1 --num-iters-warmup 0
    python3 "$B/att1_ncu.py" "$L/ncu_$1.csv" 36 > "$L/ncu_$1.txt" 2>&1
}
N="$B/bin/tessera" O="$B/bin/tessera-base"
for s in ${ATT1_STEPS:-cuda_att1 lat_new lat_base ncu_new ncu_base lat_new2 lat_base2 lat_tile_off cuda_ops cuda_att256 cuda_batch cuda_engine cuda_fused}; do
    case $s in
        cuda_att1) step cuda_att1 120 "$B/bin/cuda_att1" --test-threads=1 --nocapture ;;
        cuda_ops) step cuda_ops 120 "$B/bin/cuda_ops" --test-threads=3 --nocapture ;;
        cuda_ops_att) step cuda_ops_att 60 "$B/bin/cuda_ops" paged_attention --test-threads=3 --nocapture ;;
        cuda_att256) step cuda_att256 100 "$B/bin/cuda_att256" --test-threads=1 --nocapture ;;
        cuda_batch) step cuda_batch 100 "$B/bin/cuda_batch" --test-threads=3 --nocapture ;;
        cuda_engine) step cuda_engine 100 "$B/bin/cuda_engine" --test-threads=1 --nocapture ;;
        cuda_fused) step cuda_fused 120 "$B/bin/cuda_fused" --test-threads=2 --nocapture ;;
        lat_new | lat_new2) lat "${s#lat_}" 1 "$N" ;;
        lat_base | lat_base2) lat "${s#lat_}" 1 "$O" ;;
        lat_tile_off) lat tile_off 1 TESSERA_ATTN_TILE_SPLITS=0 "$N" ;;
        ncu_new) prof new "$N" ;;
        ncu_base) prof base "$O" ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    parity_table 8 cuda_att1 cuda_ops cuda_ops_att cuda_att256 cuda_batch cuda_engine cuda_fused
    echo "=== latency 1 x (128 / 256)"
    lat_table 10
    for v in new base; do
        [ -f "$L/ncu_$v.txt" ] && { echo "=== ncu $v (one late decode step + tail)"; head -16 "$L/ncu_$v.txt"; }
    done
    echo "=== steps"; cat "$L/steps.txt"
} | tee "$L/summary.txt"
logs_tgz att1-logs.tgz --exclude='*.csv'
# shellcheck disable=SC2046 # one argument per CSV file
[ -n "${OUT:-}" ] && tar czf "$OUT/att1-ncu.tgz" -C "$L" $(cd "$L" && ls *.csv 2>/dev/null) 2> /dev/null
exit 0
