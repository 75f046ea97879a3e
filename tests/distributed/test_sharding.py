"""Sharded training (issue 19): ZeRO-1, pipeline parallelism, FSDP2 and distributed
checkpoints, each checked under mpiexec against single-process training (float64, 1e-10) by
``_sharding_worker.py``; and what can be checked in one process."""

import re

import pytest

import ember
import ember.nn as nn

from ._mpi import run_mpi


def _run(parts, n, timeout=150):
    rc, out, _ = run_mpi("_sharding_worker.py", n, timeout=timeout, args=parts)
    assert rc == 0, out[-4000:]
    for part in parts:
        counts = [int(c) for c in re.findall(rf"SHARD_OK {part} (\d+)", out)]
        assert len(counts) == n and max(counts) > 0, out[-2000:]


@pytest.mark.parametrize("n", [2, 3])
def test_zero_and_pipelining_match_single_process(n):
    _run(["zero", "pipe"], n)


def test_zero_needs_a_process_group():
    from ember.distributed.optim import ZeroRedundancyOptimizer
    with pytest.raises(ValueError, match="init_process_group"):
        ZeroRedundancyOptimizer(nn.Linear(2, 2).parameters(), ember.optim.SGD, lr=0.1)


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
