"""FSDP2 on a small GPT over Shakespeare's sonnets, with a sharded checkpoint at the end.

    emberrun --nproc-per-node 2 examples/sharded_training.py [--steps 200] [--quick]
    (or: mpiexec -n 2 python examples/sharded_training.py)

Each transformer block, then the whole model, is wrapped with ``fully_shard``: every rank keeps
1/N of each parameter (a ``Shard(0)`` DTensor), of its gradient and of the AdamW state; blocks
gather their parameters just before they run and drop them after. Each rank trains on its own
random windows of the text (data parallelism), and the checkpoint written at the end by
``ember.distributed.checkpoint.save`` can be loaded at any number of ranks.
"""

import argparse
import os

import numpy as np

import ember as torch
import ember.distributed as dist
import ember.distributed.checkpoint as dcp
from ember import nn
from ember.distributed.checkpoint.state_dict import get_state_dict
from ember.distributed.fsdp import fully_shard
from ember.nn import functional as F

TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sonnets.txt")


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab, block, d=128, heads=4, layers=4):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--checkpoint", default="ember_sharded_checkpoint",
                    help="directory for the sharded checkpoint (relative to the working dir)")
    args = ap.parse_args()
    steps = 20 if args.quick else args.steps
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    text = open(TEXT, encoding="utf-8").read()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], dtype=np.int64)
    block, batch = 64, 16
    torch.manual_seed(0)  # the same initial model on every rank
    model = GPT(len(chars), block)
    for b in model.blocks:
        fully_shard(b)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(1000 + rank)  # each rank its own batches
    losses = []
    for step in range(steps):
        starts = rng.integers(0, len(data) - block - 1, size=batch)
        x = torch.tensor(np.stack([data[s:s + block] for s in starts]))
        y = torch.tensor(np.stack([data[s + 1:s + block + 1] for s in starts]))
        loss = F.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg = loss.detach().clone()
        dist.all_reduce(avg)  # the mean loss over the ranks
        losses.append(avg.item() / world)
        if rank == 0 and (step % 10 == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.3f}", flush=True)
    local = sum(p.to_local().numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    if rank == 0:
        print(f"parameters: {total} in all, {local} on rank 0 ({local / total:.0%})")
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=args.checkpoint)
    if rank == 0:
        print(f"sharded checkpoint written to {os.path.abspath(args.checkpoint)}")
        first, last = np.mean(losses[:3]), np.mean(losses[-3:])
        print(f"RESULT first_loss={first:.4f} last_loss={last:.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
