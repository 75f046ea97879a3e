"""Side-by-side timing: each workload runs in ember and in PyTorch alternately, in one process,
with the same thread count, several repeats after a warm-up; medians are compared as ratios."""

from __future__ import annotations

import gc
import statistics
import time


def time_call(fn, number, repeat):
    """Median seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    fn()  # warm-up
    times = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(times)


def side_by_side(pairs, number, repeat):
    """``pairs``: name -> (ember_fn, torch_fn or None). Alternates the two per round."""
    rows = []
    for name, (e_fn, t_fn) in pairs.items():
        e_times, t_times = [], []
        e_fn()
        if t_fn is not None:
            t_fn()
        for _ in range(repeat):
            e_times.append(time_call(e_fn, number, 1))
            if t_fn is not None:
                t_times.append(time_call(t_fn, number, 1))
        e = statistics.median(e_times)
        t = statistics.median(t_times) if t_times else None
        rows.append((name, e, t, e / t if t else None))
    return rows


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def print_table(rows, title):
    print(f"\n{title}")
    print(f"{'workload':<40} {'ember':>12} {'pytorch':>12} {'ratio':>8}")
    for name, e, t, r in rows:
        print(f"{name:<40} {fmt_time(e):>12} {fmt_time(t):>12} "
              f"{(f'{r:.2f}x' if r else '-'):>8}")


def torch_or_none(threads=1):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch
