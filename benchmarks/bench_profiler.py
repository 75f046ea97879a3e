"""Profiler overhead per op: tiny ops with no profiler, with ``ember.profiler.profile`` (and
with ``record_shapes``), beside PyTorch's profiler on the same ops.

    python benchmarks/bench_profiler.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ember  # noqa: E402
from benchmarks._timing import fmt_time, time_call, torch_or_none  # noqa: E402


def ops(mod):
    v = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    a, b = mod.tensor(v), mod.tensor(v)
    return {"add (16,)": lambda: a + b, "mul (16,)": lambda: a * b, "sum (16,)": lambda: a.sum(),
            "exp (16,)": lambda: a.exp()}


def measure(mod, number, repeat):
    """Seconds per call: eager, profiled, profiled with record_shapes."""
    prof = mod.profiler.profile
    out = {}
    for name, fn in ops(mod).items():
        eager = time_call(fn, number, repeat)
        with prof() as p:
            on = time_call(fn, number, repeat)
        with prof(record_shapes=True) as p:
            shapes = time_call(fn, number, repeat)
        del p
        out[name] = (eager, on, shapes)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    number, repeat = (2000, 3) if args.quick else (20000, 5)
    torch = torch_or_none(1)
    rows = {"ember": measure(ember, number, repeat)}
    if torch is not None:
        rows["pytorch"] = measure(torch, number, repeat)
    print("\nProfiler overhead (median time per call; + is the cost of profiling)")
    print(f"{'workload':<12} {'library':<8} {'eager':>10} {'profiled':>18} "
          f"{'record_shapes':>18}")
    for lib, res in rows.items():
        for name, (e, on, sh) in res.items():
            print(f"{name:<12} {lib:<8} {fmt_time(e):>10} "
                  f"{fmt_time(on):>9} (+{fmt_time(on - e):>7}) "
                  f"{fmt_time(sh):>9} (+{fmt_time(sh - e):>7})")
    return rows


if __name__ == "__main__":
    main()
