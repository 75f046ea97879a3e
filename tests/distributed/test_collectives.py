"""Collectives, ReduceOps, dtypes, groups, object collectives: run under mpiexec with 2 and 3
ranks (one launch each; the worker script compares every result with NumPy)."""

import re
import sys

import pytest

import ember
import ember.distributed as dist

from ._mpi import run, run_mpi


@pytest.mark.parametrize("n", [2, 3])
def test_every_collective_against_numpy(n):
    rc, out, _ = run_mpi("_collectives_worker.py", n, timeout=180)
    assert rc == 0, out[-4000:]
    counts = [int(c) for c in re.findall(r"CHECKS (\d+)", out)]
    assert len(counts) == n and min(counts) > 500, out[-2000:]


def test_available_without_importing_mpi4py():
    code = ("import sys, ember, ember.distributed as d; d.is_available(); "
            "print('mpi4py' in sys.modules)")
    rc, out, _ = run([sys.executable, "-c", code], 60)
    assert rc == 0 and out.strip() == "False", out


def test_collective_before_init_raises():
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="init_process_group"):
        dist.all_reduce(ember.ones(2))
    with pytest.raises(ValueError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(ValueError, match="init_process_group"):
        dist.barrier()


def test_backend_errors():
    with pytest.raises(RuntimeError, match="NCCL"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="Invalid backend"):
        dist.init_process_group("carrier-pigeon")
    assert not dist.is_initialized()


def test_reduce_op_names_match_pytorch():
    torch = pytest.importorskip("torch")
    for name in ("SUM", "AVG", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR"):
        assert hasattr(torch.distributed.ReduceOp, name)
        assert hasattr(dist.ReduceOp, name)


MISMATCH = """
import ember as torch, ember.distributed as dist
dist.init_process_group("gloo")
r = dist.get_rank()
t = torch.ones(3 + r)
try:
    dist.all_reduce(t)
except RuntimeError as e:
    print("RAISED", r, str(e).splitlines()[0][:200], flush=True)
else:
    print("NO ERROR", r, flush=True)
"""


def test_shape_mismatch_detected_with_debug_flag(tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(MISMATCH)
    rc, out, secs = run_mpi(str(script), 2, timeout=60, TORCH_DISTRIBUTED_DEBUG="DETAIL")
    assert rc == 0, out
    assert out.count("RAISED") == 2 and "mismatch" in out and "(3,)" in out and "(4,)" in out
    assert secs < 30


def test_ember_debug_variable_and_dtype_mismatch(tmp_path):
    script = tmp_path / "mismatch_dtype.py"
    script.write_text(MISMATCH.replace("torch.ones(3 + r)",
                                       "torch.ones(3, dtype=torch.float32 if r else "
                                       "torch.float64)"))
    rc, out, _ = run_mpi(str(script), 2, timeout=60, EMBER_DISTRIBUTED_DEBUG="detail")
    assert rc == 0, out
    assert out.count("RAISED") == 2 and "float64" in out and "float32" in out


def test_world_size_without_mpi_job_explains(tmp_path):
    pytest.importorskip("mpi4py")
    script = tmp_path / "alone.py"
    script.write_text("import ember.distributed as dist\n"
                      "dist.init_process_group('gloo', init_method='env://')\n")
    rc, out, _ = run([sys.executable, str(script)], 60, RANK=0, WORLD_SIZE=2,
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    assert rc != 0 and "emberrun" in out and "world_size is 2" in out
