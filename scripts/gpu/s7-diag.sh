#!/usr/bin/env bash
# Session 7's diagnosis round (~3 min): where the host spends a single-stream step with and
# without async scheduling (TESSERA_CUDA_HOST_TIMES=1: host time per queueing call), graphs
# and eager; the carried wgpu test binaries with their full failure messages.
#   run(command="bash .gpu/s7-diag.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s7d "${V_BUDGET:-300}"
N="$B/bin/tessera"
for t in "$B"/bin/wgpu_*; do
    [ -x "$t" ] && [ "$(basename "$t")" != wgpu_kernel_cost ] && step "$(basename "$t")" 90 "$t" --test-threads=1
done
for a in 1 0; do
    lat "async$a" 1 TESSERA_ASYNC_SCHEDULING=$a TESSERA_CUDA_HOST_TIMES=1 "$N"
done
LAT_LIMIT=60 lat async1_eager 1 TESSERA_ASYNC_SCHEDULING=1 TESSERA_CUDA_HOST_TIMES=1 TESSERA_ENFORCE_EAGER=1 "$N"
for f in "$L"/*.log; do
    echo "=== $(basename "$f" .log)"
    grep -aE "decode:|^host:|HOSTTIME|panicked|test result|assert|differs|left|right" "$f" | head -40
done
cat "$L/steps.txt"
