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
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TESSERA_CUDA_INCLUDE="${TESSERA_CUDA_INCLUDE:-/usr/local/cuda/include}"
export TESSERA_KERNEL_CACHE="${TESSERA_KERNEL_CACHE:-/tmp/tessera-kernel-cache}"
export TESSERA_FIXTURES="$B/fixtures" TESSERA_REQUIRE_GPU=1 RUST_BACKTRACE=1
export TESSERA_SEED="${TESSERA_SEED:-$(date +%s%N)}"
L=/tmp/prefetch-ab
mkdir -p "$L"
: > "$L/steps.txt"
run() { # name limit command...
    local name=$1 lim=$2
    shift 2
    local t0=$SECONDS
    timeout "$lim" "$@" > "$L/$name.log" 2>&1
    echo "$name rc=$? secs=$((SECONDS - t0))" >> "$L/steps.txt"
}
M=(bench latency --model "$B/smollm3-3b" --load-format dummy --device cuda --dtype bfloat16 --batch-size 1 --input-len 128
    --output-len 256 --num-iters 3)
unset TESSERA_CUDA_PREFETCH TESSERA_CUDA_PREFETCH_MB

run cuda_prefetch 90 env TESSERA_CUDA_PREFETCH=1 "$B/bin/cuda_prefetch" --test-threads=1 --nocapture
run off 60 "$B/bin/tessera" "${M[@]}"
run on 60 env TESSERA_CUDA_PREFETCH=1 "$B/bin/tessera" "${M[@]}"
run on16 60 env TESSERA_CUDA_PREFETCH=1 TESSERA_CUDA_PREFETCH_MB=16 "$B/bin/tessera" "${M[@]}"
run off2 60 "$B/bin/tessera" "${M[@]}"

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
