"""``torch.distributed._functional_collectives`` on ember: values and gradients of every
functional collective at 1 and 2 ranks (one mpiexec launch each; the worker compares with
NumPy), for every form of ``group`` PyTorch accepts."""

import re

import pytest

import ember.distributed._functional_collectives as funcol

from ._mpi import run_mpi


@pytest.mark.parametrize("n", [1, 2])
def test_functional_collectives_values_and_grads(n):
    rc, out, _ = run_mpi("_funcol_worker.py", n, timeout=180)
    assert rc == 0, out[-4000:]
    line = re.findall(r"CHECKS ([\d ]+)", out)
    counts = [int(c) for c in line[0].split()] if line else []
    assert len(counts) == n and min(counts) > 200, out[-2000:]


def test_names_match_pytorch():
    tf = pytest.importorskip("torch.distributed._functional_collectives")
    for name in funcol.__all__:
        assert callable(getattr(tf, name)), name
    for name in ("all_to_all_single_autograd", "all_gather_tensor_autograd",
                 "reduce_scatter_tensor_autograd", "wait_tensor", "permute_tensor"):
        assert name in funcol.__all__, name
