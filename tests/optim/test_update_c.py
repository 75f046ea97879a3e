"""The C updates of the flat (foreach) path (``ember/optim/_update_c.py``, issue 25): the
NumPy update's results bit for bit, over every option, float32 and float64, at one and two
threads; PyTorch's to rounding."""

import numpy as np
import pytest

import ember
from ember.optim import _update_c

torch = pytest.importorskip("torch")

SHAPES = [(40, 33), (33,), (), (0,), (5, 1, 3)]
SGD_CASES = [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9, dampening=0.3),
             dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
             dict(lr=0.1, weight_decay=0.1, maximize=True),
             dict(lr=0.05, momentum=0.5, weight_decay=0.2, maximize=True, dampening=0.1)]
ADAM_CASES = [("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.01, weight_decay=0.1)),
              ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
              ("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.01, amsgrad=True, betas=(0.8, 0.9))),
              ("AdamW", dict(lr=0.02, weight_decay=0.0, eps=1e-3))]
CASES = [("SGD", kw) for kw in SGD_CASES] + ADAM_CASES


@pytest.fixture
def no_kernel(monkeypatch):
    def off():
        monkeypatch.setattr(_update_c, "_LIB", {None: None})
    return off


def _problem(dtype, steps=4, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    return init, grads


def _run(lib, name, kw, init, grads, foreach=True, threads=1, transposed=False):
    if lib is ember:
        ember.set_num_threads(threads)
    ps = [lib.nn.Parameter(lib.tensor(a.copy())) for a in init]
    opt = getattr(lib.optim, name)(ps, foreach=foreach, **kw)
    for gs in grads:
        for p, g in zip(ps, gs):
            if transposed and g.ndim == 2:  # a non-contiguous gradient
                p.grad = lib.tensor(np.ascontiguousarray(g.T)).t()
            else:
                p.grad = lib.tensor(g.copy())
        opt.step()
    return [p.detach().numpy().copy() for p in ps], opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", CASES)
def test_kernel_equals_numpy_update_and_torch(name, kw, dtype, no_kernel):
    if _update_c.kernel("sgd", dtype) is None:
        pytest.skip("no C compiler")
    before = ember.get_num_threads()
    init, grads = _problem(dtype)
    try:
        c_one, opt = _run(ember, name, kw, init, grads)
        assert opt._flat  # the flat path ran, with the kernel
        c_two, _ = _run(ember, name, kw, init, grads, threads=2)
        c_t, _ = _run(ember, name, kw, init, grads, transposed=True)
        loop, _ = _run(ember, name, kw, init, grads, foreach=False)
        no_kernel()
        flat_np, _ = _run(ember, name, kw, init, grads)
    finally:
        ember.set_num_threads(before)
    ref, _ = _run(torch, name, kw, init, grads)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b, c, d, e, t in zip(c_one, c_two, c_t, loop, flat_np, ref):
        for other in (b, c, d, e):
            np.testing.assert_array_equal(a, other)
        np.testing.assert_allclose(a, t, rtol=tol, atol=tol)


def test_kernel_is_used_and_not_for_numpy_scalars_or_other_updates(monkeypatch):
    if _update_c.kernel("sgd", np.float32) is None:
        pytest.skip("no C compiler")
    p = ember.nn.Parameter(ember.zeros(10))
    calls = []
    real = _update_c.kernel
    monkeypatch.setattr(_update_c, "kernel", lambda *a: calls.append(a[0]) or real(*a))
    for opt in (ember.optim.SGD([p], lr=0.1, momentum=0.9), ember.optim.AdamW([p])):
        p.grad = ember.ones(10)
        opt.step()
        opt.step()
        g = opt.param_groups[0]
        assert opt._flat_kernel(g, np.dtype(np.float32), tuple(opt._elem_state)) is not None
        g["lr"] = np.float64(0.1)  # NumPy would compute lr * g in float64: NumPy's update
        assert opt._flat_kernel(g, np.dtype(np.float32), tuple(opt._elem_state)) is None
        g["lr"] = ember.tensor(0.1)  # a tensor lr is read as a Python float
        assert opt._flat_kernel(g, np.dtype(np.float32), tuple(opt._elem_state)) is not None
    # the kernels, and their task forms for the pool's batches (``_update_c.call_address``)
    assert {"sgd", "adam"} <= set(calls) <= {"sgd", "adam", "sgd_call", "adam_call"}

    class MySGD(ember.optim.SGD):
        def _update(self, group, p, g, s, sc, first):
            p -= 1.0

    opt = MySGD([p], lr=0.1, momentum=0.9)
    assert opt._flat_kernel(opt.param_groups[0], np.dtype(np.float32),
                            ("momentum_buffer",)) is None
    before = p.detach().numpy().copy()
    p.grad = ember.ones(10)
    opt.step()
    np.testing.assert_array_equal(p.detach().numpy(), before - 1)


def test_amsgrad_nan_propagates_as_numpy_maximum(no_kernel):
    if _update_c.kernel("adam", np.float32) is None:
        pytest.skip("no C compiler")
    init = [np.array([1.0, 2.0, 3.0], np.float32)]
    grads = [[np.array([np.nan, 1.0, np.inf], np.float32)], [np.ones(3, np.float32)]]
    got, _ = _run(ember, "Adam", dict(lr=0.1, amsgrad=True), init, grads)
    no_kernel()
    want, _ = _run(ember, "Adam", dict(lr=0.1, amsgrad=True), init, grads)
    np.testing.assert_array_equal(got[0], want[0])


BIG_SHAPES = [(300, 500), (7,), (1000, 131), (0,)]  # 281K values: split over two threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)),
                                     ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True,
                                                  weight_decay=0.01)),
                                     ("AdamW", dict(lr=0.01)),
                                     ("Adam", dict(lr=0.01, amsgrad=True))])
def test_split_update_as_pool_tasks_equals_one_thread_bit_for_bit(name, kw, dtype,
                                                                   monkeypatch):
    # two threads: the update's pieces go to the pool as C tasks (``_step_tasks``) without
    # the GIL; the same bits as one thread and as the Python-job split, PyTorch's to rounding
    from ember import _parallel as P
    if _update_c.call_address("sgd", dtype) is None or not P.blas_batch_ok():
        pytest.skip("no C compiler or no pool batches")
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s).astype(dtype) for s in BIG_SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in BIG_SHAPES] for _ in range(3)]
    before = ember.get_num_threads()
    batches = []
    try:
        one, _ = _run(ember, name, kw, init, grads)
        monkeypatch.setattr(P, "blas_trace", lambda posted, table: batches.append(len(table)))
        two, _ = _run(ember, name, kw, init, grads, threads=2)
        two_t, _ = _run(ember, name, kw, init, grads, threads=2, transposed=True)
        monkeypatch.setattr(P, "blas_batch_ok", lambda: False)
        jobs, _ = _run(ember, name, kw, init, grads, threads=2)
    finally:
        ember.set_num_threads(before)
    assert len(batches) == 6 and min(batches) >= 2  # one batch a step, pieces of two parts
    ref, _ = _run(torch, name, kw, init, grads)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b, c, d, t in zip(one, two, two_t, jobs, ref):
        for other in (b, c, d):
            np.testing.assert_array_equal(a, other)
        np.testing.assert_allclose(a, t, rtol=tol, atol=tol)
