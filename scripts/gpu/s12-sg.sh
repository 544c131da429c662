#!/usr/bin/env bash
# Session 12, fifth call: RMSNorm's and the decode matvecs' norm prologue's sums of squares
# added by subgroups (one barrier instead of a tree): this binary (tessera) against main
# before it (tessera-base) on SmolLM2-135M, alternated: GPU busy a step, decode tok/s (CUDA
# first), then wgpu_fused_norm (fused == unfused, bit for bit in f32), wgpu_ops and
# wgpu_engine on the NVIDIA Vulkan driver.
#   run(command="bash .gpu-w/s12-sg.sh", carry=[".gpu-w"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
for f in tessera tessera-base wgpu_kernel_cost wgpu_ops wgpu_engine wgpu_fused_norm; do [ -x "$B/$f" ] || { xz -d -f "$B/$f.xz" && chmod +x "$B/$f"; }; done
[ -d /work/main/tests/fixtures ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/main; }
. "$B/vulkan.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
CHAINS="qkv mlp layer@272 model@272" timeout 60 "$B/wgpu_kernel_cost" 2>&1 | grep -v "^$"
for t in wgpu_fused_norm wgpu_ops wgpu_engine; do
    echo "== $t"
    timeout 120 "$B/$t" --test-threads=2 2>&1 | grep -aE "test result|panicked|FAILED" | head -10
done
mkdir -p /tmp/s12
for bin in tessera-base tessera tessera-base tessera tessera-base tessera; do
    mkdir -p /tmp/s12/p$RANDOM; d=$(ls -td /tmp/s12/p* | head -1)
    CUDA_FIRST="" WGPU_ENVS="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step OUT=$d TESSERA_BIN="$B/$bin" \
        timeout 60 bash "$B/bench.sh" 2>&1 | grep -a -E "wgpu profile" | sed "s/^/[$bin] /; s/gpu per entry.*//; s/read-backs, .*read-back (us)://"
done
for bin in tessera-base tessera tessera-base tessera; do
    mkdir -p /tmp/s12/r$RANDOM; d=$(ls -td /tmp/s12/r* | head -1)
    CUDA_FIRST=$( [ "$bin" = tessera-base ] && [ ! -e /tmp/s12/cuda-done ] && echo cuda ) DISPATCH_COST=0 PROFILE=0 OUT=$d TESSERA_BIN="$B/$bin" \
        WGPU_ENVS="TESSERA_WGPU_GRAPHS=1" timeout 150 bash "$B/bench.sh" 2>&1 | grep -a -E "decode|FAILED" | sed "s/^/[$bin] /"
    touch /tmp/s12/cuda-done
done
