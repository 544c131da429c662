#!/usr/bin/env bash
# Session 12, third and fourth calls: the wgpu decode attention's L2 prefetch of the weights
# the layer reads next (`Backend::prefetch`: 8 weights by default, TESSERA_WGPU_PREFETCH=4
# this layer's only, =0 off) on SmolLM2-135M: chain costs per variant (core/examples/
# wgpu_kernel_cost.rs), wgpu_engine and wgpu_ops on the NVIDIA Vulkan driver, decode tok/s
# (CUDA first) and GPU busy a step per variant, alternated twice. The third call ran the
# 4-weight binary with PF_VARIANTS="- TESSERA_WGPU_PREFETCH=0" CHAIN_EXTRA= CUDA_LAST=cuda.
# Bundle: scripts/wgpu-bench-bundle.sh .gpu-w, plus this script and the xz-compressed
# wgpu_kernel_cost, wgpu_ops and wgpu_engine binaries.
#   run(command="bash .gpu-w/s12-pf.sh", carry=[".gpu-w"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
for f in tessera wgpu_kernel_cost wgpu_ops wgpu_engine; do [ -x "$B/$f" ] || { xz -d -f "$B/$f.xz" && chmod +x "$B/$f"; }; done
# The test binaries find the fixtures where they were built.
[ -d /work/main/tests/fixtures ] || { mkdir -p /work && ln -sfn "$(pwd)" /work/main; }
. "$B/vulkan.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
VARIANTS=${PF_VARIANTS:-- TESSERA_WGPU_PREFETCH=4 TESSERA_WGPU_PREFETCH=0}
for e in $VARIANTS ${CHAIN_EXTRA-TESSERA_WGPU_VEC_LANES=16 TESSERA_WGPU_VEC_LANES=64} $VARIANTS; do
    echo "== $e"
    env $( [ "$e" = - ] || echo "$e") CHAINS="${CHAINS_EXP:-layer@272 model@16 model@272 model@528}" timeout 60 "$B/wgpu_kernel_cost" 2>&1 | grep -v "^$" | grep -v adapter
done
for t in wgpu_engine wgpu_ops; do
    echo "== $t"
    timeout 120 "$B/$t" --test-threads=2 2>&1 | grep -aE "test result|panicked|FAILED" | head -10
done
envs=""
for v in $VARIANTS; do envs="$envs TESSERA_WGPU_GRAPHS=1$( [ "$v" = - ] || echo ",$v")"; done
mkdir -p /tmp/s12
CUDA_FIRST=cuda CUDA_LAST=${CUDA_LAST-} DISPATCH_COST=0 PROFILE=0 OUT=/tmp/s12 TESSERA_BIN="$B/tessera" \
    WGPU_ENVS="$envs $envs" timeout 360 bash "$B/bench.sh" 2>&1 | grep -a -E "decode|FAILED"
for v in $VARIANTS $VARIANTS; do
    mkdir -p /tmp/s12/p$RANDOM; d=$(ls -td /tmp/s12/p* | head -1)
    CUDA_FIRST="" WGPU_ENVS="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step OUT=$d TESSERA_BIN="$B/tessera" WGPU_PROFILE_ENV="$( [ "$v" = - ] || echo "$v")" \
        timeout 60 bash "$B/bench.sh" 2>&1 | grep -a -E "wgpu profile" | sed "s/^/[$v] /; s/gpu per entry.*//; s/read-backs, .*read-back (us)://"
done
