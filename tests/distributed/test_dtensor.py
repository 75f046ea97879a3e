"""DeviceMesh, DTensor and tensor parallelism under mpiexec (2 and 3 ranks), each rank checking
against single-process results it computes itself (_dtensor_worker.py)."""

import re

import pytest

from ._mpi import run_mpi

pytest.importorskip("mpi4py")


def _run(n, *sections, timeout=120):
    rc, out, _ = run_mpi("_dtensor_worker.py", n, timeout=timeout, args=sections)
    assert rc == 0, out[-4000:]
    oks = re.findall(r"DTENSOR_OK (\d+)", out)
    assert len(oks) == n, out[-4000:]
    assert all(int(k) > 0 for k in oks), out[-4000:]
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_mesh_and_redistribute(n):
    """Meshes and sub-meshes; every redistribute transition, values and gradients."""
    _run(n, "mesh", "core")


def test_placements_api():
    from ember.distributed.tensor import Partial, Replicate, Shard
    assert Shard(1) == Shard(1) and Shard(0) != Shard(1) and Replicate() == Replicate()
    assert Partial() == Partial("sum") and Partial("avg") != Partial()
    assert Shard(0).is_shard() and Shard(0).is_shard(0) and not Shard(0).is_shard(1)
    assert Replicate().is_replicate() and Partial().is_partial()
    assert repr(Shard(2)) == "Shard(dim=2)" and repr(Partial()) == "Partial(sum)"
    assert len({Shard(0), Shard(0), Replicate()}) == 2
    with pytest.raises(ValueError):
        Partial("prod")
    with pytest.raises(TypeError):
        Shard("0")
