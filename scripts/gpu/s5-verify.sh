#!/usr/bin/env bash
# Session 5's verification round in ONE device call (~7 min), before the closing measurement:
# the new CUDA paths' parity, their switches A/B on single-stream latency, the wgpu op parity
# on the real GPU (subgroups and attention splits run only there, not on lavapipe), and
# wgpu vs CUDA decode for the base and new binaries. From a bundle made by
#   BUNDLE_FEATURES=cuda,wgpu GPU_BUNDLE_DIR=.gpu scripts/build-gpu-bundle.sh
# plus bin/tessera-base (the binary to compare with), bin/wgpu_* (release test binaries of
# core with --features wgpu) and wgpu/ (scripts/wgpu-bench: bench.sh, rebuild_gguf.py, gguf/,
# deb/), binaries optionally xz-compressed:
#   run(command="bash .gpu/s5-verify.sh", carry=[".gpu"])
# Steps run in the order of V_STEPS and stop at V_BUDGET seconds (default 540); a summary is
# printed last, the logs come back as $OUT/s5-logs.tgz.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s5 "${V_BUDGET:-540}"
N="$B/bin/tessera" O="$B/bin/tessera-base"
for s in ${V_STEPS:-cuda_att1 cuda_gemv1 cuda_ops_part cuda_att256 cuda_fused lat_new lat_base lat_tile_off lat_early_off lat_new2 wgpu_reductions wgpu_fused_kv wgpu_ops wgpu_bench cuda_batch cuda_engine lat4_new lat4_base}; do
    case $s in
        cuda_att1 | cuda_gemv1 | cuda_att256 | cuda_engine) step "$s" 120 "$B/bin/$s" --test-threads=1 --nocapture ;;
        cuda_fused | cuda_batch) step "$s" 120 "$B/bin/$s" --test-threads=2 --nocapture ;;
        cuda_ops_part) step "$s" 150 "$B/bin/cuda_ops" paged_attention gemv argmax sample --test-threads=3 --nocapture ;;
        lat_new | lat_new2) lat "${s#lat_}" 1 "$N" ;;
        lat_base) lat base 1 "$O" ;;
        lat_tile_off) lat tile_off 1 TESSERA_ATTN_TILE_SPLITS=0 "$N" ;;
        lat_early_off) lat early_off 1 TESSERA_GEMV_EARLY_W=0 "$N" ;;
        lat4_new) lat 4_new 4 "$N" ;;
        lat4_base) lat 4_base 4 "$O" ;;
        wgpu_ops | wgpu_reductions | wgpu_fused_kv | wgpu_fused_norm) step "$s" 120 "$B/bin/$s" --test-threads=1 ;;
        wgpu_bench)
            mkdir -p /tmp/wb-base /tmp/wb-new
            OUT=/tmp/wb-base TABLE=$L/wgpu-base.txt TESSERA_BIN="$O" DISPATCH_COST=0 step wgpu_base 120 bash "$B/wgpu/bench.sh"
            OUT=/tmp/wb-new TABLE=$L/wgpu-new.txt TESSERA_BIN="$N" DISPATCH_COST=0 WGPU_ENVS="${NEW_ENVS:-TESSERA_WGPU_GRAPHS=1}" \
                step wgpu_new 150 bash "$B/wgpu/bench.sh"
            ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    PARITY_GREP="^PARITY .*FAIL|test result|panicked|adapter" parity_table 8 cuda_att1 cuda_gemv1 cuda_ops_part cuda_att256 \
        cuda_fused cuda_batch cuda_engine wgpu_reductions wgpu_fused_kv wgpu_ops
    echo "=== latency 1 (and 4) x (128 / 256)"
    for f in "$L"/lat_*.log; do
        [ -f "$f" ] || continue
        printf '%-12s %s\n' "$(basename "$f" .log | sed 's/^lat_//')" "$(grep -a 'decode:' "$f" | tail -1)"
    done
    echo "=== wgpu vs CUDA (base binary, then new)"
    cat "$L/wgpu-base.txt" "$L/wgpu-new.txt" 2> /dev/null
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s5-logs.tgz
cat "$L/summary.txt"
