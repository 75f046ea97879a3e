"""Capture time of a GPT block: ``ember.export.export`` (static, and with a dynamic batch and
sequence length, which captures four times), ``ember.jit.trace`` (with and without its
check), and a captured training step; beside PyTorch's ``torch.export.export`` and
``torch.jit.trace`` of the same block when PyTorch is installed. Medians over rounds.

    python benchmarks/bench_capture.py [--rounds 5] [--no-torch]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ember  # noqa: E402


def gpt_block(lib, d=128, heads=4, max_len=128):
    """A pre-norm GPT block written once for ember and PyTorch (``lib`` is either)."""
    nn, F = lib.nn, lib.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            self.register_buffer("mask", lib.tril(lib.ones(max_len, max_len))
                                 .view(1, 1, max_len, max_len))

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q = q.view(b, t, heads, c // heads).transpose(1, 2)
            k = k.view(b, t, heads, c // heads).transpose(1, 2)
            v = v.view(b, t, heads, c // heads).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // heads))
            att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf"))
            y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, c)
            x = x + self.proj(y)
            return x + self.out(F.gelu(self.fc(self.ln2(x))))
    return Block().eval()


def timed(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rows(rounds=5, with_torch=True):
    """(workload, ember seconds, PyTorch seconds or None)."""
    from ember.export import Dim
    from ember.export._capture import trace_program
    ember.manual_seed(0)
    m = gpt_block(ember)
    x = ember.randn(8, 64, 128)
    dyn = {"x": {0: Dim("b", max=64), 1: Dim("t", max=127)}}
    ember.export.export(m, (x,))  # warm-up: first use imports ember.fx and the op families
    m_train = gpt_block(ember).train()
    opt = ember.optim.SGD(m_train.parameters(), lr=0.01)
    y = ember.randn(8, 64, 128)

    def step(a, b):
        opt.zero_grad()
        ember.nn.functional.mse_loss(m_train(a), b).backward()
        opt.step()

    out = [
        ("export (static)", timed(lambda: ember.export.export(m, (x,)), rounds)),
        ("export (dynamic batch, seq)",
         timed(lambda: ember.export.export(m, (x,), dynamic_shapes=dyn), rounds)),
        ("jit.trace (check_trace=False)",
         timed(lambda: ember.jit.trace(m, (x,), check_trace=False), rounds)),
        ("jit.trace", timed(lambda: ember.jit.trace(m, (x,)), rounds)),
        ("eager forward (reference)", timed(lambda: m(x), rounds)),
        ("training step capture", timed(lambda: trace_program(step, (x, y),
                                                              modules=[m_train]), rounds)),
    ]
    theirs = {}
    if with_torch:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            torch.manual_seed(0)
            tm = gpt_block(torch)
            tx = torch.randn(8, 64, 128)
            tdyn = {"x": {0: torch.export.Dim("b", max=64), 1: torch.export.Dim("t", max=127)}}
            theirs = {
                "export (static)": timed(lambda: torch.export.export(tm, (tx,)), rounds),
                "export (dynamic batch, seq)":
                    timed(lambda: torch.export.export(tm, (tx,), dynamic_shapes=tdyn), rounds),
                "jit.trace (check_trace=False)":
                    timed(lambda: torch.jit.trace(tm, (tx,), check_trace=False), rounds),
                "jit.trace": timed(lambda: torch.jit.trace(tm, (tx,)), rounds),
                "eager forward (reference)": timed(lambda: tm(tx), rounds),
            }
    return [(name, s, theirs.get(name)) for name, s in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    print("| GPT block (d=128, 4 heads, x: 8x64x128) | ember | PyTorch |")
    print("| --- | --- | --- |")
    for name, s, t in rows(a.rounds, not a.no_torch):
        print(f"| {name} | {s * 1e3:.1f} ms | {'-' if t is None else f'{t * 1e3:.1f} ms'} |")


if __name__ == "__main__":
    main()
