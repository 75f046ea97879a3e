"""Ops composed of other ember ops (repeat_interleave, cov, trapezoid, renorm, ...): parity
with PyTorch in float32/float64, broadcasting, 0-d/empty and non-contiguous inputs, negative
dims, and finite-difference gradient checks. (PyTorch's OpInfo samples cover them too.)"""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

DTYPES = [np.float32, np.float64]

CASES = [
    ("repeat_interleave int", lambda m, x: m.repeat_interleave(x, 3, dim=-1), [(2, 3)]),
    ("repeat_interleave flat", lambda m, x: m.repeat_interleave(x, 2), [(2, 3)]),
    ("repeat_interleave tensor", lambda m, x: x.repeat_interleave(m.tensor([1, 0, 2]), dim=0),
     [(3, 2)]),
    ("repeat_interleave 0-d", lambda m, x: m.repeat_interleave(x, 2), [()]),
    ("repeat_interleave empty", lambda m, x: m.repeat_interleave(x, 2, dim=1), [(0, 3)]),
    ("rsub", lambda m, x, y: m.rsub(x, y, alpha=2), [(2, 3), (3,)]),
    ("rsub scalar", lambda m, x: m.rsub(x, 1.5), [(4,)]),
    ("fill", lambda m, x, v: m.fill(x, v), [(2, 3), ()]),
    ("cov", lambda m, x: m.cov(x), [(3, 6)]),
    ("cov 1-d", lambda m, x: m.cov(x, correction=0), [(5,)]),
    ("cov weights", lambda m, x, a: m.cov(x, fweights=m.tensor([1, 2, 3, 1]), aweights=a.abs()),
     [(2, 4), (4,)]),
    ("corrcoef", lambda m, x: m.corrcoef(x), [(3, 5)]),
    ("dist", lambda m, x, y: m.dist(x, y, 3), [(2, 3), (3,)]),
    ("dist inf", lambda m, x, y: x.dist(y, float("inf")), [(4,), (4,)]),
    ("trapezoid", lambda m, y: m.trapezoid(y, dim=0), [(4, 3)]),
    ("trapezoid x", lambda m, y, x: m.trapezoid(y, x, dim=-1), [(2, 5), (5,)]),
    ("trapz dx", lambda m, y: m.trapz(y, dx=0.5), [(3, 4)]),
    ("cumulative_trapezoid", lambda m, y, x: m.cumulative_trapezoid(y, x, dim=-2),
     [(4, 3), (4, 3)]),
    ("renorm", lambda m, x: m.renorm(x, 2, 0, 1.0), [(3, 4)]),
    ("renorm p1 last", lambda m, x: x.renorm(1, -1, 0.5), [(2, 3, 2)]),
    ("sum_to_size", lambda m, x: x.sum_to_size(1, 3), [(4, 3)]),
    ("constant_pad_nd", lambda m, x: m.constant_pad_nd(x, (1, 2, 0, 1), 0.5), [(2, 3)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,shapes", CASES, ids=[c[0] for c in CASES])
def test_composite_parity(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


@pytest.mark.parametrize("name,fn,shapes", [c for c in CASES if len(c[2][0]) >= 2 and
                                             0 not in c[2][0]], ids=lambda c: str(c)[:20])
def test_composite_noncontiguous(name, fn, shapes):
    check(fn, shapes, np.float64, noncontig=True)


GRADCHECK = ["repeat_interleave int", "rsub", "cov", "cov weights", "corrcoef", "dist",
             "trapezoid x", "cumulative_trapezoid", "renorm", "sum_to_size", "fill"]


@pytest.mark.parametrize("name", GRADCHECK)
def test_composite_gradcheck(name):
    _, fn, shapes = next(c for c in CASES if c[0] == name)
    gradcheck(fn, shapes)


def test_unravel_index_and_errors():
    for shape in [(2, 3), (4,), (2, 1, 3)]:
        idx = np.array([0, 5, -1, 3]) % int(np.prod(shape))
        a = ember.unravel_index(ember.tensor(idx), shape)
        b = torch.unravel_index(torch.tensor(idx), shape)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
            assert x.dtype == ember.int64
    with pytest.raises(RuntimeError):
        ember.repeat_interleave(ember.ones(3), ember.tensor([1, 2]), dim=0)
    with pytest.raises(RuntimeError):
        ember.repeat_interleave(ember.ones(3), -1)
    with pytest.raises(ValueError):
        ember.cov(ember.ones(2, 2, 2))
    with pytest.raises(RuntimeError):
        ember.ones(2, 3).sum_to_size(2)
    with pytest.raises(RuntimeError):
        ember.fill(ember.ones(2), ember.ones(2))
    np.testing.assert_array_equal(ember.repeat_interleave(ember.tensor([2, 0, 1])).numpy(),
                                  torch.repeat_interleave(torch.tensor([2, 0, 1])).numpy())


def test_inplace_variants():
    x = ember.tensor([[3.0, 4.0], [0.3, 0.4]])
    y = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    x.renorm_(2, 0, 1.0)
    y.renorm_(2, 0, 1.0)
    np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-6)
    c = ember.tensor([1 + 2j])
    c.conj_physical_()
    assert c.numpy()[0] == 1 - 2j


@pytest.mark.parametrize("name,kw", [("hann", {}), ("hamming", {}), ("blackman", {}),
                                     ("nuttall", {}), ("bartlett", {}), ("cosine", {}),
                                     ("exponential", {"tau": 0.7}), ("gaussian", {"std": 1.3}),
                                     ("kaiser", {"beta": 5.0}),
                                     ("general_cosine", {"a": [0.46, 0.23, 0.31]}),
                                     ("general_hamming", {"alpha": 0.6})])
def test_signal_windows(name, kw):
    for M in (0, 1, 2, 7, 8):
        for sym in (True, False):
            for dt in ("float32", "float64"):
                a = getattr(ember.signal.windows, name)(M, sym=sym, dtype=getattr(ember, dt),
                                                        **kw)
                b = getattr(torch.signal.windows, name)(M, sym=sym, dtype=getattr(torch, dt),
                                                        **kw)
                assert a.dtype == getattr(ember, dt) and a.shape == tuple(b.shape)
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        getattr(ember.signal.windows, name)(-1, **kw)
    with pytest.raises(ValueError):
        getattr(ember.signal.windows, name)(4, dtype=ember.int64, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_complex_and_polar(dtype):
    import warnings
    check(lambda m, r, i: m.complex(r, i).abs(), [(2, 3), (2, 3)], dtype)
    check(lambda m, a, t: m.view_as_real(m.polar(a, t)), [(4,), (4,)], dtype, low=0.5)
    gradcheck(lambda m, r, i: m.view_as_real(m.complex(r, i)), [(3,), (3,)])
    # a complex gradient reaching a real leaf keeps its real part, without NumPy's warning
    r = ember.tensor([1.0, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (r * (1 + 2j)).abs().sum().backward()
    np.testing.assert_allclose(r.grad.numpy(), [np.sqrt(5)] * 2, rtol=1e-6)
    with pytest.raises(RuntimeError):
        ember.complex(ember.ones(2), ember.ones(2, dtype=ember.float64))


def test_view_as_real_of_non_contiguous_complex():
    z = np.arange(6) + 1j * (np.arange(6) + 10)
    a = ember.view_as_real(ember.tensor(z).reshape(2, 3).t())
    b = torch.view_as_real(torch.tensor(z).reshape(2, 3).t())
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    ze = ember.tensor(z).reshape(2, 3)
    v = ember.view_as_real(ze.t())
    v[0, 0, 1] = -1.0  # a view: the write reaches the complex tensor
    assert ze[0, 0].item() == complex(0, -1)
    check(lambda m, x: m.view_as_real(m.complex(x, x * 2).t()) * 3, [(2, 3)])


GRADIENT = [
    ({}, [(6,)]),
    ({"spacing": 0.5, "edge_order": 2}, [(5, 4)]),
    ({"dim": -1, "spacing": [2.0]}, [(3, 5)]),
    ({"dim": [0, 2], "spacing": [1.5, 0.5], "edge_order": 2}, [(4, 3, 5)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw,shapes", GRADIENT, ids=str)
def test_gradient(kw, shapes, dtype):
    check(lambda m, f: m.cat([g.reshape(-1) for g in m.gradient(f, **kw)]), shapes, dtype)


@pytest.mark.parametrize("edge_order", [1, 2])
def test_gradient_coordinates(edge_order):
    x = np.array([0.0, 0.3, 1.1, 1.5, 2.6])

    def fn(m, f):
        return m.cat([g.reshape(-1) for g in m.gradient(f, spacing=[m.tensor(x)], dim=1,
                                                           edge_order=edge_order)])
    check(fn, [(3, 5)])
    gradcheck(fn, [(2, 5)])
    with pytest.raises(RuntimeError):
        ember.gradient(ember.ones(2), edge_order=2)  # a dim shorter than edge_order + 1
    with pytest.raises(RuntimeError):
        ember.gradient(ember.ones(3, 3), spacing=[1.0, 2.0, 3.0])


def test_copies_and_static_nonzero():
    x = np.arange(12.0).reshape(3, 4)
    check(lambda m, t: m.alias_copy(t) * 2, [], arrays=[x])
    check(lambda m, t: m.cat(m.split_with_sizes_copy(t, [1, 3], dim=1), 1) * 2, [], arrays=[x])
    check(lambda m, t: m.unfold_copy(t, 1, 2, 1) * 2, [], arrays=[x])
    check(lambda m, t: m.as_strided_copy(t, (2, 2), (4, 1), 1) * 2, [], arrays=[x])
    for size, fill in ((2, -1), (6, -3)):
        a = ember.nonzero_static(ember.tensor([[0, 1], [1, 1]]), size=size, fill_value=fill)
        b = torch.nonzero_static(torch.tensor([[0, 1], [1, 1]]), size=size, fill_value=fill)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    t = ember.ones(2, 3)
    ember.resize_as_(t, ember.ones(3, 2))
    assert t.shape == (3, 2) and ember.empty_permuted((2, 3), (1, 0)).shape == (2, 3)
    assert t.new_empty_strided((2, 2), (2, 1)).shape == (2, 2)


def test_igamma():
    a = np.array([0.5, 1.0, 2.0, 7.5])
    x = np.array([0.3, 1.0, 3.0, 6.0])
    for name in ("igamma", "igammac"):
        check(lambda m, p, q: getattr(m, name)(p.detach(), q), [], arrays=[a, x])
        np.testing.assert_allclose(
            getattr(ember.special, "gammainc" if name == "igamma" else "gammaincc")(
                ember.tensor(a), ember.tensor(x)).numpy(),
            getattr(torch.special, "gammainc" if name == "igamma" else "gammaincc")(
                torch.tensor(a), torch.tensor(x)).numpy(), rtol=1e-12)
    with pytest.raises(NotImplementedError):
        ember.igamma(ember.tensor(a, requires_grad=True), ember.tensor(x)).sum().backward()


def test_histogramdd():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2))
    w = rng.random(50)
    cases = [dict(bins=4), dict(bins=[3, 5], weight=w), dict(bins=3, density=True),
             dict(bins=2, range=[-1.0, 1.0, 0.0, 2.0]),
             dict(bins=[np.array([-2.0, 0.0, 2.0]), np.array([-1.0, -0.5, 3.0])])]
    for kw in cases:
        def conv(m, v):
            if isinstance(v, list) and v and isinstance(v[0], np.ndarray):
                return [m.tensor(e) for e in v]
            return m.tensor(v) if isinstance(v, np.ndarray) else v
        a = ember.histogramdd(ember.tensor(x), **{k: conv(ember, v) for k, v in kw.items()})
        b = torch.histogramdd(torch.tensor(x), **{k: conv(torch, v) for k, v in kw.items()})
        np.testing.assert_allclose(a.hist.numpy(), b.hist.numpy(), rtol=1e-12)
        for ea, eb in zip(a.bin_edges, b.bin_edges):
            np.testing.assert_allclose(ea.numpy(), eb.numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError):
        ember.histogramdd(ember.ones(5), bins=2)


def test_householder_geqrf_ormqr():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5, 3))
    ta, tt = torch.geqrf(torch.tensor(a))
    ea, et = ember.geqrf(ember.tensor(a))
    np.testing.assert_allclose(ea.numpy(), ta.numpy(), atol=1e-12)
    np.testing.assert_allclose(et.numpy(), tt.numpy(), atol=1e-12)
    check(lambda m, x, t: m.linalg.householder_product(x, t), [], arrays=[ta.numpy(),
                                                                          tt.numpy()])
    gradcheck(lambda m, x, t: m.linalg.householder_product(x, t), [],
              arrays=[ta.numpy()[0], tt.numpy()[0]])
    c = rng.standard_normal((2, 5, 4))
    for left, tr, o in ((True, False, c), (True, True, c), (False, True, c.swapaxes(-1, -2))):
        check(lambda m, x, t, y: m.ormqr(x, t, y, left, tr), [],
              arrays=[ta.numpy(), tt.numpy(), np.ascontiguousarray(o)])
    q = ember.tensor(ta.numpy()).orgqr(ember.tensor(tt.numpy()))
    np.testing.assert_allclose(q.numpy(), torch.linalg.householder_product(ta, tt).numpy(),
                               atol=1e-12)


@pytest.mark.parametrize("name", ["sum", "prod", "amax", "amin", "argmax", "argmin", "mean"])
def test_masked_reductions(name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4))
    mask = rng.random((3, 4)) > 0.5
    mask[1] = False  # a fully masked row: the identity (nan for mean)
    dims = [None, 1, 0] if not name.startswith("arg") else [1, 0]
    for dim in dims:
        kw = {} if dim is None else {"dim": dim}
        a = getattr(ember.masked, name)(ember.tensor(x), mask=ember.tensor(mask), **kw)
        b = getattr(torch.masked, name)(torch.tensor(x), mask=torch.tensor(mask), **kw)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, equal_nan=True)
    row_mask = ember.tensor(rng.random(4) > 0.3)  # broadcast along rows
    np.testing.assert_allclose(
        getattr(ember.masked, name)(ember.tensor(x), 1, mask=row_mask).numpy(),
        getattr(torch.masked, name)(torch.tensor(x), 1, mask=torch.tensor(row_mask.numpy()))
        .numpy(), rtol=1e-12, equal_nan=True)


def test_masked_cumulative_and_grads():
    rng = np.random.default_rng(4)
    mask = rng.random((3, 5)) > 0.4
    for name in ("cumsum", "cumprod"):
        check(lambda m, x: getattr(m.masked, name)(x, 1, mask=m.tensor(mask)), [(3, 5)])
    check(lambda m, x: m.masked.sum(x, (0, 1), mask=m.tensor(mask)), [(3, 5)])
    with pytest.raises(ValueError):
        ember.masked.mean(ember.tensor([1, 2]), mask=ember.tensor([True, False]))


@pytest.mark.parametrize("name,kw", [("logsumexp", {"dim": 1}), ("norm", {"dim": 1}),
                                     ("norm", {"ord": float("-inf"), "dim": 0}),
                                     ("var", {"dim": 1}), ("std", {"dim": 0, "correction": 0}),
                                     ("softmax", {"dim": 1}), ("log_softmax", {"dim": 0}),
                                     ("softmin", {"dim": 1}), ("median", {"dim": 1}),
                                     ("normalize", {"ord": 2.0, "dim": 1})])
def test_masked_others(name, kw):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))
    mask = rng.random((3, 4)) > 0.4
    mask[0, :] = True
    a = getattr(ember.masked, name)(ember.tensor(x), mask=ember.tensor(mask), **kw)
    b = getattr(torch.masked, name)(torch.tensor(x), mask=torch.tensor(mask), **kw)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12, equal_nan=True)
    if name not in ("median",):
        check(lambda m, t: getattr(m.masked, name)(t, mask=m.tensor(mask), **kw), [],
              arrays=[x])
    a = ember.masked.logaddexp(ember.tensor(x), ember.tensor(x.T.copy().T),
                               input_mask=ember.tensor(mask))
    b = torch.masked.logaddexp(torch.tensor(x), torch.tensor(x), input_mask=torch.tensor(mask))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_linear_cross_entropy():
    rng = np.random.default_rng(6)
    tgt = rng.integers(0, 5, 4)
    check(lambda m, x, w, b: m.nn.functional.linear_cross_entropy(x, w, m.tensor(tgt),
                                                                  linear_bias=b),
          [(4, 3), (5, 3), (5,)])
    tgt_k = rng.integers(0, 5, (4, 2))
    check(lambda m, x, w: m.nn.functional.linear_cross_entropy(
        x, w, m.tensor(tgt_k), reduction="sum", label_smoothing=0.1), [(4, 3), (5, 2, 3)])
    with pytest.raises(RuntimeError):
        ember.nn.functional.linear_cross_entropy(ember.ones(3), ember.ones(5, 2, 3),
                                                 ember.tensor([1]))
