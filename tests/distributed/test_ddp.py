"""DistributedDataParallel (under mpiexec, 2 ranks), DataParallel, SyncBatchNorm outside a
group, DistributedSampler against PyTorch's, and futures."""

import re

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.utils.data import DistributedSampler

from ._mpi import run_mpi


def test_ddp_matches_single_process_training():
    rc, out, _ = run_mpi("_ddp_worker.py", 2, timeout=300)
    assert rc == 0, out[-4000:]
    counts = [int(c) for c in re.findall(r"DDP_OK (\d+)", out)]
    assert len(counts) == 2 and min(counts) > 60, out[-2000:]


def test_ddp_needs_a_process_group():
    with pytest.raises(ValueError, match="init_process_group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))


def test_data_parallel_runs_the_module_on_cpu():
    torch = pytest.importorskip("torch")
    m = nn.Linear(3, 2)
    dp = nn.DataParallel(m)
    x = ember.randn(4, 3)
    np.testing.assert_array_equal(dp(x).detach().numpy(), m(x).detach().numpy())
    assert list(dp.state_dict()) == ["module.weight", "module.bias"]
    tm = torch.nn.DataParallel(torch.nn.Linear(3, 2))
    assert list(tm.state_dict()) == list(dp.state_dict())
    assert dp.module is m
    np.testing.assert_array_equal(nn.parallel.data_parallel(m, x).detach().numpy(),
                                  m(x).detach().numpy())
    # PyTorch with no GPU visible ignores device_ids and runs the module as it is
    td = torch.nn.DataParallel(torch.nn.Linear(3, 2), device_ids=[0])
    assert td.device_ids == [] and nn.DataParallel(m, device_ids=[0]).device_ids == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sync_batchnorm_without_group_is_batchnorm(dtype):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(6, 4, 5)).astype(dtype)
    ours = nn.SyncBatchNorm(4).to(getattr(ember, dtype))
    theirs = torch.nn.BatchNorm1d(4).to(getattr(torch, dtype))
    xe = ember.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ours(xe).pow(2).sum().backward()
    theirs(xt).pow(2).sum().backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), atol=tol)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.detach().numpy(),
                               atol=tol)
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(xe).detach().numpy(), theirs(xt).detach().numpy(),
                               atol=tol)


def test_convert_sync_batchnorm_like_pytorch():
    torch = pytest.importorskip("torch")
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                      nn.Sequential(nn.BatchNorm1d(5)))
    w = m[1].weight
    c = nn.SyncBatchNorm.convert_sync_batchnorm(m)
    tm = torch.nn.SyncBatchNorm.convert_sync_batchnorm(
        torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                            torch.nn.Sequential(torch.nn.BatchNorm1d(5))))
    assert [type(x).__name__ for x in c.modules()] == [type(x).__name__ for x in tm.modules()]
    assert c[1].weight is w
    assert list(c.state_dict()) == list(tm.state_dict())


@pytest.mark.parametrize("n,replicas,shuffle,drop_last", [
    (10, 3, False, False), (10, 3, True, False), (10, 3, True, True), (11, 4, False, True),
    (2, 5, False, False), (7, 2, True, False), (12, 4, True, True)])
def test_distributed_sampler_matches_pytorch(n, replicas, shuffle, drop_last):
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler
    data = list(range(n))
    for epoch in (0, 3):
        for rank in range(replicas):
            ours = DistributedSampler(data, replicas, rank, shuffle=shuffle, seed=5,
                                      drop_last=drop_last)
            theirs = TorchSampler(data, replicas, rank, shuffle=shuffle, seed=5,
                                  drop_last=drop_last)
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert len(ours) == len(theirs) == len(list(ours))
            if shuffle:
                # ember's generator differs from PyTorch's: apply PyTorch's padding and
                # striding to ember's permutation of the same seed
                g = ember.Generator().manual_seed(5 + epoch)
                perm = ember.randperm(n, generator=g).tolist()
                total = len(theirs) * replicas
                padded = (perm * (total // n + 1))[:total] if not drop_last else perm[:total]
                assert list(ours) == padded[rank:total:replicas]
            else:
                assert list(ours) == list(theirs)
    with pytest.raises(ValueError, match="Invalid rank"):
        DistributedSampler(data, 2, 2)


def test_distributed_sampler_shuffle_covers_and_reseeds():
    data = list(range(20))
    parts = [list(DistributedSampler(data, 4, r, shuffle=True, seed=1)) for r in range(4)]
    assert sorted(sum(parts, [])) == data
    s = DistributedSampler(data, 4, 0, shuffle=True, seed=1)
    s.set_epoch(1)
    assert list(s) != parts[0]


def test_future_chaining():
    from ember.futures import Future, collect_all
    calls = []
    f = Future(_waiter=lambda: calls.append(1) or 5)
    g = f.then(lambda fut: fut.value() * 2)
    assert not f.done() and g.wait() == 10 and f.value() == 5 and calls == [1]
    h = Future()
    h.set_result(3)
    assert h.then(lambda fut: fut.value() + 1).value() == 4
    with pytest.raises(RuntimeError, match="not completed"):
        Future().value()
    assert [x.value() for x in collect_all([h, f]).wait()] == [3, 5]


def test_ddp_join_with_uneven_inputs():
    rc, out, _ = run_mpi("_join_worker.py", 2, timeout=120)
    assert rc == 0, out[-4000:]
    counts = [int(c) for c in re.findall(r"JOIN_OK (\d+)", out)]
    assert counts == [9, 9], out[-2000:]
