#!/usr/bin/env bash
# Session 8's third round in ONE device call (~6 min): the decode attention's 2..8 key splits
# merged inside a thread block cluster (default) against the combine launch
# (`TESSERA_ATTN_CLUSTER=0`), with PDL on, one binary: single-stream latency alternated twice
# each, batch 4 once each, PDL off once; the roofline (copy bandwidth) of the same call; then
# parity: cuda_att1 (cluster and combine cases, graph replays), cuda_engine, cuda_ops,
# cuda_att256, cuda_fused, cuda_models (tiny), and throughput once.
#   run(command="bash .gpu/s8-cluster.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s8c "${V_BUDGET:-400}"
N="$B/bin/tessera"
ON=TESSERA_ATTN_CLUSTER=1
OFF=TESSERA_ATTN_CLUSTER=0
for s in ${V_STEPS:-lat_cluster lat_combine lat_cluster2 lat_combine2 cuda_att1 lat_nopdl lat_b4_cluster lat_b4_combine roofline cuda_engine cuda_ops cuda_att256 cuda_fused cuda_models tput}; do
    case $s in
        lat_cluster) LAT_LIMIT=150 lat cluster 1 "$ON" "$N" ;;  # the first process compiles the kernels
        lat_cluster2) lat cluster2 1 "$ON" "$N" ;;
        lat_combine | lat_combine2) lat "${s#lat_}" 1 "$OFF" "$N" ;;
        lat_nopdl) lat nopdl 1 "$ON" TESSERA_CUDA_PDL=0 "$N" ;;
        lat_b4_cluster) lat b4_cluster 4 "$ON" "$N" ;;
        lat_b4_combine) lat b4_combine 4 "$OFF" "$N" ;;
        roofline) step roofline 90 python3 "$B/scripts/hf_bench.py" "$B/smollm3-3b" "$L/roofline.json" --roofline ;;
        tput) step tput 60 "$N" bench throughput "${M[@]}" --input-len 512 --output-len 256 --num-prompts 256 ;;
        cuda_engine | cuda_models | cuda_att1) test_bin "$s" 120 --test-threads=1 --nocapture ;;
        cuda_ops) test_bin cuda_ops 120 --test-threads=3 --nocapture ;;
        cuda_att256 | cuda_fused) test_bin "$s" 100 --test-threads=2 --nocapture ;;
        *) echo "unknown step $s" ;;
    esac
done

{
    echo "=== device"; cat "$L/device.txt"
    echo "=== latency 1 x (128 / 256) and batch 4: cluster merge on / off (PDL on but nopdl)"
    lat_host_table 10
    echo "=== roofline"; grep -aiE "copy|GB/s|TFLOP|floor" "$L/roofline.log" | head -5
    echo "=== throughput 256 x (512 / 256)"; grep -aE "^Throughput|decode-only" "$L/tput.log"
    PARITY_GREP="^PARITY .*FAIL|test result|panicked" parity_table 6 cuda_att1 cuda_engine cuda_ops cuda_att256 cuda_fused cuda_models
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s8c-logs.tgz
cat "$L/summary.txt"
