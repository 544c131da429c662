#!/usr/bin/env bash
# Zero-code A/B of the opt-in L2 prefetch hint (native/src/cuda/prefetch.rs) now that PDL and
# the cluster merge changed the step: single stream 1 x (128 / 256), prefetch off vs on at
# several budgets, alternated, one binary (~3 min from a warm kernel cache).
#   run(command="bash .gpu/s9-prefetch.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s9pf "${V_BUDGET:-420}"
N="$B/bin/tessera"
LAT_LIMIT=150 lat warm 1 "$N"
for r in 1 2; do
    lat "off$r" 1 TESSERA_CUDA_PREFETCH=0 "$N"
    for mb in ${PF_MBS:-8 16 32 48}; do
        lat "pf${mb}_$r" 1 TESSERA_CUDA_PREFETCH=1 TESSERA_CUDA_PREFETCH_MB="$mb" "$N"
    done
done
lat_table 12 > "$L/summary.txt"
logs_tgz s9pf-logs.tgz
cat "$L/summary.txt"
