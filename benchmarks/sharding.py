"""Sharded training at 2 ranks: peak memory per rank and step time of FSDP2, DDP and ZeRO-1 on
a GPT with 50M+ parameters (Adam, float32).

    python benchmarks/sharding.py            # d=512, 16 layers (~55M parameters)
    python benchmarks/sharding.py --quick    # a smaller GPT, for a smoke run
    python benchmarks/sharding.py --modes fsdp,fsdp-noprefetch   # the effect of prefetching

Each scheme runs as its own 2-rank ``mpiexec`` job, one BLAS thread per rank. A rank records
its resident set size after ``init_process_group`` (the baseline), builds the model (FSDP2
shards each block as soon as it is built, as PyTorch's recipes do), runs one warm-up step and
``--steps`` timed steps; "peak RSS growth" is the process's high-water mark (``ru_maxrss``)
minus the baseline. Step time is the median. For FSDP2 the share of the step spent waiting for
communication is measured by timing the all-gathers and reduce-scatters (prefetched all-gathers
that were already complete cost nothing). Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpt(d, n_layer, vocab, seq, shard_block=None):
    import ember.nn as nn
    import ember.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, _ = x.shape
            h = 8
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
            return x + self.fc2(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(seq, d)
            blocks = []
            for _ in range(n_layer):
                b = Block()
                if shard_block is not None:  # shard as soon as built: the whole model never
                    shard_block(b)           # exists at once on a rank
                blocks.append(b)
            self.blocks = nn.ModuleList(blocks)
            self.ln_f = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)

        def forward(self, idx):
            import ember
            x = self.tok(idx) + self.pos(ember.arange(idx.shape[1]))
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    return GPT()


def _worker(mode, d, n_layer, steps, batch, seq, out):
    import numpy as np

    import ember
    import ember.distributed as dist
    import ember.nn.functional as F
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    vocab = 8192
    base = _rss_mb()
    ember.manual_seed(0)
    comm = {"seconds": 0.0}
    if mode in ("fsdp", "fsdp-noprefetch"):
        from ember.distributed.fsdp import _fully_shard as fs
        from ember.distributed.fsdp import fully_shard
        # time spent blocked in communication (wait of all-gathers, reduce-scatters)
        for name in ("_ensure_full", "_reduce_scatter"):
            orig = getattr(fs._State, name)

            def timed(self, *a, _orig=orig):
                t0 = time.perf_counter()
                try:
                    return _orig(self, *a)
                finally:
                    comm["seconds"] += time.perf_counter() - t0
            setattr(fs._State, name, timed)
        if mode == "fsdp-noprefetch":  # every all-gather starts when its unit needs it
            fs._State._prefetch_next = fs._State._prefetch_previous = lambda self: None
        model = _gpt(d, n_layer, vocab, seq, shard_block=fully_shard)
        fully_shard(model)
        opt = ember.optim.Adam(model.parameters(), lr=1e-4)
    elif mode == "ddp":
        from ember.nn.parallel import DistributedDataParallel as DDP
        model = DDP(_gpt(d, n_layer, vocab, seq))
        opt = ember.optim.Adam(model.parameters(), lr=1e-4)
    elif mode == "zero":
        from ember.distributed.optim import ZeroRedundancyOptimizer
        from ember.nn.parallel import DistributedDataParallel as DDP
        model = DDP(_gpt(d, n_layer, vocab, seq))
        opt = ZeroRedundancyOptimizer(model.parameters(), ember.optim.Adam, lr=1e-4)
    else:
        raise SystemExit(f"unknown mode {mode}")
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(rank)
    times = []
    for step in range(steps + 1):
        idx = ember.tensor(rng.integers(0, vocab, size=(batch, seq)))
        tgt = ember.tensor(rng.integers(0, vocab, size=(batch, seq)))
        dist.barrier()
        comm["seconds"] = 0.0
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(idx).reshape(-1, vocab), tgt.reshape(-1))
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step:
            times.append((dt, comm["seconds"]))
    res = {"mode": mode, "rank": rank, "world": world, "params_per_rank": n_params,
           "baseline_mb": base, "peak_growth_mb": _peak_mb() - base,
           "step_s": sorted(t for t, _ in times)[len(times) // 2],
           "comm_wait_s": sorted(c for _, c in times)[len(times) // 2]}
    every = [None] * world
    dist.all_gather_object(every, res)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(every, f)
    dist.destroy_process_group()


def _run(mode, args):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__), "--worker", mode,
               "--d", str(args.d), "--layers", str(args.layers), "--steps", str(args.steps),
               "--batch", str(args.batch), "--seq", str(args.seq), "--out", out]
        subprocess.run(cmd, env=env, check=True, timeout=3600)
        with open(out) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--out")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--modes", default="ddp,zero,fsdp")
    args = ap.parse_args()
    if args.quick:
        args.d, args.layers, args.steps = 128, 2, 2
    if args.worker:
        _worker(args.worker, args.d, args.layers, args.steps, args.batch, args.seq, args.out)
        return
    rows = {m: _run(m, args) for m in args.modes.split(",")}
    total = rows[next(iter(rows))][0]["params_per_rank"]
    ddp = max(r["peak_growth_mb"] for r in rows["ddp"]) if "ddp" in rows else None
    print(f"GPT d={args.d} layers={args.layers}: {total / 1e6:.1f}M parameters (as DDP sees "
          f"them), Adam, float32, batch {args.batch}x{args.seq} tokens per rank, 2 ranks\n")
    print("| scheme | peak RSS growth per rank (MB) | vs DDP | step time (s) | "
          "communication wait (s) |")
    print("| --- | --- | --- | --- | --- |")
    names = {"ddp": "DDP", "zero": "DDP + ZeRO-1", "fsdp": "FSDP2",
             "fsdp-noprefetch": "FSDP2 without prefetch"}
    for m, rs in rows.items():
        peak = max(r["peak_growth_mb"] for r in rs)
        step = max(r["step_s"] for r in rs)
        wait = max(r["comm_wait_s"] for r in rs)
        rel = f"{peak / ddp:.2f}x" if ddp else "-"
        wait_s = f"{wait:.2f}" if m.startswith("fsdp") else "-"
        print(f"| {names.get(m, m)} | {peak:.0f} | {rel} | {step:.2f} | {wait_s} |")


if __name__ == "__main__":
    main()
