"""The ncu CSV reader of the scripts/gpu parsers (ncu_step.py, att1_ncu.py, ncu_gemv.py,
ncu_nodes.py): the launches of an `ncu --metrics gpu__time_duration.sum --csv` run, in order,
from either page: the details page (`--print-units base --log-file X`: one row per launch and
metric, with "Metric Name" / "Metric Unit" / "Metric Value") or the raw page (`--page raw`,
ncu's stdout: a column per metric, a units row after the header). Lines not starting with a
quote (ncu's ==PROF== messages, the program's output) are skipped.

    from ncu_csv import decode_step, kernels, per_kernel_table
"""
import collections
import csv
import re
import sys

METRIC = "gpu__time_duration.sum"
_TO_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}


def _us(value, unit):
    return float(value.replace(",", "")) * _TO_US.get((unit or "").strip().lower(), 1e-3)


def kernels(path):
    """[(kernel name, grid size, µs)] of each profiled launch (graph node), in order."""
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    if not lines:
        return []
    head = next(csv.reader(lines[:1]))
    out = []
    if "Metric Name" in head:
        for r in csv.DictReader(lines):
            if r.get("Metric Name") == METRIC:
                out.append((r["Kernel Name"], r.get("Grid Size", ""), _us(r["Metric Value"], r.get("Metric Unit"))))
        return out
    rows = list(csv.reader(lines))[1:]
    name, dur = head.index("Kernel Name"), head.index(METRIC)
    grid = head.index("Grid Size") if "Grid Size" in head else None
    unit = "nsecond"
    for i, row in enumerate(rows):
        try:
            us = _us(row[dur], unit)
        except ValueError:
            if i == 0:
                unit = row[dur]  # the units row
            continue
        out.append((row[name], row[grid] if grid is not None else "", us))
    return out


def decode_step(rows, first=False):
    """One decode step's launches and the count of steps seen (each starts with `embedding`):
    the last step (a replayed decode graph), or with `first` the first whole one (to the next
    `embedding`: the replayed graph plus the eager tail after it)."""
    starts = [i for i, (k, _, _) in enumerate(rows) if k.startswith("embedding")]
    if not starts:
        sys.exit("no embedding kernel found")
    if not first:
        return rows[starts[-1]:], len(starts)
    return rows[starts[0]:starts[1] if len(starts) > 1 else len(rows)], len(starts)


def short_name(kernel):
    """The kernel name without its argument list."""
    return re.sub(r"\(.*", "", kernel)


def per_kernel_table(step, layers, grids=False):
    """Lines of a table of `step`'s launches grouped by kernel, most time first: calls, µs in
    the step, µs per layer (divided by `layers`), and with `grids` the grid sizes seen."""
    groups = collections.OrderedDict()
    for k, grid, us in step:
        g = groups.setdefault(short_name(k), [0, 0.0, set()])
        g[0] += 1
        g[1] += us
        g[2].add(grid)
    lines = [f"{'kernel':<44}{'calls':>6}{'us/step':>10}{'per layer us':>14}" + ("  grids" if grids else "")]
    for name, (n, us, gs) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        line = f"{name[:44]:<44}{n:>6}{us:>10.1f}{us / layers:>14.2f}"
        lines.append(line + (f"  {' '.join(sorted(gs))[:40]}" if grids else ""))
    return lines
