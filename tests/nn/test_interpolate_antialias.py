"""``F.interpolate(antialias=True)`` (bilinear, bicubic, lanczos) against PyTorch: values and
gradients, float32/float64, downsampling and upsampling, ``align_corners``, scale factors,
non-contiguous inputs, errors; a finite-difference check; and torchvision-style tensor
``resize`` going through it."""

import numpy as np
import pytest

import ember
from ember.vision.transforms import functional as VF
from tests.parity.helpers import check

torch = pytest.importorskip("torch")

_SPECS = [dict(size=(5, 7)), dict(size=(19, 4)), dict(scale_factor=0.37),
          dict(scale_factor=(2.5, 0.5)), dict(size=(1, 3)),
          dict(scale_factor=0.6, recompute_scale_factor=True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", range(len(_SPECS)))
@pytest.mark.parametrize("mode,align", [("bilinear", False), ("bilinear", True),
                                        ("bicubic", False), ("bicubic", True),
                                        ("lanczos", False)])
def test_matches_pytorch(mode, align, spec, dtype):
    kw = _SPECS[spec]
    check(lambda m, x: m.nn.functional.interpolate(x, mode=mode, align_corners=align,
                                                    antialias=True, **kw),
          [(2, 3, 11, 13)], dtype)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_non_contiguous_and_channels_last(mode):
    f = (lambda m, x: m.nn.functional.interpolate(x, size=(4, 6), mode=mode, antialias=True))
    check(f, [(2, 3, 9, 10)], np.float64, noncontig=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 10))
    want = f(torch, torch.tensor(x).contiguous(memory_format=torch.channels_last))
    got = f(ember, ember.tensor(x).contiguous(memory_format=ember.channels_last))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_gradcheck():
    x = ember.tensor(np.random.default_rng(1).standard_normal((1, 2, 7, 6)),
                     requires_grad=True)
    for mode in ("bilinear", "bicubic", "lanczos"):
        assert ember.autograd.gradcheck(
            lambda v: ember.nn.functional.interpolate(v, size=(3, 4), mode=mode,
                                                      antialias=True), (x,))


@pytest.mark.parametrize("call", [
    dict(mode="nearest", antialias=True),
    dict(mode="linear", antialias=True, x=(1, 2, 8)),
    dict(mode="bilinear", antialias=True, x=(1, 1, 2, 8, 8)),
    dict(mode="lanczos", antialias=False),
    dict(mode="lanczos", antialias=True, align_corners=True),
])
def test_errors_match(call):
    call = dict(call)
    shape = call.pop("x", (1, 2, 8, 8))
    errors = []
    for m in (torch, ember):
        with pytest.raises((ValueError, NotImplementedError, RuntimeError)) as info:
            m.nn.functional.interpolate(m.zeros(shape), size=(4,) * (len(shape) - 2), **call)
        errors.append(info.type)
    assert errors[0] is errors[1]


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_tensor_resize_is_interpolate(mode, antialias, dtype):
    rng = np.random.default_rng(2)
    img = (rng.random((3, 20, 17)) * 255).astype(dtype)
    got = VF.resize(ember.tensor(img), [8, 11], interpolation=mode, antialias=antialias)
    t = torch.tensor(img.astype(np.float32))[None]
    want = torch.nn.functional.interpolate(t, size=(8, 11), mode=mode, align_corners=False,
                                           antialias=antialias)[0]
    if dtype == "uint8":
        want = want.round().clamp(0, 255).to(torch.uint8)
    assert got.dtype == getattr(ember, dtype) and tuple(got.shape) == (3, 8, 11)
    # uint8: a value within float32 rounding of .5 may round either way
    np.testing.assert_allclose(got.numpy().astype(np.float64),
                               want.numpy().astype(np.float64),
                               atol=1 if dtype == "uint8" else 1e-4, rtol=1e-5)


def test_tensor_resize_batched_and_differentiable():
    x = ember.randn(2, 3, 16, 16, requires_grad=True)
    y = VF.resize(x, 8)
    assert tuple(y.shape) == (2, 3, 8, 8)
    y.sum().backward()
    # antialiased downsampling by 2 spreads each output over a 4x4 window: every input
    # pixel gets a gradient
    assert (x.grad.abs() > 0).all()
