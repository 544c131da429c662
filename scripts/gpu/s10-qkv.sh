#!/usr/bin/env bash
# Session 10: q/k/v + RoPE + write_kv as one GEMV launch (native/src/cuda/qkv_kv.rs; default
# on, TESSERA_CUDA_FUSE_QKV_KV=0 the three launches as before), checked and measured (~4 min):
#   parity: cuda_qkv_kv (fused vs unfused bitwise, vs CPU), cuda_fused, cuda_engine,
#           cuda_models tiny_models (vs HF), cuda_att1
#   speed:  single stream 1 x (128 / 256) on vs off alternated, twice; batch 4 on / off;
#           SmolLM2-135M CUDA decode (wgpu/bench.sh's CUDA rows) on / off
#   run(command="bash .gpu/s10-qkv.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s10q "${V_BUDGET:-330}"
N="$B/bin/tessera"
test_bin cuda_qkv_kv 90 --test-threads=1 --nocapture
for r in 1 2; do
    lat "on_$r" 1 "$N"
    lat "off_$r" 1 TESSERA_CUDA_FUSE_QKV_KV=0 "$N"
done
lat b4_on 4 "$N"
lat b4_off 4 TESSERA_CUDA_FUSE_QKV_KV=0 "$N"
kcache_save
test_bin cuda_engine 90 --test-threads=1 --nocapture
test_bin cuda_models 60 tiny_models --test-threads=1 --nocapture
test_bin cuda_fused 90 --test-threads=2 --nocapture
step smollm2 120 env TESSERA_BIN="$N" DISPATCH_COST=0 CUDA_FIRST="cuda cuda+TESSERA_CUDA_FUSE_QKV_KV=0" WGPU_ENVS="" OUT="$L" bash "$B/wgpu/bench.sh"
test_bin cuda_att1 60 --test-threads=1 --nocapture
{
    echo "=== device"; cat "$L/device.txt"
    for t in cuda_qkv_kv cuda_engine cuda_models cuda_fused cuda_att1; do
        echo "=== $t"; grep -a -E "test result|panicked|FAIL|MISMATCH|mismatch" "$L/$t.log" | grep -av "mismatches=0" | head -8
        echo "PARITY lines: $(grep -ac PARITY "$L/$t.log"), not ok: $(grep -a PARITY "$L/$t.log" | grep -acv ' ok$')"
    done
    echo "=== latency"; lat_table 12
    echo "=== smollm2"; cat "$L/table.txt" 2> /dev/null
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s10q-logs.tgz
cat "$L/summary.txt"
