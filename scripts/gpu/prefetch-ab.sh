#!/usr/bin/env bash
# L2 prefetch A/B (native/src/cuda/prefetch.rs) in one device call, after the suite, e.g.
#   run(command="bash .gpu/gpu-suite.sh final; bash .gpu/prefetch-ab.sh .gpu", carry=[".gpu"])
# with the bundle of scripts/build-gpu-bundle.sh as $1 (default: this script's folder):
#   1. cuda_prefetch with TESSERA_CUDA_PREFETCH=1 (graphs + prefetch vs eager, recorded branch)
#   2. bench latency 1 x 128/256, SmolLM3-3B config, dummy bf16, same binary, in this order:
#      off, on (default 32 MiB a layer), on with 16 MiB, off again (the spread of off vs off
#      is the noise)
# One summary line each is printed last (decode tok/s, ms per token step); ~60 s.
set -uo pipefail
B="$(cd "${1:-$(dirname "$0")}" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_env "$B"
L=/tmp/prefetch-ab
mkdir -p "$L"
: > "$L/steps.txt"
STEP_QUIET=1
M=(bench latency "${M[@]}" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3)
unset TESSERA_CUDA_PREFETCH TESSERA_CUDA_PREFETCH_MB

step cuda_prefetch 90 env TESSERA_CUDA_PREFETCH=1 "$B/bin/cuda_prefetch" --test-threads=1 --nocapture
step off 60 "$B/bin/tessera" "${M[@]}"
step on 60 env TESSERA_CUDA_PREFETCH=1 "$B/bin/tessera" "${M[@]}"
step on16 60 env TESSERA_CUDA_PREFETCH=1 TESSERA_CUDA_PREFETCH_MB=16 "$B/bin/tessera" "${M[@]}"
step off2 60 "$B/bin/tessera" "${M[@]}"

echo "=== prefetch A/B ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), bundle $(head -1 "$B/COMMIT" 2> /dev/null))"
grep -aE "^PREFETCH|test result|panicked" "$L/cuda_prefetch.log" | head -16
for f in off on on16 off2; do
    line=$(grep -a "decode:" "$L/$f.log" | tail -1 | sed 's/^ *//')
    printf '%-6s %s\n' "$f" "${line:-(no result: $(grep -aiE 'error|panic' "$L/$f.log" | head -1))}"
done
cat "$L/steps.txt"
[ -n "${OUT:-}" ] && tar czf "$OUT/prefetch-ab-logs.tgz" -C "$L" . 2> /dev/null
grep -q "rc=[^0]" "$L/steps.txt" && exit 1
exit 0
