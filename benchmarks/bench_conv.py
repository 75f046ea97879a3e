"""Conv2d / MaxPool2d forward+backward: ember vs PyTorch, measured side by side in one run.

Run: ``python benchmarks/bench_conv.py [--threads N] [--repeat R]``. Each case alternates
ember and torch calls (so both see the same machine load) and prints median times and the
ratio ember / torch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import ember
import ember.nn.functional as EF


def _cases():
    # name, input shape, make(module_lib) -> callable(x) -> output, input requires grad
    return [
        ("conv2d LeNet  64x1x28x28 1->6 k5", (64, 1, 28, 28),
         lambda m: m.nn.Conv2d(1, 6, 5), False),
        ("conv2d LeNet  64x1x28x28 1->6 k5 (grad x)", (64, 1, 28, 28),
         lambda m: m.nn.Conv2d(1, 6, 5), True),
        ("conv2d ResNet 32x64x16x16 64->64 k3 p1", (32, 64, 16, 16),
         lambda m: m.nn.Conv2d(64, 64, 3, padding=1), True),
        ("maxpool2d 2x2 64x6x24x24", (64, 6, 24, 24),
         lambda m: m.nn.MaxPool2d(2), True),
        ("maxpool2d 3x3 s2 p1 32x64x32x32", (32, 64, 32, 32),
         lambda m: m.nn.MaxPool2d(3, 2, 1), True),
    ]


def _step(lib, layer, x):
    def run():
        if x.grad is not None:
            x.grad = None
        y = layer(x)
        y.backward(lib.ones_like(y))
    return run


def _median_pair(f_ember, f_torch, repeat):
    f_ember(), f_torch()  # warm up
    te, tt = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f_ember()
        t1 = time.perf_counter()
        f_torch()
        t2 = time.perf_counter()
        te.append(t1 - t0)
        tt.append(t2 - t1)
    return float(np.median(te)), float(np.median(tt))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ember.set_num_threads(args.threads)
    del EF
    print(f"threads={args.threads}  (times: median ms of forward+backward)")
    print(f"{'case':46s} {'ember':>9s} {'torch':>9s} {'ratio':>7s}")
    for name, shape, make, grad_x in _cases():
        rng = np.random.default_rng(0)
        xa = rng.standard_normal(shape, dtype=np.float32)
        torch.manual_seed(0)
        tl = make(torch)
        el = make(ember)
        if hasattr(tl, "weight"):
            el.load_state_dict({k: ember.tensor(v.numpy()) for k, v in tl.state_dict().items()})
        xt = torch.tensor(xa, requires_grad=grad_x)
        xe = ember.tensor(xa, requires_grad=grad_x)
        if not grad_x:  # backward still has a path through the weights
            assert hasattr(tl, "weight")
        te, tt = _median_pair(_step(ember, el, xe), _step(torch, tl, xt), args.repeat)
        print(f"{name:46s} {te * 1e3:9.3f} {tt * 1e3:9.3f} {te / tt:7.2f}")


if __name__ == "__main__":
    main()
