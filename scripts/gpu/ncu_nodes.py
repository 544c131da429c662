"""Summarises `ncu --csv --page raw --metrics gpu__time_duration.sum` output of replayed
decode graphs (`--graph-profiling node`): per kernel name (count, total, mean), the node
sequence of one layer, and the total per replay: `python3 ncu_nodes.py nodes.csv [replays]`."""
import os
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_csv import kernels  # noqa: E402


def main():
    data = kernels(sys.argv[1])  # durations in µs
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    total = sum(d for _, _, d in data)
    print(f"nodes {len(data)}  total {total:.1f} us over {reps} replay(s) = {total / 1e3 / reps:.3f} ms a step")
    agg = OrderedDict()
    for n, g, d in data:
        key = (n[:70], g)
        c, s = agg.get(key, (0, 0.0))
        agg[key] = (c + 1, s + d)
    print(f"{'kernel (grid)':<95} {'n/step':>6} {'us/step':>9} {'us each':>8} {'%':>5}")
    for (n, g), (c, s) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"{n + ' ' + g:<95} {c / reps:>6.0f} {s / reps:>9.1f} {s / c:>8.2f} {100 * s / total:>5.1f}")
    print("first 40 nodes of the first replay:")
    for n, g, d in data[:40]:
        print(f"  {d:>8.2f} us  {n[:80]} {g}")


if __name__ == "__main__":
    main()
