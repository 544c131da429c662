#!/usr/bin/env bash
# Compiles every kernels/*.cu (with kernels/common.cuh prepended, exactly as the CUDA backend
# does at run time) for sm_90 with NVRTC 13.0 from PyPI, and fails on any error. Needs no GPU.
# Prints each module's register / shared-memory / spill report from ptxas.
#
#   scripts/check-kernels.sh [ARCH]        ARCH defaults to sm_90
#
# The NVRTC wheel lives in .venv-nvrtc (created on first use). Keep its version at or below
# the GPU machine's CUDA (13.0) so what compiles here also compiles there.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH="${1:-sm_90}"
VENV=.venv-nvrtc
NVRTC_VERSION=13.0.88
if ! "$VENV/bin/python" -c "import nvidia.cu13" 2>/dev/null; then
    echo "== installing NVRTC $NVRTC_VERSION from PyPI into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "nvidia-cuda-nvrtc==$NVRTC_VERSION" "nvidia-cuda-runtime==$NVRTC_VERSION"
fi
CU13="$("$VENV/bin/python" -c 'import nvidia.cu13 as m; print(list(m.__path__)[0])')"

# NVRTC loads libnvrtc-builtins.so.13.0 from the library path.
export LD_LIBRARY_PATH="$CU13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$VENV/bin/python" - "$ARCH" "$CU13" <<'PY'
import ctypes, glob, os, re, sys

arch, cu13 = sys.argv[1], sys.argv[2]
lib = ctypes.CDLL(os.path.join(cu13, "lib", "libnvrtc.so.13"))
include = os.path.join(cu13, "include")

def check(r, what):
    if r != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise SystemExit(f"{what}: {lib.nvrtcGetErrorString(r).decode()}")

major, minor = ctypes.c_int(), ctypes.c_int()
check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
print(f"NVRTC {major.value}.{minor.value}, target {arch}, headers {include}")

common = open("kernels/common.cuh").read()
opts = [f"--gpu-architecture={arch}", "--std=c++17", "--generate-line-info",
        "--ptxas-options=-v", f"--include-path={include}"]
failed = []
files = sorted(glob.glob("kernels/*.cu"))
if not files:
    raise SystemExit("no kernels/*.cu found")
for path in files:
    module = os.path.basename(path)[:-3]
    src = f'{common}\n#line 1 "{module}.cu"\n{open(path).read()}'
    prog = ctypes.c_void_p()
    check(lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), f"{module}.cu".encode(), 0, None, None),
          f"{module}: nvrtcCreateProgram")
    c_opts = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    r = lib.nvrtcCompileProgram(prog, len(opts), c_opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    log = log.value.decode(errors="replace")
    ptx_size = ctypes.c_size_t()
    ok = r == 0 and lib.nvrtcGetPTXSize(prog, ctypes.byref(ptx_size)) == 0 and ptx_size.value > 1
    # ptxas report: one line per kernel with registers, shared memory and spills.
    kernels = re.findall(r"Compiling entry function '(\w+)'", log)
    usage = re.findall(r"Used (\d+) registers.*", log)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    warn = [l for l in log.splitlines() if "warning" in l.lower()]
    status = "ok" if ok else "FAILED"
    print(f"== {module}.cu: {status}, {len(kernels)} kernels, max registers "
          f"{max((int(u) for u in usage), default=0)}, spilling kernels "
          f"{sum(1 for s in spills if s != ('0', '0'))}, warnings {len(warn)}")
    for w in warn:
        print("   ", w)
    if not ok:
        print(log)
        failed.append(module)
    elif os.environ.get("VERBOSE"):
        print(log)
    # Spills in any kernel are reported, not fatal.
    for name, s in zip(kernels, spills):
        if s != ("0", "0"):
            print(f"    spills in {name}: {s[0]} B stored, {s[1]} B loaded")
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
if failed:
    raise SystemExit(f"kernels failed to compile: {', '.join(failed)}")
print(f"all {len(files)} kernel files compile for {arch}")
PY
