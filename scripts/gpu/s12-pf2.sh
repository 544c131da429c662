#!/usr/bin/env bash
# Session 12, fourth call: the prefetch of 8 weights (o_proj, the MLP, the next layer's q/k/v) against 4 and none, and the matvec lanes per column
# (`Backend::prefetch`: 8 weights by default, =4 this layer's only, =0 off) on SmolLM2-135M:
# chain costs on / off, wgpu_engine and wgpu_ops on the NVIDIA Vulkan driver, decode tok/s
# and GPU busy a step on / off alternated, CUDA's rate in the same call.
#   run(command="bash .gpu-w/s12-pf2.sh", carry=[".gpu-w"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
for f in tessera wgpu_kernel_cost wgpu_ops wgpu_engine; do [ -x "$B/$f" ] || { xz -d -f "$B/$f.xz" && chmod +x "$B/$f"; }; done
# The test binaries find the fixtures where they were built.
[ -d /work/main/tests/fixtures ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/main; }
if ! ldconfig -p | grep -q 'libvulkan.so.1' || ! ldconfig -p | grep -q 'libGLdispatch'; then
    for f in "$B"/deb/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -e "$icd" ] && { export VK_DRIVER_FILES="$icd"; break; }
done
export VK_LOADER_DEBUG=error
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for e in - TESSERA_WGPU_PREFETCH=4 TESSERA_WGPU_PREFETCH=0 TESSERA_WGPU_VEC_LANES=16 TESSERA_WGPU_VEC_LANES=64 - TESSERA_WGPU_PREFETCH=4 TESSERA_WGPU_PREFETCH=0; do
    echo "== $e"
    env $( [ "$e" = - ] || echo "$e") CHAINS="${CHAINS_EXP:-layer@272 model@16 model@272 model@528}" timeout 60 "$B/wgpu_kernel_cost" 2>&1 | grep -v "^$" | grep -v adapter
done
for t in wgpu_engine wgpu_ops; do
    echo "== $t"
    timeout 120 "$B/$t" --test-threads=2 2>&1 | grep -aE "test result|panicked|FAILED" | head -10
done
G1=TESSERA_WGPU_GRAPHS=1
OFF=$G1,TESSERA_WGPU_PREFETCH=0
P4=$G1,TESSERA_WGPU_PREFETCH=4
mkdir -p /tmp/s12
CUDA_FIRST=cuda CUDA_LAST= DISPATCH_COST=0 PROFILE=0 OUT=/tmp/s12 TESSERA_BIN="$B/tessera" \
    WGPU_ENVS="$G1 $P4 $OFF $G1 $P4 $OFF" timeout 360 bash "$B/bench.sh" 2>&1 | grep -a -E "decode|FAILED"
for v in "" "TESSERA_WGPU_PREFETCH=4" "TESSERA_WGPU_PREFETCH=0" "" "TESSERA_WGPU_PREFETCH=4" "TESSERA_WGPU_PREFETCH=0"; do
    mkdir -p /tmp/s12/p$RANDOM; d=$(ls -td /tmp/s12/p* | head -1)
    CUDA_FIRST="" WGPU_ENVS="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step OUT=$d TESSERA_BIN="$B/tessera" WGPU_PROFILE_ENV="$v" \
        timeout 60 bash "$B/bench.sh" 2>&1 | grep -a -E "wgpu profile" | sed "s/^/[${v:-prefetch}] /; s/gpu per entry.*//; s/read-backs, .*read-back (us)://"
done
