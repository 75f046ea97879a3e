"""Parity of the reduction op family with PyTorch: values, gradients, dims, dtypes."""

import numpy as np
import pytest

from .helpers import check, gradcheck, make_arrays

torch = pytest.importorskip("torch")
import ember  # noqa: E402

FLOATS = [np.float32, np.float64]
# (dim, keepdim) combinations every dim-reduction sees
DIMS = [(None, False), (0, False), (-1, True), ((0, 2), False), ((-1, 0), True), ((), False),
        (1, True)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim,keepdim", DIMS)
@pytest.mark.parametrize("name", ["sum", "mean", "nansum", "nanmean", "logsumexp", "amax",
                                  "amin", "var", "std", "norm"])
def test_reduce_dims(name, dim, keepdim, dtype):
    if name == "logsumexp" and dim is None:
        dim = (0, 1, 2)
    if name == "logsumexp" and dim == ():
        pytest.skip("PyTorch's logsumexp fails on dim=()")
    if dim is None:
        check(lambda m, a: getattr(m, name)(a), [(2, 3, 4)], dtype)
        check(lambda m, a: getattr(a, name)(), [(2, 3, 4)], dtype, noncontig=True)
        return
    kw = {"keepdim": keepdim}
    if name == "norm":
        check(lambda m, a: m.norm(a, 2, dim, **kw), [(2, 3, 4)], dtype)
        return
    # PyTorch's var/std backward is wrong (inf) for dim=(); compare values there
    grad = not (name in ("var", "std") and dim == ())
    check(lambda m, a: getattr(m, name)(a, dim, **kw), [(2, 3, 4)], dtype, grad=grad)
    check(lambda m, a: getattr(a, name)(dim=dim, **kw), [(2, 3, 4)], dtype, noncontig=True,
          grad=grad)


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "logsumexp", "prod", "var",
                                  "std", "nansum", "nanmean"])
def test_reduce_gradcheck(name):
    gradcheck(lambda m, a: getattr(m, name)(a, 1), [(2, 3)], gradgrad=True)
    gradcheck(lambda m, a: getattr(m, name)(a, (0, 1)) if name != "prod" else m.prod(a),
              [(2, 3)], gradgrad=name not in ("amax", "amin"))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "amax", "amin", "logsumexp", "var",
                                  "std", "norm", "nansum", "nanmean", "all", "any",
                                  "count_nonzero", "argmax", "argmin"])
def test_reduce_zero_dim(name, dtype):
    grad = name not in ("all", "any", "count_nonzero", "argmax", "argmin")
    if name in ("var", "std"):  # one element: PyTorch warns and returns nan
        check(lambda m, a: getattr(m, name)(a, correction=0), [()], dtype)
        return
    if name != "logsumexp":  # it needs a dim
        check(lambda m, a: getattr(m, name)(a), [()], dtype, grad=grad)
    check(lambda m, a: getattr(m, name)(a, 0), [()], dtype, grad=grad)
    if name not in ("count_nonzero", "norm"):
        check(lambda m, a: getattr(m, name)(a, -1, True), [()], dtype, grad=grad)


@pytest.mark.parametrize("dtype", FLOATS)
def test_reduce_empty(dtype):
    for name in ("sum", "mean", "prod", "nansum", "logsumexp", "count_nonzero", "all", "any"):
        check(lambda m, a: getattr(m, name)(a, 0), [(0, 3)], dtype, grad=False)
        check(lambda m, a: getattr(m, name)(a, 1), [(0, 3)], dtype, grad=False)
    for name in ("sum", "mean", "prod", "nansum"):
        check(lambda m, a: getattr(m, name)(a), [(0, 3)], dtype)
        check(lambda m, a: getattr(m, name)(a, 0), [(0, 3)], dtype)
    check(lambda m, a: m.amax(a, 1), [(0, 3)], dtype)
    check(lambda m, a: m.max(a, 1), [(0, 3)], dtype)
    for name in ("amax", "amin", "argmax"):
        with pytest.raises((RuntimeError, IndexError)):
            getattr(ember, name)(ember.zeros(0, 3))
        with pytest.raises((RuntimeError, IndexError)):
            getattr(ember, name)(ember.zeros(0, 3), 0)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim", [None, 0, -1, 1])
def test_prod(dim, dtype):
    args = () if dim is None else (dim,)
    check(lambda m, a: m.prod(a, *args), [(3, 4)], dtype)
    check(lambda m, a: a.prod(*args, keepdim=True) if args else a.prod(), [(3, 4)], dtype,
          noncontig=True)
    z = make_arrays([(3, 4)], dtype)[0]
    z[0, 1] = 0.0
    z[2, 2] = z[2, 3] = 0.0  # one zero and two zeros in a reduced slice
    check(lambda m, a: m.prod(a, *args), None, dtype, arrays=[z])


def test_prod_gradcheck_zeros():
    z = make_arrays([(3, 4)])[0]
    z[0, 1] = 0.0
    z[2, 2] = z[2, 3] = 0.0
    gradcheck(lambda m, a: m.prod(a, 1), None, arrays=[z], gradgrad=True)
    gradcheck(lambda m, a: m.prod(a), None, arrays=[z[:2]], gradgrad=True)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.bool_])
@pytest.mark.parametrize("name", ["sum", "prod", "amax", "amin", "cumsum", "cumprod", "all",
                                  "any", "count_nonzero", "argmax", "argmin", "max", "min"])
def test_reduce_int(name, dtype):
    a = make_arrays([(3, 4)], dtype, 0, 3)[0]
    if dtype == np.bool_ and name in ("argmax", "argmin"):
        with pytest.raises(RuntimeError, match="bool"):
            getattr(ember, name)(ember.tensor(a))
        return
    if name in ("cumsum", "cumprod"):
        check(lambda m, x: getattr(m, name)(x, 1), None, dtype, grad=False, arrays=[a])
        return
    check(lambda m, x: getattr(m, name)(x), None, dtype, grad=False, arrays=[a])
    check(lambda m, x: getattr(m, name)(x, 1), None, dtype, grad=False, arrays=[a])
    if name != "count_nonzero":  # it has no keepdim
        check(lambda m, x: getattr(m, name)(x, 0, True), None, dtype, grad=False, arrays=[a])


@pytest.mark.parametrize("dt", ["float64", "float32", "int64", "int32"])
@pytest.mark.parametrize("name", ["sum", "prod", "cumsum", "cumprod", "mean", "nansum"])
def test_reduce_dtype_arg(name, dt):
    if name in ("mean",) and dt.startswith("int"):
        pytest.skip("mean needs a floating dtype")
    x = make_arrays([(3, 4)], np.float32, 0, 3)[0]
    for arr in (x, x.astype(np.int32)):
        check(lambda m, a: getattr(m, name)(a, 1, dtype=getattr(m, dt)), None, arr.dtype,
              arrays=[arr], grad=False)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min(name, dtype):
    check(lambda m, a: getattr(m, name)(a), [(3, 4)], dtype)
    for dim in (0, 1, -1):
        for keepdim in (False, True):
            check(lambda m, a: tuple(getattr(m, name)(a, dim, keepdim)), [(3, 4)], dtype)
            check(lambda m, a: tuple(getattr(a, name)(dim=dim, keepdim=keepdim)), [(3, 4)], dtype,
                  noncontig=True)
    r = getattr(ember, name)(ember.tensor([[1.0, 5.0, 2.0]]), 1)
    assert type(r).__name__ == name and r.values.shape == (1,) and r.indices.dtype == ember.int64
    v, i = r
    assert i.item() == (1 if name == "max" else 0)
    check(lambda m, a, b: getattr(m, name)(a, b), [(3, 4), (4,)], dtype)
    check(lambda m, a, b: getattr(a, name)(b), [(3, 4), (4,)], dtype)


def test_max_ties_and_nan():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 1.0, np.nan, 2.0], [2.0, 2.0, 2.0, 2.0]])
    for name in ("max", "min"):
        check(lambda m, a: tuple(getattr(m, name)(a, 1)), None, arrays=[x])
        check(lambda m, a: getattr(m, name)(a), None, arrays=[x])
    for name in ("amax", "amin"):
        check(lambda m, a: getattr(m, name)(a, 1), None, arrays=[x])
        check(lambda m, a: getattr(m, name)(a), None, arrays=[x[[0, 2]]])
    for name in ("argmax", "argmin"):
        check(lambda m, a: getattr(m, name)(a, 1), None, arrays=[x], grad=False)
        check(lambda m, a: getattr(m, name)(a), None, arrays=[x], grad=False)


def test_max_gradcheck():
    gradcheck(lambda m, a: m.max(a, 1)[0], [(3, 4)], gradgrad=True)
    gradcheck(lambda m, a: m.min(a, 0, True).values, [(3, 4)], gradgrad=True)
    gradcheck(lambda m, a: m.amax(a, (0, 1)), [(3, 4)])


@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_argmax_argmin(dim, keepdim):
    for name in ("argmax", "argmin"):
        check(lambda m, a: getattr(m, name)(a, dim, keepdim), [(3, 4)], grad=False)
        check(lambda m, a: getattr(a, name)(dim=dim, keepdim=keepdim), [(3, 4)], grad=False,
              noncontig=True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["var", "std", "var_mean", "std_mean"])
def test_var_std(name, dtype):
    f = getattr(ember, name)
    tf = getattr(torch, name)
    assert f is not None and tf is not None
    check(lambda m, a: getattr(m, name)(a), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, 1), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, (0, 1), keepdim=True), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, -1, correction=0), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, 0, correction=2), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, 0, unbiased=False), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, 0, False), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, False), [(3, 4)], dtype)
    check(lambda m, a: getattr(m, name)(a, dim=1, unbiased=True, keepdim=True), [(3, 4)], dtype,
          noncontig=True)
    check(lambda m, a: getattr(m, name)(a, dim=1, correction=0.5), [(3, 4)], dtype)


def test_var_methods_and_edge():
    check(lambda m, a: (a.var(1), a.std(0, keepdim=True)), [(3, 4)])
    # a single element with correction 1 is nan (PyTorch warns); correction >= n gives inf/nan
    check(lambda m, a: m.var(a, 0), [(1, 3)], grad=False)
    check(lambda m, a: m.std(a, 1, correction=3), [(2, 3)], grad=False)
    with pytest.raises(RuntimeError):
        ember.var(ember.ones(3, dtype=ember.int64))


def test_var_std_gradcheck():
    gradcheck(lambda m, a: m.var(a, 1, correction=0), [(2, 3)], gradgrad=True)
    gradcheck(lambda m, a: m.std(a), [(2, 3)], gradgrad=True)
    gradcheck(lambda m, a: m.var_mean(a, 0), [(3, 2)], gradgrad=True)
    gradcheck(lambda m, a: m.std_mean(a, 0), [(3, 2)], gradgrad=True)


@pytest.mark.parametrize("p", [1, 2, 3, 0.5, float("inf"), float("-inf"), 0, "fro"])
@pytest.mark.parametrize("dim", [None, 1, (0, 1), -1])
def test_norm(p, dim):
    low = 0.1 if p in (0.5,) else -2
    check(lambda m, a: m.norm(a, p, dim), [(3, 4)], low=low)
    check(lambda m, a: a.norm(p=p, dim=dim, keepdim=True), [(3, 4)], np.float32, low=low)


def test_norm_gradcheck():
    gradcheck(lambda m, a: m.norm(a), [(2, 3)], gradgrad=True)
    gradcheck(lambda m, a: m.norm(a, 3, 1), [(2, 3)], gradgrad=True)
    gradcheck(lambda m, a: m.norm(a, 1, 1), [(2, 3)])


def test_norm_zero_vector_grad():
    check(lambda m, a: m.norm(a), None, arrays=[np.zeros(3)])
    check(lambda m, a: m.norm(a, 2, 1), None, arrays=[np.array([[0.0, 0.0], [3.0, 4.0]])])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_cumulative(name, dtype):
    for dim in (0, 1, -1):
        check(lambda m, a: getattr(m, name)(a, dim), [(3, 4)], dtype)
        check(lambda m, a: getattr(a, name)(dim=dim), [(3, 4)], dtype, noncontig=True)
    check(lambda m, a: getattr(m, name)(a, 0), [()], dtype)
    check(lambda m, a: getattr(m, name)(a, 0), [(0,)], dtype)
    check(lambda m, a: getattr(m, name)(a, 1, dtype=m.float64), [(2, 3)], dtype)


def test_cumprod_zeros():
    z = make_arrays([(3, 4)])[0]
    z[0, 1] = 0.0
    z[2, 0] = z[2, 2] = 0.0
    check(lambda m, a: m.cumprod(a, 1), None, arrays=[z])
    check(lambda m, a: m.cumprod(a, 0), None, arrays=[z])
    gradcheck(lambda m, a: m.cumprod(a, 1), None, arrays=[z], gradgrad=True)


def test_cumulative_gradcheck():
    gradcheck(lambda m, a: m.cumsum(a, 1), [(2, 3)], gradgrad=True)
    gradcheck(lambda m, a: m.cumprod(a, 0), [(3, 2)], gradgrad=True)


@pytest.mark.parametrize("dtype", [np.bool_, np.float32, np.int64, np.uint8])
def test_all_any(dtype):
    a = make_arrays([(3, 4)], dtype, 0, 1)[0]
    for name in ("all", "any"):
        check(lambda m, x: getattr(m, name)(x), None, dtype, grad=False, arrays=[a])
        check(lambda m, x: getattr(m, name)(x, 1), None, dtype, grad=False, arrays=[a])
        check(lambda m, x: getattr(x, name)(-1, True), None, dtype, grad=False, arrays=[a])
        check(lambda m, x: getattr(m, name)(x, (0, 1)), None, dtype, grad=False, arrays=[a])


def test_sum_bool_and_mean_errors():
    check(lambda m, a: (a > 0).sum(), [(3, 4)], grad=False)
    check(lambda m, a: (a > 0).sum(1), [(3, 4)], grad=False)
    with pytest.raises(RuntimeError):
        ember.mean(ember.ones(3, dtype=ember.int64))
    check(lambda m, a: m.mean(a, dtype=m.float64), [(3,)], np.int64, grad=False)


def test_dim_errors():
    x = ember.ones(2, 3)
    with pytest.raises(IndexError):
        x.sum(2)
    with pytest.raises(IndexError):
        x.max(-3)
    with pytest.raises(RuntimeError):
        x.sum((0, 0))


def test_logsumexp_inf():
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [0.0, 1.0]])
    check(lambda m, a: m.logsumexp(a, 1), None, arrays=[x], grad=False)
    check(lambda m, a: m.logsumexp(a, 1), [(3, 4)], low=-500, high=500)


def test_sum_out_and_large():
    out = ember.empty(3)
    r = ember.sum(ember.ones(3, 4), 1, out=out)
    assert r is out and out.tolist() == [4.0] * 3
    check(lambda m, a: a.sum(), [(200, 50)], np.float32)


@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_low_precision_reductions_accumulate_in_float32(dt):
    """NumPy sums bfloat16 in bfloat16 (wrong in the first digit for a few hundred values)."""
    a = make_arrays([(8, 300)], np.float32, 0, 1)[0]
    fns = [lambda m, x: x.sum(), lambda m, x: x.sum(1), lambda m, x: x.mean(),
           lambda m, x: x.var(1), lambda m, x: (x[:, :4] + 1).prod(1), lambda m, x: x.cumsum(1),
           lambda m, x: m.logsumexp(x, 1), lambda m, x: x.norm(), lambda m, x: x.std(),
           lambda m, x: x.nansum(), lambda m, x: m.logcumsumexp(x, 1),
           lambda m, x: x.cumprod(1)[:, :5]]
    for f in fns:
        e = f(ember, ember.tensor(a).to(getattr(ember, dt)))
        t = f(torch, torch.tensor(a).to(getattr(torch, dt)))
        assert e.dtype.name == dt
        np.testing.assert_allclose(e.float().numpy(), t.float().numpy(), rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("name", ["mean", "var", "std", "nanmean"])
@pytest.mark.parametrize("shape,dim", [((0,), None), ((0, 3), 0), ((0, 3), 1), ((2, 0, 3), (0, 1))])
@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_reductions_are_nan_without_numpy_warnings(name, shape, dim, dtype):
    import warnings
    a = np.zeros(shape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NumPy's "Mean of empty slice" etc.
        warnings.simplefilter("ignore", UserWarning)  # var/std's degrees-of-freedom warning
        got = getattr(ember, name)(ember.from_numpy(a), dim=dim).numpy()
        want = getattr(torch, name)(torch.from_numpy(a), dim=dim).numpy()
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("n,correction,warns", [(0, 1, True), (1, 1, True), (2, 1, False),
                                                 (2, 2, True), (1, 0, False)])
def test_var_degrees_of_freedom_warning(name, n, correction, warns):
    # as PyTorch: a UserWarning when the correction leaves no degrees of freedom
    import warnings
    a = np.arange(n, dtype=np.float64)
    for mod in (ember, torch):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            getattr(mod, name)(mod.from_numpy(a.copy()), correction=correction)
        assert any("degrees of freedom" in str(w.message) for w in seen) == warns, mod.__name__
