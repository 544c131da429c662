#!/usr/bin/env bash
# System packages the tests need on a machine without a GPU: Mesa's lavapipe (a Vulkan
# driver on the CPU) and the Vulkan loader, for the wgpu backend's op and model parity tests
# (core/tests/wgpu_ops.rs), and a C++ compiler for libFuzzer (scripts/fuzz-gguf.sh).
# Idempotent; needs root (CI runs as root).
set -euo pipefail

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
fi
if ! command -v c++ >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends g++
fi
