"""Per-op overhead of tiny ops, ember vs PyTorch, side by side (ratios; lower is better).

    python benchmarks/op_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ember  # noqa: E402
from benchmarks._timing import print_table, side_by_side, torch_or_none  # noqa: E402


def workloads(torch):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(16).astype(np.float32)
    m = rng.standard_normal((8, 8)).astype(np.float32)
    pairs = {}

    def both(name, make):
        e = make(ember)
        t = make(torch) if torch is not None else None
        pairs[name] = (e, t)

    def plain(op):
        def make(mod):
            a, b = mod.tensor(v), mod.tensor(v)
            x, y = mod.tensor(m), mod.tensor(m)
            return {"add": lambda: a + b, "mul": lambda: a * b, "matmul": lambda: x @ y,
                    "sum": lambda: a.sum()}[op]
        return make

    def grad(op):
        def make(mod):
            a = mod.tensor(v, requires_grad=True)
            b = mod.tensor(v, requires_grad=True)
            x = mod.tensor(m, requires_grad=True)
            y = mod.tensor(m, requires_grad=True)
            return {"add": lambda: a + b, "mul": lambda: a * b, "matmul": lambda: x @ y,
                    "sum": lambda: a.sum()}[op]
        return make

    def backward(op):
        def make(mod):
            a = mod.tensor(v, requires_grad=True)
            b = mod.tensor(v, requires_grad=True)
            x = mod.tensor(m, requires_grad=True)
            y = mod.tensor(m, requires_grad=True)
            f = {"add": lambda: (a + b).sum(), "mul": lambda: (a * b).sum(),
                 "matmul": lambda: (x @ y).sum(), "sum": lambda: a.sum()}[op]

            def run():
                a.grad = b.grad = x.grad = y.grad = None
                f().backward()
            return run
        return make

    for op, shape in (("add", "(16,)"), ("mul", "(16,)"), ("matmul", "(8,8)"), ("sum", "(16,)")):
        both(f"{op} {shape}", plain(op))
        both(f"{op} {shape} requires_grad", grad(op))
        both(f"{op} {shape} forward+backward", backward(op))

    # the small ops a training step issues besides arithmetic (views, indexing, reductions
    # by dim, activations, linear), plain and with requires_grad
    def small(name, grad_):
        def make(mod):
            a = mod.tensor(v, requires_grad=grad_)
            x = mod.tensor(m, requires_grad=grad_)
            w = mod.tensor(m, requires_grad=grad_)
            bias = mod.tensor(m[0], requires_grad=grad_)
            F = mod.nn.functional
            return {"mean (16,)": lambda: a.mean(), "max (16,)": lambda: a.max(),
                    "view (8,8)": lambda: x.view(4, 16), "reshape (8,8)": lambda: x.reshape(-1),
                    "t (8,8)": lambda: x.t(), "x[1] (8,8)": lambda: x[1],
                    "x[:, 2:5] (8,8)": lambda: x[:, 2:5], "sum(1) (8,8)": lambda: x.sum(1),
                    "relu (8,8)": lambda: F.relu(x),
                    "linear (8,8)": lambda: F.linear(x, w, bias)}[name]
        return make

    for name in ("mean (16,)", "max (16,)", "view (8,8)", "reshape (8,8)", "t (8,8)",
                 "x[1] (8,8)", "x[:, 2:5] (8,8)", "sum(1) (8,8)", "relu (8,8)", "linear (8,8)"):
        both(name, small(name, False))
        both(f"{name} requires_grad", small(name, True))
    return pairs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch = torch_or_none(1)
    number, repeat = (2000, 5) if args.quick else (20000, 9)
    rows = side_by_side(workloads(torch), number, repeat)
    print_table(rows, "Per-op overhead (median time per call)")
    return rows


if __name__ == "__main__":
    main()
