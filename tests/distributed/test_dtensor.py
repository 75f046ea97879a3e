"""DeviceMesh, DTensor and tensor parallelism under mpiexec (2 and 3 ranks), each rank checking
against single-process results it computes itself (_dtensor_worker.py). One job per world size
runs every section (start-up dominates small jobs):

* mesh: 1-d and 2-d meshes, sub-meshes by name, their groups' collectives, errors;
* core: every redistribute transition (even and uneven shards, 1-d and 2-d meshes) checked
  for the local shard, the value and the gradient; from_local/to_local/full_tensor and their
  gradients; distribute_tensor/distribute_module;
* ops: each sharding rule against single-process values and gradients: pointwise with
  broadcasting and Partial, matmul/linear (colwise, rowwise), embedding (vocab parallel),
  layer norm, softmax, reductions, views, dropout, losses, the Replicate fallback, in-place;
* tp: an MLP block and a GPT block (heads split over ranks; then sequence parallel with
  attention on DTensors) trained 20 steps in float64 equal single-process training (1e-10).
"""

import re

import pytest

from ._mpi import run_mpi

pytest.importorskip("mpi4py")


def _run(n, *sections, timeout=180):
    rc, out, _ = run_mpi("_dtensor_worker.py", n, timeout=timeout, args=sections)
    assert rc == 0, out[-4000:]
    oks = re.findall(r"DTENSOR_OK (\d+)", out)
    assert len(oks) == n, out[-4000:]
    assert all(int(k) > 0 for k in oks), out[-4000:]
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_dtensor_and_tensor_parallel(n):
    _run(n, "mesh", "core", "ops", "tp", "pickle")


def test_two_dimensional_mesh():
    """A real 2 x 2 mesh (4 ranks): sub-meshes, every 2-d redistribute transition, ops."""
    _run(4, "mesh", "mesh2d")


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


def test_chunk_sizes_follow_torch_chunk():
    torch = pytest.importorskip("torch")
    from ember.distributed.tensor._collectives import chunk_sizes
    for n in range(0, 12):
        for k in range(1, 5):
            pieces = [p.shape[0] for p in torch.arange(n).chunk(k)] if n else []
            sizes, _ = chunk_sizes(n, k)
            assert sizes == pieces + [0] * (k - len(pieces)), (n, k)


def test_import_is_lazy():
    """``import ember`` does not load the DTensor machinery; using it needs no MPI job to
    import (only to run collectives)."""
    import subprocess
    import sys

    from ._mpi import env
    code = ("import sys, ember; assert 'ember.distributed.tensor' not in sys.modules; "
            "import ember.distributed.tensor.parallel; "
            "assert 'mpi4py' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env())
    assert out.stdout.strip() == "ok", out.stderr
