"""Run under mpiexec (2 ranks) by test_ddp.py: DDP training for 20 steps with the global
batch split over the ranks must equal single-process training on the whole batch (float64,
1e-10). Each rank also trains the single-process reference itself. Prints ``DDP_OK <n>``."""

import copy
import sys

import numpy as np

import ember as torch
import ember.distributed as dist
import ember.nn as nn
from ember.distributed.algorithms.ddp_comm_hooks import default_hooks
from ember.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
R, N = dist.get_rank(), dist.get_world_size()
GLOBAL_BATCH, STEPS = 16, 20
checks = 0
torch.set_default_dtype(torch.float64)


def model_fn(kind):
    torch.manual_seed(0)
    if kind == "bn":
        return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
    layers = [nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)]
    return nn.Sequential(*layers)


class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = model_fn("mlp")
        self.unused = nn.Linear(6, 3)

    def forward(self, x):
        return self.net(x)


def batches(step):
    rng = np.random.default_rng(step)
    return (torch.tensor(rng.normal(size=(GLOBAL_BATCH, 6))),
            torch.tensor(rng.normal(size=(GLOBAL_BATCH, 3))))


def shard(t):
    per = t.shape[0] // N
    return t[R * per:(R + 1) * per]


def check_close(a, b, tol, what):
    global checks
    a, b = a.detach().numpy(), b.detach().numpy()
    err = np.max(np.abs(a - b)) if a.size else 0.0
    assert err <= tol, f"rank {R}: {what}: max abs difference {err} > {tol}"
    checks += 1


def train(kind="mlp", accumulate=False, tol=1e-10, hook=None, **ddp_kw):
    base = WithUnused() if kind == "unused" else model_fn(kind)
    ref = copy.deepcopy(base)
    if kind == "bn":
        base = nn.SyncBatchNorm.convert_sync_batchnorm(base)
    if R != 0:  # DDP must broadcast rank 0's parameters at construction
        with torch.no_grad():
            for p in base.parameters():
                p.add_(1.0)
    model = DDP(base, **ddp_kw)
    if hook is not None:
        model.register_comm_hook(None, hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.MSELoss()
    for step in range(STEPS):
        x, y = batches(step)
        parts = [(x[:8], y[:8]), (x[8:], y[8:])] if accumulate else [(x, y)]
        opt.zero_grad()
        ref_opt.zero_grad()
        for k, (xp, yp) in enumerate(parts):
            loss_fn(ref(xp), yp).backward()
            if k < len(parts) - 1:
                with model.no_sync():
                    loss_fn(model(shard(xp)), shard(yp)).backward()
            else:
                loss_fn(model(shard(xp)), shard(yp)).backward()
        opt.step()
        ref_opt.step()
    for (name, p), q in zip(model.module.named_parameters(), ref.parameters()):
        check_close(p, q, tol, f"{kind} accumulate={accumulate} {ddp_kw} param {name}")
        if kind == "unused" and name.startswith("unused"):
            assert p.grad is None and q.grad is None, "an unused parameter got a gradient"
    for (name, b), c in zip(model.module.named_buffers(), ref.buffers()):
        check_close(b.to(torch.float64), c.to(torch.float64), tol, f"{kind} buffer {name}")
    return model


train("mlp")
train("mlp", accumulate=True)
train("mlp", bucket_cap_mb=0.001)  # many buckets
train("mlp", gradient_as_bucket_view=True, accumulate=True)
train("unused", find_unused_parameters=True)
train("bn")
train("bn", accumulate=True)
train("mlp", hook=default_hooks.allreduce_hook)
train("mlp", hook=default_hooks.fp16_compress_hook, tol=2e-3)
train("mlp", hook=default_hooks.bf16_compress_hook, tol=3e-2)

# state dict keys carry PyTorch's "module." prefix; .module is the wrapped model
m = DDP(model_fn("mlp"))
assert list(m.state_dict())[0] == "module.0.weight" and isinstance(m.module, nn.Sequential)
checks += 1

# an unused parameter without find_unused_parameters: PyTorch's error at the next forward
m = DDP(WithUnused())
x, y = batches(0)
nn.MSELoss()(m(shard(x)), shard(y)).backward()
try:
    m(shard(x))
except RuntimeError as e:
    assert "Expected to have finished reduction" in str(e) and "unused.weight" in str(e), e
    checks += 1
else:
    raise AssertionError("the unused parameter was not reported")

# overlap: with several buckets, the first all-reduce starts while backward still runs
m = DDP(model_fn("mlp"), bucket_cap_mb=0.001)
events = []
orig = m._launch
m._launch = lambda b: (events.append(("launch", b.index)), orig(b))
for p in m.module.parameters():
    p.register_post_accumulate_grad_hook(lambda p: events.append(("grad", None)))
nn.MSELoss()(m(shard(x)), shard(y)).backward()
first_launch = events.index(("launch", 0))
last_grad = max(i for i, e in enumerate(events) if e[0] == "grad")
assert len(m._buckets) > 2 and first_launch < last_grad, events
checks += 1

# find_unused_parameters with a parameter only one rank uses: averaged over the ranks
class RankBranch(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.a(x) + (self.b(x) if dist.get_rank() == 0 else 0)


m = DDP(RankBranch(), find_unused_parameters=True)
xs = torch.ones(3, 4)
m(xs).sum().backward()
# b's gradient: rank 0's local gradient averaged with rank 1's zeros
check_close(m.module.b.bias.grad, torch.full((2,), 3.0 / N), 1e-12, "locally unused grad")
check_close(m.module.a.bias.grad, torch.full((2,), 3.0), 1e-12, "used everywhere grad")

# sparse embedding gradients: each rank's entries gathered and averaged, equal to the
# single-process gradient on the whole batch; SGD and SparseAdam steps follow it
class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.emb = nn.Embedding(20, 4, sparse=True)
        self.head = nn.Linear(4, 2)

    def forward(self, idx):
        return self.head(self.emb(idx).mean(1))


for opt_kind in ("sgd", "sparse_adam"):
    ref, m = Bag(), DDP(Bag())
    assert m._buckets[-1].sparse or m._buckets[0].sparse
    def opts(model):
        emb, rest = [model.emb.weight], [p for n, p in model.named_parameters() if "emb" not in n]
        if opt_kind == "sgd":
            return [torch.optim.SGD(list(model.parameters()), lr=0.2)]
        return [torch.optim.SparseAdam(emb, lr=0.05), torch.optim.SGD(rest, lr=0.1)]
    ro, mo = opts(ref), opts(m.module)
    g = torch.Generator().manual_seed(9)
    for step in range(4):
        idx = torch.randint(0, 20, (GLOBAL_BATCH, 3), generator=g)
        for o in ro + mo:
            o.zero_grad()
        ref(idx).pow(2).mean().backward()
        m(shard(idx)).pow(2).mean().backward()
        assert m.module.emb.weight.grad.is_sparse
        check_close(m.module.emb.weight.grad.to_dense(), ref.emb.weight.grad.to_dense(), 1e-12,
                    f"sparse embedding gradient ({opt_kind}, step {step})")
        for o in ro + mo:
            o.step()
    check_close(m.module.emb.weight, ref.emb.weight, 1e-10, f"sparse embedding ({opt_kind})")

dist.destroy_process_group()
print(f"DDP_OK {checks}", flush=True)
sys.exit(0)
