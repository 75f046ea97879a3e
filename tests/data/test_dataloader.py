"""DataLoader behaviour without faults: batching, arguments, workers, seeds, transport."""

import mmap
import multiprocessing as mp
import os
import time

import numpy as np
import pytest

import ember
from ember.utils.data import (BatchSampler, DataLoader, SequentialSampler, TensorDataset,
                              get_worker_info)
from ember.utils.data._utils import worker as W
from tests.data._datasets import Items, Randomised, Sharded, Sleepy, Stream


def as_lists(loader):
    """Batches as plain Python values, for comparisons."""
    def plain(x):
        if hasattr(x, "tolist"):  # ember and torch tensors
            return x.tolist()
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return [plain(b) for b in loader]


def test_batches_match_torch():
    torch = pytest.importorskip("torch")
    for kw in [dict(batch_size=3), dict(batch_size=3, drop_last=True), dict(batch_size=None),
               dict(batch_size=4, sampler=[5, 1, 2, 0, 9])]:
        ours = as_lists(DataLoader(Items(10, (2,)), **kw))
        assert ours == as_lists(torch.utils.data.DataLoader(Items(10, (2,)), **kw))
        assert len(DataLoader(Items(10, (2,)), **kw)) == len(
            torch.utils.data.DataLoader(Items(10, (2,)), **kw))


def test_batch_sampler_and_collate_fn():
    bs = BatchSampler(SequentialSampler(range(5)), 2, False)
    loader = DataLoader(Items(5), batch_sampler=bs, collate_fn=lambda b: sum(b))
    assert list(loader) == [1, 5, 4] and len(loader) == 3


def test_tensor_dataset_batches():
    x = ember.arange(10.0).reshape(5, 2)
    (a, b), = list(DataLoader(TensorDataset(x, ember.arange(5)), batch_size=5))
    assert a.tolist() == x.tolist() and b.dtype == ember.int64


def test_argument_errors_match_torch():
    torch = pytest.importorskip("torch")
    cases = [dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2),
             dict(persistent_workers=True), dict(sampler=[0], shuffle=True),
             dict(batch_sampler=[[0]], batch_size=2), dict(batch_size=None, drop_last=True),
             dict(multiprocessing_context="fork"), dict(num_workers=1, prefetch_factor=-1),
             dict(num_workers=1, multiprocessing_context="nope")]
    for kw in cases:
        with pytest.raises(ValueError) as theirs:
            torch.utils.data.DataLoader(Items(3), **kw)
        with pytest.raises(ValueError) as ours:
            DataLoader(Items(3), **kw)
        assert str(ours.value) == str(theirs.value).replace("torch", "ember")
    for kw in [dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])]:
        with pytest.raises(ValueError, match="DataLoader with IterableDataset: expected "
                                             "unspecified"):
            DataLoader(Stream(3), **kw)
    with pytest.raises(TypeError, match="multiprocessing_context option should be a valid"):
        DataLoader(Items(3), num_workers=1, multiprocessing_context=3)
    loader = DataLoader(Items(3))
    with pytest.raises(ValueError, match="batch_size attribute should not be set after "
                                         "DataLoader is initialized"):
        loader.batch_size = 2


def test_pin_memory_accepted():
    with pytest.warns(UserWarning, match="pin_memory"):
        assert as_lists(DataLoader(Items(2), pin_memory=True)) == [[0], [1]]


def test_iterable_dataset_single_process():
    loader = DataLoader(Stream(7), batch_size=3)
    assert as_lists(loader) == [[0, 1, 2], [3, 4, 5], [6]]
    assert as_lists(DataLoader(Stream(7), batch_size=3, drop_last=True)) == [[0, 1, 2],
                                                                              [3, 4, 5]]
    assert as_lists(DataLoader(Stream(2), batch_size=None)) == [0, 1]
    assert len(DataLoader(Sharded(7), batch_size=3)) == 3


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_match_main_process(persistent):
    ds = Items(23, (3, 4))
    ember.manual_seed(7)
    ref = [as_lists(DataLoader(ds, batch_size=4, shuffle=True)) for _ in range(2)]
    ember.manual_seed(7)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2,
                        persistent_workers=persistent)
    assert [as_lists(loader) for _ in range(2)] == ref
    assert ref[0] != ref[1]
    if persistent:
        del loader
    assert mp.active_children() == []


def test_generator_argument_fixes_order():
    def run(nw):
        g = ember.Generator().manual_seed(11)
        return as_lists(DataLoader(Items(9), batch_size=2, shuffle=True, generator=g,
                                   num_workers=nw))
    assert run(0) == run(2)


def test_iterable_dataset_sharded_across_workers():
    loader = DataLoader(Sharded(11), batch_size=2, num_workers=2)
    flat = sorted(v for b in as_lists(loader) for v in b)
    assert flat == list(range(11))
    # without sharding each worker yields the whole stream
    flat = sorted(v for b in as_lists(DataLoader(Stream(3), batch_size=2, num_workers=2))
                  for v in b)
    assert flat == [0, 0, 1, 1, 2, 2]
    assert as_lists(DataLoader(Sharded(5), batch_size=None, num_workers=2)) == [0, 1, 2, 3, 4]
    unordered = DataLoader(Sharded(7), batch_size=2, num_workers=2, in_order=False)
    assert sorted(v for b in as_lists(unordered) for v in b) == list(range(7))


def test_persistent_workers_restart_iterable_streams():
    loader = DataLoader(Sharded(7), batch_size=2, num_workers=2, persistent_workers=True)
    it = iter(loader)
    next(it)  # an epoch left unfinished
    for _ in range(2):
        assert sorted(v for b in as_lists(loader) for v in b) == list(range(7))
    del it, loader
    assert mp.active_children() == []


def test_worker_seeds_and_info():
    def run():
        ember.manual_seed(3)
        seen = []
        loader = DataLoader(Randomised(8), batch_size=2, num_workers=2,
                            worker_init_fn=lambda wid: seen.append(wid))
        return as_lists(loader)

    first, again = run(), run()
    assert first == again  # same ember seed, same augmentations
    by_worker = {}
    for b in first:
        assert len(set(b["wid"])) == 1
        by_worker.setdefault(b["wid"][0], []).append(b)
    assert sorted(by_worker) == [0, 1]
    seeds = {w: bs[0]["seed"][0] for w, bs in by_worker.items()}
    assert seeds[1] == seeds[0] + 1
    for key in ("np", "py", "ember"):  # workers draw different numbers
        assert by_worker[0][0][key] != by_worker[1][0][key]
    ember.manual_seed(4)
    other = as_lists(DataLoader(Randomised(8), batch_size=2, num_workers=2))
    assert other[0]["np"] != first[0]["np"]  # another base seed, other draws
    assert get_worker_info() is None


def test_worker_init_fn_runs_in_each_worker():
    def init(wid):
        info = get_worker_info()
        assert info.id == wid and info.num_workers == 2
        info.dataset.shape = (wid + 1,)  # the worker's own copy of the dataset

    loader = DataLoader(Items(4, (1,)), batch_size=1, num_workers=2, worker_init_fn=init)
    shapes = [b[0].shape[1] for b in loader]
    assert shapes == [1, 2, 1, 2]


def test_in_order_false_yields_ready_batches_first():
    ds = Sleepy(4, delays={0: 0.5})
    got = as_lists(DataLoader(ds, batch_size=1, num_workers=2, in_order=False))
    assert sorted(v for b in got for v in b) == [0, 1, 2, 3] and got[0] != [0]
    assert as_lists(DataLoader(ds, batch_size=1, num_workers=2)) == [[0], [1], [2], [3]]


def test_batches_travel_through_shared_memory():
    loader = DataLoader(Items(4, (64, 64)), batch_size=2, num_workers=1)
    batch = next(iter(loader))
    base = batch[0].numpy()
    while not isinstance(base, memoryview):
        base = base.base
    assert isinstance(base.obj, mmap.mmap)
    assert batch[0].numpy().flags.writeable and batch[0][1, 0, 0].item() == 1.0
    # only a small pickle goes through the pipe
    payload = W.encode([np.ones((256, 256)), "meta"], os.path.join(W.SHM_DIR, "ember_t_probe"))
    try:
        assert len(payload[0]) < 1000 and payload[3] >= 256 * 256 * 8
        out = W.decode(payload)
        assert out[1] == "meta" and out[0].sum() == 256 * 256
    finally:
        W.discard(payload)
    assert not os.path.exists(payload[1])


def test_failed_block_write_leaves_no_file(monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")

    path = os.path.join(W.SHM_DIR, f"ember_t_full_{os.getpid()}")
    monkeypatch.setattr(W.os, "pwrite", full)
    with pytest.raises(OSError, match="No space left"):
        W.encode(np.ones(1 << 16), path)
    assert not os.path.exists(path)


def test_no_blocks_or_processes_left_behind():
    pattern = f"ember_dl_{os.getpid()}_"
    it = iter(DataLoader(Items(40, (64, 64)), batch_size=2, num_workers=2, prefetch_factor=4))
    next(it)
    time.sleep(0.2)  # let workers fill their prefetched blocks
    del it
    assert mp.active_children() == []
    assert [f for f in os.listdir(W.SHM_DIR) if f.startswith(pattern)] == []


def test_break_shuts_workers_down_quickly():
    loader = DataLoader(Sleepy(100, default=0.01), batch_size=2, num_workers=2)
    t0 = time.monotonic()
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert mp.active_children() == []
    assert time.monotonic() - t0 < 5


def test_persistent_workers_reused_after_break():
    loader = DataLoader(Items(10), batch_size=2, num_workers=2, persistent_workers=True)
    it = iter(loader)
    next(it)
    pids = [w.pid for w in it._pool.workers]
    assert as_lists(loader) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [w.pid for w in loader._iterator._pool.workers] == pids
    del it, loader
    assert mp.active_children() == []


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_other_start_methods(method):
    ctx = mp.get_context(method) if method == "forkserver" else method
    loader = DataLoader(Items(6), batch_size=2, num_workers=1, multiprocessing_context=ctx)
    assert as_lists(loader) == [[0, 1], [2, 3], [4, 5]]
    assert mp.active_children() == []
