"""Resampling: interpolate (nearest, nearest-exact, linear, bilinear, bicubic, trilinear,
area; align_corners, scale factors), grid_sample, affine_grid and the Upsample modules."""

import warnings

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

DTYPES = [np.float32, np.float64]

INTERP = [
    ((2, 3, 4, 5), {"scale_factor": 2.5, "mode": "nearest"}),
    ((2, 3, 4, 5), {"size": (7, 3), "mode": "nearest"}),
    ((2, 3, 4, 5), {"size": (7, 3), "mode": "nearest-exact"}),
    ((2, 3, 9), {"scale_factor": 0.6, "mode": "nearest-exact"}),
    ((1, 2, 3, 4, 3), {"scale_factor": (2, 1, 1.5), "mode": "nearest"}),
    ((2, 3, 7, 5), {"size": (3, 2), "mode": "area"}),
    ((2, 3, 4), {"size": 9, "mode": "linear"}),
    ((2, 3, 4), {"size": 9, "mode": "linear", "align_corners": True}),
    ((2, 3, 4, 5), {"scale_factor": 2, "mode": "bilinear"}),
    ((2, 3, 4, 5), {"scale_factor": 2, "mode": "bilinear", "align_corners": True}),
    ((2, 3, 5, 5), {"size": (3, 7), "mode": "bilinear"}),
    ((2, 3, 5, 5), {"scale_factor": 1.3, "mode": "bilinear", "recompute_scale_factor": True}),
    ((2, 3, 4, 5), {"scale_factor": 1.7, "mode": "bicubic"}),
    ((2, 3, 4, 5), {"size": (6, 3), "mode": "bicubic", "align_corners": True}),
    ((1, 2, 4, 4, 3), {"scale_factor": (1.5, 0.5, 2.0), "mode": "trilinear"}),
    ((1, 2, 3, 4, 3), {"size": (5, 2, 4), "mode": "trilinear", "align_corners": True}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", INTERP)
def test_interpolate(shape, kw, dtype):
    check(lambda m, x: m.nn.functional.interpolate(x, **kw), [shape], dtype)


def test_interpolate_double_backward_and_errors():
    gradcheck(lambda m, x: m.nn.functional.interpolate(x, scale_factor=1.5, mode="bicubic"),
              [(1, 1, 3, 3)], gradgrad=True)
    F = ember.nn.functional
    x = ember.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=2, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(x, size=2, align_corners=True)
    with pytest.raises(NotImplementedError, match="needs 3D input"):
        F.interpolate(x, size=2, mode="linear")
    with pytest.raises(ValueError, match="Anti-alias option is restricted"):
        F.interpolate(x, size=2, mode="nearest", antialias=True)


@pytest.mark.parametrize("kw", [
    {"scale_factor": 2}, {"scale_factor": 1}, {"scale_factor": 2, "mode": "nearest-exact"},
    {"size": (3, 7), "mode": "bilinear"}, {"scale_factor": 1.5, "mode": "bicubic"},
    {"size": (2, 3), "mode": "bilinear", "antialias": True},
    {"scale_factor": 0.5, "mode": "bicubic", "antialias": True}])
def test_interpolate_is_one_node_with_pytorch_name(kw):
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5))
    want = torch.nn.functional.interpolate(torch.tensor(x, requires_grad=True), **kw)
    got = ember.nn.functional.interpolate(ember.tensor(x, requires_grad=True), **kw)
    assert got.grad_fn.name() == want.grad_fn.name()
    assert got.grad_fn.next_functions[0][0].name() == "torch::autograd::AccumulateGrad"


def test_interpolate_output_size_follows_input_under_compile():
    F = ember.nn.functional
    f = ember.compile(lambda t: F.interpolate(t, scale_factor=1.5, mode="bilinear"),
                      dynamic=True)
    for hw in [(4, 6), (5, 7), (9, 3)]:
        x = ember.randn(2, 3, *hw)
        np.testing.assert_allclose(f(x).numpy(), F.interpolate(x, scale_factor=1.5,
                                                               mode="bilinear").numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample(padding_mode, align_corners, dtype):
    kw = {"padding_mode": padding_mode, "align_corners": align_corners}
    check(lambda m, x, g: m.nn.functional.grid_sample(x, g, mode="bilinear", **kw),
          [(2, 3, 4, 5), (2, 3, 6, 2)], dtype, low=-1.3, high=1.3)
    # nearest: the gradient flows to the input only (PyTorch's grid gradient is zero)
    grid = np.random.default_rng(1).uniform(-1.3, 1.3, (2, 3, 6, 2)).astype(dtype)
    check(lambda m, x: m.nn.functional.grid_sample(x, m.tensor(grid), mode="nearest", **kw),
          [(2, 3, 4, 5)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_bicubic_and_volumes(padding_mode, align_corners, dtype):
    kw = {"padding_mode": padding_mode, "align_corners": align_corners}
    check(lambda m, x, g: m.nn.functional.grid_sample(x, g, mode="bicubic", **kw),
          [(2, 3, 5, 6), (2, 3, 4, 2)], dtype, low=-1.4, high=1.4)
    # 5-D: trilinear ("bilinear") in the input and the grid, nearest in the input
    check(lambda m, x, g: m.nn.functional.grid_sample(x, g, mode="bilinear", **kw),
          [(2, 2, 3, 4, 5), (2, 2, 3, 4, 3)], dtype, low=-1.3, high=1.3)
    grid = np.random.default_rng(2).uniform(-1.3, 1.3, (2, 2, 3, 4, 3)).astype(dtype)
    check(lambda m, x: m.nn.functional.grid_sample(x, m.tensor(grid), mode="nearest", **kw),
          [(2, 2, 3, 4, 5)], dtype)


def test_grid_sample_errors_match():
    for m in (torch, ember):
        with pytest.raises(RuntimeError, match="bicubic interpolation only supports 4D"):
            m.nn.functional.grid_sample(m.zeros(1, 1, 2, 2, 2), m.zeros(1, 1, 1, 1, 3),
                                        mode="bicubic", align_corners=False)
        with pytest.raises(RuntimeError, match="grid_sampler"):
            m.nn.functional.grid_sample(m.zeros(1, 1, 2, 2), m.zeros(1, 1, 1, 3),
                                        align_corners=False)


def test_grid_sample_gradcheck():
    gradcheck(lambda m, x, g: m.nn.functional.grid_sample(x, g, padding_mode="reflection",
                                                          align_corners=False),
              [(1, 2, 3, 4), (1, 2, 3, 2)], low=-1.2, high=1.2)
    gradcheck(lambda m, x, g: m.nn.functional.grid_sample(x, g, mode="bicubic",
                                                          padding_mode="border",
                                                          align_corners=True),
              [(1, 1, 4, 4), (1, 2, 2, 2)], low=-1.1, high=1.1)
    gradcheck(lambda m, x, g: m.nn.functional.grid_sample(x, g, align_corners=False),
              [(1, 1, 2, 3, 3), (1, 2, 1, 2, 3)], low=-1.1, high=1.1)


@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid(align_corners):
    check(lambda m, t: m.nn.functional.affine_grid(t, (2, 3, 4, 5), align_corners=align_corners),
          [(2, 2, 3)])
    check(lambda m, t: m.nn.functional.affine_grid(t, (2, 3, 4, 5, 3),
                                                   align_corners=align_corners), [(2, 3, 4)])
    # the identity transform reproduces the input through grid_sample
    theta = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (1, 1, 1))
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5))
    F = ember.nn.functional
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = F.affine_grid(ember.tensor(theta), (1, 2, 4, 5), align_corners=align_corners)
    y = F.grid_sample(ember.tensor(x), g, align_corners=align_corners)
    np.testing.assert_allclose(y.numpy(), x, atol=1e-12)


MODULES = [
    ("Upsample", (), {"scale_factor": 2}),
    ("Upsample", (), {"size": (5, 7), "mode": "bilinear", "align_corners": False}),
    ("Upsample", (), {"scale_factor": (2.0, 1.5), "mode": "bicubic"}),
    ("UpsamplingNearest2d", (), {"scale_factor": 3}),
    ("UpsamplingBilinear2d", (), {"size": 6}),
]


@pytest.mark.parametrize("name,args,kw", MODULES)
def test_upsample_module(name, args, kw):
    tm = getattr(torch.nn, name)(*args, **kw)
    em = getattr(ember.nn, name)(*args, **kw)
    assert repr(em) == repr(tm)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(em(ember.tensor(x)).numpy(), tm(torch.tensor(x)).numpy(),
                               rtol=1e-9, atol=1e-12)
