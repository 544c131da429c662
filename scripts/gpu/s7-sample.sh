#!/usr/bin/env bash
# Session 7: sampled requests under async scheduling on CUDA: the sampling op parity
# (cuda_ops sample cases), then `generate --device cuda` with seeded temperature sampling on
# the tiny llama fixture, async on and off: the same token ids.
#   run(command="bash .gpu/s7-sample.sh", carry=[".gpu"])
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify_start /tmp/s7s "${V_BUDGET:-170}"
step cuda_ops_sample 90 "$B/bin/cuda_ops" sample argmax --test-threads=2 --nocapture
for a in 1 0; do
    step "gen_async$a" 60 env TESSERA_ASYNC_SCHEDULING=$a "$B/bin/tessera" generate --model "$B/fixtures/llama" --device cuda \
        --dtype float32 --prompt-token-ids 231,79,154,180,251 --max-tokens 24 --temperature 0.8 --top-p 0.9 --seed 3 --ignore-eos --json
done
grep -aE "PARITY .*FAIL|test result|panicked" "$L/cuda_ops_sample.log" | head -5
for a in 1 0; do echo "async $a: $(grep -ao '"token_ids":\[[0-9,]*\]' "$L/gen_async$a.log" | head -1)"; done
cmp -s <(grep -ao '"token_ids":\[[0-9,]*\]' "$L/gen_async1.log") <(grep -ao '"token_ids":\[[0-9,]*\]' "$L/gen_async0.log") && echo "SAME TOKENS" || echo "TOKENS DIFFER"
cat "$L/steps.txt"
