#!/usr/bin/env bash
# Session 10, check call (~2 min): cuda_gemv1 replayed with the seed whose one-element bf16
# output failed the old tolerance (final-round's seed 1795933624188097657), then with a fresh
# seed; cuda_qkv_kv with a fresh seed.
#   run(command="bash .gpu/s10-check.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s10c "${V_BUDGET:-200}"
TESSERA_SEED=1795933624188097657 test_bin cuda_gemv1 60 --test-threads=1 --nocapture
mv "$L/cuda_gemv1.log" "$L/cuda_gemv1_replay.log"
test_bin cuda_gemv1 60 --test-threads=1 --nocapture
test_bin cuda_qkv_kv 60 --test-threads=1 --nocapture
for t in cuda_gemv1_replay cuda_gemv1 cuda_qkv_kv; do
    echo "=== $t: $(grep -a SEED "$L/$t.log" | head -1)"
    grep -a -E "test result|panicked|FAIL" "$L/$t.log" | head -6
    echo "PARITY lines: $(grep -ac PARITY "$L/$t.log"), not ok: $(grep -a PARITY "$L/$t.log" | grep -acv ' ok$')"
    grep -a "K33 N\[37, 5, 1\]" "$L/$t.log" | grep -a "norm_matmul_many.2 bfloat16" | head -2
done
cat "$L/steps.txt"
