"""Run under mpiexec by test_collectives.py: every collective, ReduceOp and dtype against a
NumPy computation of the expected result. Each rank can rebuild every rank's input (seeded by
rank), so each computes the expected result itself. Prints ``CHECKS <n>`` on success."""

import sys

import numpy as np

import ember as torch
import ember.distributed as dist
from ember.distributed import ReduceOp

dist.init_process_group("gloo")
R, N = dist.get_rank(), dist.get_world_size()
checks = 0

DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
          torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
          torch.complex128]


def data(rank, dtype, shape=(3, 4), salt=0):
    """Rank ``rank``'s input: small values so that products and float16 sums stay exact."""
    rng = np.random.default_rng(1000 * rank + salt)
    if dtype == torch.bool:
        return torch.from_numpy(rng.integers(0, 2, shape).astype(bool))
    if dtype.is_complex:
        a = rng.integers(-3, 4, shape) + 1j * rng.integers(-3, 4, shape)
        return torch.tensor(a).to(dtype)
    lo = 0 if dtype == torch.uint8 else -3
    return torch.tensor(rng.integers(lo, 4, shape)).to(dtype)


def np_of(t):
    return t.to(torch.float64).numpy() if t.dtype in (torch.bfloat16,) else t.numpy()


def expected(op, dtype, arrays):
    a = np.stack(arrays)
    if dtype == torch.bool:
        f = {ReduceOp.SUM: np.any, ReduceOp.MAX: np.any, ReduceOp.BOR: np.any,
             ReduceOp.PRODUCT: np.all, ReduceOp.MIN: np.all, ReduceOp.BAND: np.all,
             ReduceOp.BXOR: lambda x, axis: np.bitwise_xor.reduce(x, axis=axis)}[op]
        return f(a, axis=0)
    if op is ReduceOp.AVG:
        s = a.sum(0)
        if a.dtype.kind in "iu":
            return (np.sign(s) * (np.abs(s) // N)).astype(a.dtype)
        return s / N
    return {ReduceOp.SUM: lambda: a.sum(0), ReduceOp.PRODUCT: lambda: a.prod(0),
            ReduceOp.MIN: lambda: a.min(0), ReduceOp.MAX: lambda: a.max(0),
            ReduceOp.BAND: lambda: np.bitwise_and.reduce(a, 0),
            ReduceOp.BOR: lambda: np.bitwise_or.reduce(a, 0),
            ReduceOp.BXOR: lambda: np.bitwise_xor.reduce(a, 0)}[op]()


def valid(op, dtype):
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR):
        return dtype == torch.bool or not (dtype.is_floating_point or dtype.is_complex)
    if op in (ReduceOp.MIN, ReduceOp.MAX) and dtype.is_complex:
        return False
    return not (op is ReduceOp.AVG and dtype == torch.bool)


def check(got, want, what):
    global checks
    got = np.asarray(np_of(got) if isinstance(got, torch.Tensor) else got)
    want = np.asarray(want)
    if got.dtype.kind == "f" or want.dtype.kind == "f":
        ok = np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-2)
    else:
        ok = np.array_equal(got, want)
    assert ok, f"rank {R}: {what}: got {got} want {want}"
    checks += 1


def run_async(fn, *args, async_op, **kw):
    w = fn(*args, async_op=async_op, **kw)
    if async_op:
        assert w is not None
        w.wait()
        assert w.is_completed()
    else:
        assert w is None


ops = [ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX,
       ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR]
for dtype in DTYPES:
    inputs = [np_of(data(r, dtype)) for r in range(N)]
    for op in ops:
        if not valid(op, dtype):
            try:
                dist.all_reduce(data(R, dtype), op=op)
            except RuntimeError:
                continue
            raise AssertionError(f"{op} on {dtype} should raise")
        want = expected(op, dtype, inputs)
        for async_op in (False, True):
            t = data(R, dtype)
            run_async(dist.all_reduce, t, op=op, async_op=async_op)
            check(t, want, f"all_reduce {op} {dtype} async={async_op}")
        # a non-contiguous tensor goes through a staging copy and back
        t = data(R, dtype, shape=(4, 3)).t()
        dist.all_reduce(t, op=op)
        check(t, expected(op, dtype, [np_of(data(r, dtype, (4, 3))).T for r in range(N)]),
              f"all_reduce strided {op} {dtype}")
        dst = N - 1
        t = data(R, dtype)
        run_async(dist.reduce, t, dst=dst, op=op, async_op=op is ReduceOp.MAX)
        check(t, want if R == dst else inputs[R], f"reduce {op} {dtype}")
        if op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.AVG):
            big = [np_of(data(r, dtype, (N * 2, 3), salt=7)) for r in range(N)]
            out = torch.zeros(2, 3, dtype=dtype)
            run_async(dist.reduce_scatter_tensor, out, data(R, dtype, (N * 2, 3), salt=7),
                      op=op, async_op=dtype == torch.float32)
            check(out, expected(op, dtype, big)[2 * R:2 * R + 2], f"reduce_scatter_tensor {op}")
            out = torch.zeros(2, 3, dtype=dtype)
            dist.reduce_scatter(out, list(data(R, dtype, (N * 2, 3), salt=7).reshape(N, 2, 3)),
                                op=op)
            check(out, expected(op, dtype, big)[2 * R:2 * R + 2], f"reduce_scatter {op}")

    for async_op in (False, True):
        src = 1 % N
        t = data(R, dtype)
        run_async(dist.broadcast, t, src=src, async_op=async_op)
        check(t, inputs[src], f"broadcast {dtype}")
        outs = [torch.zeros(3, 4, dtype=dtype) for _ in range(N)]
        run_async(dist.all_gather, outs, data(R, dtype), async_op=async_op)
        for r in range(N):
            check(outs[r], inputs[r], f"all_gather {dtype}")
        out = torch.zeros(N * 3, 4, dtype=dtype)
        run_async(dist.all_gather_into_tensor, out, data(R, dtype), async_op=async_op)
        check(out, np.concatenate(inputs), f"all_gather_into_tensor {dtype}")
        out = torch.zeros(N, 3, 4, dtype=dtype)
        dist.all_gather_into_tensor(out, data(R, dtype))
        check(out, np.stack(inputs), f"all_gather_into_tensor stacked {dtype}")
        gl = [torch.zeros(3, 4, dtype=dtype) for _ in range(N)] if R == 0 else None
        run_async(dist.gather, data(R, dtype), gl, dst=0, async_op=async_op)
        if R == 0:
            for r in range(N):
                check(gl[r], inputs[r], f"gather {dtype}")
        out = torch.zeros(3, 4, dtype=dtype)
        sl = [data(0, dtype, salt=10 + r) for r in range(N)] if R == 0 else None
        run_async(dist.scatter, out, sl, src=0, async_op=async_op)
        check(out, np_of(data(0, dtype, salt=10 + R)), f"scatter {dtype}")
        # all_to_all: rank r sends block j (salt j) to rank j
        ins = [data(R, dtype, (2, 2), salt=20 + j) for j in range(N)]
        outs = [torch.zeros(2, 2, dtype=dtype) for _ in range(N)]
        run_async(dist.all_to_all, outs, ins, async_op=async_op)
        for r in range(N):
            check(outs[r], np_of(data(r, dtype, (2, 2), salt=20 + R)), f"all_to_all {dtype}")
        inp = torch.cat(ins)
        out = torch.zeros(2 * N, 2, dtype=dtype)
        run_async(dist.all_to_all_single, out, inp, async_op=async_op)
        check(out, np.concatenate([np_of(data(r, dtype, (2, 2), salt=20 + R)) for r in range(N)]),
              f"all_to_all_single {dtype}")

# uneven all_to_all_single: rank r sends r+j+1 rows to rank j
in_splits = [R + j + 1 for j in range(N)]
out_splits = [r + R + 1 for r in range(N)]
inp = torch.cat([torch.full((s, 2), float(100 * R + j)) for j, s in enumerate(in_splits)])
out = torch.zeros(sum(out_splits), 2)
dist.all_to_all_single(out, inp, out_splits, in_splits)
check(out, np.concatenate([np.full((s, 2), 100.0 * r + R) for r, s in enumerate(out_splits)]),
      "all_to_all_single uneven")

# point to point, a ring
nxt, prv = (R + 1) % N, (R - 1) % N
t = torch.zeros(5, dtype=torch.float64)
if R % 2 == 0:
    dist.send(torch.full((5,), float(R)), nxt) if False else \
        dist.send(torch.full((5,), float(R), dtype=torch.float64), nxt)
    sender = dist.recv(t, prv)
else:
    sender = dist.recv(t, prv)
    dist.send(torch.full((5,), float(R), dtype=torch.float64), nxt)
check(t, np.full(5, float(prv)), "send/recv")
check(sender, prv, "recv returns the sender")
t = torch.zeros(5, dtype=torch.bfloat16)
reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, torch.full((5,), R + 0.5,
                                                                 dtype=torch.bfloat16), nxt),
                               dist.P2POp(dist.irecv, t, prv)])
for q in reqs:
    q.wait()
check(t, np.full(5, prv + 0.5), "batch_isend_irecv")
t = torch.zeros(2, dtype=torch.int64)
w = dist.irecv(t)
dist.isend(torch.tensor([R, 7]), nxt).wait()
w.wait()
check(t, [prv, 7], "irecv from any source")
check(w.source_rank(), prv, "irecv source")

# object collectives
objs = [{"rank": R, "t": torch.ones(2) * R}, "x"] if R == 1 % N else [None, None]
dist.broadcast_object_list(objs, src=1 % N)
check(objs[0]["t"], np.ones(2) * (1 % N), "broadcast_object_list tensor")
check(objs[1] == "x", True, "broadcast_object_list str")
got = [None] * N
dist.all_gather_object(got, ("r", R))
check(got == [("r", r) for r in range(N)], True, "all_gather_object")
got = [None] * N if R == 0 else None
dist.gather_object({"r": R}, got, dst=0)
if R == 0:
    check(got == [{"r": r} for r in range(N)], True, "gather_object")
out = [None]
dist.scatter_object_list(out, [f"to{r}" for r in range(N)] if R == 0 else None, src=0)
check(out[0] == f"to{R}", True, "scatter_object_list")

# groups
check(dist.get_process_group_ranks(dist.group.WORLD), list(range(N)), "world ranks")
sub_ranks = list(range(1, N))
g = dist.new_group(sub_ranks)
if R in sub_ranks:
    check(dist.get_rank(g), sub_ranks.index(R), "group rank")
    check(dist.get_world_size(g), len(sub_ranks), "group size")
    check(dist.get_process_group_ranks(g), sub_ranks, "group ranks")
    t = torch.tensor([float(R)])
    dist.all_reduce(t, group=g)
    check(t, [float(sum(sub_ranks))], "all_reduce in subgroup")
    t = torch.tensor([float(R)])
    dist.broadcast(t, src=N - 1, group=g)
    check(t, [float(N - 1)], "broadcast from a global rank in a subgroup")
    try:
        dist.broadcast(t, src=0, group=g)
    except ValueError as e:
        check("not part of the group" in str(e), True, "rank outside the group")
else:
    check(dist.get_rank(g), -1, "non-member rank")
    check(dist.all_reduce(torch.ones(1), group=g) is None, True, "non-member collective")
cur, subs = dist.new_subgroups(group_size=1)
check(len(subs), N, "new_subgroups count")
check(dist.get_process_group_ranks(cur), [R], "new_subgroups ranks")
try:
    dist.broadcast(torch.ones(1), src=N)
except ValueError:
    checks += 1
else:
    raise AssertionError("broadcast from a rank outside the world should raise")
dist.barrier()
dist.barrier(async_op=True).wait()
dist.monitored_barrier()
check(dist.get_backend(), "gloo", "backend")

dist.destroy_process_group()
check(dist.is_initialized(), False, "destroyed")
print(f"CHECKS {checks}", flush=True)
sys.exit(0)
