#!/usr/bin/env bash
# Runs on the GPU machine from the bundle scripts/wgpu-bench-bundle.sh makes:
#   run(command="bash .gpu-wgpu/bench.sh", carry=[".gpu-wgpu"])
# TESSERA_BIN=path: time that binary instead of the bundle's (a base build, same call);
# DISPATCH_COST=0: skip the raw dispatch micro-bench (wgpu_dispatch_cost, when carried);
# TABLE / DISPATCH_OUT: where the rate lines / micro-bench go (default: in OUT).
# Decode tok/s of SmolLM2-135M-Instruct through `tessera generate`, wgpu (Vulkan) vs CUDA on
# the same card: Q4_1 GGUF (same shapes/types, random blocks; see rebuild_gguf.py) and f16
# (that GGUF exported by `tessera export-hf --dtype float16`). Decode rate = (N_long - N_short) / (t_long - t_short)
# of the engine's "offline batch done" time, so load, compile and prefill cancel out.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
OUTDIR="${OUT:-/tmp}"
TABLE="${TABLE:-$OUTDIR/table.txt}"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NO_COLOR=1
export VK_LOADER_DEBUG="${VK_LOADER_DEBUG:-error}"
export TESSERA_CUDA_INCLUDE="${TESSERA_CUDA_INCLUDE:-/usr/local/cuda/include}"
export TESSERA_KERNEL_CACHE="${TESSERA_KERNEL_CACHE:-/tmp/tessera-kernel-cache}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if ! ldconfig -p | grep -q 'libvulkan.so.1' || ! ldconfig -p | grep -q 'libGLdispatch'; then
    # The Vulkan loader and the glvnd libraries NVIDIA's Vulkan ICD links against.
    echo "unpacking the carried libvulkan1 + glvnd"
    for f in "$B"/deb/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -e "$icd" ] && { echo "vulkan icd: $icd: $(tr -d '\n ' < "$icd" | cut -c1-160)"; export VK_DRIVER_FILES="$icd"; break; }
done
[ -e /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
# The binary under test (TESSERA_BIN: e.g. a base build carried next to it, same call).
T="${TESSERA_BIN:-$B/tessera}"
# Per-dispatch cost of raw wgpu dispatches (core/examples/wgpu_dispatch_cost.rs), if carried.
if [ -x "$B/wgpu_dispatch_cost" ] && [ "${DISPATCH_COST:-1}" = 1 ]; then
    "$B/wgpu_dispatch_cost" 2>&1 | tee "${DISPATCH_OUT:-$OUTDIR/dispatch_cost.txt}"
fi
if [ ! -e /tmp/smollm2-f16/config.json ]; then
    python3 "$B/rebuild_gguf.py" "$B/gguf" /tmp/smollm2-q4_1.gguf || exit 1
    "$T" export-hf --model /tmp/smollm2-q4_1.gguf -o /tmp/smollm2-f16 --dtype float16 || exit 1
fi
SHORT=16
LONG=${LONG:-528}

# Extra environment of the wgpu runs: one rate per word, e.g. WGPU_ENVS="TESSERA_WGPU_GRAPHS=0
# TESSERA_WGPU_GRAPHS=1" compares eager steps with graph replays in one call.
WGPU_ENVS=${WGPU_ENVS:-TESSERA_WGPU_GRAPHS=1}
# PROFILE=1: also profiled wgpu runs per model and PROFILE_MODES word (TESSERA_WGPU_PROFILE:
# "host" = host record / submit / wait times, "1" = plus GPU time per shader entry from
# timestamps, "step" = host times + GPU busy / idle per read-back from two timestamps a
# submission), the last summary of each printed.
PROFILE=${PROFILE:-0}
RUN_ENV=""

# secs <device> <model args...> -> seconds of the generate call (engine time) for --max-tokens $N
gen() {
    local dev=$1 n=$2; shift 2
    env $RUN_ENV TESSERA_LOG=info "$T" generate --device "$dev" --prompt "The history of the city begins" --max-tokens "$n" \
        --ignore-eos --temperature 0 "$@" 2>"$OUTDIR/log-$dev-$n.txt" >/dev/null
    local rc=$?
    local secs
    secs=$(sed 's/\x1b\[[0-9;]*m//g' "$OUTDIR/log-$dev-$n.txt" | grep -a "offline batch done" | sed 's/.*secs=\([0-9.e-]*\).*/\1/' | tail -1)
    if [ $rc -ne 0 ] || [ -z "$secs" ]; then
        echo "FAILED ($dev, $n tokens, rc $rc):" >&2
        tail -5 "$OUTDIR/log-$dev-$n.txt" >&2
        echo "nan"
        return
    fi
    echo "$secs"
}

rate() {
    local dev=$1 label=$2; shift 2
    gen "$dev" 4 "$@" >/dev/null # warm the driver's shader / kernel caches
    local a b
    a=$(gen "$dev" $SHORT "$@")
    b=$(gen "$dev" "$LONG" "$@")
    python3 -c "
a,b='$a','$b'
try:
    print(f'{\"$label\":<28} {\"$dev\":<5} decode {($LONG-$SHORT)/(float(b)-float(a)):8.1f} tok/s  (t{$SHORT}={float(a):.3f}s t{$LONG}={float(b):.3f}s)')
except Exception as e:
    print(f'{\"$label\":<28} {\"$dev\":<5} failed ({a}, {b})')
" | tee -a "$TABLE"
}

: > "$TABLE"
# CUDA_FIRST / CUDA_LAST: where the CUDA rates run ("cuda" or empty).
for dev in ${CUDA_FIRST-cuda} $WGPU_ENVS ${CUDA_LAST-}; do
    # A word is "cuda", "cuda+ENV=V[,ENV=V]" (CUDA with that environment) or "ENV=V[,ENV=V]" (wgpu).
    case $dev in cuda) RUN_ENV="" ;; cuda+*) RUN_ENV=$(echo "${dev#cuda+}" | tr ',' ' '); dev=cuda ;; *) RUN_ENV=$(echo "$dev" | tr ',' ' '); dev=wgpu ;; esac
    tag=${RUN_ENV:+ $(echo "$RUN_ENV" | sed 's/TESSERA_WGPU_//g; s/TESSERA_ASYNC_SCHEDULING=1/async/; s/ /+/g')}
    rate "$dev" "Q4_1 gguf$tag" --model /tmp/smollm2-q4_1.gguf
    rate "$dev" "f16$tag" --model /tmp/smollm2-f16 --dtype float16
done
grep -ah "adapter\|GGUF weights\|CUDA backend" "$OUTDIR"/log-*-$SHORT.txt | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-220 | sort -u
if [ "$PROFILE" = 1 ]; then
    # host: host times only (replays prepared ahead as usual); 1: plus GPU timestamps per entry;
    # step: host times + GPU busy / idle per read-back (two timestamps a submission).
    for mode in ${PROFILE_MODES:-host 1}; do for m in "--model /tmp/smollm2-q4_1.gguf" "--model /tmp/smollm2-f16 --dtype float16"; do
        RUN_ENV="TESSERA_WGPU_PROFILE=$mode ${WGPU_PROFILE_ENV:-}"
        gen wgpu 256 $m >/dev/null
        echo "== profile $mode ($m, 256 tokens)"
        sed 's/\x1b\[[0-9;]*m//g' "$OUTDIR/log-wgpu-256.txt" | grep -a "wgpu profile" | tail -1 | sed 's/.*wgpu profile/wgpu profile/' | tee -a "$OUTDIR/profile.txt"
    done; done
fi
echo "== table"
cat "$TABLE"
