"""Symbolic tracing time: ``ember.fx.symbolic_trace`` vs ``torch.fx.symbolic_trace``.

    python benchmarks/bench_fx.py [--repeat R]

Traces a GPT block (nanoGPT's, 4 heads, width 32) and a ResNet-18 layout in both
frameworks, from the same model source, and prints median times and the ratio. Also times
one eager op before and after a trace, to show that tracing leaves eager code untouched
(nothing stays patched and no dispatch mode stays active).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._timing import print_table, side_by_side, time_call, torch_or_none  # noqa


def define(T):
    """A GPT block and a ResNet-18-shaped network, written once for either library."""
    nn, F = T.nn, T.nn.functional

    class Attention(nn.Module):
        def __init__(self, n_embd=32, n_head=4, block_size=8):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
            self.n_head, self.n_embd = n_head, n_embd
            self.register_buffer("bias", T.tril(T.ones(block_size, block_size)))

        def forward(self, x):
            B, L, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q, k, v = (t.view(B, L, self.n_head, C // self.n_head).transpose(1, 2)
                       for t in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = F.softmax(att.masked_fill(self.bias == 0, float("-inf")), dim=-1)
            return self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, L, C))

    class GPTBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(32), Attention(), nn.LayerNorm(32)
            self.mlp = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 32))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1, self.relu = nn.BatchNorm2d(cout), nn.ReLU()
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            blocks, c = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [Block(c, cout, stride), Block(cout, cout, 1)]
                c = cout
            self.blocks = nn.Sequential(*blocks)
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512, 1000)

        def forward(self, x):
            return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))

    return GPTBlock, ResNet18


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    import ember
    import ember.fx
    torch = torch_or_none()
    e_models = define(ember)
    t_models = define(torch) if torch is not None else (None, None)
    pairs = {}
    for label, e_cls, t_cls in zip(("GPT block", "ResNet-18"), e_models, t_models):
        e_mod, t_mod = e_cls(), t_cls() if t_cls is not None else None
        t_fn = None
        if t_mod is not None:
            import torch.fx

            def t_fn(m=t_mod):
                torch.fx.symbolic_trace(m)
        pairs[f"symbolic_trace {label}"] = (lambda m=e_mod: ember.fx.symbolic_trace(m), t_fn)
    print_table(side_by_side(pairs, 1, args.repeat), "symbolic tracing (median per trace)")

    x = ember.randn(16)
    before = time_call(lambda: ember.relu(x), 2000, args.repeat)
    ember.fx.symbolic_trace(e_models[0]())
    after = time_call(lambda: ember.relu(x), 2000, args.repeat)
    print(f"\nember.relu on 16 floats: {before * 1e6:.2f} us before a trace, "
          f"{after * 1e6:.2f} us after")


if __name__ == "__main__":
    main()
