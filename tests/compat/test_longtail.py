"""The API long tail (ember/_longtail.py and friends) against PyTorch: values, gradients,
float32 and float64, and the errors."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

DTYPES = [(ember.float32, torch.float32, 1e-5), (ember.float64, torch.float64, 1e-10)]


def _pair(shape, dtype=(ember.float32, torch.float32), low=-2.0, high=2.0, seed=0,
          requires_grad=True):
    a = np.random.default_rng(seed).uniform(low, high, size=shape)
    e = ember.tensor(a, dtype=dtype[0], requires_grad=requires_grad)
    t = torch.tensor(a, dtype=dtype[1], requires_grad=requires_grad)
    return e, t


def _close(e, t, tol=1e-5):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("edt,tdt,tol", DTYPES)
@pytest.mark.parametrize("name,arg", [("arccos_", None), ("arcsin_", None), ("arctan_", None),
                                      ("arctan2_", "other"),
                                      ("cumsum_", 1), ("cumprod_", 0)])
def test_inplace_aliases_values_and_grads(edt, tdt, tol, name, arg):
    e0, t0 = _pair((3, 4), (edt, tdt), -0.9, 0.9)
    o_e, o_t = _pair((3, 4), (edt, tdt), 0.5, 1.5, seed=1, requires_grad=False)
    args_e = () if arg is None else ((o_e,) if arg == "other" else (arg,))
    args_t = () if arg is None else ((o_t,) if arg == "other" else (arg,))
    ye = getattr(e0 * 1, name)(*args_e)
    yt = getattr(t0 * 1, name)(*args_t)
    _close(ye, yt, tol)
    (ye * ye).sum().backward()
    (yt * yt).sum().backward()
    _close(e0.grad, t0.grad, tol * 10)


@pytest.mark.parametrize("name", ["arcsinh_", "arccosh_", "arctanh_"])
def test_inplace_inverse_hyperbolic_values(name):
    # PyTorch has no derivative for these in-place forms; compare values
    e, t = _pair((5,), low=1.1, high=1.9) if name == "arccosh_" else _pair((5,), low=-0.9,
                                                                           high=0.9)
    _close(getattr(e.detach().clone(), name)(), getattr(t.detach().clone(), name)())


@pytest.mark.parametrize("name", ["greater_", "greater_equal_", "less_", "less_equal_",
                                  "not_equal_"])
def test_comparison_inplace_aliases(name):
    e, t = _pair((5,), requires_grad=False)
    getattr(e, name)(0.3)
    getattr(t, name)(0.3)
    _close(e, t)


def test_igamma_inplace_and_bit_shifts():
    pytest.importorskip("scipy")
    e, t = _pair((4,), low=0.5, high=3, requires_grad=False)
    o_e, o_t = _pair((4,), low=0.5, high=3, seed=2, requires_grad=False)
    _close(e.clone().igamma_(o_e), t.clone().igamma_(o_t))
    _close(e.clone().igammac_(o_e), t.clone().igammac_(o_t))
    ei = ember.tensor([1, 2, 3])
    ti = torch.tensor([1, 2, 3])
    assert ei.clone().bitwise_left_shift_(2).tolist() == ti.clone().bitwise_left_shift_(2).tolist()


def test_predicates_and_storage():
    e = ember.arange(6.0).reshape(2, 3)
    t = torch.arange(6.0).reshape(2, 3)
    assert e.is_cpu is t.is_cpu is True
    assert e.is_conj() is t.is_conj() is False and e.is_neg() is t.is_neg() is False
    assert e.is_same_size(ember.zeros(2, 3)) and not e.is_same_size(ember.zeros(3, 2))
    assert ember.is_same_size(e, e) and ember.is_conj(e) is False
    assert ember.tensor([2.0]).is_nonzero() and not ember.tensor([0.0]).is_nonzero()
    with pytest.raises(RuntimeError, match="more than one value"):
        e.is_nonzero()
    assert e.is_sparse_csr is False
    st, tst = e[1].storage(), t[1].untyped_storage()
    assert st.size() == 6 and st.dtype == ember.float32 and st.tolist() == list(range(6))
    assert st.nbytes() == tst.nbytes()
    assert isinstance(st, ember.TypedStorage) and isinstance(st.untyped(), ember.UntypedStorage)
    assert e.storage_type() is ember.FloatStorage
    fs = ember.FloatStorage([1, 2, 3])
    assert fs.tolist() == [1.0, 2.0, 3.0] and fs.dtype == ember.float32 and len(fs) == 3
    assert ember.LongStorage(4).tolist() == [0, 0, 0, 0]
    assert ember.is_storage(fs) and not ember.is_storage(e)
    assert e.const_data_ptr() == e.data_ptr()
    import importlib
    assert importlib.import_module("ember.storage").TypedStorage is ember.TypedStorage


def test_resize_and_unsafe_split():
    e, t = _pair((2, 6))
    ye, yt = e.resize(3, 4), t.resize(3, 4)
    assert ye.shape == yt.shape
    (ye * ye).sum().backward()
    (yt * yt).sum().backward()
    _close(e.grad, t.grad)
    assert e.resize_as(ember.zeros(4, 3)).shape == (4, 3)
    with pytest.raises(RuntimeError, match="preserving the number of elements"):
        e.resize(5, 5)
    assert [c.shape for c in e.unsafe_chunk(3, 1)] == [c.shape for c in t.unsafe_chunk(3, 1)]
    assert [c.shape for c in e.unsafe_split(4, 1)] == [c.shape for c in t.unsafe_split(4, 1)]
    assert [c.shape for c in ember.unsafe_split_with_sizes(e, [1, 5], 1)] == \
        [c.shape for c in torch.unsafe_split_with_sizes(t, [1, 5], 1)]


def test_prelu_hardshrink_methods():
    e, t = _pair((2, 3, 4))
    we, wt = _pair((3,), seed=3, low=0.1, high=0.5)
    _close(e.prelu(we), t.prelu(wt))
    _close(e.hardshrink(0.7), t.hardshrink(0.7))
    _close(ember.prelu(e, we), torch.prelu(t, wt))
    _close(ember.hardshrink(e), torch.hardshrink(t))


def test_as_subclass_keeps_grad():
    class MyTensor(ember.Tensor):
        pass

    e, t = _pair((3,))
    m = e.as_subclass(MyTensor)
    assert type(m) is MyTensor
    (m * 2).sum().backward()
    np.testing.assert_allclose(e.grad.numpy(), [2, 2, 2])
    with pytest.raises(TypeError, match="subclass of Tensor"):
        e.as_subclass(int)


def test_multinomial_and_bernoulli_methods():
    ember.manual_seed(0)
    p = ember.tensor([0.1, 0.0, 0.9])
    s = p.multinomial(1000, replacement=True)
    assert s.dtype == ember.int64 and s.shape == (1000,)
    assert (s != 1).all() and abs((s == 2).float().mean().item() - 0.9) < 0.05
    assert sorted(p.multinomial(2).tolist()) == [0, 2]
    b = ember.full((2000,), 0.3).bernoulli()
    assert abs(b.mean().item() - 0.3) < 0.05 and set(b.unique().tolist()) <= {0.0, 1.0}
    b2 = ember.zeros(2000).bernoulli(0.75)
    assert abs(b2.mean().item() - 0.75) < 0.05


@pytest.mark.parametrize("edt,tdt,tol", DTYPES)
def test_native_order_functions(edt, tdt, tol):
    x_e, x_t = _pair((4, 3, 5), (edt, tdt))
    w_e, w_t = _pair((10, 5), (edt, tdt), seed=1)
    idx = [[1, 2], [0, 9]]
    _close(ember.embedding(w_e, ember.tensor(idx)), torch.embedding(w_t, torch.tensor(idx)), tol)
    g_e, g_t = _pair((3,), (edt, tdt), 0.5, 1.5, seed=2)
    b_e, b_t = _pair((3,), (edt, tdt), seed=3)
    rm_e, rm_t = _pair((3,), (edt, tdt), seed=4, requires_grad=False)
    rv_e, rv_t = _pair((3,), (edt, tdt), 0.5, 1.5, seed=5, requires_grad=False)
    ye = ember.batch_norm(x_e, g_e, b_e, rm_e, rv_e, True, 0.1, 1e-5, False)
    yt = torch.batch_norm(x_t, g_t, b_t, rm_t, rv_t, True, 0.1, 1e-5, False)
    _close(ye, yt, tol * 10)
    _close(rm_e, rm_t, tol)
    (ye ** 2).sum().backward()
    (yt ** 2).sum().backward()
    _close(x_e.grad, x_t.grad, tol * 100)
    _close(g_e.grad, g_t.grad, tol * 100)
    _close(ember.layer_norm(x_e, (5,)), torch.layer_norm(x_t, (5,)), tol * 10)
    _close(ember.group_norm(x_e, 1), torch.group_norm(x_t, 1), tol * 10)
    a_e, a_t = _pair((4, 5), (edt, tdt), seed=6)
    c_e, c_t = _pair((4, 5), (edt, tdt), seed=7)
    _close(ember.cosine_similarity(a_e, c_e), torch.cosine_similarity(a_t, c_t), tol)
    _close(ember.pairwise_distance(a_e, c_e), torch.pairwise_distance(a_t, c_t), tol)
    _close(ember.pdist(a_e), torch.pdist(a_t), tol)
    bw_e, bw_t = _pair((2, 5, 5), (edt, tdt), seed=8)
    _close(ember.bilinear(a_e, c_e, bw_e, None), torch.bilinear(a_t, c_t, bw_t, None), tol * 10)
    _close(ember.celu(a_e, 0.5), torch.celu(a_t, 0.5), tol)
    _close(ember.selu(a_e), torch.selu(a_t), tol)
    _close(ember.threshold(a_e, 0.1, 7.0), torch.threshold(a_t, 0.1, 7.0), tol)
    _close(ember.rrelu(a_e), torch.rrelu(a_t), tol)
    ember.manual_seed(0)
    assert ember.dropout(a_e, 0.5, False) is a_e
    d = ember.dropout(ember.ones(1000, dtype=edt), 0.5, True)
    assert set(np.unique(d.numpy())) <= {0.0, 2.0}
    ad = ember.alpha_dropout(a_e, 0.5, False)
    _close(ad, a_t)
    fd = ember.feature_dropout(ember.ones(50, 20, 3, dtype=edt), 0.5, True)
    assert (fd == fd[:, :, :1]).all()


@pytest.mark.parametrize("edt,tdt,tol", DTYPES)
def test_int_reduction_losses(edt, tdt, tol):
    x_e, x_t = _pair((6,), (edt, tdt))
    y_e, y_t = _pair((6,), (edt, tdt), 0, 1, seed=1, requires_grad=False)
    s_e = ember.tensor([1.0, -1, 1, -1, 1, 1], dtype=edt)
    s_t = torch.tensor([1.0, -1, 1, -1, 1, 1], dtype=tdt)
    for red in (0, 1, 2):
        _close(ember.binary_cross_entropy_with_logits(x_e, y_e, None, None, red),
               torch.binary_cross_entropy_with_logits(x_t, y_t, None, None, red), tol)
        _close(ember.hinge_embedding_loss(x_e, s_e, 1.0, red),
               torch.hinge_embedding_loss(x_t, s_t, 1.0, red), tol)
        _close(ember.margin_ranking_loss(x_e, y_e, s_e, 0.1, red),
               torch.margin_ranking_loss(x_t, y_t, s_t, 0.1, red), tol)
        _close(ember.kl_div(x_e, y_e, red), torch.kl_div(x_t, y_t, red), tol)
    with pytest.raises(ValueError, match="reduction must be"):
        ember.kl_div(x_e, y_e, 5)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("nd", [1, 2])
def test_convolution(transposed, nd):
    shape = (2, 4) + (7,) * nd
    x_e, x_t = _pair(shape)
    wshape = ((4, 3) if transposed else (3, 4)) + (3,) * nd
    w_e, w_t = _pair(wshape, seed=1)
    b_e, b_t = _pair((3,), seed=2)
    args = ([2] * nd, [1] * nd, [1] * nd, transposed, [1 if transposed else 0] * nd, 1)
    ye = ember.convolution(x_e, w_e, b_e, *args)
    yt = torch.convolution(x_t, w_t, b_t, *args)
    _close(ye, yt, 1e-4)
    ye.sum().backward()
    yt.sum().backward()
    _close(w_e.grad, w_t.grad, 1e-4)


def test_top_level_inplace_forms():
    for name in ("abs_", "exp_", "sigmoid_", "tanh_", "neg_", "sqrt_", "zero_", "relu_"):
        e, t = _pair((3, 3), low=0.1, high=2, requires_grad=False)
        ro = getattr(ember, name)(e)
        getattr(torch, name)(t)
        assert ro is e
        _close(e, t)
    e, t = _pair((3, 3), requires_grad=False)
    ember.celu_(e)
    torch.celu_(t)
    _close(e, t)


def test_constants_settings_and_typename():
    assert ember.pi == torch.pi and ember.e == torch.e and ember.inf == torch.inf
    assert np.isnan(ember.nan) and ember.newaxis is None
    ember.set_float32_matmul_precision("high")
    assert ember.get_float32_matmul_precision() == "high"
    ember.set_float32_matmul_precision("highest")
    with pytest.raises(RuntimeError):
        ember.set_float32_matmul_precision("fastest")
    assert ember.typename(ember.zeros(2)) == torch.typename(torch.zeros(2))
    assert ember.typename(3) == torch.typename(3)
    assert issubclass(ember.OutOfMemoryError, RuntimeError)


def test_stream_and_event_on_cpu():
    s = ember.Stream()
    assert s.query() and s.device == ember.device("cpu")
    ev0, ev1 = ember.Event(enable_timing=True), ember.Event(enable_timing=True)
    ev0.record(s)
    s.record_event(ev1)
    assert ev0.elapsed_time(ev1) >= 0 and ev1.query()
    with pytest.raises(RuntimeError, match="enable_timing"):
        ember.Event().elapsed_time(ember.Event())
    with s:
        pass
    assert ember.get_device_module("cpu").is_available()
    assert ember.accelerator.is_available() is torch.accelerator.is_available()
