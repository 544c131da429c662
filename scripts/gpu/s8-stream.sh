#!/usr/bin/env bash
# Session 8's second round in ONE device call (~8 min): the streaming M = 1 GEMV (down_proj,
# lm_head: `TESSERA_GEMV_STREAM=0` off) on top of PDL, with one binary: single-stream latency
# alternated twice each, batch 4 and throughput once each, PDL off once; then parity:
# cuda_gemv1 (incl. gemv_stream_parity), cuda_engine, cuda_ops, cuda_fused, cuda_batch,
# cuda_att256, cuda_prefetch, cuda_models (tiny), wgpu_fused_norm (f16 accuracy vs f32).
#   run(command="bash .gpu/s8-stream.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s8b "${V_BUDGET:-520}"
N="$B/bin/tessera"
ON=TESSERA_GEMV_STREAM=1
OFF=TESSERA_GEMV_STREAM=0
tput() { # name env...
    local name=$1
    shift
    step "tput_$name" 100 env "$@" "$N" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256
}
test_bin() { # name limit args...
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$B/bin/$name" "$@"
}
for s in ${V_STEPS:-lat_stream lat_plain lat_stream2 lat_plain2 cuda_gemv1 lat_nopdl tput_stream tput_plain lat_b4_stream lat_b4_plain cuda_engine norm cuda_ops cuda_fused cuda_batch cuda_att256 cuda_prefetch cuda_models}; do
    case $s in
        lat_stream) LAT_LIMIT=150 lat stream 1 "$ON" "$N" ;;  # the first process compiles the kernels
        lat_stream2) lat stream2 1 "$ON" "$N" ;;
        lat_plain | lat_plain2) lat "${s#lat_}" 1 "$OFF" "$N" ;;
        lat_nopdl) lat nopdl 1 "$ON" TESSERA_CUDA_PDL=0 "$N" ;;
        lat_b4_stream) lat b4_stream 4 "$ON" "$N" ;;
        lat_b4_plain) lat b4_plain 4 "$OFF" "$N" ;;
        tput_stream) tput stream "$ON" ;;
        tput_plain) tput plain "$OFF" ;;
        cuda_engine | cuda_models) test_bin "$s" 120 --test-threads=1 --nocapture ;;
        cuda_ops) test_bin cuda_ops 120 --test-threads=3 --nocapture ;;
        cuda_gemv1 | cuda_fused | cuda_batch | cuda_att256 | cuda_prefetch) test_bin "$s" 100 --test-threads=2 --nocapture ;;
        norm) step wgpu_fused_norm 60 "$B/bin/wgpu_fused_norm" --test-threads=1 --nocapture ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    echo "=== latency 1 x (128 / 256) and batch 4: stream on / off (PDL on but nopdl)"
    lat_host_table 10
    echo "=== throughput 256 x (512 / 256)"
    tput_table 12
    PARITY_GREP="^NORM f16 M = . res|^PARITY .*FAIL|test result|panicked" parity_table 8 cuda_gemv1 cuda_engine wgpu_fused_norm cuda_ops cuda_fused cuda_batch cuda_att256 cuda_prefetch cuda_models
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s8b-logs.tgz
cat "$L/summary.txt"
