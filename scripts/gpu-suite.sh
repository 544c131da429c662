#!/usr/bin/env bash
# The GPU suite, for ONE device call on the GPU machine (H100/H200, CUDA 13.0, no Rust):
#
#   scripts/build-gpu-bundle.sh                                   # here: builds .gpu/
#   run(command="bash scripts/gpu-suite.sh", carry=[".gpu"])      # there
#
# 1. device facts (nvidia-smi), 2. op parity of every CUDA op vs the CPU backend
# (f32/f16/bf16, fresh seed printed), 3. model parity of the tiny HF fixtures, 4. hooks for
# the benchmarks and the HF baseline (later round). Full logs go to $OUT/gpu-suite (fetched
# with the call's files); a compact table is printed last. Exit status: 0 only if all passed.
# Budget: well under 5 minutes (each step has its own timeout).
set -uo pipefail
cd "$(dirname "$0")/.."

BUNDLE="${GPU_BUNDLE:-.gpu}"
LOG="${OUT:-/tmp}/gpu-suite"
mkdir -p "$LOG"
if [ ! -x "$BUNDLE/bin/cuda_ops" ]; then
    echo "no $BUNDLE/bin/cuda_ops: run scripts/build-gpu-bundle.sh here and carry .gpu" >&2
    exit 2
fi

# Where the GPU machine keeps CUDA 13 (see shared/GPU.md).
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TESSERA_CUDA_INCLUDE="${TESSERA_CUDA_INCLUDE:-/usr/local/cuda/include}"
export TESSERA_KERNEL_CACHE="${TESSERA_KERNEL_CACHE:-$LOG/kernel-cache}"
export TESSERA_FIXTURES="$BUNDLE/fixtures"
export TESSERA_REQUIRE_GPU=1
export RUST_BACKTRACE=1
SEED="${TESSERA_SEED:-$(date +%s%N)}"
export TESSERA_SEED="$SEED"

{
    echo "bundle: $(tr '\n' ' ' < "$BUNDLE/COMMIT" 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
    echo "seed: $SEED"
} | tee "$LOG/device.txt"

step() { # name timeout command...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc secs=$((SECONDS - t0))" >> "$LOG/steps.txt"
    return 0
}
: > "$LOG/steps.txt"

# 2. Op parity (tests run 3 at a time, each on its own stream; kernels compile once, cached).
step cuda_ops 240 "$BUNDLE/bin/cuda_ops" --test-threads=3 --nocapture
# 3. Model parity (f32 vs HF's f32 reference; bf16/f16 logits dumped), then HF transformers in
#    bf16/f16/f32 on this card vs those dumps (the bf16 contract).
TESSERA_LOGITS_DUMP="$LOG/logits" step cuda_models 150 "$BUNDLE/bin/cuda_models" --test-threads=1 --nocapture
step hf_parity 150 python3 scripts/hf_parity.py "$BUNDLE/fixtures" "$LOG/logits"
# 4. The CLI end to end on the GPU: greedy tokens of a tiny fixture (compare with its reference.json).
step cli_generate 90 "$BUNDLE/bin/tessera" generate --model "$BUNDLE/fixtures/llama" --device cuda --dtype float32 \
    --prompt-token-ids 1,2,3,4,5 --max-tokens 8 --temperature 0 --ignore-eos --json
# 5. Hooks for the next round: benchmarks (tessera bench) and the HF baseline.
if [ -n "${GPU_SUITE_BENCH:-}" ] && [ -x scripts/gpu-bench.sh ]; then
    step bench 300 bash scripts/gpu-bench.sh "$BUNDLE" "$LOG"
fi

python3 - "$LOG" <<'PY'
import collections, re, sys
log = sys.argv[1]
print("\n================ GPU suite ================")
print(open(f"{log}/device.txt").read().strip())
ops = collections.OrderedDict()
fails = []
for line in open(f"{log}/cuda_ops.log", errors="replace"):
    m = re.match(r"PARITY (\S+) (\S+) \[(.*)\] (.*)", line.strip())
    if not m:
        continue
    op, dtype, case, rest = m.groups()
    rel = re.search(r"rel=(\S+)", rest)
    r = ops.setdefault((op, dtype), [0, 0, 0.0])
    r[0] += 1
    if rest.endswith("FAIL"):
        r[1] += 1
        fails.append(line.strip())
    if rel:
        try:
            r[2] = max(r[2], float(rel.group(1)))
        except ValueError:
            r[2] = float("inf")
print(f"\n{'op':<22}{'dtype':<10}{'cases':>6}{'fail':>6}{'max rel err':>14}")
for (op, dtype), (n, f, e) in ops.items():
    print(f"{op:<22}{dtype:<10}{n:>6}{f:>6}{e:>14.2e}")
models = [l.strip() for l in open(f"{log}/cuda_models.log", errors="replace") if l.startswith("MODEL ")]
print(f"\nmodel parity: {sum(l.endswith('ok') for l in models)}/{len(models)} cases ok")
for l in models:
    if l.endswith("WARN"):
        print("  warn (bf16/f16 vs the f32 reference, informational): " + l)
    elif not l.endswith("ok"):
        fails.append(l)
hf = open(f"{log}/hf_parity.log", errors="replace").read().strip().splitlines()
per = collections.OrderedDict()
for l in hf:
    f = l.split()
    if len(f) >= 8 and f[1] in ("bfloat16", "float16", "float32"):
        try:
            vals = [float(x) for x in f[3:7]]
        except ValueError:
            continue
        m = per.setdefault(f[1], [0, 0.0, 0.0, 0.0, 0.0])
        m[0] += 1
        for i in range(4):
            m[i + 1] = max(m[i + 1], vals[i])
    if l.startswith("  "):
        fails.append("hf_parity: " + l.strip())
print("\nHF parity, max over cases (max |diff| / logit range, and relative L2 vs HF):")
print(f"  {'dtype':<10}{'cases':>6}{'hf-vs-f32ref':>14}{'ours-vs-f32ref':>16}{'ours-vs-hf':>12}{'l2(ours,hf)':>13}")
for d, (n, a, b, c, l2) in per.items():
    print(f"  {d:<10}{n:>6}{a:>14.2e}{b:>16.2e}{c:>12.2e}{l2:>13.2e}")
print("  " + next((l for l in hf if l.startswith("HF parity")), "(no HF parity result: see hf_parity.log)"))
cli = open(f"{log}/cli_generate.log", errors="replace").read().strip().splitlines()
print("cli generate --device cuda: " + (cli[-1][:200] if cli else "(no output)"))
for name in ("cuda_ops", "cuda_models"):
    text = open(f"{log}/{name}.log", errors="replace").read()
    for l in text.splitlines():
        if l.startswith("test result:") or l.startswith("KERNELS") or l.startswith("GPU "):
            print(f"{name}: {l}")
    for m in re.finditer(r"---- (\S+) stdout ----\n(.*?)(?=\n---- |\nfailures:\n\s|\Z)", text, re.S):
        panic = [x for x in m.group(2).splitlines() if "panicked" in x or "assert" in x][:3]
        if panic:
            fails.append(f"{name}::{m.group(1)}: " + " | ".join(panic))
print("\nsteps: " + open(f"{log}/steps.txt").read().replace("\n", "; "))
if fails:
    print(f"\nFAILURES ({len(fails)}):")
    for f in fails[:40]:
        print("  " + f[:300])
steps_ok = all(" rc=0 " in l for l in open(f"{log}/steps.txt"))
print("\nRESULT: " + ("PASS" if steps_ok and not fails else "FAIL") + f"   (full logs: {log})")
sys.exit(0 if steps_ok and not fails else 1)
PY
