"""Per-product durations of the small-M GEMV nodes of the last decode step, from an ncu CSV
of a run (`-k regex:gemv` profiles only those) (`ncu --graph-profiling node --metrics
gpu__time_duration.sum --csv --print-units base --log-file X`): the last 4 · LAYERS + 1 GEMV
nodes are the step's q/k/v, o, gate/up, down per layer and the lm_head; prints each
product's mean µs and GB/s (bf16 weights of the SmolLM3-3B shapes by default).

    python3 ncu_gemv.py X.csv LAYERS
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_csv import kernels, short_name  # noqa: E402

path, layers = sys.argv[1], int(sys.argv[2])
H, I, KV, V = 2048, 11008, 512, 128256
BYTES = {"qkv": (H + 2 * KV) * H * 2, "o": H * H * 2, "gate_up": 2 * I * H * 2, "down": H * I * 2, "lm_head": V * H * 2}
rows = [(short_name(k), grid, us) for k, grid, us in kernels(path) if short_name(k).startswith("gemv")]
need = 4 * layers + 1
if len(rows) < need:
    sys.exit(f"{len(rows)} GEMV nodes, need {need}")
step = rows[-need:]
names = ["qkv", "o", "gate_up", "down"]
acc = {n: [] for n in names + ["lm_head"]}
kern = {}
for i, (k, grid, us) in enumerate(step):
    n = "lm_head" if i == need - 1 else names[i % 4]
    acc[n].append(us)
    kern[n] = f"{k} grid {grid}"
total = 0.0
print(f"{len(rows)} GEMV nodes profiled; last step's {need}:")
for n, v in acc.items():
    mean = sum(v) / len(v)
    total += sum(v)
    print(f"  {n:<8} {mean:8.2f} us  {BYTES[n] / mean / 1e3:6.0f} GB/s  x{len(v):<3} ({kern[n]})")
print(f"  products per step: {total:.1f} us")
