#!/usr/bin/env bash
# Needs a bundle of the local branch `cuda-s14-oproj` (not merged: BENCHMARKS.md, session 14).
# Session 14, third call (~4 min): the attention + o_proj launch with o_proj's W staged in
# shared memory (TESSERA_OPROJ_STAGE=1) against the same with the next kernel's launch held
# until the heads are done (=5: pdl_trigger after the spin), 8 and 16 rows a block, and the
# ops (TESSERA_CUDA_FUSE_OPROJ=0); single stream, two rounds.
#   run(command="bash .gpu-k/s14-late.sh", carry=[".gpu-k"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s14l "${V_BUDGET:-330}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 "$N"
for r in 1 2; do
    lat "ops_$r" 1 TESSERA_CUDA_FUSE_OPROJ=0 "$N"
    for v in 1:8 5:8 5:16 4:8; do
        lat "s${v%%:*}r${v##*:}_$r" 1 TESSERA_OPROJ_STAGE="${v%%:*}" TESSERA_OPROJ_ROWS="${v##*:}" "$N"
    done
done
lat_summary 12
