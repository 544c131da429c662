#!/usr/bin/env bash
# Session 10, spare device time (~4 min): the SmolLM2 wgpu / CUDA ratio from repeated runs in
# one call (CUDA's rate on this model moved ~10 % between calls): wgpu/bench.sh with CUDA
# three times around two wgpu runs.
#   run(command="bash .gpu/s10-ratio.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
unxz_bins "$B"
gpu_env "$B"
TESSERA_BIN="$B/bin/tessera" DISPATCH_COST=0 CUDA_FIRST="cuda cuda" WGPU_ENVS="TESSERA_WGPU_GRAPHS=1 TESSERA_WGPU_GRAPHS=1" \
    CUDA_LAST="cuda" timeout "${RATIO_LIMIT:-230}" bash "$B/wgpu/bench.sh" 2>&1 | grep -a -E "decode|FAILED"
