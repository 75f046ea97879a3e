"""ember._parallel.gemms: independent products side by side on the pool (a Linear's or a
matmul's input and weight gradients, issue 25): NumPy's values, PyTorch's gradients, and
at two threads the one-thread results bit for bit."""

import numpy as np
import pytest

import ember
from ember import _parallel as P


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_gemms_equal_numpy_and_run_tasks(dtype, n, threads):
    threads(n)
    a, b = _rand((37, 53), dtype, 0), _rand((53, 301), dtype, 1)
    c, d = _rand((301, 20), dtype, 2), _rand((20, 37), dtype, 3)  # more rows: cut by rows
    e = _rand((0, 5), dtype, 4)
    got = P.gemms([(a, b), (c, d), (e, b[:5])], [lambda: "task", lambda: 7])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for g, want in zip(got, [a @ b, c @ d, e @ b[:5]]):
        assert g.shape == want.shape and g.dtype == want.dtype
        np.testing.assert_allclose(g, want, **tol)
    assert got[3:] == ["task", 7]
    # transposed (non-contiguous) operands
    np.testing.assert_allclose(P.gemms([(b.T, a.T)])[0], (a @ b).T, **tol)


def test_gemms_raise_a_part_error_and_leave_blas_threads_as_they_were(threads):
    from ember._threads import blas_controls
    threads(2)
    ctl = blas_controls()
    before = ctl[0]() if ctl else None
    a = np.ones((64, 64), np.float32)

    def boom():
        raise KeyError("in a part")

    for tasks in [(boom,), (lambda: None, boom)]:
        with pytest.raises(KeyError, match="in a part"):
            P.gemms([(a, a), (a, a)], tasks)
    with pytest.raises(ValueError):  # a product that fails inside its part
        P.gemms([(a, a), (np.ones((3, 4)), np.ones((5, 6)))])
    if ctl is not None:
        assert ctl[0]() == before
    assert np.array_equal(P.gemms([(a, a)])[0], a @ a)  # the pool still works


def _linear_run(n, shape_x, n_out, dtype, bias, x_grad=True):
    ember.set_num_threads(n)
    x = ember.tensor(_rand(shape_x, dtype, 5), requires_grad=x_grad)
    w = ember.tensor(_rand((n_out, shape_x[-1]), dtype, 6) * 0.1, requires_grad=True)
    b = ember.tensor(_rand((n_out,), dtype, 7), requires_grad=True) if bias else None
    y = ember.nn.functional.linear(x, w, b)
    y.backward(ember.tensor(_rand(tuple(y.shape), dtype, 8)))
    out = [y, w.grad] + ([x.grad] if x_grad else []) + ([b.grad] if bias else [])
    return [t.detach().numpy().copy() for t in out]


# (128, 64) x 256 outputs: 2^21 multiply-adds, the smallest pair that goes side by side
LINEAR_CASES = [((128, 64), 256), ((128, 63), 256), ((128, 512), 512), ((4, 32, 128), 384),
                ((128, 512), 10)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape_x,n_out", LINEAR_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients_side_by_side_equal_one_thread_bit_for_bit(shape_x, n_out, dtype,
                                                                    bias, threads):
    if P.blas_controls() is None:
        pytest.skip("no OpenBLAS thread control: GEMMs keep BLAS's own threads")
    one = _linear_run(1, shape_x, n_out, dtype, bias)
    two = _linear_run(2, shape_x, n_out, dtype, bias)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    # only the weight gradient needed: the old path (the product cut over the pool)
    np.testing.assert_allclose(_linear_run(2, shape_x, n_out, dtype, bias, x_grad=False)[1],
                               one[1], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_the_side_by_side_path_is_taken_from_its_threshold(threads, monkeypatch):
    if not P._GEMM_PAIRS or P.blas_controls() is None:
        pytest.skip("EMBER_GEMM_PAIRS=0 or no OpenBLAS thread control")
    threads(2)
    calls = []
    real = P.gemms
    monkeypatch.setattr(P, "gemms", lambda *a, **k: calls.append(1) or real(*a, **k))
    _linear_run(2, (128, 64), 256, np.float32, True)   # 2^21 multiply-adds each
    assert calls == [1]
    _linear_run(2, (128, 63), 256, np.float32, True)   # just below
    assert calls == [1]
    _linear_run(1, (128, 64), 256, np.float32, True)   # one thread: plain BLAS calls
    assert calls == [1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [[(128, 512), (512, 256)], [(4, 32, 128), (128, 384)],
                                    [(127, 64), (64, 257)]])
def test_matmul_gradients_side_by_side_agree_with_torch_and_one_thread(shapes, dtype, threads):
    from tests.parity.helpers import check
    pytest.importorskip("torch")
    threads(2)
    atol = 2e-4 if dtype == np.float32 else None
    check(lambda m, x, w: m.matmul(x, w), shapes, dtype, atol=atol, rtol=1e-4)
    check(lambda m, x, w: m.matmul(x, w), shapes, dtype, atol=atol, rtol=1e-4, noncontig=True)

    def run(n):
        threads(n)
        a = ember.tensor(_rand(shapes[0], dtype, 1), requires_grad=True)
        b = ember.tensor(_rand(shapes[1], dtype, 2), requires_grad=True)
        (a @ b).backward(ember.tensor(_rand(shapes[0][:-1] + shapes[1][-1:], dtype, 3)))
        return a.grad.numpy().copy(), b.grad.numpy().copy()

    if P.blas_controls() is not None:
        # bit for bit where the cuts fall on OpenBLAS's blocks; an odd edge (257 columns) may
        # take another kernel in a part than in the whole product: the last bit may differ
        exact = all(d % 8 == 0 for s in shapes for d in s)
        for u, v in zip(run(1), run(2)):
            if exact:
                np.testing.assert_array_equal(u, v)
            else:
                np.testing.assert_allclose(u, v, rtol=1e-13 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [[(128, 64), (256, 64), (256,)], [(4, 32, 128), (384, 128),
                                                                     (384,)]])
def test_linear_side_by_side_agrees_with_torch(shapes, dtype, threads):
    from tests.parity.helpers import check
    pytest.importorskip("torch")
    threads(2)
    atol = 2e-4 if dtype == np.float32 else None
    check(lambda m, x, w, b: m.nn.functional.linear(x, w, b), shapes, dtype, atol=atol,
          rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_layer_weight_and_bias_gradients_in_one_hand_off(dtype, threads, monkeypatch):
    """Without an input gradient the weight product is cut as ``gemm`` cuts it, the bias
    sum beside it: the values of the path with the switch off, bit for bit."""
    if P.blas_controls() is None:
        pytest.skip("no OpenBLAS thread control")
    calls = []
    real = P.gemms
    monkeypatch.setattr(P, "gemms", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(P, "_GEMM_PAIRS", True)
    on = _linear_run(2, (128, 784), 512, dtype, True, x_grad=False)
    assert calls == [1]
    monkeypatch.setattr(P, "_GEMM_PAIRS", False)
    off = _linear_run(2, (128, 784), 512, dtype, True, x_grad=False)
    assert calls == [1]
    one = _linear_run(1, (128, 784), 512, dtype, True, x_grad=False)
    for a, b, c in zip(on, off, one):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sa,sb", [((37, 53), (53, 301)), ((301, 53), (53, 37)),
                                   ((20, 12), (12, 785)), ((0, 8), (8, 300)),
                                   ((3, 5, 7), (3, 7, 11))])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_gemm_with_bias_equals_product_then_add(sa, sb, dtype, n, threads, monkeypatch):
    """A bias added by each part of a cut product: the roundings of ``r = a @ b; r += bias``
    (the one-thread form), bit for bit."""
    monkeypatch.setattr(P, "GEMM_SPLIT_MIN", 1)
    threads(n)
    a, b, bias = _rand(sa, dtype, 0), _rand(sb, dtype, 1), _rand(sb[-1:], dtype, 2)
    want = np.matmul(a, b)
    want += bias
    threads(1)
    one = P.gemm(a, b, bias=bias)
    threads(n)
    got = P.gemm(a, b, bias=bias)
    np.testing.assert_array_equal(one, want)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want, **tol)
    if a.ndim == 2 and P.blas_controls() is not None:
        want2 = P.gemm(a, b)  # the same cuts without the bias, then the bias
        want2 += bias
        np.testing.assert_array_equal(got, want2)
    # two biases (a recurrent layer's), added in turn
    bias2 = _rand(sb[-1:], dtype, 3)
    want += bias2
    threads(1)
    np.testing.assert_array_equal(P.gemm(a, b, bias=(bias, bias2)), want)
    threads(n)
    np.testing.assert_allclose(P.gemm(a, b, bias=(bias, bias2)), want, **tol)


def test_linear_bias_forms_take_the_plain_add(threads):
    """A bias that is not a vector of the output's columns (a broadcast (1, N) one, float64
    on float32 data) is added after the product as before."""
    from ember.ops.linalg import matmul_arrays
    threads(2)
    a, b = _rand((256, 64), np.float32, 0), _rand((64, 300), np.float32, 1)
    for bias in (_rand((1, 300), np.float32, 2), _rand((300,), np.float64, 3),
                 np.float32(1.5)):
        want = a @ b
        want += bias
        got = matmul_arrays(a, b, bias)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
