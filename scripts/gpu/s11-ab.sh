#!/usr/bin/env bash
# Session 11, first call (~8 min): two default-on changes measured against their switches in
# one call, with their parity:
#   CUDA: the decode attention's first tile of older keys loaded before pdl_wait
#         (TESSERA_ATTN_EARLY_KV=0 = after it, as before): cuda_att1 (both), single stream
#         1 x (128 / 256) on / off alternated twice, batch 4, cuda_engine, cuda_models vs HF;
#   wgpu: the norm matvecs' weights loaded before the norm prologue (TESSERA_WGPU_EARLY_W=0 =
#         after it): SmolLM2-135M decode, CUDA around wgpu on / off / on, and wgpu_fused_norm,
#         wgpu_ops, wgpu_engine on the Vulkan driver.
#   run(command="bash .gpu/s11-ab.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s11 "${V_BUDGET:-520}"
N="$B/bin/tessera"
for r in 1 2; do
    lat "on_$r" 1 "$N"
    lat "off_$r" 1 TESSERA_ATTN_EARLY_KV=0 "$N"
done
lat b4_on 4 "$N"
kcache_save
test_bin wgpu_fused_norm 60 --test-threads=2
# wgpu: early W on / off twice, then the attention's workgroup size (default: the adapter's
# 256) and key splits (default 16) swept, never measured before on a GPU.
G1=TESSERA_WGPU_GRAPHS=1
step smollm2 270 env TESSERA_BIN="$N" DISPATCH_COST=0 CUDA_FIRST="cuda" CUDA_LAST="cuda" OUT="$L" \
    WGPU_ENVS="$G1 $G1,TESSERA_WGPU_EARLY_W=0 $G1 $G1,TESSERA_WGPU_EARLY_W=0 $G1,TESSERA_WGPU_ATTN_WG=32 $G1,TESSERA_WGPU_ATTN_WG=64 $G1,TESSERA_WGPU_ATTN_WG=128 $G1,TESSERA_WGPU_ATTN_SPLIT=8 $G1,TESSERA_WGPU_ATTN_SPLIT=4" \
    bash "$B/wgpu/bench.sh"
test_bin cuda_att1 90 --test-threads=1 --nocapture
test_bin cuda_engine 90 --test-threads=1 --nocapture
test_bin cuda_models 60 tiny_models --test-threads=1 --nocapture
for t in wgpu_ops wgpu_engine; do test_bin "$t" 60 --test-threads=2; done
{
    echo "=== device"; cat "$L/device.txt"
    parity_table 8 cuda_att1 cuda_engine cuda_models wgpu_fused_norm wgpu_ops wgpu_engine
    echo "=== latency"; lat_table 12
    echo "=== smollm2"; cat "$L/table.txt" 2> /dev/null
    echo "=== steps"; cat "$L/steps.txt"
} > "$L/summary.txt"
logs_tgz s11-logs.tgz
cat "$L/summary.txt"
