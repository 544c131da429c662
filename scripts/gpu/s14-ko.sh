#!/usr/bin/env bash
# Needs a bundle of the local branch `cuda-s14-oproj` (not merged: BENCHMARKS.md, session 14).
# Session 14, fourth call (~5 min): why the attention + o_proj launch is slower than its
# ops. Knockouts of the o_proj blocks (TESSERA_OPROJ_STAGE bits; timing only, the tokens are
# wrong): 9 = W in shared memory, no spin (x read at once); 17 = W staged, then the o_proj
# blocks exit; 16 = no staging (4 KB of shared memory a block), the o_proj blocks exit;
# against 1 (the full launch) and the ops (TESSERA_CUDA_FUSE_OPROJ=0); 8 rows a block.
#   run(command="bash .gpu-k/s14-ko.sh", carry=[".gpu-k"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s14k "${V_BUDGET:-330}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 TESSERA_OPROJ_ROWS=8 "$N"
for r in 1 2; do
    lat "ops_$r" 1 TESSERA_CUDA_FUSE_OPROJ=0 "$N"
    for v in 1 9 17 16; do
        lat "s${v}_$r" 1 TESSERA_OPROJ_STAGE="$v" TESSERA_OPROJ_ROWS=8 "$N"
    done
done
lat_summary 12
