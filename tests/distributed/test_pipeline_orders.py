"""The multi-stage pipeline schedules' action orders (no process group needed): the same
forwards and backwards in the same order as PyTorch's schedules for every rank, and orders
that cannot wait forever; the placement and microbatch checks. Training with them at 2 and 3
ranks is checked in test_sharding.py (part ``pipe_multi``)."""

import pytest

from ember.distributed.pipelining import (ScheduleInterleaved1F1B, ScheduleLoopedBFS,
                                          get_schedule_class)
from ember.distributed.pipelining.schedules import _check_order


class _Stage:
    """Just what a schedule reads from a stage."""
    _pg = object()

    def __init__(self, index, num_stages, size, rank):
        self.stage_index, self.num_stages = index, num_stages
        self.group_size, self.group_rank = size, rank


def _ours(cls, P, L, n, rank=0):
    stages = [_Stage(rank + P * i, P * L, P, rank) for i in range(L)]
    return cls(stages, n, loss_fn=lambda a, b: a).pipeline_order


def _pytorch(cls_name, P, L, n):
    torch = pytest.importorskip("torch")
    from torch.distributed.pipelining import schedules as S
    from torch.distributed.pipelining.stage import _PipelineStageBase

    class Fake(_PipelineStageBase):
        _create_grad_recv_info = _prepare_backward_infra = _prepare_forward_infra = \
            lambda *a, **k: None

        def __init__(self, idx):
            self.stage_index, self.num_stages, self.group_size, self.group_rank = \
                idx, P * L, P, 0
            self.submod = torch.nn.Linear(1, 1)
            self.has_backward = True
    sched = getattr(S, cls_name)([Fake(P * i) for i in range(L)], n, loss_fn=lambda a, b: a)
    return {r: [(a.computation_type.value, a.stage_index, a.microbatch_index)
                for a in sched.pipeline_order[r]
                if a is not None and a.computation_type.value in ("F", "B")]
            for r in range(P)}


GRID = [(P, L, n) for P in (1, 2, 3, 4) for L in (1, 2, 3) for n in (1, 2, 3, 4, 6, 8, 12)]


@pytest.mark.parametrize("cls", [ScheduleInterleaved1F1B, ScheduleLoopedBFS])
@pytest.mark.parametrize("P,L,n", GRID)
def test_orders_match_pytorch(cls, P, L, n):
    rounds = max(1, n // P)
    if cls is ScheduleInterleaved1F1B and n % rounds:
        with pytest.raises(ValueError, match="multiple of the number of rounds"):
            _ours(cls, P, L, n)
        return
    ours = _ours(cls, P, L, n)
    assert ours == _pytorch(cls.__name__, P, L, n)
    # every rank's schedule object computes the same orders
    for r in range(1, P):
        assert _ours(cls, P, L, n, rank=r) == ours


def test_interleaved_keeps_fewer_microbatches_alive_than_bfs():
    def peak(order):
        alive = best = 0
        for kind, _, _ in order:
            alive += 1 if kind == "F" else -1
            best = max(best, alive)
        return best
    P, L, n = 2, 2, 8
    inter, bfs = _ours(ScheduleInterleaved1F1B, P, L, n), _ours(ScheduleLoopedBFS, P, L, n)
    assert max(peak(o) for o in inter.values()) < max(peak(o) for o in bfs.values()) == L * n


def test_a_deadlocking_order_is_refused():
    good = {0: [("F", 0, 0), ("B", 0, 0)], 1: [("F", 1, 0), ("B", 1, 0)]}
    _check_order(good, 2, 1)
    bad = {0: [("B", 0, 0), ("F", 0, 0)], 1: [("F", 1, 0), ("B", 1, 0)]}
    with pytest.raises(RuntimeError, match="wait forever"):
        _check_order(bad, 2, 1)
    with pytest.raises(RuntimeError, match="exactly once"):
        _check_order({0: [("F", 0, 0)], 1: [("F", 1, 0), ("B", 1, 0)]}, 2, 1)


def test_stage_placement_and_names():
    with pytest.raises(ValueError, match="must hold stages"):
        ScheduleLoopedBFS([_Stage(0, 4, 2, 0), _Stage(1, 4, 2, 0)], 2, loss_fn=None)
    with pytest.raises(ValueError, match="no stages"):
        ScheduleLoopedBFS([], 2)
    assert get_schedule_class("interleaved1f1b") is ScheduleInterleaved1F1B
    assert get_schedule_class("LoopedBFS") is ScheduleLoopedBFS
    with pytest.raises(NotImplementedError, match="dw_builder"):
        get_schedule_class("ZBVZeroBubble")
    with pytest.raises(ValueError, match="Unknown schedule"):
        get_schedule_class("nope")
