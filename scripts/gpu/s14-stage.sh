#!/usr/bin/env bash
# Needs a bundle of the local branch `cuda-s14-oproj` (not merged: BENCHMARKS.md, session 14).
# Session 14, second call (~5 min): where the attention + o_proj launch puts o_proj's W
# before the attention's heads are done (TESSERA_OPROJ_STAGE: 0 none, 1 shared memory,
# 2 L2 prefetch) and rows a block (TESSERA_OPROJ_ROWS), against the ops
# (TESSERA_CUDA_FUSE_OPROJ=0); single stream, two rounds.
#   run(command="bash .gpu-k/s14-stage.sh", carry=[".gpu-k"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s14s "${V_BUDGET:-400}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 "$N"
for r in 1 2; do
    lat "ops_$r" 1 TESSERA_CUDA_FUSE_OPROJ=0 "$N"
    for v in 1:16 1:8 0:16 0:8 2:16 2:8; do
        lat "s${v%%:*}r${v##*:}_$r" 1 TESSERA_OPROJ_STAGE="${v%%:*}" TESSERA_OPROJ_ROWS="${v##*:}" "$N"
    done
done
lat_summary 12
