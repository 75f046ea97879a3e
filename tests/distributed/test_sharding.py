"""Sharded training (issue 19): ZeRO-1, pipeline parallelism, FSDP2 and distributed
checkpoints, each checked under mpiexec against single-process training (float64, 1e-10) by
``_sharding_worker.py``; and what can be checked in one process."""

import re

import pytest

import ember
import ember.nn as nn

from ._mpi import run_mpi


def _run(parts, n, timeout=150, **env):
    rc, out, _ = run_mpi("_sharding_worker.py", n, timeout=timeout, args=parts, **env)
    assert rc == 0, out[-4000:]
    for part in parts:
        counts = [int(c) for c in re.findall(rf"SHARD_OK {part} (\d+)", out)]
        assert len(counts) == n and max(counts) > 0, out[-2000:]


def test_sharded_training_and_checkpoints(tmp_path):
    """ZeRO-1, GPipe, 1F1B and FSDP2 at 2 and 3 ranks equal single-process training; a
    checkpoint saved at 2 ranks survives a rank killed in a later save and loads at 1 and 3
    ranks; its full state dict loads into PyTorch."""
    torch = pytest.importorskip("torch")
    _run(["zero", "pipe", "pipe_multi", "hsdp", "fsdp", "ckpt_save"], 2, CKPT_DIR=tmp_path)
    before = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    rc, out, _ = run_mpi("_sharding_worker.py", 2, timeout=60, args=["ckpt_kill"],
                         CKPT_DIR=tmp_path)
    assert rc not in (0, None), out[-3000:]
    after = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert ".metadata" in after and set(before) <= set(after), (before, after)
    _run(["ckpt_load"], 1, CKPT_DIR=tmp_path)
    _run(["zero", "pipe", "pipe_multi", "hsdp", "fsdp", "ckpt_load"], 3, CKPT_DIR=tmp_path)
    # the full state dict (written with ember.save) is a PyTorch checkpoint of the model
    full = torch.load(tmp_path / "full.pt")
    ref = torch.load(tmp_path / "ref.pt")
    assert list(full) == list(ref)
    for k in ref:
        assert full[k].dtype == torch.float64
        torch.testing.assert_close(full[k], ref[k], atol=1e-10, rtol=0)
    dims = [6, 16, 16]
    mirror = torch.nn.Module()
    mirror.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
    mirror.head = torch.nn.Linear(16, 3)
    mirror.double().load_state_dict(full, strict=True)


def test_hsdp_on_a_two_by_two_mesh(tmp_path):
    """HSDP with both mesh dims above 1 (4 ranks: 2 replicas of 2 shards) equals
    single-process training (float64, 1e-10)."""
    _run(["hsdp"], 4, CKPT_DIR=tmp_path)


def test_async_checkpoint_overlaps_training(tmp_path):
    """async_save at 2 ranks while FSDP2 trains on: each checkpoint holds the values of the
    step it was asked at (float64, 1e-10 against single-process training)."""
    _run(["ckpt_async"], 2, CKPT_DIR=tmp_path)


def test_zero_needs_a_process_group():
    from ember.distributed.optim import ZeroRedundancyOptimizer
    with pytest.raises(ValueError, match="init_process_group"):
        ZeroRedundancyOptimizer(nn.Linear(2, 2).parameters(), ember.optim.SGD, lr=0.1)


def test_checkpoint_single_process_roundtrip(tmp_path):
    """Without a process group: save and load nested state (tensors, tuples, numbers), a wrong
    shape and a missing key are refused, and an unfinished save leaves no checkpoint."""
    import ember.distributed.checkpoint as dcp
    ember.manual_seed(0)
    m = nn.Linear(3, 2)
    sd = {"model": m.state_dict(), "extra": {"betas": (0.9, 0.99), "step": 3, "name": "x"}}
    dcp.save(sd, checkpoint_id=tmp_path / "c")
    m2 = nn.Linear(3, 2)
    sd2 = {"model": m2.state_dict(), "extra": {"betas": None, "step": 0, "name": ""}}
    dcp.load(sd2, storage_reader=dcp.FileSystemReader(tmp_path / "c"))
    assert ember.equal(m2.weight, m.weight) and ember.equal(m2.bias, m.bias)
    assert sd2["extra"] == {"betas": (0.9, 0.99), "step": 3, "name": "x"}
    with pytest.raises(RuntimeError, match="shape"):
        dcp.load({"model": nn.Linear(4, 2).state_dict()}, checkpoint_id=tmp_path / "c")
    with pytest.raises(RuntimeError, match="missing keys"):
        dcp.load({"other": ember.zeros(2)}, checkpoint_id=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="metadata"):
        dcp.load(sd2, checkpoint_id=tmp_path / "none")
    with pytest.raises(TypeError, match="plain value"):
        dcp.save({"f": object()}, checkpoint_id=tmp_path / "d")
    assert not (tmp_path / "d" / ".metadata").exists()


def test_async_save_single_process(tmp_path, monkeypatch):
    """async_save stages the values at the call (later in-place updates are not saved), its
    future gives the Metadata, a failing write reaches the future and leaves the previous
    checkpoint, and unsupported arguments raise at once."""
    import ember.distributed.checkpoint as dcp
    from ember.distributed.checkpoint import _fs
    ember.manual_seed(0)
    m = nn.Linear(3, 2)
    saved = m.weight.detach().clone()
    fut = dcp.async_save({"model": m.state_dict(), "n": [1, {"k": 2}]},
                         checkpoint_id=tmp_path / "c")
    with ember.no_grad():
        m.weight.mul_(3)
    assert isinstance(fut.result(timeout=30), dcp.Metadata)
    m2 = nn.Linear(3, 2)
    sd = {"model": m2.state_dict(), "n": None}
    dcp.load(sd, checkpoint_id=tmp_path / "c")
    assert ember.equal(m2.weight, saved) and sd["n"] == [1, {"k": 2}]

    def failing(f, data, key):
        raise OSError("disk full")
    monkeypatch.setattr(_fs, "_write_piece", failing)
    fut = dcp.async_save({"model": m.state_dict()}, checkpoint_id=tmp_path / "c")
    with pytest.raises(RuntimeError, match="disk full"):
        fut.result(timeout=30)
    monkeypatch.undo()
    dcp.load(sd, checkpoint_id=tmp_path / "c")  # the first checkpoint is intact
    assert ember.equal(m2.weight, saved)
    with pytest.raises(TypeError, match="cannot save"):
        dcp.async_save({"f": object()}, checkpoint_id=tmp_path / "d")
    with pytest.raises(NotImplementedError, match="planner"):
        dcp.async_save({}, checkpoint_id=tmp_path / "d", planner=object())
    kind = dcp.state_dict_saver.AsyncCheckpointerType
    with pytest.raises(NotImplementedError, match="process"):
        dcp.async_save({}, checkpoint_id=tmp_path / "d", async_checkpointer_type=kind.PROCESS)
    fut = dcp.async_save({"x": ember.ones(2)}, checkpoint_id=tmp_path / "e",
                         async_checkpointer_type=kind.THREAD)
    assert fut.result(timeout=30).state_dict_metadata["x"]["shape"] == [2]


def test_pipeline_split_matches_module():
    from ember.distributed.pipelining import SplitPoint, pipeline
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = ember.randn(5, 4)
    pipe = pipeline(m, (x[:2],), split_spec={"2": SplitPoint.BEGINNING,
                                            "3": SplitPoint.END})
    assert pipe.num_stages == 3
    names = [sorted(n for n, _ in pipe.get_stage_module(i).named_parameters())
             for i in range(3)]
    assert names == [["0.bias", "0.weight"], ["2.bias", "2.weight"], ["4.bias", "4.weight"]]
    assert ember.equal(pipe(x), m(x))
    with pytest.raises(ValueError, match="not a submodule"):
        pipeline(m, (x,), split_spec={"nope": SplitPoint.BEGINNING})
    with pytest.raises(ValueError, match="out of range"):
        pipe.get_stage_module(3)


def test_fsdp1_wrapper_points_to_fully_shard():
    from ember.distributed.fsdp import FullyShardedDataParallel
    with pytest.raises(NotImplementedError, match="fully_shard"):
        FullyShardedDataParallel(nn.Linear(2, 2))


def test_sharded_training_example_under_mpiexec(tmp_path):
    """examples/sharded_training.py (FSDP2 + a distributed checkpoint) at 2 ranks: the loss
    falls and the checkpoint is written."""
    import os
    import sys

    from ._mpi import ROOT, mpiexec, run
    script = os.path.join(ROOT, "examples", "sharded_training.py")
    rc, out, _ = run([mpiexec(), "-n", "2", sys.executable, script, "--quick",
                      "--checkpoint", str(tmp_path / "ckpt")], 240, cwd=str(tmp_path))
    assert rc == 0, out[-4000:]
    m = re.search(r"RESULT first_loss=([-\d.e+]+) last_loss=([-\d.e+]+)", out)
    assert m and float(m.group(2)) < float(m.group(1)), out[-2000:]
    assert (tmp_path / "ckpt" / ".metadata").exists()
