"""Per-node durations of one decode step from an ncu CSV (`ncu --graph-profiling node
--metrics gpu__time_duration.sum --csv --print-units base --log-file X`): the launches after
the last `embedding` kernel (the last step, a replayed decode graph) grouped by kernel, per
layer (divided by the layer count), with their sum.

    python3 ncu_step.py X.csv LAYERS
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
    rows.append((r["Kernel Name"], us))
print(f"{len(rows)} kernels profiled")
starts = [i for i, (k, _) in enumerate(rows) if k.startswith("embedding")]
if not starts:
    sys.exit("no embedding kernel found")
step = rows[starts[-1]:]
groups = collections.OrderedDict()
for k, us in step:
    name = re.sub(r"\(.*", "", k)
    g = groups.setdefault(name, [0, 0.0])
    g[0] += 1
    g[1] += us
total = sum(us for _, us in step)
print(f"last step: {len(step)} nodes, sum of node durations {total:.1f} us ({len(starts)} steps seen)")
print(f"{'kernel':<44}{'calls':>6}{'us/step':>10}{'per layer us':>14}")
for name, (n, us) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    print(f"{name[:44]:<44}{n:>6}{us:>10.1f}{us / layers:>14.2f}")
