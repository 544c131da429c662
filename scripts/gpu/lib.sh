#!/usr/bin/env bash
# Shared by the device round scripts of scripts/gpu/ (they run on the GPU machine from a
# bundle, which build-gpu-bundle.sh fills with scripts/gpu/*.sh, so this file sits next to
# them). Each script sources it from its own folder:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# then calls what it needs:
#   unxz_bins B         xz -d B/bin/*.xz (binaries travel compressed: the 64 MiB carry limit)
#   gpu_env B           CUDA libraries, NVRTC include, kernel cache, fixtures, ncu on PATH,
#                       TESSERA_SEED (kept when set), NCU, NCU_NODES (ncu per graph node),
#                       M (bench model args for B/smollm3-3b)
#   vulkan_env DEB_DIR  the Vulkan loader (from DEB_DIR/*.deb when missing) and NVIDIA's ICD
#   round_start DIR BUDGET [FIELDS]  L=DIR (made), device_txt, an empty steps.txt, DEADLINE
#                       BUDGET seconds from now
#   verify_start DIR BUDGET  a verification round's set-up: unxz_bins, gpu_env, vulkan_env
#                       (B/wgpu/deb), round_start with the GPU's name, driver, memory, clock
#   device_txt [FIELDS] B/COMMIT, nvidia-smi FIELDS and seed, to stdout and $L/device.txt
#   step NAME LIMIT CMD...       runs CMD to $L/NAME.log, one line in $L/steps.txt
#   lat NAME BATCH [ENV=V...] BIN  step lat_NAME: bench latency BATCH x (128 / 256), 3 iters
#   test_bin NAME LIMIT ARGS...  step NAME: the bundle's test binary B/bin/NAME with ARGS
#   parity_table HEAD NAME...    per test log: PARITY lines, FAILs, first HEAD result lines
#   lat_table WIDTH              per lat_*.log: its decode line and average latency
#   lat_summary WIDTH            $L/summary.txt (device, lat_table, steps), then printed
#   lat_host_table WIDTH         per lat_*.log: its last decode line and its host line
#   tput_table WIDTH             per tput_*.log: its throughput and step-time lines
#   logs_tgz FILE [TAR-OPTS...]  $L into $OUT/FILE when OUT is set
#   kcache_save                  the kernel cache into $OUT/kcache.tgz (gpu_env unpacks B/kcache.tgz)
# Variables: L (log folder; set before step), DEADLINE (SECONDS value; step cuts each limit
# to it and skips steps with < 15 s left; unset: no deadline), STEP_QUIET=1 (steps.txt only,
# no echo), STEP_PREFIX (before each steps.txt line), LAT_LIMIT (lat's limit, default 90),
# PARITY_GREP (the lines parity_table shows).
# Check: shellcheck -x -P SCRIPTDIR -S warning scripts/gpu/*.sh (the scripts' `source=lib.sh`
# directives let it follow this file).

unxz_bins() { # bundle
    local f
    for f in "$1"/bin/*.xz; do [ -e "$f" ] && xz -d -f -T4 "$f"; done
    chmod +x "$1"/bin/* 2> /dev/null
    return 0
}

gpu_env() { # bundle
    local b=$1
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export TESSERA_CUDA_INCLUDE="${TESSERA_CUDA_INCLUDE:-/usr/local/cuda/include}"
    # One cache for every script of a call: modules the suite compiled are loaded, not compiled again.
    export TESSERA_KERNEL_CACHE="${TESSERA_KERNEL_CACHE:-/tmp/tessera-kernel-cache}"
    # Compiled kernels carried from an earlier call (kcache_save; keyed by source hash + arch,
    # so a changed .cu file still compiles): saves the first process's ~100 s of NVRTC.
    if [ -e "$b/kcache.tgz" ] && [ ! -d "$TESSERA_KERNEL_CACHE" ]; then
        mkdir -p "$TESSERA_KERNEL_CACHE" && tar xzf "$b/kcache.tgz" -C "$TESSERA_KERNEL_CACHE"
    fi
    export TESSERA_FIXTURES="$b/fixtures" TESSERA_REQUIRE_GPU=1 RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    local nsight
    nsight=$(ls -d /opt/nvidia/nsight-compute/*/ 2> /dev/null | head -1)
    export PATH="$PATH:/usr/local/cuda/bin:$nsight"
    TESSERA_SEED="${TESSERA_SEED:-$(date +%s%N)}"
    export TESSERA_SEED
    # shellcheck disable=SC2034 # NCU and M are for the sourcing script
    NCU=$(command -v ncu || echo ncu)
    # ncu's per-node durations of replayed CUDA graphs (add --log-file X or --page raw, the app)
    # shellcheck disable=SC2034
    NCU_NODES=("$NCU" --graph-profiling node --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv)
    M=(--model "$b/smollm3-3b" --load-format dummy --device cuda --dtype bfloat16)
}

vulkan_env() { # folder of the carried libvulkan1 + glvnd .debs (scripts/wgpu-bench/deb)
    local f icd
    if ! ldconfig -p | grep -q 'libvulkan.so.1' || ! ldconfig -p | grep -q 'libGLdispatch'; then
        for f in "$1"/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
        ldconfig
    fi
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
        [ -e "$icd" ] && { export VK_DRIVER_FILES="$icd"; break; }
    done
    export VK_LOADER_DEBUG="${VK_LOADER_DEBUG:-error}"
}

verify_start() { # log folder, budget in seconds (B is the bundle)
    unxz_bins "$B"
    gpu_env "$B"
    # The Vulkan loader and NVIDIA's ICD for the wgpu runs (as wgpu/bench.sh sets them up).
    vulkan_env "$B/wgpu/deb"
    round_start "$1" "$2" name,driver_version,memory.total,clocks.max.sm
}

device_txt() { # [nvidia-smi query fields]
    {
        echo "bundle: $(tr '\n' ' ' < "$B/COMMIT")"
        nvidia-smi --query-gpu="${1:-name,memory.total,clocks.max.sm}" --format=csv,noheader
        echo "seed $TESSERA_SEED"
    } | tee "$L/device.txt"
}

round_start() { # log folder, budget in seconds, [nvidia-smi fields]: L, device_txt, DEADLINE
    L=$1
    mkdir -p "$L"
    device_txt "${3:-}"
    : > "$L/steps.txt"
    DEADLINE=$((SECONDS + $2))
}

step() { # name limit command... (cut to DEADLINE when set; skipped past it)
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    if [ -n "${DEADLINE:-}" ]; then
        local left=$((DEADLINE - SECONDS))
        if [ "$left" -lt 15 ]; then
            echo "${STEP_PREFIX:-}$name skipped (deadline)" | tee -a "$L/steps.txt"
            return
        fi
        [ "$limit" -gt "$left" ] && limit=$left
    fi
    timeout "$limit" "$@" > "$L/$name.log" 2>&1
    local line="${STEP_PREFIX:-}$name rc=$? secs=$((SECONDS - t0))"
    if [ "${STEP_QUIET:-0}" = 1 ]; then echo "$line" >> "$L/steps.txt"; else echo "$line" | tee -a "$L/steps.txt"; fi
}

lat() { # name batch env... binary
    local name=$1 bs=$2
    shift 2
    step "lat_$name" "${LAT_LIMIT:-90}" env "$@" bench latency "${M[@]}" --batch-size "$bs" --input-len 128 --output-len 256 --num-iters 3
}

test_bin() { # name limit args... (B is the bundle)
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$B/bin/$name" "$@"
}

parity_table() { # head names... (test logs in $L)
    local n=$1 f
    shift
    for f in "$@"; do
        [ -f "$L/$f.log" ] || continue
        echo "--- $f: $(grep -ac '^PARITY' "$L/$f.log") parity lines, $(grep -aE '^PARITY .*FAIL' -c "$L/$f.log") FAIL"
        grep -aE "${PARITY_GREP:-^PARITY .*FAIL|test result|panicked}" "$L/$f.log" | head -"$n"
    done
}

lat_table() { # width of the name column
    local f
    for f in "$L"/lat_*.log; do
        [ -f "$f" ] || continue
        printf "%-${1}s %s | %s\n" "$(basename "$f" .log | cut -c5-)" "$(grep -a 'decode:' "$f" | tr -s ' ')" "$(grep -a 'Avg latency' "$f")"
    done
}

lat_summary() { # width of the name column: a latency-only call's summary, written and printed
    {
        echo "=== device"; cat "$L/device.txt"
        echo "=== latency"; lat_table "$1"
        echo "=== steps"; cat "$L/steps.txt"
    } > "$L/summary.txt"
    cat "$L/summary.txt"
}

lat_host_table() { # width of the name column: per lat_*.log its last decode line and host line
    local f
    for f in "$L"/lat_*.log; do
        [ -f "$f" ] || continue
        printf "%-${1}s %s | %s\n" "$(basename "$f" .log | sed 's/^lat_//')" "$(grep -a 'decode:' "$f" | tail -1 | tr -s ' ')" "$(grep -a '^host:' "$f" | tr -s ' ')"
    done
}

tput_table() { # width of the name column: per tput_*.log its throughput and step-time lines
    local f
    for f in "$L"/tput_*.log; do
        [ -f "$f" ] && printf "%-${1}s %s\n" "$(basename "$f" .log)" "$(grep -aE '^Throughput|decode-only|at batch' "$f" | head -3 | tr -s ' ' | tr '\n' ' ')"
    done
}

kcache_save() { # the compiled kernels into $OUT/kcache.tgz (copy it to the bundle's kcache.tgz)
    [ -n "${OUT:-}" ] && [ -d "$TESSERA_KERNEL_CACHE" ] && tar czf "$OUT/kcache.tgz" -C "$TESSERA_KERNEL_CACHE" .
    return 0
}

logs_tgz() { # file tar-options...
    local file=$1
    shift
    [ -n "${OUT:-}" ] && tar czf "$OUT/$file" -C "$L" "$@" . 2> /dev/null
    return 0
}
