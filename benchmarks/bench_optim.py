"""One optimizer step over 100 parameter tensors (1M float32 values in all): ember's foreach
path (flat buffers) vs its per-parameter loop vs PyTorch's loop and foreach, on the same
thread count. The four run alternately, one step each per round, so machine noise hits all
of them alike; the table gives medians (and minimums) and ratios.

    python benchmarks/bench_optim.py [--threads 1] [--rounds 60] [--tensors 100]

``--tensors N`` splits the same 1M values over N tensors (many small tensors is where the
per-parameter loop pays most).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ember  # noqa: E402

TOTAL = 1_000_000
CASES = [("Adam", dict(lr=1e-3)), ("SGD momentum", dict(lr=1e-2, momentum=0.9))]


def make_optimizer(lib, name, kw, foreach, shapes):
    """``lib.optim.<name>`` over ``shapes``, every parameter with a gradient already set."""
    rng = np.random.default_rng(0)
    params = []
    for s in shapes:
        p = lib.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
        p.grad = lib.tensor(rng.standard_normal(s).astype(np.float32))
        params.append(p)
    opt = getattr(lib.optim, name.split()[0])(params, foreach=foreach, **kw)
    opt.step()  # state creation (and, on ember's foreach path, the flat buffers)
    return opt


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--tensors", type=int, default=100)
    args = ap.parse_args()
    shapes = [(TOTAL // args.tensors,)] * args.tensors
    ember.set_num_threads(args.threads)
    libs = [("ember foreach", ember, True), ("ember loop", ember, False)]
    try:
        import torch
        torch.set_num_threads(args.threads)
        libs += [("torch loop", torch, False), ("torch foreach", torch, True)]
    except ImportError:
        pass
    n = sum(int(np.prod(s)) for s in shapes)
    print(f"{len(shapes)} tensors, {n:,} float32 values, {args.threads} thread(s), "
          f"{args.rounds} rounds; median (min) ms per step")
    print(f"{'optimizer':<14}" + "".join(f"{label:>18}" for label, _, _ in libs)
          + f"{'loop/foreach':>14}{'ember fe/torch':>16}")
    for name, kw in CASES:
        opts = [make_optimizer(lib, name, kw, fe, shapes) for _, lib, fe in libs]
        times = [[] for _ in opts]
        gc.disable()
        try:
            for _ in range(args.rounds):
                for opt, ts in zip(opts, times):
                    t0 = time.perf_counter()
                    opt.step()
                    ts.append(time.perf_counter() - t0)
        finally:
            gc.enable()
        med = [1e3 * statistics.median(ts) for ts in times]
        low = [1e3 * min(ts) for ts in times]
        row = f"{name:<14}" + "".join(f"{m:>10.2f} ({lo:>4.2f})" for m, lo in zip(med, low))
        row += f"{med[1] / med[0]:>13.2f}x"
        if len(med) > 2:
            row += f"{med[0] / min(med[2:]):>15.2f}x"
        print(row)


if __name__ == "__main__":
    main()
