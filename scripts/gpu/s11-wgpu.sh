#!/usr/bin/env bash
# Session 11, fifth call (~3 min), bundle of scripts/wgpu-bench-bundle.sh .gpu-w plus this
# script and the release wgpu_ops test binary: wgpu paged attention's early K/V
# (TESSERA_WGPU_EARLY_KV=0 = every key after q's barrier) on / off alternated three times on
# SmolLM2-135M (decode tok/s and GPU busy a step; no CUDA rows: their kernels would compile
# first), then wgpu_ops on the NVIDIA Vulkan driver.
#   run(command="bash .gpu-w/s11-wgpu.sh", carry=[".gpu-w"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
mkdir -p /tmp/s11w
for f in tessera wgpu_ops; do [ -x "$B/$f" ] || { xz -d -f "$B/$f.xz" && chmod +x "$B/$f"; }; done
G1=TESSERA_WGPU_GRAPHS=1
CUDA_FIRST="" CUDA_LAST="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step OUT=/tmp/s11w \
    WGPU_ENVS="$G1 $G1,TESSERA_WGPU_EARLY_KV=0 $G1 $G1,TESSERA_WGPU_EARLY_KV=0 $G1 $G1,TESSERA_WGPU_EARLY_KV=0" \
    timeout 170 bash "$B/bench.sh" 2>&1 | grep -a -E "decode|FAILED|profile"
mkdir -p /tmp/s11w/p0
CUDA_FIRST="" WGPU_ENVS="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step OUT=/tmp/s11w/p0 WGPU_PROFILE_ENV=TESSERA_WGPU_EARLY_KV=0 \
    timeout 40 bash "$B/bench.sh" 2>&1 | grep -a -E "wgpu profile" | sed 's/^/EARLY_KV=0 /'
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -e "$icd" ] && { export VK_DRIVER_FILES="$icd"; break; }
done
timeout 90 "$B/wgpu_ops" op_parity attention_parity --test-threads=1 2>&1 | grep -aE "^test |test result|panicked|adapter" | head -20
