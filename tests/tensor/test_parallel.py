"""ember._parallel: large ufuncs and reductions split over threads give NumPy's results
(elementwise: exactly; reductions: the same at every thread count, and as accurate as
NumPy's pairwise sum against a float64 reference)."""

import math
import os

import numpy as np
import pytest

import ember
from ember import _parallel as P


def _big(n=P.MIN_SIZE * 3 + 17, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


@pytest.mark.parametrize("ufunc", [np.add, np.multiply, np.subtract, np.maximum])
def test_binary_equals_numpy(ufunc, threads):
    threads(2)
    a, b = _big(seed=1), _big(seed=2)
    np.testing.assert_array_equal(P.elementwise(ufunc, a, b), ufunc(a, b))
    np.testing.assert_array_equal(P.elementwise(ufunc, a, 2.5), ufunc(a, 2.5))


@pytest.mark.parametrize("ufunc", [np.tanh, np.exp, np.negative])
def test_unary_and_in_place_equal_numpy(ufunc, threads):
    threads(2)
    a = _big(7 * 40000, seed=3).reshape(-1, 7)[:, :5].copy()  # 2-D, contiguous
    want = ufunc(a)
    np.testing.assert_array_equal(P.elementwise(ufunc, a), want)
    P.elementwise(ufunc, a, out=a)
    np.testing.assert_array_equal(a, want)


def test_broadcasting_and_strided_operands_fall_back_to_numpy(threads):
    threads(2)
    a = _big(seed=4).reshape(-1, 1)[: P.MIN_SIZE]
    b = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(P.elementwise(np.add, a, b), a + b)
    s = _big(seed=5)[::2]
    np.testing.assert_array_equal(P.elementwise(np.add, s, s), s + s)


@pytest.mark.parametrize("n", [P.MIN_SIZE, P.MIN_SIZE + 1, 3 * P.CHUNK + 5, 1 << 20,
                               (1 << 22) + 12345])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_is_thread_count_independent_and_accurate(n, dtype, threads):
    a = _big(n, dtype, seed=n) + dtype(0.25)
    threads(1)
    one = P.reduce(np.add, a)
    threads(2)
    two = P.reduce(np.add, a)
    assert one == two  # the same chunks, the same order: bitwise equal
    ref = a.astype(np.float64).sum()
    # as accurate as NumPy's own pairwise sum (within a few ulps of its error bound)
    err, np_err = abs(float(two) - ref), abs(float(a.sum()) - ref)
    assert err <= max(4 * np_err, 8 * np.finfo(dtype).eps * np.abs(a).sum())


@pytest.mark.parametrize("axis", [-1, (1, 2), 2])
def test_trailing_axis_reductions_equal_numpy_exactly(axis, threads):
    threads(2)
    a = _big(64 * 8 * 600, seed=7).reshape(64, 8, 600)
    for ufunc in (np.add, np.maximum, np.minimum):
        np.testing.assert_array_equal(P.reduce(ufunc, a, axis), ufunc.reduce(a, axis))
        np.testing.assert_array_equal(P.reduce(ufunc, a, axis, keepdims=True),
                                      ufunc.reduce(a, axis, keepdims=True))


def test_max_propagates_nan_and_keepdims(threads):
    threads(2)
    a = _big(seed=8)
    a[P.CHUNK * 2 + 3] = np.nan
    assert np.isnan(P.reduce(np.maximum, a))
    b = _big(seed=9).reshape(-1, 1)
    assert P.reduce(np.maximum, b, None, keepdims=True).shape == (1, 1)
    assert P.reduce(np.maximum, b) == b.max()


def test_an_error_in_a_worker_reaches_the_caller(threads):
    threads(2)

    def boom(s, e):
        if s > 0:
            raise ValueError("from a worker")

    with pytest.raises(ValueError, match="from a worker"):
        P.run_split(boom, [(0, 1), (1, 2)])


def test_ember_ops_use_it_and_agree_with_torch(threads):
    torch = pytest.importorskip("torch")
    threads(2)
    x = _big(1 << 20, seed=10)
    t = ember.tensor(x)
    tt = torch.tensor(x)
    np.testing.assert_allclose(t.sum().item(), tt.sum().item(), rtol=1e-5)
    np.testing.assert_allclose(t.mean().item(), tt.mean().item(), rtol=1e-5, atol=1e-8)
    assert t.amax().item() == tt.amax().item() and t.amin().item() == tt.amin().item()
    np.testing.assert_allclose((t * t + t).tanh().numpy(), (tt * tt + tt).tanh().numpy(),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_rows_split_over_threads_equal_the_serial_kernel(fn, threads):
    torch = pytest.importorskip("torch")
    from ember.ops import nn as K
    x = np.random.default_rng(11).standard_normal((600, 2048)).astype(np.float32)
    kernel = K._softmax_np if fn == "softmax" else K._log_softmax_np
    threads(2)
    got = getattr(ember.nn.functional, fn)(ember.tensor(x), -1).numpy()
    np.testing.assert_array_equal(got, kernel(x, -1))  # rows are independent: bit for bit
    want = getattr(torch.nn.functional, fn)(torch.tensor(x), -1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,k", [((600, 2048), 1), ((3, 200, 2048), 1), ((40, 30, 1024), 2)])
def test_layer_norm_rows_split_over_threads_equal_one_thread(shape, k, threads):
    """Layer norm forward and backward (values, weight and bias gradients) are bitwise the
    same at 1 and 2 threads, and agree with PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x = rng.standard_normal(shape).astype(np.float32)
    ns = shape[-k:]
    w, b = (rng.standard_normal(ns).astype(np.float32) for _ in range(2))
    g = rng.standard_normal(shape).astype(np.float32)

    def run(n):
        threads(n)
        xt, wt, bt = (ember.tensor(a, requires_grad=True) for a in (x, w, b))
        y = ember.nn.functional.layer_norm(xt, ns, wt, bt)
        y.backward(ember.tensor(g))
        return [a.detach().numpy() for a in (y, xt.grad, wt.grad, bt.grad)]

    one, two = run(1), run(2)
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.layer_norm(xt, ns, wt, bt)
    y.backward(torch.tensor(g))
    for a, c, tol in zip(two, (y, xt.grad, wt.grad, bt.grad), (1e-5, 1e-4, 1e-3, 1e-4)):
        np.testing.assert_allclose(a, c.detach().numpy(), rtol=tol, atol=tol)


def test_cross_entropy_rows_split_over_threads_equal_one_thread(threads):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    x = rng.standard_normal((512, 4096)).astype(np.float32)
    t = rng.integers(0, 4096, 512)

    def run(n):
        threads(n)
        xt = ember.tensor(x, requires_grad=True)
        loss = ember.nn.functional.cross_entropy(xt, ember.tensor(t))
        loss.backward()
        return loss.detach().numpy(), xt.grad.numpy()

    (l1, g1), (l2, g2) = run(1), run(2)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(g1, g2)
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(xt, torch.tensor(t))
    loss.backward()
    np.testing.assert_allclose(l2, loss.item(), rtol=1e-5)
    np.testing.assert_allclose(g2, xt.grad.numpy(), rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("n", [P.MIN_SIZE, P.MIN_SIZE + 1, P.SUM_ROW * 5000 + 5,
                               3 * P.MIN_SIZE + 7])
@pytest.mark.parametrize("kind", ["normal", "uniform", "offset", "lognormal", "cancel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["c", "numpy"])
def test_large_sum_and_mean_accuracy_against_float64_and_torch(n, kind, dtype, kernel, threads,
                                                               monkeypatch):
    """Large float sums (float32: fixed chunks of rows summed in float lanes by the C kernel,
    or without a C compiler short rows by einsum, their sums added in float64; float64:
    fixed chunks, NumPy's pairwise sums) are as accurate as PyTorch's, at one and two
    threads, and equal at both."""
    torch = pytest.importorskip("torch")
    if kernel == "numpy":
        monkeypatch.setattr(P, "_sum_kernel", [None])
    elif dtype is np.float64:
        pytest.skip("float64 sums have one path")
    elif P._sum_c() is None:
        pytest.skip("no C compiler")
    rng = np.random.default_rng(n)
    x = {"normal": lambda: rng.standard_normal(n), "uniform": lambda: rng.random(n),
         "offset": lambda: rng.standard_normal(n) * 0.1 + 100,
         "lognormal": lambda: rng.lognormal(0, 3, n) * rng.choice([-1, 1], n),
         "cancel": lambda: np.concatenate([rng.standard_normal(n // 2) + 1e3,
                                           -(rng.standard_normal(n - n // 2) + 1e3)])}[kind]()
    x = x.astype(dtype)
    ref = math.fsum(x.astype(np.float64))  # correctly rounded: the reference
    results = []
    for k in (1, 2):
        threads(k)
        results.append((float(ember.tensor(x).sum()), float(ember.tensor(x).mean())))
    assert results[0] == results[1]
    s, mean = results[0]
    # within 4x the error of PyTorch's or NumPy's own sum (whichever is larger: both are
    # a few ulps from the exact sum, and which is closer varies with the data)
    t = torch.from_numpy(x)
    bound = 4 * max(abs(float(t.sum()) - ref), abs(float(np.add.reduce(x)) - ref),
                    float(np.spacing(dtype(abs(ref)))))
    assert abs(s - ref) <= bound, (s, float(t.sum()), ref)
    bound = 4 * max(abs(float(t.mean()) - ref / n), abs(float(x.mean()) - ref / n),
                    float(np.spacing(dtype(abs(ref / n)))))
    assert abs(mean - ref / n) <= bound, (mean, float(t.mean()), ref / n)


@pytest.mark.parametrize("n", [P.SUM_CHUNK - 1, P.SUM_CHUNK, P.SUM_CHUNK + P.SUM_ROW + 3,
                               P.MIN_SIZE + 5])
def test_float_sum_kernel_chunks_and_tails(n, threads, monkeypatch):
    """The C float32 sum over chunk and row tails, on a strided view made contiguous and
    under ``keepdim``, equals the float64 reference to float32 rounding at 1 and 2 threads;
    the NumPy fallback gives a float32 sum as close."""
    if P._sum_c() is None:
        pytest.skip("no C compiler")
    x = np.random.default_rng(n).standard_normal(2 * n).astype(np.float32)[::2] + 1
    ref = math.fsum(x.astype(np.float64))
    got = []
    for k in (1, 2):
        threads(k)
        got.append(P._float_sum(np.ascontiguousarray(x)))
        assert got[-1].dtype == np.float32
    assert got[0] == got[1]
    assert abs(float(got[0]) - ref) <= np.spacing(np.float32(abs(ref)))
    t = ember.tensor(x.reshape(-1, 1))
    if n >= P.MIN_SIZE:  # (smaller sums are NumPy's own)
        assert float(t.sum()) == float(got[0])
        assert float(t.sum(dim=(0, 1), keepdim=True)[0, 0]) == float(got[0])
    monkeypatch.setattr(P, "_sum_kernel", [None])
    assert abs(float(P._float_sum(np.ascontiguousarray(x))) - ref) <= \
        4 * np.spacing(np.float32(abs(ref)))


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_flat_optimizer_update_split_over_threads_equals_one_thread_and_torch(opt, threads):
    """A flat (foreach) update over more than ``optimizer._PAR_MIN`` parameters runs its
    chunks on several threads: the same parameters, bit for bit, as one thread, and
    PyTorch's to rounding."""
    torch = pytest.importorskip("torch")
    from ember.optim import optimizer as O
    rng = np.random.default_rng(5)
    shapes = [(700, 513), (513,), (3, 7)]  # odd sizes: chunk tails
    assert sum(int(np.prod(s)) for s in shapes) > O._PAR_MIN
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    kw = {"SGD": {"lr": 0.1, "momentum": 0.9}, "Adam": {"lr": 0.01}}[opt]

    def run(mod, n):
        if mod is ember:
            threads(n)
        ps = [mod.tensor(a.copy(), requires_grad=True) for a in init]
        o = getattr(mod.optim, opt)(ps, **kw)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = mod.tensor(g)
            o.step()
        return [p.detach().numpy().copy() for p in ps]

    one, two = run(ember, 1), run(ember, 2)
    for a, b, c in zip(one, two, run(torch, 1)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- GEMMs (issue 25)
GEMMS = [((37, 53), (53, 301)),        # more columns than rows: cut by columns
         ((301, 53), (53, 37)),        # more rows: cut by rows
         ((16, 9, 13), (16, 13, 70)),  # a stack: cut by matrices
         ((1, 6, 25), (1, 25, 999)),   # a stack of one (ungrouped convolution)
         ((3, 5, 7), (3, 7, 11)),      # a short stack: BLAS's own threads
         ((0, 8), (8, 300)), ((40, 0), (0, 50)),
         ((20, 12), (12, 785))]        # columns cut on multiples of 8, last part short


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sa,sb", GEMMS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_gemm_split_equals_numpy(sa, sb, dtype, n, threads, monkeypatch):
    monkeypatch.setattr(P, "GEMM_SPLIT_MIN", 1)
    threads(n)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    want = np.matmul(a, b)
    got = P.gemm(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **tol)
    # transposed (non-contiguous) operands and a preallocated output
    at = np.ascontiguousarray(np.swapaxes(a, -1, -2))
    bt = np.ascontiguousarray(np.swapaxes(b, -1, -2))
    out = np.full(want.shape, np.nan, dtype)
    assert P.gemm(np.swapaxes(at, -1, -2), np.swapaxes(bt, -1, -2), out=out) is out
    np.testing.assert_allclose(out, want, **tol)


def test_gemm_leaves_blas_threads_as_they_were(threads, monkeypatch):
    from ember._threads import blas_controls
    ctl = blas_controls()
    if ctl is None:
        pytest.skip("no OpenBLAS thread control: GEMMs keep BLAS's own threads")
    monkeypatch.setattr(P, "GEMM_SPLIT_MIN", 1)
    threads(2)
    before = ctl[0]()
    a = np.ones((64, 64), np.float32)
    P.gemm(a, np.ones((64, 100), np.float32))      # split
    P.gemm(a, a)                                    # one part, one thread
    assert ctl[0]() == before
    with pytest.raises(ValueError):
        P.gemm(np.ones((64, 65)), np.ones((64, 65)), out=np.empty((64, 65)))
    assert ctl[0]() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mid_size_linear_agrees_with_torch_at_two_threads(dtype, threads):
    # 64 x 400 x 120: between the limits of linalg's small-GEMM path (LeNet's first Linear)
    from tests.parity.helpers import check
    pytest.importorskip("torch")
    threads(2)
    # sums of 400 products of values in [-2, 2]: float32 rounding reaches ~5e-5 absolute
    atol = 1e-4 if dtype == np.float32 else None
    check(lambda m, x, w, b: m.nn.functional.linear(x, w, b), [(64, 400), (120, 400), (120,)],
          dtype, atol=atol)
    check(lambda m, x, w: m.matmul(x, w), [(64, 400), (400, 120)], dtype, atol=atol)


# ---------------------------------------------------------------------- ReLU (issue 25)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_relu_split_agrees_with_torch_and_one_thread(dtype, threads, monkeypatch):
    from ember.ops import elementwise as E
    from tests.parity.helpers import check
    pytest.importorskip("torch")
    monkeypatch.setattr(E, "_RELU_SPLIT", 1000)  # small sizes take the split path
    monkeypatch.setattr(P, "BLOCK", 700)         # several blocks per thread, odd edges
    threads(2)
    check(lambda m, x: m.relu(x), [(7, 13, 31)], dtype)
    check(lambda m, x: m.nn.functional.relu(x), [(31, 67)], dtype, noncontig=True)
    check(lambda m, x: m.relu(x), [(0, 5)], dtype)
    x = _big(5003, dtype)
    x[::97] = np.nan
    g = _big(5003, dtype, seed=1)
    res = []
    for n in (1, 2, 3):
        threads(n)
        t = ember.tensor(x, requires_grad=True)
        y = ember.relu(t)
        y.backward(ember.tensor(g))
        res.append((y.detach().numpy(), t.grad.numpy()))
    np.testing.assert_array_equal(res[0][0], np.maximum(x, 0))
    for y, gx in res[1:]:
        np.testing.assert_array_equal(y, res[0][0])
        np.testing.assert_array_equal(gx, res[0][1])


def test_large_relu_in_place(threads, monkeypatch):
    from ember.ops import elementwise as E
    monkeypatch.setattr(E, "_RELU_SPLIT", 1000)
    threads(2)
    x = _big(4099)
    t = ember.tensor(x, requires_grad=True)
    y = t * 1.0
    ember.nn.functional.relu(y, inplace=True)
    y.sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), np.maximum(x, 0))
    np.testing.assert_array_equal(t.grad.numpy(), (x > 0).astype(np.float32))


def test_a_split_inside_a_pool_part_runs_inline(threads, monkeypatch):
    """A part that splits again (a GEMM inside a split kernel) must not wait on the pool
    it occupies."""
    monkeypatch.setattr(P, "GEMM_SPLIT_MIN", 1)
    threads(2)
    a = np.random.default_rng(0).standard_normal((40, 300)).astype(np.float32)
    out = [None, None]

    def part(s, e):
        out[s] = P.gemm(a.T, a)
    P.run_split(part, [(0, 1), (1, 2)])
    np.testing.assert_allclose(out[1], a.T @ a, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[0], a.T @ a, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("value, expected", [("", None), ("abc", None), ("0", None),
                                             ("3", 3), ("4,2", 4), (" 5 ", 5)])
def test_omp_num_threads_is_read_as_openmp_does(monkeypatch, value, expected):
    # an empty or unreadable setting means every core (PyTorch's reading), never an error
    # at import; a list takes its first level
    from ember import _threads
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _threads._env_threads() == (expected or os.cpu_count() or 1)


# ---------------------------------------------------------------------- spin-then-block hand-offs
def test_spin_wait_returns_on_a_change_or_after_its_limit():
    spin = P._spinner()
    if spin is None:
        pytest.skip("no C compiler (or EMBER_SPIN_US=0): hand-offs block at once")
    import threading
    import time
    fn = spin[0]
    word = np.zeros(1, np.int64)
    t = time.perf_counter()
    assert fn(word.ctypes.data, 0, 2_000_000) == 0  # unchanged: gives up after 2 ms
    assert time.perf_counter() - t >= 0.002
    word[0] = 5
    assert fn(word.ctypes.data, 0, 10**9) == 1  # already changed: at once
    timer = threading.Timer(0.01, lambda: word.__setitem__(0, 6))
    timer.start()
    t = time.perf_counter()
    assert fn(word.ctypes.data, 5, 10**9) == 1  # changed by another thread while spinning
    assert time.perf_counter() - t < 0.5
    timer.join()


@pytest.mark.parametrize("spinning", [True, False])
def test_splits_give_the_same_results_spinning_or_blocking(spinning, threads, monkeypatch):
    threads(2)
    if not spinning:
        monkeypatch.setattr(P, "_spin", [None])
    monkeypatch.setattr(P, "_load", [-1.0, True])
    monkeypatch.setattr(P, "_LOAD_EVERY", 1e9)  # the machine counts as free: spin if able
    a = _big()
    for _ in range(50):  # back-to-back hand-offs, as in a training step
        assert P.run_split(lambda s, e: s * 2 + e, [(0, 1), (1, 2), (2, 3)]) == [1, 4, 7]
    np.testing.assert_array_equal(P.elementwise(np.multiply, a, a), a * a)
    with pytest.raises(ValueError, match="from a worker"):
        P.run_split(lambda s, e: (_ for _ in ()).throw(ValueError("from a worker")) if s
                    else None, [(0, 1), (1, 2)])


def test_spinning_is_off_on_a_busy_machine_and_with_the_switch(monkeypatch):
    import builtins
    import io
    monkeypatch.setattr(P, "_load", [-1.0, True])
    real_open = builtins.open

    def fake(text):
        return lambda path, *a, **k: io.BytesIO(text) if path == "/proc/loadavg" else \
            real_open(path, *a, **k)
    n = os.cpu_count() or 1
    monkeypatch.setattr(builtins, "open", fake(f"0.1 0.1 0.1 {n + 3}/300 1\n".encode()))
    assert P._spin_ok() is False  # more runnable threads than cores
    monkeypatch.setattr(P, "_load", [-1.0, True])
    monkeypatch.setattr(builtins, "open", fake(f"0.1 0.1 0.1 {n}/300 1\n".encode()))
    assert P._spin_ok() is True
    monkeypatch.setattr(P, "_spin", [])
    monkeypatch.setenv("EMBER_SPIN_US", "0")
    assert P._spinner() is None


def test_gemm_pool_switch_in_a_new_process():
    # EMBER_GEMM_POOL=0 hands matmul/Linear GEMMs to the BLAS's own threading
    import subprocess
    import sys
    code = ("import ember; from ember import _parallel as P; ember.set_num_threads(2); "
            "print(P.gemm_split_ok())")
    out = {}
    for value in ("0", "1"):
        env = dict(os.environ, EMBER_GEMM_POOL=value)
        out[value] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                    text=True, timeout=120).stdout.strip()
    assert out["0"] == "False"
    assert out["1"] == str(P.blas_controls() is not None)  # where threadpoolctl finds it
