"""Run under mpiexec by test_dtensor.py. ``section`` picks what to check; each check compares
with single-process results that every rank computes itself. Prints ``DTENSOR_OK <n>``."""

import itertools
import sys
import warnings

import numpy as np

import ember as torch
import ember.distributed as dist
from ember.distributed.device_mesh import DeviceMesh, init_device_mesh
from ember.distributed.tensor import (DTensor, Partial, Replicate, Shard, distribute_module,
                                      distribute_tensor)

dist.init_process_group("gloo")
R, N = dist.get_rank(), dist.get_world_size()
torch.set_default_dtype(torch.float64)
checks = 0


def close(a, b, what, tol=1e-10):
    global checks
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, f"rank {R}: {what}: shape {a.shape} != {b.shape}"
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= tol, f"rank {R}: {what}: max abs difference {err} > {tol}"
    checks += 1


def raises(exc, fn, what):
    global checks
    try:
        fn()
    except exc:
        checks += 1
        return
    raise AssertionError(f"rank {R}: {what}: expected {exc.__name__}")


# ---------------------------------------------------------------------------- mesh
def mesh_checks():
    global checks
    mesh = init_device_mesh("cpu", (N,), mesh_dim_names=("dp",))
    assert mesh.size() == N and mesh.ndim == 1 and mesh.get_local_rank() == R
    assert mesh.get_coordinate() == [R] and mesh["dp"] is mesh
    g = mesh.get_group()
    assert dist.get_world_size(g) == N and dist.get_rank(g) == R
    t = torch.tensor([float(R)])
    dist.all_reduce(t, group=mesh.get_group("dp"))
    close(t, torch.tensor([float(sum(range(N)))]), "all_reduce over the mesh group")
    raises(KeyError, lambda: mesh["tp"], "unknown mesh dim name")
    raises(RuntimeError, lambda: init_device_mesh("cpu", (N + 1,)), "mesh larger than world")
    if N % 2 == 0:
        m2 = init_device_mesh("cpu", (N // 2, 2), mesh_dim_names=("dp", "tp"))
        coord = m2.get_coordinate()
        assert coord == [R // 2, R % 2], coord
        assert m2.size() == N and m2.size(1) == 2 and m2.size("dp") == N // 2
        tp, dp = m2["tp"], m2["dp"]
        assert tp.mesh.tolist() == [R // 2 * 2, R // 2 * 2 + 1], tp.mesh.tolist()
        assert dp.mesh.tolist() == list(range(R % 2, N, 2)), dp.mesh.tolist()
        assert tp.get_local_rank() == R % 2 and dp.get_local_rank() == R // 2
        t = torch.tensor([float(R)])
        dist.all_reduce(t, group=m2.get_group("tp"))
        close(t, torch.tensor([float(R // 2 * 4 + 1)]), "all_reduce over the tp group")
        raises(RuntimeError, lambda: m2.get_group(), "get_group() on a 2-d mesh")
        swapped = m2["tp", "dp"]
        assert swapped.shape == (2, N // 2) and swapped.get_coordinate() == [R % 2, R // 2]
        checks += 1
    m3 = DeviceMesh("cpu", list(range(N)))
    assert m3.get_local_rank() == R
    checks += 1


# ---------------------------------------------------------------------------- redistribute
def _source(full, mesh, pl, rng_seed):
    """A DTensor of value ``full`` with placements ``pl`` and a plain leaf whose gradient
    (PyTorch's convention: the whole gradient of that local input) we can check."""
    if any(isinstance(p, Partial) for p in pl):
        # a Partial value: rank-dependent terms that sum (or average) to ``full``
        spec_pl = [Replicate() if isinstance(p, Partial) else p for p in pl]
        d = distribute_tensor(full, mesh, spec_pl)
        local = d.to_local().detach()
        rng = np.random.default_rng(rng_seed + 100 * R)
        noise = torch.tensor(rng.normal(size=tuple(local.shape)))
        p = [p for p in pl if isinstance(p, Partial)][0]
        i = [i for i, q in enumerate(pl) if isinstance(q, Partial)][0]
        k = mesh.size(i)
        me = mesh.get_local_rank(i)
        # terms: noise on all but the last coordinate, the rest on the last
        tot = noise.clone()
        dist.all_reduce(tot, group=mesh.get_group(i))
        if p.reduce_op == "sum":
            term = noise if me < k - 1 else local - (tot - noise)
        else:
            term = noise if me < k - 1 else local * k - (tot - noise)
        leaf = term.clone().requires_grad_()
        return DTensor.from_local(leaf, mesh, pl, shape=tuple(full.shape)), leaf
    leaf = full.clone().requires_grad_()
    return distribute_tensor(leaf, mesh, pl), None


def shard_of(full, mesh, placements):
    """This rank's piece of ``full``: torch.chunk's, mesh dimension after mesh dimension."""
    want = full
    for i, p in enumerate(placements):
        if isinstance(p, Shard):
            pieces = list(torch.chunk(want, mesh.size(i), p.dim))
            c = mesh.get_local_rank(i)
            want = pieces[c] if c < len(pieces) else want.narrow(p.dim, 0, 0)
    return want


def redistribute_checks(mesh, placements_list, shapes):
    for shape in shapes:
        torch.manual_seed(1)
        full = torch.randn(*shape)
        w = torch.randn(*shape)
        for a, b in itertools.product(placements_list, placements_list):
            d, leaf = _source(full, mesh, a, 7)
            x = d.redistribute(mesh, b)
            assert tuple(x.placements) == tuple(b) and tuple(x.shape) == tuple(shape)
            want = shard_of(full, mesh, b)
            if not any(isinstance(p, Partial) for p in b):
                close(x.to_local(), want, f"local shard of {a}->{b} shape {shape}")
            close(x.full_tensor(), full, f"value of {a}->{b} shape {shape}")
            loss = (x.full_tensor() * w).sum()
            loss.backward()
            if leaf is None:
                g = d.grad if d.is_leaf else None
                if g is None:  # d came from a leaf through distribute_tensor
                    continue
                close(g.full_tensor(), w, f"gradient of {a}->{b} shape {shape}")
            else:  # d(value)/d(term) is 1 for a sum, 1/k for an average of k terms
                k = [mesh.size(i) for i, p in enumerate(a) if isinstance(p, Partial)][0]
                scale = 1.0 if any(p == Partial() for p in a) else 1.0 / k
                close(leaf.grad, shard_of(w * scale, mesh, a), f"gradient (partial input) of {a}->{b} "
                      f"shape {shape}")


def core_checks():
    mesh = init_device_mesh("cpu", (N,))
    pls = [[Shard(0)], [Shard(1)], [Replicate()], [Partial()], [Partial("avg")]]
    redistribute_checks(mesh, pls, [(5, 7), (N, 2), (2 * N, 3)])
    # from_local / to_local and gradients with PyTorch's convention at the plain boundary
    torch.manual_seed(2)
    full = torch.randn(4 * N, 3)
    local = full.chunk(N, 0)[R].clone().requires_grad_()
    d = DTensor.from_local(local, mesh, [Shard(0)])
    assert tuple(d.shape) == (4 * N, 3) and d.ndim == 2 and d.size(0) == 4 * N
    close(d.full_tensor(), full, "from_local Shard(0)")
    (d.full_tensor() ** 2).sum().backward()
    close(local.grad, 2 * full.chunk(N, 0)[R], "from_local gradient (shard)")
    rep = full.clone().requires_grad_()
    d = DTensor.from_local(rep, mesh, [Replicate()])
    y = d.redistribute(mesh, [Shard(1)])
    (y.to_local() * 3).sum().backward()  # each rank's loss is its shard's: sum over ranks
    close(rep.grad, torch.full_like(full, 3.0), "from_local gradient (replicate)")
    # uneven shards with an explicit global shape
    full = torch.randn(2 * N + 1, 2)
    pieces = list(full.chunk(N, 0)) + [full.narrow(0, 0, 0)] * N
    d = DTensor.from_local(pieces[R], mesh, [Shard(0)], shape=full.shape)
    close(d.full_tensor(), full, "uneven from_local")
    raises(ValueError, lambda: DTensor.from_local(torch.zeros(3, 2), mesh, [Shard(0)],
                                                  shape=(100, 2)), "shard shape mismatch")
    raises(ValueError, lambda: distribute_tensor(full, mesh, [Shard(0), Shard(1)]),
           "too many placements")
    raises(IndexError, lambda: distribute_tensor(full, mesh, [Shard(2)]), "Shard dim range")
    # run_check broadcasts replicated values from coordinate 0
    v = torch.full((2,), float(R))
    close(DTensor.from_local(v, mesh, [Replicate()], run_check=True).to_local(),
          torch.zeros(2), "run_check")
    # distribute_tensor uses rank 0's value
    close(distribute_tensor(torch.full((N,), float(R)), mesh, [Shard(0)]).full_tensor(),
          torch.zeros(N), "src_data_rank=0")
    # distribute_module replicates parameters by default; Parameter(dtensor) stays a DTensor
    lin = torch.nn.Linear(3, 2)
    distribute_module(lin, mesh)
    assert isinstance(lin.weight, DTensor) and isinstance(lin.weight, torch.nn.Parameter)
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    # backward on a replicated scalar counts each copy once
    w = distribute_tensor(torch.ones(3, requires_grad=True), mesh, [Replicate()])
    (w * 2).sum().backward()
    close(w.grad.full_tensor(), torch.full((3,), 2.0), "replicated leaf gradient")
    if N % 2 == 0:
        m2 = init_device_mesh("cpu", (2, N // 2))
        pls2 = [[a, b] for a in (Shard(0), Shard(1), Replicate(), Partial())
                for b in (Shard(0), Shard(1), Replicate())]
        redistribute_checks(m2, pls2, [(5, 6)])


SECTIONS = {"mesh": mesh_checks, "core": core_checks}

if __name__ == "__main__":
    warnings.simplefilter("ignore")
    for name in sys.argv[1:]:
        SECTIONS[name]()
    print(f"DTENSOR_OK {checks}", flush=True)
