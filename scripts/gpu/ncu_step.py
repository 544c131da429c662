"""Per-node durations of one decode step from an ncu CSV (`ncu --graph-profiling node
--metrics gpu__time_duration.sum --csv --print-units base --log-file X`): the launches after
the last `embedding` kernel (the last step, a replayed decode graph) grouped by kernel, per
layer (divided by the layer count), with their sum.

    python3 ncu_step.py X.csv LAYERS
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_csv import decode_step, kernels, per_kernel_table  # noqa: E402

path, layers = sys.argv[1], int(sys.argv[2])
rows = kernels(path)
print(f"{len(rows)} kernels profiled")
step, seen = decode_step(rows)
total = sum(us for _, _, us in step)
print(f"last step: {len(step)} nodes, sum of node durations {total:.1f} us ({seen} steps seen)")
print("\n".join(per_kernel_table(step, layers)))
