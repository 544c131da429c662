"""Per-node durations of one decode step from an ncu CSV (`ncu --graph-profiling node
--metrics gpu__time_duration.sum --csv --print-units base --log-file X`): the launches after
the last `embedding` kernel (the last step, a replayed decode graph) grouped by kernel, per
layer (divided by the layer count), with their sum.

    python3 ncu_step.py X.csv LAYERS
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_csv import kernels, per_kernel_table  # noqa: E402

path, layers = sys.argv[1], int(sys.argv[2])
rows = kernels(path)
print(f"{len(rows)} kernels profiled")
starts = [i for i, (k, _, _) in enumerate(rows) if k.startswith("embedding")]
if not starts:
    sys.exit("no embedding kernel found")
step = rows[starts[-1]:]
total = sum(us for _, _, us in step)
print(f"last step: {len(step)} nodes, sum of node durations {total:.1f} us ({len(starts)} steps seen)")
print("\n".join(per_kernel_table(step, layers)))
