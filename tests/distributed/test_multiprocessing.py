"""ember.multiprocessing: shared-memory tensors through Queues and Process arguments, spawn
with error propagation, Hogwild training of one shared model. Every wait has a timeout."""

import numpy as np
import pytest

import ember
import ember.multiprocessing as mp
import ember.nn as nn

TIMEOUT = 60


def _fill_from_queue(q, done):
    t = q.get(timeout=TIMEOUT)
    t.add_(1)  # in place: the parent sees it, since the memory is shared
    t[0] = 42.0
    done.put(("shared", t.is_shared()))


def _fill_arg(t, v):
    t.fill_(v)


def test_share_memory_and_is_shared():
    t = ember.arange(6.0)
    assert not t.is_shared()
    assert t.share_memory_() is t and t.is_shared()
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0))
    assert t[2:].is_shared()  # a view of shared memory is shared
    assert t.share_memory_() is t
    m = nn.Linear(3, 2)
    m.share_memory()
    assert all(p.is_shared() for p in m.parameters())
    assert not ember.ones(2).is_shared()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_queue_passes_shared_memory_not_copies(method):
    ctx = mp.get_context(method)
    q, done = ctx.Queue(), ctx.Queue()
    t = ember.zeros(5, dtype=ember.float64)
    p = ctx.Process(target=_fill_from_queue, args=(q, done))
    p.start()
    q.put(t)
    assert done.get(timeout=TIMEOUT) == ("shared", True)
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert t.is_shared()
    np.testing.assert_array_equal(t.numpy(), [42.0, 1, 1, 1, 1])


def test_process_arguments_share_memory():
    ctx = mp.get_context("spawn")
    t = ember.zeros(2, 3)[:, 1:]  # a strided view travels too
    base = t
    p = ctx.Process(target=_fill_arg, args=(t, 7.0))
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0
    np.testing.assert_array_equal(base.numpy(), np.full((2, 2), 7.0))


def _ok(i, out):
    out[i] = i + 1.0


def _fails(i):
    if i == 1:
        raise ValueError("spawned process one failed")
    import time
    time.sleep(30)  # the others are stopped when one fails


def test_spawn_runs_and_propagates_errors():
    out = ember.zeros(3).share_memory_()
    mp.spawn(_ok, args=(out,), nprocs=3)
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.0, 3.0])
    import time
    t0 = time.monotonic()
    with pytest.raises(mp.ProcessRaisedException, match="spawned process one failed") as e:
        mp.spawn(_fails, nprocs=2)
    assert e.value.error_index == 1 and "Traceback" in str(e.value)
    assert time.monotonic() - t0 < 25
    ctx = mp.spawn(_ok, args=(out,), nprocs=1, join=False)
    while not ctx.join(TIMEOUT):
        pass


def _hogwild(rank, model, steps):
    ember.manual_seed(rank)
    opt = ember.optim.SGD(model.parameters(), lr=0.05)
    w_true = ember.tensor([[1.0, -2.0, 0.5]])
    for _ in range(steps):
        x = ember.randn(16, 3)
        loss = ((model(x) - x @ w_true.T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_hogwild_training_of_one_shared_model():
    ember.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    model.share_memory()
    before = model.weight.detach().clone()
    mp.spawn(_hogwild, args=(model, 100), nprocs=2)
    after = model.weight.detach().numpy()
    assert not np.allclose(after, before.numpy())  # the workers' updates reached us
    np.testing.assert_allclose(after, [[1.0, -2.0, 0.5]], atol=0.05)


def test_sharing_strategy_and_non_leaf_refusal():
    assert mp.get_sharing_strategy() in mp.get_all_sharing_strategies()
    with pytest.raises(ValueError):
        mp.set_sharing_strategy("carrier")
    x = ember.ones(2, requires_grad=True) * 2
    from multiprocessing.reduction import ForkingPickler
    with pytest.raises(RuntimeError, match="non-leaf"):
        ForkingPickler.dumps(x)
    assert ForkingPickler.loads(ForkingPickler.dumps(x.detach())).tolist() == [2.0, 2.0]
