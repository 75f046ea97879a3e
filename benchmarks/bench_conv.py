"""Conv2d and MaxPool2d forward+backward: ember vs PyTorch, side by side in one process.

    python benchmarks/bench_conv.py [--threads N] [--repeat R] [--number K]

Both frameworks get the same thread count (NumPy's BLAS through OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS, set before NumPy loads; PyTorch through ``set_num_threads``). Each case
alternates ember and PyTorch rounds and prints median times and the ratio ember / PyTorch,
twice: wall-clock time, and process CPU time. On a machine shared with other jobs the wall
clock mostly measures the scheduler; with one thread the CPU time is the fairer figure.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time


def _args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--number", type=int, default=3)
    return ap.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import ember  # noqa: E402
from benchmarks._timing import fmt_time, torch_or_none  # noqa: E402

# name -> (input shape, layer factory taking the module library, input requires grad)
CASES = {
    "Conv2d LeNet 64x1x28x28 1->6 k5": (
        (64, 1, 28, 28), lambda m: m.nn.Conv2d(1, 6, 5), False),
    "Conv2d LeNet, input grad too": (
        (64, 1, 28, 28), lambda m: m.nn.Conv2d(1, 6, 5), True),
    "Conv2d ResNet 32x64x16x16 64->64 k3 p1": (
        (32, 64, 16, 16), lambda m: m.nn.Conv2d(64, 64, 3, padding=1), True),
    "MaxPool2d 2 on 64x6x24x24": (
        (64, 6, 24, 24), lambda m: m.nn.MaxPool2d(2), True),
    "MaxPool2d 3 s2 p1 on 32x64x32x32": (
        (32, 64, 32, 32), lambda m: m.nn.MaxPool2d(3, 2, 1), True),
}


def _build(m, shape, make, grad_x, state):
    layer = make(m)
    if state:
        layer.load_state_dict({k: m.tensor(v) for k, v in state.items()})
    x = m.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32),
                 requires_grad=grad_x)
    params = list(layer.parameters())

    def step():
        for p in params:
            p.grad = None
        x.grad = None
        y = layer(x)
        y.backward(m.ones_like(y))
    return step


def _measure(fn, number):
    """(wall seconds, CPU seconds) per call over ``number`` calls."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(number):
        fn()
    return ((time.perf_counter() - w0) / number, (time.process_time() - c0) / number)


def side_by_side(pairs, number, repeat):
    """Alternate ember and PyTorch rounds; medians of wall and CPU times per case."""
    rows = []
    for name, (e_fn, t_fn) in pairs.items():
        e_fn(), t_fn()  # warm-up
        e, t = [], []
        gc.disable()
        try:
            for _ in range(repeat):
                e.append(_measure(e_fn, number))
                t.append(_measure(t_fn, number))
        finally:
            gc.enable()
        rows.append((name,) + tuple(statistics.median(v[i] for v in runs)
                                    for i in (0, 1) for runs in (e, t)))
    return rows


def main():
    torch = torch_or_none(ARGS.threads)
    if torch is None:
        raise SystemExit("PyTorch is needed for the side-by-side comparison")
    ember.set_num_threads(ARGS.threads)
    pairs = {}
    for name, (shape, make, grad_x) in CASES.items():
        torch.manual_seed(0)
        tl = make(torch)
        state = {k: v.detach().numpy().copy() for k, v in tl.state_dict().items()}
        pairs[name] = (_build(ember, shape, make, grad_x, state),
                       _build(torch, shape, make, grad_x, state))
    rows = side_by_side(pairs, ARGS.number, ARGS.repeat)
    print(f"forward+backward, float32, threads={ARGS.threads}, median of {ARGS.repeat} "
          f"rounds of {ARGS.number} calls")
    print(f"{'':<40} {'wall clock':^30}  {'CPU time':^30}")
    print(f"{'case':<40} {'ember':>10} {'pytorch':>10} {'ratio':>8}  {'ember':>10} "
          f"{'pytorch':>10} {'ratio':>8}")
    for name, ew, tw, ec, tc in rows:
        print(f"{name:<40} {fmt_time(ew):>10} {fmt_time(tw):>10} {ew / tw:>7.2f}x  "
              f"{fmt_time(ec):>10} {fmt_time(tc):>10} {ec / tc:>7.2f}x")


if __name__ == "__main__":
    main()
