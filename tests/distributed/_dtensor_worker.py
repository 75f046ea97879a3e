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
DEBUG = __import__("os").environ.get("DTENSOR_DEBUG")


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
    redistribute_checks(mesh, pls, [(5, 7), (2 * N, 3)])
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
    # factories: random ones equal a single-process draw from the same seed
    import ember.distributed.tensor as dtensor
    torch.manual_seed(9)
    ref = torch.randn(5, 4)
    torch.manual_seed(9)
    d = dtensor.randn(5, 4, device_mesh=mesh, placements=[Shard(0)])
    close(d.full_tensor(), ref, "randn factory")
    close(dtensor.ones((3, 4), device_mesh=mesh, placements=[Shard(1)]).full_tensor(),
          torch.ones(3, 4), "ones factory")
    close(dtensor.full((3, 2), 2.5, device_mesh=mesh, placements=[Replicate()]).full_tensor(),
          torch.full((3, 2), 2.5), "full factory")
    z = torch.full_like(d, 3.0)
    assert isinstance(z, DTensor) and z.placements == (Shard(0),)
    close(z.full_tensor(), torch.full((5, 4), 3.0), "full_like keeps the layout")
    close(torch.zeros_like(d).full_tensor(), torch.zeros(5, 4), "zeros_like")
    # clip_grad_norm_ measures the whole gradients, whatever their layout
    torch.manual_seed(4)
    vals = [torch.randn(5, 3), torch.randn(7), torch.randn(2, 2)]
    ws = [torch.randn(*v.shape) for v in vals]
    for norm_type in (2.0, 1.0, float("inf")):
        refs = [v.clone().requires_grad_() for v in vals]
        sum((r * w).sum() for r, w in zip(refs, ws)).backward()
        want = torch.nn.utils.clip_grad_norm_(refs, 0.5, norm_type=norm_type)
        ps = [torch.nn.Parameter(distribute_tensor(v, mesh, [pl]))
              for v, pl in zip(vals, (Shard(0), Shard(0), Replicate()))]
        sum((p * w).sum() for p, w in zip(ps, ws)).backward()
        got = torch.nn.utils.clip_grad_norm_(ps, 0.5, norm_type=norm_type)
        close(got, want, f"clip_grad_norm_ total ({norm_type})")
        for p, r in zip(ps, refs):
            close(p.grad.full_tensor(), r.grad, f"clipped gradient ({norm_type})")
    # state_dict / load_state_dict keep DTensors and copy into shards
    lin = torch.nn.Linear(4, 3)
    from ember.distributed.tensor.parallel import ColwiseParallel, parallelize_module
    parallelize_module(lin, mesh, ColwiseParallel())
    sd = lin.state_dict()
    assert isinstance(sd["weight"], DTensor) and sd["weight"].placements == (Shard(0),)
    new = {k: v * 2 for k, v in sd.items()}
    old_w = lin.weight.full_tensor().detach().clone()
    lin.load_state_dict(new)
    close(lin.weight.full_tensor(), old_w * 2, "load_state_dict into shards")
    if N == 2:  # a 2-d mesh of shape (2, 1); mesh2d runs a real one at 4 ranks
        mesh2d_checks()


def mesh2d_checks():
    """Every transition between 2-d placements (both mesh dims may shard the same tensor dim,
    nested as PyTorch nests them), on an uneven shape."""
    m2 = init_device_mesh("cpu", (2, N // 2), mesh_dim_names=("dp", "tp"))
    pls2 = [[a, b] for a in (Shard(0), Shard(1), Replicate(), Partial())
            for b in (Shard(0), Shard(1), Replicate(), Partial())
            if not (isinstance(a, Partial) and isinstance(b, Partial))]
    redistribute_checks(m2, pls2, [(5, 6)])
    # a DTensor on the tp sub-mesh and ops on a 2-d mesh
    torch.manual_seed(6)
    a, b = torch.randn(4, 6), torch.randn(6, 5)
    da = distribute_tensor(a, m2, [Shard(0), Shard(1)])
    db = distribute_tensor(b, m2, [Replicate(), Shard(0)])
    out = da @ db
    assert tuple(out.placements) == (Shard(0), Partial()), out.placements
    close(out.full_tensor(), a @ b, "matmul on a 2-d mesh")
    dt = distribute_tensor(a, m2["tp"], [Shard(1)])
    close(dt.full_tensor(), a, "DTensor on a sub-mesh")



# ---------------------------------------------------------------------------- op rules
S0, S1, S2, S3, REP, PS = Shard(0), Shard(1), Shard(2), Shard(3), Replicate(), Partial()
F = torch.nn.functional


def make_input(full, pl, mesh, idx):
    """(DTensor or plain tensor, a function giving this rank's view of its gradient in
    single-process terms, that expected view of a whole gradient)."""
    if pl == "plain":
        leaf = full.clone().requires_grad_(full.is_floating_point())
        return leaf, (lambda: leaf.grad), (lambda g: g)
    if pl == PS:
        d, leaf = _source(full, mesh, [PS], 11 + idx)
        return d, (lambda: leaf.grad), (lambda g: g)
    if not full.is_floating_point():
        return distribute_tensor(full, mesh, [pl]), None, None
    d = distribute_tensor(full.clone().requires_grad_(), mesh, [pl])
    return d, (lambda: d.grad.full_tensor()), (lambda g: g)


def check_op(name, fn, fulls, cases, mesh, out_pl=None, seed=None, tol=1e-10):
    if DEBUG:
        print(R, "check", name, flush=True)
        if DEBUG != "1" and DEBUG not in name:
            return
    refs = [f.clone().requires_grad_(f.is_floating_point()) for f in fulls]
    if seed is not None:
        torch.manual_seed(seed)
    ref = fn(*refs)
    torch.manual_seed(123)
    w = torch.randn(*ref.shape)
    (ref * w).sum().backward()
    for k, pls in enumerate(cases):
        ins = [make_input(f, pl, mesh, j) for j, (f, pl) in enumerate(zip(fulls, pls))]
        if seed is not None:
            torch.manual_seed(seed)
        out = fn(*[t for t, _, _ in ins])
        assert isinstance(out, DTensor), f"{name} {pls}: result is {type(out).__name__}"
        if out_pl is not None and out_pl[k] is not None:
            assert tuple(out.placements) == (out_pl[k],), \
                f"{name} {pls}: placements {out.placements}, expected {out_pl[k]}"
        assert tuple(out.shape) == tuple(ref.shape), f"{name} {pls}: shape {out.shape}"
        close(out.full_tensor(), ref, f"{name} {pls} value", tol)
        (out.full_tensor() * w).sum().backward()
        for (t, grad, view), r, pl in zip(ins, refs, pls):
            if grad is None or r.grad is None:
                continue
            want = r.grad if pl != PS else shard_of(r.grad, mesh, [REP])
            close(grad(), view(want), f"{name} {pls} gradient", tol)


def ops_checks():
    mesh = init_device_mesh("cpu", (N,))
    torch.manual_seed(3)
    x, y = torch.randn(4, 6), torch.randn(6)
    check_op("add", lambda a, b: a + b, [x, y],
             [[S0, REP], [S1, S0], [REP, REP], [PS, REP], [PS, PS], [S1, "plain"],
              ["plain", S0]], mesh, [S0, S1, REP, PS, PS, S1, S1])
    check_op("sub scalar", lambda a: 2.0 - a - 1.5, [x], [[S0], [PS], [REP]], mesh,
             [S0, PS, REP])
    check_op("mul", lambda a, b: a * b * 3, [x, y], [[S0, REP], [PS, REP], [S1, S0],
                                                     [PS, PS]], mesh, [S0, PS, S1, REP])
    yp = y.abs() + 1
    check_op("div", lambda a, b: a / b, [x, yp], [[PS, REP], [S0, S0], [REP, S0]], mesh,
             [PS, S0, S1])
    check_op("unary", lambda a: torch.tanh(a).exp() + F.gelu(a) + F.silu(a), [x],
             [[S1], [PS], [REP]], mesh, [S1, REP, REP])
    mask = torch.randn(4, 6) > 0
    check_op("masked_fill", lambda a: a.masked_fill(mask, 0.5), [x], [[S0], [S1], [PS]],
             mesh, [S0, S1, REP])
    check_op("where", lambda a, b: torch.where(mask, a, b), [x, y], [[S0, REP], [S1, S0]],
             mesh, [S0, S1])
    a4, b4 = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 4, 6)
    check_op("matmul 4-d", lambda a, b: a @ b, [a4, b4],
             [[S1, S1], [S2, REP], [REP, S3], [S3, S2], [PS, REP], [S0, REP], [S3, REP],
              [REP, PS]], mesh, [S1, S2, S3, PS, PS, S0, PS, PS])
    check_op("scaled_dot_product_attention", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=True), [a4, a4 * 0.5, a4 + 1], [[S1, S1, S1], [S0, S0, S0]], mesh,
        [S1, S0])
    check_op("mse_loss", lambda a, b: F.mse_loss(a, b), [a4, a4 * 0.3], [[S1, S1], [S3, REP]],
             mesh, [PS, PS])
    a2, b2 = torch.randn(5, 4), torch.randn(4, 6)
    check_op("matmul 2-d", lambda a, b: a @ b, [a2, b2],
             [[S0, REP], [REP, S1], [S1, S0], [S1, REP], [S0, S1]], mesh,
             [S0, S1, PS, PS, S0])
    check_op("matmul batched @ 2-d", lambda a, b: a @ b, [a4, b2], [[S1, REP], [S0, S1]],
             mesh, [S1, S0])
    xl, wl, bl = torch.randn(2, 5, 4), torch.randn(6, 4), torch.randn(6)
    check_op("linear", lambda a, b, c: F.linear(a, b, c), [xl, wl, bl],
             [[REP, S0, S0], [S2, S1, REP], [S0, REP, REP], [REP, S1, REP], [PS, REP, REP],
              [S1, S0, REP]], mesh, [S2, PS, S0, PS, PS, S1])
    check_op("linear no bias", lambda a, b: F.linear(a, b), [xl, wl], [[REP, S0], [S2, S1]],
             mesh, [S2, PS])
    ids = torch.tensor([[1, 9, 0, 3], [7, 7, 2, 5]])
    we = torch.randn(10, 4)
    check_op("embedding", lambda w: F.embedding(ids, w), [we], [[S0], [S1], [REP]], mesh,
             [PS, S2, REP])
    check_op("embedding padding_idx", lambda w: F.embedding(ids, w, padding_idx=7), [we],
             [[S0], [S1]], mesh, [PS, S2])
    check_op("embedding sharded ids", lambda i, w: F.embedding(i, w),
             [ids, we], [[S0, REP], [S1, REP]], mesh, [S0, S1])
    xn, wn, bn = torch.randn(3, 5, 8), torch.randn(8), torch.randn(8)
    check_op("layer_norm", lambda a, b, c: F.layer_norm(a, (8,), b, c), [xn, wn, bn],
             [[S0, REP, REP], [S1, REP, REP], [S2, REP, REP], [PS, REP, REP]], mesh,
             [S0, S1, REP, REP])
    check_op("softmax", lambda a: F.softmax(a, -1), [xn], [[S0], [S2], [PS], [S1]], mesh,
             [S0, REP, REP, S1])
    check_op("log_softmax", lambda a: F.log_softmax(a, 1), [xn], [[S0], [S1], [S2]], mesh,
             [S0, REP, S2])
    check_op("sum dim", lambda a: a.sum(1), [xn], [[S0], [S1], [PS], [S2]], mesh,
             [S0, PS, PS, S1])
    check_op("sum all", lambda a: a.sum(), [xn], [[S0], [S2], [REP]], mesh, [PS, PS, REP])
    check_op("mean keepdim", lambda a: a.mean((0, 2), keepdim=True), [xn],
             [[S0], [S1], [S2], [PS]], mesh, [PS, S1, PS, PS])
    check_op("mean", lambda a: a.mean(), [xn], [[S1]], mesh, [PS])
    xv = torch.randn(2, 6, 12)
    check_op("view split heads", lambda a: a.view(2, 6, 3, 4).transpose(1, 2), [xv],
             [[S2], [S0], [S1], [PS]], mesh, [S1 if 3 % N == 0 else REP, S0, S2, PS])
    check_op("reshape merge", lambda a: a.reshape(-1, 12), [xv], [[S0], [S2], [S1]], mesh,
             [S0 if 2 % N == 0 else REP, S1, REP])
    check_op("permute", lambda a: a.permute(2, 0, 1) * 1.0, [xv], [[S0], [S2]], mesh,
             [S1, S0])
    check_op("expand", lambda a: a.expand(4, 6) + 0, [y.view(1, 6)], [[S1], [REP], [PS]],
             mesh, [S1, REP, PS])
    check_op("split", lambda a: a.split(3, dim=1)[1] * 1, [xv], [[S0], [S2], [S1]], mesh,
             [S0, S2, REP])
    check_op("dropout", lambda a: F.dropout(a, 0.4, training=True), [xv], [[S0], [S2]],
             mesh, [S0, S2], seed=5)
    logits = torch.randn(6, 5)
    tgt = torch.tensor([1, 0, 4, -100, 2, 3])
    for red in ("mean", "sum", "none"):
        check_op(f"cross_entropy {red}",
                 lambda a: F.cross_entropy(a, tgt, reduction=red), [logits],
                 [[S0], [S1], [REP]], mesh,
                 [PS if red != "none" else S0, REP, REP])
    cw = torch.rand(5) + 0.5
    check_op("cross_entropy weighted", lambda a, t: F.cross_entropy(a, t, weight=cw),
             [logits, tgt], [[S0, S0], [S0, "plain"], [S1, "plain"]], mesh, [PS, PS, REP])
    check_op("nll_loss", lambda a: F.nll_loss(F.log_softmax(a, -1), tgt), [logits], [[S0]],
             mesh, [PS])
    # an op without a rule falls back to replicated values, with a warning naming it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_op("fallback cumsum", lambda a: torch.cumsum(a, 0), [x], [[S0], [S1]], mesh,
                 [REP, REP])
    assert any("Cumsum" in str(c.message) for c in caught), [str(c.message) for c in caught]
    # in-place ops write into the shards
    d = distribute_tensor(x, mesh, [S0])
    d.add_(distribute_tensor(y, mesh, [REP]))
    d.mul_(2.0)
    close(d.full_tensor(), (x + y) * 2, "in-place add_/mul_")
    d = distribute_tensor(x, mesh, [S0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d.cumsum_(1)  # no rule: computed on whole values, copied back into the shards
    close(d.full_tensor(), torch.cumsum(x, 1), "in-place op through copy_")
    part, _ = _source(x, mesh, [PS], 3)
    raises(NotImplementedError, lambda: part.detach().exp_(), "non-linear in-place on Partial")
    # an optimizer steps on the shards
    p = torch.nn.Parameter(distribute_tensor(x, mesh, [S1]))
    opt = torch.optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()
    close(p.full_tensor(), x - 0.1 * 2 * x, "SGD step on a sharded parameter")

# ---------------------------------------------------------------------------- tensor parallel
nn = torch.nn


class MLP(nn.Module):
    def __init__(self, d=8, hidden=24):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.n_heads = heads

    def forward(self, x):
        B, T = x.shape[0], x.shape[1]
        q = self.q(x).view(B, T, self.n_heads, -1).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_heads, -1).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_heads, -1).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / q.shape[-1] ** 0.5)
        causal = torch.ones(T, T).tril() == 0
        att = F.softmax(att.masked_fill(causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)
        return self.o(y)


class Block(nn.Module):
    def __init__(self, d, heads, p_drop):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = MLP(d, 4 * d)
        self.p_drop = p_drop

    def forward(self, x):
        x = x + F.dropout(self.attn(self.ln1(x)), self.p_drop, self.training)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab=10, d=12, heads=6, p_drop=0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.block = Block(d, heads, p_drop)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        return self.head(self.ln_f(self.block(self.emb(idx))))


def train(model, opt, batch_fn, loss_fn, steps=20, seed=0):
    losses = []
    for step in range(steps):
        x, y = batch_fn(step)
        torch.manual_seed(1000 + step)  # dropout draws the same masks in both runs
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach() if not isinstance(loss, DTensor)
                            else loss.full_tensor()))
    return losses


def compare(ref, tp, what):
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), tp.named_parameters()):
        assert n1 == n2, (n1, n2)
        full = p2.full_tensor() if isinstance(p2, DTensor) else p2
        close(full, p1, f"{what}: parameter {n1} after training")


def tp_checks():
    from ember.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput,
                                                   RowwiseParallel, SequenceParallel,
                                                   parallelize_module)
    mesh = init_device_mesh("cpu", (N,), mesh_dim_names=("tp",))
    tp = mesh["tp"]

    # MLP block: colwise then rowwise, SGD with momentum
    def mlp_batch(step):
        rng = np.random.default_rng(step)
        return (torch.tensor(rng.normal(size=(6, 8))), torch.tensor(rng.normal(size=(6, 8))))
    mse = F.mse_loss
    torch.manual_seed(0)
    ref = MLP()
    torch.manual_seed(0)
    par = parallelize_module(MLP(), tp, {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
    assert isinstance(par.fc1.weight, DTensor) and par.fc1.weight.placements == (Shard(0),)
    assert par.fc2.weight.placements == (Shard(1),) and par.fc2.bias.placements == (REP,)
    assert tuple(par.fc1.weight.to_local().shape)[1] == 8
    l_ref = train(ref, torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9), mlp_batch, mse)
    l_tp = train(par, torch.optim.SGD(par.parameters(), lr=0.05, momentum=0.9), mlp_batch, mse)
    close(torch.tensor(l_tp), torch.tensor(l_ref), "MLP tensor parallel losses")
    compare(ref, par, "MLP tensor parallel")

    # GPT block: heads split over ranks (colwise q/k/v, rowwise out-proj, MLP colwise/rowwise),
    # vocabulary-parallel embedding, replicated output head; dropout on replicated activations
    def gpt_batch(step):
        rng = np.random.default_rng(100 + step)
        ids = torch.tensor(rng.integers(0, 10, size=(2, 6)))
        return ids, torch.tensor(rng.integers(0, 10, size=(2, 6)))

    def ce(logits, y):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    torch.manual_seed(0)
    ref = GPT(p_drop=0.1)
    torch.manual_seed(0)
    par = GPT(p_drop=0.1)
    plan = {"emb": RowwiseParallel(input_layouts=REP),
            "block.attn.q": ColwiseParallel(), "block.attn.k": ColwiseParallel(),
            "block.attn.v": ColwiseParallel(), "block.attn.o": RowwiseParallel(),
            "block.mlp.fc1": ColwiseParallel(), "block.mlp.fc2": RowwiseParallel(),
            "head": ColwiseParallel(output_layouts=REP)}
    parallelize_module(par, tp, plan)
    par.block.attn.n_heads = 6 // N  # each rank runs its own heads on local tensors
    l_ref = train(ref, torch.optim.Adam(ref.parameters(), lr=0.01), gpt_batch, ce)
    l_tp = train(par, torch.optim.Adam(par.parameters(), lr=0.01), gpt_batch, ce)
    close(torch.tensor(l_tp), torch.tensor(l_ref), "GPT tensor parallel losses")
    compare(ref, par, "GPT tensor parallel")

    # GPT block with sequence parallelism; attention runs on DTensors (global heads)
    torch.manual_seed(0)
    ref = GPT()
    torch.manual_seed(0)
    par = GPT()
    plan = {"emb": RowwiseParallel(input_layouts=REP, output_layouts=S1),
            "block.ln1": SequenceParallel(), "block.ln2": SequenceParallel(),
            "block.attn": PrepareModuleInput(input_layouts=(S1,), desired_input_layouts=(REP,)),
            "block.attn.[qkv]": ColwiseParallel(use_local_output=False),
            "block.attn.o": RowwiseParallel(output_layouts=S1),
            "block.mlp": PrepareModuleInput(input_layouts=(S1,), desired_input_layouts=(REP,)),
            "block.mlp.fc1": ColwiseParallel(),
            "block.mlp.fc2": RowwiseParallel(output_layouts=S1),
            "ln_f": SequenceParallel(),
            "head": ColwiseParallel(input_layouts=S1, output_layouts=REP)}
    parallelize_module(par, tp, plan)
    assert par.block.attn.q.weight.placements == (S0,) and \
        par.block.attn.o.weight.placements == (S1,)
    l_ref = train(ref, torch.optim.AdamW(ref.parameters(), lr=0.01), gpt_batch, ce)
    l_tp = train(par, torch.optim.AdamW(par.parameters(), lr=0.01), gpt_batch, ce)
    close(torch.tensor(l_tp), torch.tensor(l_ref), "GPT sequence parallel losses")
    compare(ref, par, "GPT sequence parallel")
    assert isinstance(par.block.ln1.weight, DTensor)
    # a colwise embedding: each rank looks up its slice of the embedding dim
    torch.manual_seed(0)
    ref_e = nn.Embedding(10, 6)
    torch.manual_seed(0)
    par_e = parallelize_module(nn.Embedding(10, 6), tp, ColwiseParallel(output_layouts=REP))
    ids = torch.tensor([[1, 2, 9], [0, 4, 4]])
    close(par_e(ids), ref_e(ids), "colwise embedding")
    # PrepareModuleOutput and distribute_module's input/output functions
    from ember.distributed.tensor.parallel import PrepareModuleOutput
    torch.manual_seed(0)
    ref = MLP()
    torch.manual_seed(0)
    par = parallelize_module(MLP(), tp, {"fc1": ColwiseParallel(),
                                         "fc2": RowwiseParallel(use_local_output=False)})
    x = torch.randn(3, 8)
    assert isinstance(par(x), DTensor)
    parallelize_module(par, tp, PrepareModuleOutput(output_layouts=REP,
                                                    desired_output_layouts=REP))
    y = par(x)
    assert not isinstance(y, DTensor)
    close(y, ref(x), "PrepareModuleOutput gives the local output")
    seen = []
    m = distribute_module(MLP(), tp, input_fn=lambda mod, inp, mesh: seen.append("in"),
                          output_fn=lambda mod, out, mesh: out.full_tensor())
    y = m(distribute_tensor(x, tp, [REP]))
    assert seen == ["in"] and not isinstance(y, DTensor)
    raises(ValueError, lambda: parallelize_module(MLP(), tp, {"nope": ColwiseParallel()}),
           "plan names a missing submodule")
    raises(NotImplementedError, lambda: parallelize_module(nn.ReLU(), tp, ColwiseParallel()),
           "colwise on an unsupported module")


def pickle_checks():
    """DTensors through pickle and ember.save/ember.load on every rank: the same shard,
    placements and mesh (the live mesh of that layout, so collectives still work); an FSDP2
    model's state dict saved per rank loads into a fresh FSDP2 model; a mesh unpickled where
    no mesh of its layout exists explains itself."""
    import io
    import pickle

    import ember.nn as nn
    from ember.distributed.device_mesh import _unpickle_mesh
    from ember.distributed.fsdp import fully_shard
    mesh = init_device_mesh("cpu", (N,), mesh_dim_names=("dp",))
    full = torch.arange(4.0 * N * 3).reshape(4 * N, 3)
    for pl in ([Shard(0)], [Shard(1)], [Replicate()]):
        d = distribute_tensor(full, mesh, pl)
        for back in (pickle.loads(pickle.dumps(d)),
                     torch.load(_saved(d, io), weights_only=True)):
            assert type(back) is DTensor and back.placements == d.placements
            assert back.device_mesh is mesh
            close(back.to_local(), d.to_local(), f"pickled shard {pl}")
            close(back.full_tensor(), full, f"pickled value {pl}")
    partial = DTensor.from_local(torch.ones(2) * R, mesh, [Partial()])
    close(pickle.loads(pickle.dumps(partial)).full_tensor(),
          torch.ones(2) * sum(range(N)), "pickled Partial")
    p = nn.Parameter(distribute_tensor(full, mesh, [Shard(0)]))
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, nn.Parameter) and isinstance(q, DTensor) and q.requires_grad

    def model():
        torch.manual_seed(3)
        m = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
        fully_shard(m, mesh=mesh)
        return m
    a = model()
    with torch.no_grad():
        for t in a.parameters():
            t.mul_(2.0)
    sd = torch.load(_saved(a.state_dict(), io), weights_only=True)
    b = model()
    b.load_state_dict(sd)
    x = torch.randn(5, 3)
    close(b(x), a(x), "FSDP2 state dict through ember.save/ember.load")
    # a layout with no live mesh (as in a process that never made it)
    other = _unpickle_mesh("cpu", [[r] for r in range(N)], ("a", "b"))
    assert other.shape == (N, 1) and other.get_coordinate() == [R, 0]
    raises(RuntimeError, lambda: other.get_group("a"), "group of an unpickled mesh")


def _saved(obj, io):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


SECTIONS = {"mesh": mesh_checks, "core": core_checks, "ops": ops_checks, "tp": tp_checks,
            "mesh2d": mesh2d_checks, "pickle": pickle_checks}

if __name__ == "__main__":
    warnings.simplefilter("ignore")
    for name in sys.argv[1:]:
        SECTIONS[name]()
    print(f"DTENSOR_OK {checks}", flush=True)
