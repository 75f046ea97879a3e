"""Run under mpiexec (2 ranks) by test_ddp.py: DDP with uneven inputs under ``model.join()``.
Rank 0 has 5 batches, rank 1 has 3; the result must equal a single-process simulation in which
the ranks that ran out contribute nothing (float64, 1e-12), for both divisors. Then
``throw_on_early_termination`` raises on every rank. Prints ``JOIN_OK <checks>``."""

import sys

import numpy as np

import ember as torch
import ember.distributed as dist
import ember.nn as nn
from ember.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
R, N = dist.get_rank(), dist.get_world_size()
torch.set_default_dtype(torch.float64)
N_BATCHES = {0: 5, 1: 3}
checks = 0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        self.register_buffer("offset", torch.full((2,), 0.5))  # exercises the buffer sync

    def forward(self, x):
        return self.body(x) + self.offset


def batch(rank, k):
    rng = np.random.default_rng(100 * rank + k)
    return torch.tensor(rng.normal(size=(4, 4))), torch.tensor(rng.normal(size=(4, 2)))


def reference(divide_initial):
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for k in range(max(N_BATCHES.values())):
        active = [r for r in range(N) if k < N_BATCHES[r]]
        grads = None
        for r in active:
            model.zero_grad()
            x, y = batch(r, k)
            nn.functional.mse_loss(model(x), y).backward()
            g = [p.grad.clone() for p in model.parameters()]
            grads = g if grads is None else [a + b for a, b in zip(grads, g)]
        div = N if divide_initial else len(active)
        for p, g in zip(model.parameters(), grads):
            p.grad = g / div
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


for divide_initial in (True, False):
    model = DDP(Net())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with model.join(divide_by_initial_world_size=divide_initial):
        for k in range(N_BATCHES[R]):
            opt.zero_grad()
            x, y = batch(R, k)
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    for got, want in zip(model.module.parameters(), reference(divide_initial)):
        err = float((got.detach() - want).abs().max())
        assert err < 1e-12, f"rank {R}: divide_initial={divide_initial}: {err}"
        checks += 1

# throw_on_early_termination: the rank that runs out raises, and so does every other rank
model = DDP(Net())
try:
    with model.join(throw_on_early_termination=True):
        for k in range(N_BATCHES[R]):
            model(batch(R, k)[0]).sum().backward()
except RuntimeError as e:
    assert ("exhausted" in str(e)), e
    checks += 1
else:
    raise AssertionError(f"rank {R}: no early-termination error")

dist.destroy_process_group()
print(f"JOIN_OK {checks}", flush=True)
sys.exit(0)
