#!/usr/bin/env bash
# Session 11, sixth call (~2.5 min), the .gpu-w bundle of s11-wgpu.sh plus tessera-new.xz
# (branch wgpu-row-guess: paged attention's row layout in one memory round for decode rows):
# SmolLM2-135M wgpu decode, base (tessera) and new binary alternated twice, each with the
# GPU busy a step (TESSERA_WGPU_PROFILE=step).
#   run(command="bash .gpu-w/s11-rowguess.sh", carry=[".gpu-w"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
for f in tessera tessera-new; do [ -x "$B/$f" ] || { xz -d -f "$B/$f.xz" && chmod +x "$B/$f"; }; done
for r in 1 2; do
    for bin in tessera tessera-new; do
        mkdir -p "/tmp/rg/$bin-$r"
        TESSERA_BIN="$B/$bin" CUDA_FIRST="" CUDA_LAST="" DISPATCH_COST=0 PROFILE=1 PROFILE_MODES=step \
            OUT="/tmp/rg/$bin-$r" WGPU_ENVS="TESSERA_WGPU_GRAPHS=1" timeout 60 bash "$B/bench.sh" 2>&1 |
            grep -a -E "wgpu +decode|wgpu profile" | sed "s/^/$bin $r: /" | cut -c1-330
    done
done
