#!/usr/bin/env bash
# Builds the bundle scripts/gpu/gemv1-round.sh runs (one device step for the GEMV work of
# branch cuda-gemv1) with scripts/build-gpu-bundle.sh, smaller than its default: this
# checkout's tessera and the base binary BASE_BIN (default /work/main/target/release/tessera,
# main at 3d73e15), both xz'd, the cuda_gemv1 / cuda_fused / cuda_ops test binaries, the model
# fixtures, the SmolLM3-3B config and the scripts, into DIR (default /work/main/.gpu-B, listed
# in that checkout's .git/info/exclude so it travels only when carried). Then:
#
#   scripts/gpu/gemv1-bundle.sh [DIR]
#   run(command="bash .gpu-B/gemv1-round.sh", carry=[".gpu-B"])
set -euo pipefail
TESTS="cuda_gemv1 cuda_fused cuda_ops" BASE_BIN="${BASE_BIN:-/work/main/target/release/tessera}" BUNDLE_XZ=1 \
    GPU_BUNDLE_DIR="${1:-/work/main/.gpu-B}" exec "$(dirname "$0")/../build-gpu-bundle.sh"
