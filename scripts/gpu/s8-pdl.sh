#!/usr/bin/env bash
# Session 8's round in ONE device call (~9 min): programmatic dependent launch (PDL) on vs
# off (`TESSERA_CUDA_PDL=0`) with one binary: single-stream latency alternated twice each,
# batch 4 and throughput once each; then parity with PDL on (the default): cuda_engine (incl.
# PDL vs plain launches), sampled requests under async scheduling (s7-sample's check),
# wgpu_fused_norm on this GPU's Vulkan driver (its worst elements), cuda_ops, cuda_fused,
# cuda_att1, cuda_gemv1, cuda_models. From scripts/gpu/bundle-all.sh:
#   run(command="bash .gpu/s8-pdl.sh", carry=[".gpu"])
# V_STEPS: the steps in order; V_BUDGET: seconds before the remaining steps are skipped.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s8 "${V_BUDGET:-540}"
N="$B/bin/tessera"
OFF=TESSERA_CUDA_PDL=0
ON=TESSERA_CUDA_PDL=1
tput() { # name env...
    local name=$1
    shift
    step "tput_$name" 100 env "$@" "$N" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256
}
for s in ${V_STEPS:-lat_pdl lat_off lat_pdl2 lat_off2 cuda_engine tput_pdl tput_off lat_b4_pdl lat_b4_off sample norm cuda_ops cuda_fused cuda_att1 cuda_gemv1 cuda_models}; do
    case $s in
        lat_pdl) LAT_LIMIT=150 lat pdl 1 "$ON" "$N" ;;  # the first process compiles the kernels
        lat_pdl2) lat pdl2 1 "$ON" "$N" ;;
        lat_off | lat_off2) lat "$s" 1 "$OFF" "$N" ;;
        lat_b4_pdl) lat b4_pdl 4 "$ON" "$N" ;;
        lat_b4_off) lat b4_off 4 "$OFF" "$N" ;;
        tput_pdl) tput pdl "$ON" ;;
        tput_off) tput off "$OFF" ;;
        cuda_engine | cuda_models) test_bin "$s" 150 --test-threads=1 --nocapture ;;
        cuda_ops) test_bin cuda_ops 150 --test-threads=3 --nocapture ;;
        cuda_fused | cuda_att1 | cuda_gemv1) test_bin "$s" 100 --test-threads=2 --nocapture ;;
        sample)
            step cuda_ops_sample 60 "$B/bin/cuda_ops" sample argmax --test-threads=2 --nocapture
            for a in 1 0; do
                step "gen_async$a" 40 env TESSERA_ASYNC_SCHEDULING=$a "$N" generate --model "$B/fixtures/llama" --device cuda \
                    --dtype float32 --prompt-token-ids 231,79,154,180,251 --max-tokens 24 --temperature 0.8 --top-p 0.9 --seed 3 --ignore-eos --json
            done
            ;;
        norm) step wgpu_fused_norm 60 "$B/bin/wgpu_fused_norm" --test-threads=1 --nocapture ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    echo "=== latency 1 x (128 / 256) and batch 4: PDL on / off"
    lat_host_table 10
    echo "=== throughput 256 x (512 / 256)"
    tput_table 10
    echo "=== sampled requests, async on / off"
    for a in 1 0; do echo "async $a: $(grep -ao '"token_ids":\[[0-9,]*\]' "$L/gen_async$a.log" 2> /dev/null | head -1)"; done
    PARITY_GREP="^PDL|^NORM|^PARITY .*FAIL|test result|panicked|adapter" parity_table 14 cuda_engine cuda_ops_sample wgpu_fused_norm cuda_ops cuda_fused cuda_att1 cuda_gemv1 cuda_models
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s8-logs.tgz
cat "$L/summary.txt"
