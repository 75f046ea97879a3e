"""DataLoader faults: errors, deaths and timeouts end in a clear exception, never a hang, and
leave no process or shared-memory block behind."""

import multiprocessing as mp
import os
import signal
import time

import pytest

from ember.utils.data import DataLoader
from ember.utils.data._utils import worker as W
from tests.data._datasets import Failing, Items, Sleepy, Suicidal

# A dead worker must be reported well within this many seconds.
_BOUND_S = 10


def leftovers():
    pattern = f"ember_dl_{os.getpid()}_"
    return mp.active_children(), [f for f in os.listdir(W.SHM_DIR) if f.startswith(pattern)]


@pytest.mark.parametrize("nw", [0, 2])
def test_exception_reraised_with_index_and_traceback(nw):
    it = iter(DataLoader(Failing(8, bad=5), batch_size=2, num_workers=nw))
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    with pytest.raises(ValueError, match="bad sample 5") as e:
        next(it)
    if nw:
        msg = str(e.value)
        assert "in DataLoader worker process 0 while fetching sample index 5" in msg
        assert "Traceback (most recent call last)" in msg and "_datasets.py" in msg
    else:
        assert "while fetching sample index 5" in "".join(getattr(e.value, "__notes__", []))
    assert next(it).tolist() == [6, 7]  # the loader goes on after a failed batch
    del it, e  # the traceback holds the iterator too
    assert leftovers() == ([], [])


def test_worker_init_fn_error():
    def init(wid):
        raise KeyError("no config")

    with pytest.raises(KeyError, match="while starting"):
        list(DataLoader(Items(4), num_workers=1, worker_init_fn=init))
    assert leftovers() == ([], [])


def test_unconstructible_exception_becomes_runtime_error():
    def collate(batch):
        raise OSError_with_args(1, 2)

    class OSError_with_args(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    with pytest.raises(RuntimeError, match="OSError_with_args .* while processing batch 0"):
        list(DataLoader(Items(2), num_workers=1, collate_fn=collate))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_worker_killed_by_signal(sig):
    loader = DataLoader(Suicidal(40, at=9, sig=sig), batch_size=2, num_workers=2)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"DataLoader worker 0 \(pid \d+\) was killed by "
                                           rf"signal {sig.name}"):
        for _ in loader:
            pass
    assert time.monotonic() - t0 < _BOUND_S
    assert leftovers() == ([], [])


def test_worker_killed_from_outside_mid_epoch():
    it = iter(DataLoader(Sleepy(200, default=0.01), batch_size=2, num_workers=2))
    next(it)
    victim = it._pool.workers[1]
    os.kill(victim.pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"worker 1 \(pid {victim.pid}\) was killed by signal "
                                           r"SIGKILL"):
        while True:
            next(it)
    assert time.monotonic() - t0 < _BOUND_S
    with pytest.raises(StopIteration):  # the iterator is finished, not stuck
        next(it)
    assert leftovers() == ([], [])


def test_worker_exits():
    with pytest.raises(RuntimeError, match=r"worker 1 \(pid \d+\) exited unexpectedly with exit "
                                           r"code 3"):
        list(DataLoader(Suicidal(6, at=3, code=3), batch_size=1, num_workers=2))
    assert leftovers() == ([], [])


def test_timeout():
    it = iter(DataLoader(Sleepy(4, delays={1: 0.6}), batch_size=1, num_workers=1, timeout=0.2))
    assert next(it).tolist() == [0]
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.2 seconds"):
        next(it)
    assert time.monotonic() - t0 < 3  # generous: the machine may be loaded
    del it
    assert leftovers() == ([], [])


def test_persistent_worker_death_then_new_epoch():
    loader = DataLoader(Suicidal(6, at=4), batch_size=1, num_workers=2, persistent_workers=True)
    with pytest.raises(RuntimeError, match="killed by signal SIGKILL"):
        list(loader)
    assert mp.active_children() == []
    # a fresh pool replaces the dead one; the same sample kills again, reported again
    with pytest.raises(RuntimeError, match="killed by signal SIGKILL"):
        list(loader)
    del loader
    assert leftovers() == ([], [])
