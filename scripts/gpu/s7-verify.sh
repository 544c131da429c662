#!/usr/bin/env bash
# Session 7's verification round in ONE device call (~8 min): async scheduling (the next
# step launched before this one's ids are read back) against synchronous steps, with one
# binary. Parity: cuda_engine (async vs sync, graphs and eager, preemption) and the wgpu
# engine tests on this GPU's Vulkan driver; speed: single-stream latency sync / async twice
# each (alternating), throughput sync / async once each, wgpu vs CUDA SmolLM2 decode with
# and without async (and the wgpu step profile with async). From scripts/gpu/bundle-all.sh:
#   run(command="bash .gpu/s7-verify.sh", carry=[".gpu"])
# V_STEPS: the steps in order; V_BUDGET: seconds before the remaining steps are skipped.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s7 "${V_BUDGET:-530}"
N="$B/bin/tessera"
A=TESSERA_ASYNC_SCHEDULING=1
tput() { # name env...
    local name=$1
    shift
    step "tput_$name" 100 env "$@" "$N" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256
}
for s in ${V_STEPS:-cuda_engine lat_sync lat_async lat_sync2 lat_async2 tput_sync tput_async wgpu_bench wgpu_engine cuda_models cuda_ops}; do
    case $s in
        cuda_engine | cuda_models) step "$s" 150 "$B/bin/$s" --test-threads=1 --nocapture ;;
        cuda_ops) step "$s" 150 "$B/bin/cuda_ops" --test-threads=3 --nocapture ;;
        lat_sync | lat_sync2) lat "$s" 1 TESSERA_ASYNC_SCHEDULING=0 "$N" ;;
        lat_async | lat_async2) lat "$s" 1 "$A" "$N" ;;
        tput_sync) tput sync TESSERA_ASYNC_SCHEDULING=0 ;;
        tput_async) tput async "$A" ;;
        wgpu_engine) step "$s" 120 "$B/bin/wgpu_engine" --test-threads=1 ;;
        wgpu_bench)
            mkdir -p /tmp/wb
            OUT=/tmp/wb TABLE=$L/wgpu.txt TESSERA_BIN="$N" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step WGPU_PROFILE_ENV="$A" \
                CUDA_FIRST="cuda cuda+$A" WGPU_ENVS="TESSERA_WGPU_GRAPHS=1 TESSERA_WGPU_GRAPHS=1,$A" step wgpu_bench 220 bash "$B/wgpu/bench.sh"
            ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    PARITY_GREP="^PARITY .*FAIL|^ENGINE|test result|panicked|adapter" parity_table 12 cuda_engine wgpu_engine cuda_models cuda_ops
    echo "=== latency 1 x (128 / 256)"
    lat_host_table 14
    echo "=== throughput 256 x (512 / 256)"
    tput_table 12
    echo "=== wgpu vs CUDA (SmolLM2 decode)"
    cat "$L/wgpu.txt" 2> /dev/null
    grep -a "^wgpu profile" "$L/wgpu_bench.log" 2> /dev/null
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s7-logs.tgz
cat "$L/summary.txt"
