"""Summarises `ncu --csv --page raw --metrics gpu__time_duration.sum` output of replayed
decode graphs (`--graph-profiling node`): per kernel name (count, total, mean), the node
sequence of one layer, and the total per replay: `python3 ncu_nodes.py nodes.csv [replays]`."""
import csv
import sys
from collections import OrderedDict


def rows(path):
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    r = list(csv.reader(lines))
    head = r[0]
    name = head.index("Kernel Name")
    dur = head.index("gpu__time_duration.sum")
    grid = head.index("Grid Size") if "Grid Size" in head else None
    out = []
    for row in r[1:]:
        try:
            d = float(row[dur].replace(",", ""))
        except ValueError:
            continue  # the units row
        out.append((row[name], row[grid] if grid is not None else "", d))
    return out


def main():
    data = rows(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    total = sum(d for _, _, d in data)
    print(f"nodes {len(data)}  total {total / 1e3:.1f} us over {reps} replay(s) = {total / 1e6 / reps:.3f} ms a step")
    agg = OrderedDict()
    for n, g, d in data:
        key = (n[:70], g)
        c, s = agg.get(key, (0, 0.0))
        agg[key] = (c + 1, s + d)
    print(f"{'kernel (grid)':<95} {'n/step':>6} {'us/step':>9} {'us each':>8} {'%':>5}")
    for (n, g), (c, s) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"{n + ' ' + g:<95} {c / reps:>6.0f} {s / reps / 1e3:>9.1f} {s / c / 1e3:>8.2f} {100 * s / total:>5.1f}")
    print("first 40 nodes of the first replay:")
    for n, g, d in data[:40]:
        print(f"  {d / 1e3:>8.2f} us  {n[:80]} {g}")


if __name__ == "__main__":
    main()
