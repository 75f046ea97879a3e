"""Tensor-parallel training of a small GPT with DTensor (PyTorch's tensor-parallel API).

Run on N processes (N divides the number of heads, 4):

    emberrun --nproc-per-node 2 examples/tensor_parallel_gpt.py
    mpiexec -n 2 python examples/tensor_parallel_gpt.py

Each rank holds a slice of every attention and MLP weight: q/k/v and the first MLP layer are
split by output features (``ColwiseParallel``), the attention output projection and the
second MLP layer by input features (``RowwiseParallel``), so a block costs one all-reduce in
its forward and one in its backward. The embedding is split by vocabulary rows and the
LayerNorms run sequence parallel (each rank normalises its part of the sequence). Started
as a single process, it runs the same program on a mesh of one rank.
"""

import argparse
import math

import ember as torch
import ember.distributed as dist
import ember.nn as nn
import ember.nn.functional as F
from ember.distributed.tensor import Replicate, Shard
from ember.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput,
                                               RowwiseParallel, SequenceParallel,
                                               parallelize_module)

TEXT = ("the quick brown fox jumps over the lazy dog. a stitch in time saves nine. "
        "all that glitters is not gold. actions speak louder than words. ") * 8


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.heads = heads

    def forward(self, x):
        B, T = x.shape[0], x.shape[1]
        # on DTensors, views and matmuls keep the heads split over the ranks
        q, k, v = (f(x).view(B, T, self.heads, -1).transpose(1, 2)
                   for f in (self.q, self.k, self.v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        att = att.masked_fill(torch.ones(T, T).tril() == 0, float("-inf"))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, -1)
        return self.o(y)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, d=32, heads=4, layers=2):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(64, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.emb(idx)
        x = x + self.pos[:idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def plan(n_layers):
    seq, rep = Shard(1), Replicate()
    p = {"emb": RowwiseParallel(input_layouts=rep, output_layouts=seq,
                                use_local_output=False),
         "ln_f": SequenceParallel(),
         "head": ColwiseParallel(input_layouts=seq, output_layouts=rep)}
    for i in range(n_layers):
        p.update({
            f"blocks.{i}.ln1": SequenceParallel(), f"blocks.{i}.ln2": SequenceParallel(),
            f"blocks.{i}.attn": PrepareModuleInput(input_layouts=(seq,),
                                                   desired_input_layouts=(rep,)),
            f"blocks.{i}.attn.[qkv]": ColwiseParallel(use_local_output=False),
            f"blocks.{i}.attn.o": RowwiseParallel(output_layouts=seq, use_local_output=False),
            f"blocks.{i}.fc1": ColwiseParallel(input_layouts=seq),
            f"blocks.{i}.fc2": RowwiseParallel(output_layouts=seq, use_local_output=False)})
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps = 20 if args.quick else args.steps
    parallel = dist.is_available()  # mpi4py installed (pip install 'ember[distributed]')
    if parallel:
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        mesh = dist.init_device_mesh("cpu", (world,), mesh_dim_names=("tp",))
    else:
        print("mpi4py is not installed: training in one process without tensor parallelism")
        rank, world = 0, 1

    chars = sorted(set(TEXT))
    data = torch.tensor([chars.index(c) for c in TEXT])
    torch.manual_seed(0)  # the same initial weights on every rank: each keeps its slices
    model = GPT(len(chars))
    if parallel:
        parallelize_module(model, mesh["tp"], plan(len(model.blocks)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    T, B = 32, 8
    first = last = None
    for step in range(steps):
        g = torch.Generator().manual_seed(step)  # every rank draws the same batch
        starts = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[s:s + T] for s in starts.tolist()])
        y = torch.stack([data[s + 1:s + T + 1] for s in starts.tolist()])
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
        if rank == 0 and step % 10 == 0:
            print(f"step {step:4d}  loss {last:.4f}  ({world} tensor-parallel ranks)")
    if rank == 0:
        print(f"RESULT first_loss={first:.6f} last_loss={last:.6f}")
    if parallel:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
