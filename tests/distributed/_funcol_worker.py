"""Run under mpiexec by test_functional_collectives.py (1 and 2 ranks): every functional
collective's value and gradient against a NumPy computation. Each rank rebuilds every rank's
input and output weights, so it computes the expected results itself. Prints ``CHECKS <n>``."""

import warnings

import numpy as np

import ember as torch
import ember.distributed as dist
import ember.distributed._functional_collectives as funcol
from ember.distributed.device_mesh import init_device_mesh

dist.init_process_group("gloo")
R, N = dist.get_rank(), dist.get_world_size()
MESH = init_device_mesh("cpu", (N,))
GROUPS = [dist.group.WORLD, None, list(range(N)), MESH, (MESH, 0)]
checks = 0


def check(got, want, what):
    global checks
    got = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"rank {R}: {what}")
    checks += 1


def x_of(rank, shape, dtype=np.float64):
    return (np.arange(np.prod(shape)).reshape(shape) + 10 * rank + 1).astype(dtype)


def w_of(rank, shape, dtype=np.float64):
    """The weights rank ``rank`` puts on its output in the loss (differ per rank)."""
    return (np.cos(np.arange(np.prod(shape)).reshape(shape) + rank)).astype(dtype)


def leaf(a):
    return torch.tensor(a, requires_grad=True)


for dtype in (np.float32, np.float64):
    for g in GROUPS:
        # all_reduce: sum over ranks; the gradient is the sum of every rank's weights
        x = leaf(x_of(R, (2, 3), dtype))
        y = funcol.all_reduce(x, "sum", g)
        check(y, sum(x_of(k, (2, 3), dtype) for k in range(N)), "all_reduce")
        (y * torch.tensor(w_of(R, (2, 3), dtype))).sum().backward()
        check(x.grad, sum(w_of(k, (2, 3), dtype) for k in range(N)), "all_reduce grad")
        assert y.dtype == x.dtype
        check(funcol.all_reduce(x, "max", g), x_of(N - 1, (2, 3), dtype), "all_reduce max")
        check(funcol.all_reduce(x, "avg", g),
              sum(x_of(k, (2, 3), dtype) for k in range(N)) / N, "all_reduce avg")

        # all_gather_single along dims 0 and 1; backward = sum reduce-scatter
        for dim in (0, 1, -1):
            x = leaf(x_of(R, (2, 3), dtype))
            y = funcol.all_gather_single_autograd(x, dim, g)
            full = np.concatenate([x_of(k, (2, 3), dtype) for k in range(N)], axis=dim)
            check(y, full, f"all_gather dim {dim}")
            (y * torch.tensor(w_of(R, full.shape, dtype))).sum().backward()
            want = sum(np.split(w_of(k, full.shape, dtype), N, axis=dim)[R] for k in range(N))
            check(x.grad, want, f"all_gather grad dim {dim}")

        # reduce_scatter_single along dims 0 and 1; backward = all-gather
        for dim in (0, 1):
            shape = (2 * N, 3) if dim == 0 else (2, 3 * N)
            x = leaf(x_of(R, shape, dtype))
            y = funcol.reduce_scatter_single(x, "sum", dim, g)
            total = sum(x_of(k, shape, dtype) for k in range(N))
            check(y, np.split(total, N, axis=dim)[R], f"reduce_scatter dim {dim}")
            (y * torch.tensor(w_of(R, y.shape, dtype))).sum().backward()
            want = np.concatenate([w_of(k, y.shape, dtype) for k in range(N)], axis=dim)
            check(x.grad, want, f"reduce_scatter grad dim {dim}")

        # all_to_all_single, uneven: rank r sends r + s + 1 rows to rank s
        def rows(src, dst):
            return np.stack([np.full(2, 100 * src + 10 * dst + i) for i in range(src + dst + 1)])

        x = leaf(np.concatenate([rows(R, s) for s in range(N)]).astype(dtype))
        out_splits = [s + R + 1 for s in range(N)]
        in_splits = [R + s + 1 for s in range(N)]
        y = funcol.all_to_all_single_autograd(x, out_splits, in_splits, g)
        check(y, np.concatenate([rows(s, R) for s in range(N)]), "all_to_all_single")

        def wrows(src, dst):  # the weights rank dst puts on the rows that came from src
            return np.cos(rows(src, dst))

        (y * torch.tensor(np.concatenate([wrows(s, R) for s in range(N)]).astype(dtype))) \
            .sum().backward()
        check(x.grad, np.concatenate([wrows(R, s) for s in range(N)]), "all_to_all grad")
        even = funcol.all_to_all_single(torch.tensor(x_of(R, (2 * N, 2), dtype)), None, None, g)
        check(even, np.concatenate([np.split(x_of(k, (2 * N, 2), dtype), N)[R]
                                    for k in range(N)]), "all_to_all_single even")

        # permute_tensor: rank r sends to (r + 1) % N
        y = funcol.permute_tensor(torch.tensor(x_of(R, (2, 3), dtype)),
                                  [(i + 1) % N for i in range(N)], g)
        check(y, x_of((R - 1) % N, (2, 3), dtype), "permute_tensor")

        # broadcast from the last rank, wait_tensor, the coalesced forms
        y = funcol.broadcast(torch.tensor(x_of(R, (4,), dtype)), N - 1, g)
        check(funcol.wait_tensor(y), x_of(N - 1, (4,), dtype), "broadcast")
        ys = funcol.all_reduce_coalesced([torch.tensor(x_of(R, (2,), dtype)),
                                          torch.tensor(x_of(R, (3, 1), dtype))], "sum", g)
        check(ys[1], sum(x_of(k, (3, 1), dtype) for k in range(N)), "all_reduce_coalesced")
        ys = funcol.all_gather_into_tensor_coalesced([torch.tensor(x_of(R, (1, 2), dtype))], g)
        check(ys[0], np.concatenate([x_of(k, (1, 2), dtype) for k in range(N)]),
              "all_gather_coalesced")
        ys = funcol.reduce_scatter_tensor_coalesced([torch.tensor(x_of(R, (2, N), dtype))],
                                                    "sum", [1], g)
        check(ys[0], np.split(sum(x_of(k, (2, N), dtype) for k in range(N)), N, axis=1)[R],
              "reduce_scatter_coalesced")

# the deprecated *_tensor names warn as PyTorch's do, and compute the same
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    y = funcol.all_gather_tensor(torch.tensor(x_of(R, (2,))), 0, None)
    z = funcol.reduce_scatter_tensor(torch.tensor(x_of(R, (2 * N,))), "sum", 0, None)
assert sum(issubclass(w.category, FutureWarning) for w in caught) == 2, caught
check(y, np.concatenate([x_of(k, (2,)) for k in range(N)]), "all_gather_tensor")
check(z, np.split(sum(x_of(k, (2 * N,)) for k in range(N)), N)[R], "reduce_scatter_tensor")

# errors
try:
    funcol.all_reduce(torch.ones(2, requires_grad=True), "max", None).sum().backward()
    raise AssertionError("all_reduce(max) backward should raise")
except RuntimeError as e:
    assert "only supports 'sum'" in str(e), e
if N > 1:
    try:
        funcol.reduce_scatter_single(torch.ones(2 * N + 1), "sum", 0, None)
        raise RuntimeError("an uneven reduce_scatter should raise")
    except AssertionError as e:
        assert "multiple of group_size" in str(e), e
try:
    funcol.all_to_all_single(torch.ones(N), [1] * N, None, None)
    raise AssertionError("one split list without the other should raise")
except AssertionError as e:
    assert "specified together" in str(e), e

# one line from rank 0 with every rank's count (lines of two ranks can interleave)
counts = [None] * N
dist.all_gather_object(counts, checks)
if R == 0:
    print("CHECKS", *counts, flush=True)
dist.destroy_process_group()
