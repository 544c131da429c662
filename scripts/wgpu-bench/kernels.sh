#!/usr/bin/env bash
# Runs on the GPU machine from a bundle holding bench.sh, compare.sh, the model parts and
# xz-compressed binaries (tessera, tessera-base, wgpu_kernel_cost, wgpu_kernel_cost-base):
# the per-kernel chain costs (core/examples/wgpu_kernel_cost.rs) of the base and of the new
# kernels under each KERNEL_ENVS word (comma-separated TESSERA_WGPU_* settings, "-" = none),
# then compare.sh (decode tok/s: base vs new, CUDA in the same call). LEAN=1: instead of
# compare.sh, first bench.sh of the base (CUDA + wgpu) and of the new binary (wgpu) only.
#   run(command="bash .gpu-C/kernels.sh", carry=[".gpu-C"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
R=${OUT:-/tmp}
for f in "$B"/*.xz; do
    [ -e "$f" ] || continue
    xz -d -c "$f" > "/tmp/$(basename "${f%.xz}")" && chmod +x "/tmp/$(basename "${f%.xz}")"
done
# The Vulkan loader / ICD set-up bench.sh does (for the examples run before it).
. "$B/vulkan.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ "${LEAN:-0}" = 1 ]; then
    mkdir -p /tmp/b-base /tmp/b-new
    OUT=/tmp/b-base TABLE=$R/base-table.txt TESSERA_BIN=/tmp/tessera-base DISPATCH_COST=0 WGPU_ENVS="TESSERA_WGPU_GRAPHS=1" \
        bash "$B/bench.sh" > /tmp/b-base/stdout 2>&1
    OUT=/tmp/b-new TABLE=$R/new-table.txt TESSERA_BIN=/tmp/tessera DISPATCH_COST=0 CUDA_FIRST= WGPU_ENVS="${NEW_ENVS:-TESSERA_WGPU_GRAPHS=1}" \
        bash "$B/bench.sh" > /tmp/b-new/stdout 2>&1
    grep -ah "FAILED" -A5 /tmp/b-base/stdout /tmp/b-new/stdout | head -20
    BENCH=0
fi
if [ "${KERNELS:-1}" = 1 ]; then
    echo "== kernel chains, base" | tee "$R/kernels.txt"
    [ -x /tmp/wgpu_kernel_cost-base ] && timeout 120 /tmp/wgpu_kernel_cost-base 2>&1 | grep -v "^$" | tee -a "$R/kernels.txt"
    for e in ${KERNEL_ENVS:--}; do
        echo "== kernel chains, new: $e" | tee -a "$R/kernels.txt"
        env $( [ "$e" = - ] || echo "$e" | tr ',' ' ') CHAINS="${CHAINS_NEW:-qkv o_proj mlp attn@16 attn@272 attn@528 attn@1000 layer@272 model@272 tail}" \
            timeout 120 /tmp/wgpu_kernel_cost 2>&1 | grep -v "^$" | tee -a "$R/kernels.txt"
    done
fi
if [ "${BENCH:-1}" = 1 ]; then
    PROFILE=${PROFILE:-0} bash "$B/compare.sh"
fi
echo "== kernels"
cat "$R/kernels.txt"
echo "== tables"
cat "$R/base-table.txt" "$R/new-table.txt" 2>/dev/null
