"""Convolution: parity with PyTorch (values and gradients of input, weight and bias), double
backward, the Conv*/ConvTranspose* modules (repr, init, state_dict, padding modes)."""

import math

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

DTYPES = [np.float32, np.float64]

# (nd, x shape, w shape, kwargs)
CONV = [
    (1, (2, 4, 9), (6, 4, 3), {}),
    (1, (2, 4, 9), (6, 2, 2), {"stride": 3, "padding": 2, "groups": 2}),
    (1, (4, 10), (6, 4, 3), {"padding": "same", "dilation": 2}),  # unbatched
    (2, (2, 3, 7, 6), (5, 3, 3, 3), {}),
    (2, (2, 4, 7, 6), (6, 2, 3, 2), {"stride": 2, "padding": 1, "groups": 2}),
    (2, (2, 4, 7, 6), (6, 4, 2, 3), {"padding": "same", "dilation": 2}),
    (2, (2, 4, 7, 6), (6, 4, 2, 2), {"padding": "valid", "stride": (2, 1)}),
    (2, (2, 4, 8, 8), (8, 1, 3, 3), {"padding": (1, 2), "groups": 4}),  # depthwise x2
    (2, (2, 3, 9, 8), (4, 3, 3, 3), {"stride": (3, 2), "padding": (2, 0), "dilation": (1, 2)}),
    (2, (2, 3, 5, 5), (4, 3, 1, 1), {}),
    # stride 1 with out_channels <= in_channels: the input gradient is a full convolution
    (2, (2, 6, 6, 5), (4, 6, 3, 3), {"padding": 1}),
    (2, (2, 6, 6, 5), (6, 2, 3, 2), {"padding": (2, 1), "dilation": (1, 2), "groups": 3}),
    (2, (1, 4, 4, 4), (4, 4, 3, 3), {"padding": 3}),  # padding wider than the kernel reach
    (3, (2, 4, 5, 4, 3), (8, 1, 2, 3, 2), {"stride": (1, 2, 1), "padding": 1, "groups": 4}),
    (3, (1, 2, 4, 5, 4), (3, 2, 3, 3, 3), {"padding": "same"}),
    # a batch larger than the output rows: the input gradient accumulates batch-last
    (2, (9, 4, 7, 6), (6, 2, 3, 2), {"stride": 2, "padding": 1, "groups": 2}),
    (2, (9, 3, 9, 8), (5, 3, 3, 3), {"stride": (2, 3), "padding": (2, 0), "dilation": (1, 2)}),
    (1, (7, 4, 6), (6, 4, 3), {}),
    (3, (5, 2, 4, 3, 4), (4, 2, 2, 2, 3), {"stride": (1, 2, 1)}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nd,xs,ws,kw", CONV)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_parity(nd, xs, ws, kw, dtype, bias):
    fn = f"conv{nd}d"
    if bias:
        check(lambda m, x, w, b: getattr(m.nn.functional, fn)(x, w, b, **kw),
              [xs, ws, (ws[0],)], dtype)
    else:
        check(lambda m, x, w: getattr(m.nn.functional, fn)(x, w, **kw), [xs, ws], dtype)


# (nd, x shape, w shape (C_in, C_out / groups, *k), kwargs)
CONVT = [
    (1, (2, 4, 5), (4, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    (2, (2, 4, 4, 3), (4, 3, 3, 2), {"stride": 2, "padding": 1, "output_padding": 1,
                                     "groups": 2}),
    (2, (2, 3, 4, 4), (3, 2, 3, 3), {"dilation": 2, "padding": (1, 2)}),
    (2, (3, 4, 4), (3, 2, 2, 2), {"stride": 2}),  # unbatched
    (2, (2, 2, 4, 4), (2, 3, 3, 3), {"padding": 1, "dilation": 2, "output_padding": 1}),
    (2, (2, 2, 3, 3), (2, 3, 3, 3), {"stride": (3, 2), "output_padding": (2, 1)}),
    (3, (1, 2, 3, 2, 3), (2, 2, 2, 3, 2), {"stride": 2, "padding": (0, 1, 0)}),
    (2, (8, 4, 4, 3), (4, 3, 3, 2), {"stride": 2, "padding": 1, "groups": 2}),  # batch-last
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nd,xs,ws,kw", CONVT)
def test_conv_transpose_parity(nd, xs, ws, kw, dtype):
    fn = f"conv_transpose{nd}d"
    cout = ws[1] * kw.get("groups", 1)
    check(lambda m, x, w, b: getattr(m.nn.functional, fn)(x, w, b, **kw),
          [xs, ws, (cout,)], dtype)


def test_conv_double_backward():
    gradcheck(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, stride=2, padding=1,
                                                        groups=2),
              [(1, 2, 4, 4), (4, 1, 2, 2), (4,)], gradgrad=True)
    gradcheck(lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2, padding=1,
                                                               output_padding=1, dilation=1),
              [(1, 2, 3, 3), (2, 2, 2, 2)], gradgrad=True)
    gradcheck(lambda m, x, w: m.nn.functional.conv1d(x, w, padding="same", dilation=2),
              [(2, 2, 5), (3, 2, 3)], gradgrad=True)


def test_conv_gradient_penalty_matches_torch():
    # d/dw of ||d conv / dx||^2: needs the gradient of ConvInputGrad with respect to w.
    def fn(m, x, w):
        x = x.detach().requires_grad_(True)
        y = m.nn.functional.conv2d(x, w, padding=1)
        (gx,) = m.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        return gx.pow(2).sum()
    check(fn, [(1, 2, 4, 4), (3, 2, 3, 3)])


def test_conv_integer():
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, (2, 16, 5, 6))
    w = rng.integers(-3, 3, (16, 16, 3, 3))  # 3x3, 16 channels: never Winograd for ints
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [], arrays=[x, w],
          grad=False)
    with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
        ember.nn.functional.conv1d(ember.ones(1, 1, 4, dtype=ember.bool),
                                   ember.ones(1, 1, 2, dtype=ember.bool))


def test_conv_errors():
    F = ember.nn.functional
    x = ember.randn(1, 3, 5, 5)
    with pytest.raises(RuntimeError, match="to have 6 channels, but got 3"):
        F.conv2d(x, ember.randn(4, 6, 3, 3))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        F.conv2d(x, ember.randn(4, 3, 6, 6))
    with pytest.raises(RuntimeError, match="Expected 3D .unbatched. or 4D .batched. input"):
        F.conv2d(ember.randn(5, 5), ember.randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match="not supported for strided"):
        F.conv2d(x, ember.randn(4, 3, 3, 3), padding="same", stride=2)
    with pytest.raises(RuntimeError, match="should be the same"):
        F.conv2d(x.double(), ember.randn(4, 3, 3, 3))
    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        F.conv_transpose2d(x, ember.randn(3, 2, 3, 3), output_padding=1)


MODULES = [
    ("Conv1d", (3, 4, 3), {}),
    ("Conv1d", (4, 4, 3), {"groups": 4, "bias": False, "padding_mode": "circular",
                           "padding": 2}),
    ("Conv2d", (1, 6, 5), {}),
    ("Conv2d", (4, 6, (3, 2)), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    ("Conv2d", (3, 4, 3), {"padding": "same", "padding_mode": "reflect"}),
    ("Conv2d", (3, 4, 3), {"padding": (1, 2), "padding_mode": "replicate", "bias": False}),
    ("Conv2d", (3, 4, 4), {"padding": "same", "padding_mode": "circular"}),
    ("Conv2d", (3, 4, 3), {"padding": "valid"}),
    ("Conv3d", (2, 4, 2), {"padding": 1, "stride": (1, 2, 1)}),
    ("ConvTranspose1d", (3, 4, 3), {"stride": 2}),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1,
                                    "groups": 2}),
    ("ConvTranspose2d", (3, 2, (2, 3)), {"dilation": 2, "bias": False}),
    ("ConvTranspose3d", (2, 3, 2), {"stride": 2}),
]


def _input_shape(name, args):
    nd = int(name[-2])
    cin = args[0]
    return (2, cin) + (6, 5, 4)[:nd] if nd < 3 else (2, cin, 4, 5, 4)


@pytest.mark.parametrize("name,args,kw", MODULES)
def test_conv_module_repr_state_dict_and_output(name, args, kw):
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(*args, **kw)
    em = getattr(ember.nn, name)(*args, **kw)
    assert repr(em) == repr(tm)
    assert {k: tuple(v.shape) for k, v in em.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal(_input_shape(name, args)).astype(np.float32)
    ye, yt = em(ember.tensor(x)), tm(torch.tensor(x))
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    ye.sum().backward()
    yt.sum().backward()
    for (n, pe), (_, pt) in zip(em.named_parameters(), tm.named_parameters()):
        np.testing.assert_allclose(pe.grad.numpy(), pt.grad.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=n)


def test_conv_transpose_output_size():
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    em = ember.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    ye = em(ember.tensor(x), output_size=[8, 8])
    yt = tm(torch.tensor(x), output_size=[8, 8])
    assert tuple(ye.shape) == tuple(yt.shape) == (1, 3, 8, 8)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="requested an output size"):
        em(ember.tensor(x), output_size=[10, 10])


def test_conv_default_init_bounds():
    ember.manual_seed(0)
    m = ember.nn.Conv2d(8, 16, 3)
    bound = 1 / math.sqrt(8 * 9)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound
    assert w.dtype == np.float32 and m.weight.requires_grad
    # uniform: the variance of U(-a, a) is a^2 / 3
    assert abs(w.var() - bound ** 2 / 3) < 0.15 * bound ** 2 / 3
    assert ember.nn.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)


def test_conv_module_argument_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        ember.nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        ember.nn.Conv2d(3, 4, 3, padding_mode="bogus")
    with pytest.raises(ValueError, match="Only \"zeros\" padding mode"):
        ember.nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")


def test_conv_transpose_output_padding_double_backward():
    # output_padding >= stride (allowed below the dilation): the gradient crops
    gradcheck(lambda m, x, w: m.nn.functional.conv_transpose2d(
        x, w, padding=1, dilation=2, output_padding=1), [(1, 2, 3, 3), (2, 2, 2, 2)],
        gradgrad=True)


def test_torch_level_names():
    # torch.conv2d and friends exist beside torch.nn.functional's forms
    check(lambda m, x, w: m.conv2d(x, w, None, 1, 1), [(1, 2, 4, 4), (3, 2, 3, 3)])
    check(lambda m, x: m.max_pool2d(x, 2), [(1, 2, 4, 4)])
    check(lambda m, x: m.adaptive_max_pool1d(x, 3), [(1, 2, 7)])
    check(lambda m, x: m.pixel_shuffle(x, 2), [(1, 8, 2, 2)])


# 3x3 stride-1 convolutions with >= 16 channels take the Winograd F(2x2, 3x3) path
WINOGRAD = [
    ((2, 16, 8, 8), (16, 16, 3, 3), {"padding": 1}),
    ((2, 16, 7, 9), (24, 16, 3, 3), {"padding": (2, 0)}),  # odd output sizes
    ((1, 20, 6, 5), (16, 20, 3, 3), {}),
    ((1, 16, 5, 6), (16, 16, 3, 3), {"padding": "same"}),
    # both channel counts >= 64: the input gradient is a Winograd "full" convolution too
    ((2, 64, 5, 6), (72, 64, 3, 3), {"padding": 1}),
    ((1, 64, 6, 5), (64, 64, 3, 3), {"padding": (0, 2)}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", WINOGRAD)
def test_conv_winograd_parity(xs, ws, kw, dtype, monkeypatch):
    import ember.ops.conv as C
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)  # these small shapes take Winograd too
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)], dtype,
          low=-1, high=1)


def test_conv_winograd_double_backward(monkeypatch):
    import ember.ops.conv as C
    monkeypatch.setattr(C, "_WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    gradcheck(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(1, 2, 3, 4),
                                                                        (2, 2, 3, 3)],
              gradgrad=True)
    check(lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, padding=1), [(1, 2, 5, 4),
                                                                              (2, 3, 3, 3)])


@pytest.mark.parametrize("cache", [True, False])
def test_conv_batch_last_layout_weight_grad_and_double_backward(monkeypatch, cache):
    # a batch larger than the output rows takes the batch-innermost im2col; without the
    # cache the weight gradient recomputes its columns in that layout
    import ember.ops.conv as C
    if not cache:
        monkeypatch.setattr(C, "_COLS_CACHE_BYTES", 0)
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, stride=(1, 2), padding=1),
          [(6, 3, 5, 4), (4, 3, 3, 2), (4,)])
    gradcheck(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1, groups=2),
              [(5, 2, 3, 3), (4, 1, 2, 2)], gradgrad=True)
