#!/usr/bin/env bash
# Session 6's verification round in ONE device call (~7 min): the new paths' parity, their
# switches A/B on single-stream latency (and one throughput run each for the new and base
# binaries), the wgpu tests on the real GPU, and wgpu vs CUDA decode with each wgpu switch.
# From a bundle made by
#   BUNDLE_FEATURES=cuda,wgpu GPU_BUNDLE_DIR=.gpu scripts/build-gpu-bundle.sh
# plus bin/tessera-base (the binary to compare with), bin/wgpu_* (release test binaries of
# core with --features wgpu) and wgpu/ (scripts/wgpu-bench: bench.sh, rebuild_gguf.py, gguf/,
# deb/), binaries optionally xz-compressed:
#   run(command="bash .gpu/s6-verify.sh", carry=[".gpu"])
# V_STEPS: the steps in order; V_BUDGET: seconds before the remaining steps are skipped
# (default 520); LAT_OFF: the env words of the single-stream A/B (one latency run each);
# WGPU_NEW_ENVS: the env words of the new binary's wgpu runs. A summary is printed last; the
# logs come back as $OUT/s6-logs.tgz.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s6 "${V_BUDGET:-520}"
N="$B/bin/tessera" O="$B/bin/tessera-base"
tput() { # name env... binary
    local name=$1
    shift
    step "tput_$name" 90 env "$@" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256
}
for s in ${V_STEPS:-cuda_fused_kv cuda_fused_merge cuda_att1 cuda_ops_part cuda_engine cuda_fused cuda_batch lat_new lat_base lat_off lat_new2 wgpu_tests wgpu_bench wgpu_chains tput_new tput_base lat4_new lat4_base cuda_gemv1 cuda_att256}; do
    case $s in
        cuda_ops_part) step "$s" 150 "$B/bin/cuda_ops" paged_attention gemv write_kv --test-threads=3 --nocapture ;;
        cuda_fused | cuda_batch) step "$s" 120 "$B/bin/$s" --test-threads=2 --nocapture ;;
        cuda_*) [ -x "$B/bin/$s" ] && step "$s" 120 "$B/bin/$s" --test-threads=1 --nocapture ;;
        lat_new | lat_new2) lat "${s#lat_}" 1 "$N" ;;
        lat_base) lat base 1 "$O" ;;
        lat_off)
            for e in ${LAT_OFF:-TESSERA_GEMV_EARLY_W=0 TESSERA_ATTN_TILE_SPLITS=0}; do
                # shellcheck disable=SC2046 # one word of comma-separated settings
                lat "off_$(echo "$e" | tr ',=' '+-')" 1 $(echo "$e" | tr ',' ' ') "$N"
            done
            ;;
        lat4_new) lat 4_new 4 "$N" ;;
        lat4_base) lat 4_base 4 "$O" ;;
        tput_new) tput new "$N" ;;
        tput_base) tput base "$O" ;;
        wgpu_tests)
            for t in "$B"/bin/wgpu_*; do
                [ -x "$t" ] && [ "$(basename "$t")" != wgpu_kernel_cost ] && step "$(basename "$t")" 120 "$t" --test-threads=1
            done
            ;;
        wgpu_chains)
            # Per-kernel chains (core/examples/wgpu_kernel_cost.rs) under each CHAIN_ENVS word.
            for e in ${CHAIN_ENVS:-- TESSERA_WGPU_ATTN_LEAN=0}; do
                # shellcheck disable=SC2046 # one word of comma-separated settings
                [ -x "$B/bin/wgpu_kernel_cost" ] && step "chains_$(echo "$e" | tr ',=' '+-')" 90 env $( [ "$e" = - ] || echo "$e" | tr ',' ' ') \
                    CHAINS="${CHAINS:-attn@16 attn@272 attn@528 layer@272 model@272 tail}" "$B/bin/wgpu_kernel_cost"
            done
            ;;
        wgpu_bench)
            mkdir -p /tmp/wb-base /tmp/wb-new
            OUT=/tmp/wb-base TABLE=$L/wgpu-base.txt TESSERA_BIN="$O" DISPATCH_COST=0 PROFILE=0 step wgpu_base 120 bash "$B/wgpu/bench.sh"
            # The new binary also with TESSERA_WGPU_PROFILE=step: GPU busy / idle per read-back.
            OUT=/tmp/wb-new TABLE=$L/wgpu-new.txt TESSERA_BIN="$N" DISPATCH_COST=0 \
                PROFILE="${WGPU_PROFILE:-1}" PROFILE_MODES="${WGPU_PROFILE_MODES:-step}" \
                WGPU_ENVS="${WGPU_NEW_ENVS:-TESSERA_WGPU_GRAPHS=1}" step wgpu_new 200 bash "$B/wgpu/bench.sh"
            ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    PARITY_GREP="^PARITY .*FAIL|test result|panicked|adapter" parity_table 8 cuda_fused_kv cuda_fused_merge cuda_att1 \
        cuda_ops_part cuda_engine cuda_fused cuda_batch cuda_gemv1 cuda_att256 $(cd "$L" && ls wgpu_*.log 2> /dev/null | sed 's/\.log$//' | grep -v 'wgpu_base\|wgpu_new\|wgpu_kernel_cost')
    echo "=== latency 1 (and 4) x (128 / 256)"
    lat_host_table 40
    echo "=== throughput 256 x (512 / 256)"
    tput_table 10
    for f in "$L"/chains_*.log; do
        [ -f "$f" ] && { echo "=== $(basename "$f" .log)"; grep -av '^$' "$f" | tail -20; }
    done
    echo "=== wgpu vs CUDA (base binary, then new)"
    cat "$L/wgpu-base.txt" "$L/wgpu-new.txt" 2> /dev/null
    grep -a "^wgpu profile" "$L/wgpu_new.log" 2> /dev/null
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s6-logs.tgz
cat "$L/summary.txt"
