#!/usr/bin/env bash
# Session 12, sixth call: the sum of squares' reduction moved into row_sum.wgsl (shared by
# RMSNorm and the norm prologue; the same arithmetic): wgpu_fused_norm and wgpu_ops on the
# NVIDIA Vulkan driver, then GPU busy a step of this binary (tessera) against the one before
# (tessera-base), alternated twice.
#   run(command="bash .gpu-w/s12-rowsum.sh", carry=[".gpu-w"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
for f in tessera tessera-base wgpu_ops wgpu_fused_norm; do [ -x "$B/$f" ] || { xz -d -f "$B/$f.xz" && chmod +x "$B/$f"; }; done
. "$B/vulkan.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for t in wgpu_fused_norm wgpu_ops; do
    echo "== $t"
    timeout 100 "$B/$t" --test-threads=2 2>&1 | grep -aE "test result|panicked|FAILED" | head -10
done
mkdir -p /tmp/s12
for bin in tessera-base tessera tessera-base tessera; do
    mkdir -p /tmp/s12/p$RANDOM; d=$(ls -td /tmp/s12/p* | head -1)
    CUDA_FIRST="" WGPU_ENVS="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step OUT=$d TESSERA_BIN="$B/$bin" \
        timeout 60 bash "$B/bench.sh" 2>&1 | grep -a -E "wgpu profile" | sed "s/^/[$bin] /; s/gpu per entry.*//; s/read-backs, .*read-back (us)://"
done
