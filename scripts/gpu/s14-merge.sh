#!/usr/bin/env bash
# The base binary: scripts/build-gpu-bundle.sh at main before the change, its bin/tessera.xz copied in as bin/tessera-base.xz.
# Session 14, fifth call (~4 min): the decode attention's cluster merge with every split's
# (sum, max, acc) loaded before the merge (bin/tessera, branch `cuda-s14-merge`) against
# main's (bin/tessera-base: one remote round trip or two a split), single stream alternated
# twice; cuda_att1 and cuda_engine with the new kernel.
#   run(command="bash .gpu-k/s14-merge.sh", carry=[".gpu-k"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s14m "${V_BUDGET:-255}"
LAT_LIMIT=90 lat warm_new 1 "$B/bin/tessera"
lat warm_base 1 "$B/bin/tessera-base"
LAT_LIMIT=40
for r in 1 2; do
    lat "new_$r" 1 "$B/bin/tessera"
    lat "base_$r" 1 "$B/bin/tessera-base"
done
test_bin cuda_att1 40 --test-threads=1 --nocapture
test_bin cuda_engine 30 --test-threads=1 --nocapture
parity_table 4 cuda_att1 cuda_engine > "$L/parity.txt"
cat "$L/parity.txt"
lat_summary 12
