#!/usr/bin/env bash
# Runs on the GPU machine from a bundle holding bench.sh, compare.sh, the model parts and
# xz-compressed binaries (tessera, tessera-base, wgpu_kernel_cost, wgpu_kernel_cost-base):
# the per-kernel chain costs (core/examples/wgpu_kernel_cost.rs) of the base and of the new
# kernels under each KERNEL_ENVS word (comma-separated TESSERA_WGPU_* settings, "-" = none),
# then compare.sh (decode tok/s: base vs new, CUDA in the same call).
#   run(command="bash .gpu-C/kernels.sh", carry=[".gpu-C"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
R=${OUT:-/tmp}
for f in "$B"/*.xz; do
    [ -e "$f" ] || continue
    xz -d -c "$f" > "/tmp/$(basename "${f%.xz}")" && chmod +x "/tmp/$(basename "${f%.xz}")"
done
# The Vulkan loader / ICD set-up bench.sh does (for the examples run before it).
if ! ldconfig -p | grep -q 'libvulkan.so.1' || ! ldconfig -p | grep -q 'libGLdispatch'; then
    for f in "$B"/deb/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -e "$icd" ] && { export VK_DRIVER_FILES="$icd"; break; }
done
export VK_LOADER_DEBUG=error
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ "${KERNELS:-1}" = 1 ]; then
    echo "== kernel chains, base" | tee "$R/kernels.txt"
    [ -x /tmp/wgpu_kernel_cost-base ] && timeout 120 /tmp/wgpu_kernel_cost-base 2>&1 | grep -v "^$" | tee -a "$R/kernels.txt"
    for e in ${KERNEL_ENVS:--}; do
        echo "== kernel chains, new: $e" | tee -a "$R/kernels.txt"
        env $( [ "$e" = - ] || echo "$e" | tr ',' ' ') CHAINS="${CHAINS_NEW:-qkv o_proj mlp attn@16 attn@272 attn@528 attn@1000 layer@272 tail}" \
            timeout 120 /tmp/wgpu_kernel_cost 2>&1 | grep -v "^$" | tee -a "$R/kernels.txt"
    done
fi
if [ "${BENCH:-1}" = 1 ]; then
    PROFILE=${PROFILE:-0} bash "$B/compare.sh"
fi
echo "== kernels"
cat "$R/kernels.txt"
