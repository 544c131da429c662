"""Per-node durations of ONE whole decode step from an ncu CSV (`ncu --graph-profiling node
--metrics gpu__time_duration.sum --csv --print-units base --log-file X`, usually limited to a
few replays by TESSERA_CUDA_PROFILER_REPLAYS): the launches from the first `embedding` kernel
to the next one (the replayed graph plus the eager tail after it: gather_rows, argmax),
grouped by kernel, per layer (divided by the layer count), with their sum.

    python3 att1_ncu.py X.csv LAYERS
"""
import collections
import csv
import re
import sys

path, layers = sys.argv[1], int(sys.argv[2])
rows = []
with open(path, newline="") as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    unit = (r.get("Metric Unit") or "").strip().lower()
    v = float(r["Metric Value"].replace(",", ""))
    us = v * {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6}.get(unit, 1e-3)
    rows.append((r["Kernel Name"], r.get("Grid Size", ""), us))
print(f"{len(rows)} kernels profiled")
starts = [i for i, (k, _, _) in enumerate(rows) if k.startswith("embedding")]
if not starts:
    sys.exit("no embedding kernel found")
end = starts[1] if len(starts) > 1 else len(rows)
step = rows[starts[0]:end]
groups = collections.OrderedDict()
for k, grid, us in step:
    name = re.sub(r"\(.*", "", k)
    g = groups.setdefault(name, [0, 0.0, set()])
    g[0] += 1
    g[1] += us
    g[2].add(grid)
total = sum(us for _, _, us in step)
print(f"first whole step: {len(step)} nodes, sum of node durations {total:.1f} us ({len(starts)} steps seen)")
print(f"{'kernel':<44}{'calls':>6}{'us/step':>10}{'per layer us':>14}  grids")
for name, (n, us, grids) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    print(f"{name[:44]:<44}{n:>6}{us:>10.1f}{us / layers:>14.2f}  {' '.join(sorted(grids))[:40]}")
