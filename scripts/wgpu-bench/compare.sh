#!/usr/bin/env bash
# Runs on the GPU machine: bench.sh for a base binary and the bundle's binary in one call
# (same card), the new one also with each of its switches, plus the dispatch-cost
# micro-bench and the step profiles. Bundle: scripts/wgpu-bench-bundle.sh, then copy the
# base build (cuda+wgpu, stripped) to BUNDLE/tessera-base (xz-compressed files are unpacked).
#   run(command="bash .gpu-wgpu4/compare.sh", carry=[".gpu-wgpu4"])
# NEW_ENVS: the new binary's variants (bench.sh WGPU_ENVS).
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
for f in "$B"/*.xz; do
    [ -e "$f" ] || continue
    xz -d -c "$f" > "/tmp/$(basename "${f%.xz}")" && chmod +x "/tmp/$(basename "${f%.xz}")"
done
bin() { if [ -e "$B/$1" ]; then echo "$B/$1"; else echo "/tmp/$1"; fi; }
NEW_ENVS=${NEW_ENVS:-"TESSERA_WGPU_GRAPHS=1 TESSERA_WGPU_FUSE_NORM=0 TESSERA_WGPU_FUSE_KV=0 TESSERA_WGPU_ZERO_WG=0"}
# The new binary's CUDA rates run last (its CUDA path is the base's unless native/ changed).
R=${OUT:-/tmp}
mkdir -p /tmp/b-base /tmp/b-new
# The bench reads the micro-bench from its own folder.
[ -e "$B/wgpu_dispatch_cost" ] || cp /tmp/wgpu_dispatch_cost "$B/" 2>/dev/null
# Rate lines and the micro-bench go straight to $OUT (kept if the call is cut short).
echo "== base ($(bin tessera-base))"
OUT=/tmp/b-base TABLE=$R/base-table.txt TESSERA_BIN=$(bin tessera-base) DISPATCH_COST=0 WGPU_ENVS="TESSERA_WGPU_GRAPHS=1" \
    bash "$B/bench.sh" > /tmp/b-base/stdout 2>&1
head -2 /tmp/b-base/stdout
grep -a "FAILED" -A5 /tmp/b-base/stdout | head -20
echo "== new ($(bin tessera))"
CUDA_FIRST= CUDA_LAST=cuda OUT=/tmp/b-new TABLE=$R/new-table.txt DISPATCH_OUT=$R/dispatch_cost.txt TESSERA_BIN=$(bin tessera) WGPU_ENVS="$NEW_ENVS" \
    PROFILE=${PROFILE:-1} PROFILE_MODES=${PROFILE_MODES:-"host 1"} bash "$B/bench.sh" > /tmp/b-new/stdout 2>&1
grep -a "FAILED" -A5 /tmp/b-new/stdout | head -20
grep -ah "adapter\|GGUF weights\|CUDA backend" /tmp/b-new/stdout | cut -c1-200 | head -4
echo "== dispatch cost"
cat "$R/dispatch_cost.txt"
echo "== profiles (new)"
cut -c1-1500 /tmp/b-new/profile.txt 2>/dev/null
echo "== base table"
cat "$R/base-table.txt"
echo "== new table"
cat "$R/new-table.txt"
