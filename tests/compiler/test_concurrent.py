"""Independent heavy ops of a compiled step run as pairs (``ember/compiler/_concurrent.py``):
the pairs are made, the step stays equal to eager at one and two threads, and ``run_pair``
restores the thread settings it changes, errors included."""

import copy

import numpy as np
import pytest

import ember
from ember import _parallel, _threads
from ember import nn
from ember.compiler import _concurrent

TOL = {ember.float32: 1e-5, ember.float64: 1e-10}


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 10))


def _mlp():
    return nn.Sequential(nn.Linear(300, 257), nn.ReLU(), nn.Linear(257, 263), nn.Tanh(),
                         nn.Linear(263, 10))


CASES = {"cnn": (_cnn, lambda: ember.randn(13, 3, 28, 28)),
         "mlp": (_mlp, lambda: ember.randn(129, 300))}


def _close(a, b, tol, what):
    a, b = np.asarray(a), np.asarray(b)
    err = float(np.abs(a - b).max())
    assert err <= tol * max(1.0, float(np.abs(b).max())), f"{what}: {err:.3g}"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_paired_step_matches_eager(name, dtype, threads):
    make, data = CASES[name]
    ember.manual_seed(3)
    ref = make().to(dtype)
    model = copy.deepcopy(ref)
    opts = [ember.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (ref, model)]
    ys = ember.randint(0, 10, (data().shape[0],))

    def step_of(m, opt):
        def step(x):
            loss = nn.functional.cross_entropy(m(x), ys)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        return step
    eager, compiled = step_of(ref, opts[0]), ember.compile(step_of(model, opts[1]))
    batches = [data().to(dtype) for _ in range(3)]
    if name == "mlp":  # a non-contiguous input too
        batches[1] = ember.randn(300, 129).to(dtype).t()
    prev = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        for i in range(20):
            x = batches[i % 3]
            _close(compiled(x).detach().numpy(), eager(x).detach().numpy(), TOL[dtype],
                   f"loss at step {i}")
    finally:
        ember.set_num_threads(prev)
    assert len(compiled.entries) == 1
    assert compiled.pass_stats["concurrent_pairs"] >= (2 if name == "cnn" else 1)
    for p, q in zip(model.parameters(), ref.parameters()):
        _close(p.detach().numpy(), q.detach().numpy(), TOL[dtype] * 10, "parameter")


def test_pairs_leave_the_values_unchanged(monkeypatch):
    """The same calls compute each value: the step's bits with and without pairs."""
    out = []
    for enabled in (False, True):
        monkeypatch.setattr(_concurrent, "ENABLED", enabled)
        ember.manual_seed(5)
        model = _cnn().double()
        opt = ember.optim.SGD(model.parameters(), lr=0.01)
        x, y = ember.randn(9, 3, 28, 28).double(), ember.randint(0, 10, (9,))

        def step():
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        c = ember.compile(step)
        losses = [c().item() for _ in range(4)]
        assert (c.pass_stats.get("concurrent_pairs", 0) > 0) == enabled
        out.append((losses, [p.detach().numpy().copy() for p in model.parameters()]))
        ember.compiler.reset()
    assert np.allclose(out[0][0], out[1][0], rtol=1e-13, atol=0)
    for a, b in zip(out[0][1], out[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def _settings():
    ctl = _threads.blas_controls()
    return (_threads._n[0], getattr(_parallel._worker, "in_pool", False),
            None if ctl is None else ctl[0]())


@pytest.mark.parametrize("threads", [1, 2])
def test_run_pair_results_and_restored_settings(threads):
    def fa(ctx, a, b):
        return a @ b

    def fb(ctx, a):
        assert _threads._n[0] == 1 or threads == 1  # both sides run as at one thread
        return a.sum(0)
    a = np.arange(12.0).reshape(3, 4)
    b = np.ones((4, 2))
    prev = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        before = _settings()
        ra, rb = _concurrent.run_pair(fa, (a, b), fb, (a,))
        np.testing.assert_array_equal(ra, a @ b)
        np.testing.assert_array_equal(rb, a.sum(0))
        assert _settings() == before

        def boom(ctx, *args):
            raise ValueError("boom")
        for first, second in ((boom, fb), (fa, boom)):
            with pytest.raises(ValueError, match="boom"):
                _concurrent.run_pair(first, (a, b) if first is fa else (a,), second,
                                     (a,) if second is fb else (a, b))
            assert _settings() == before
    finally:
        ember.set_num_threads(prev)


def test_capture_runs_single_threaded_and_restores():
    """The capture's own run is at one thread (see ``single_threaded``); the replays and
    the caller's settings are left as they were."""
    seen = []
    w = ember.randn(64, 64)

    def f(x):
        seen.append(ember.get_num_threads())
        return (x @ w).relu().sum()
    prev = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        before = _settings()
        c = ember.compile(f)
        x = ember.randn(32, 64)
        np.testing.assert_allclose(c(x).item(), f(x).item(), rtol=1e-6)
        assert seen[0] == 1 and seen[-1] == 2  # the capture, then the eager call
        assert _settings() == before
        c(x)
        assert len(seen) == 2  # the replay runs the graph, not f
    finally:
        ember.set_num_threads(prev)
