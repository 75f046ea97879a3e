"""Padding (constant, reflect, replicate, circular), fold/unfold, pixel/channel shuffles and
their modules: parity with PyTorch."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

DTYPES = [np.float32, np.float64]

PADS = [
    ((2, 3, 4, 5), (1, 2, 0, 3), {}),
    ((2, 3, 4, 5), (-1, 2, 1, -2), {"value": 1.5}),
    ((2, 3, 4, 5), (1, 1, 1, 1, 1, 1), {"value": -1.0}),
    ((3, 4), (1, 2), {"mode": "reflect"}),
    ((2, 3, 4, 5), (1, 2, 3, 1), {"mode": "reflect"}),
    ((1, 2, 4, 3, 5), (1, 0, 1, 2, 2, 1), {"mode": "reflect"}),
    ((3, 4), (3, 1), {"mode": "replicate"}),
    ((2, 3, 4, 5), (1, 2, 3, 1), {"mode": "replicate"}),
    ((1, 2, 4, 3, 5), (1, 0, 2, 2, 3, 1), {"mode": "replicate"}),
    ((2, 3, 4), (4, 1), {"mode": "circular"}),
    ((2, 3, 4, 5), (1, 2, 3, 1), {"mode": "circular"}),
    ((2, 3, 4, 5), (-1, 2, 3, -1), {"mode": "circular"}),
    ((1, 2, 4, 3, 5), (1, 0, 2, 2, 3, 1), {"mode": "circular"}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,pad,kw", PADS)
def test_pad(shape, pad, kw, dtype):
    check(lambda m, x: m.nn.functional.pad(x, pad, **kw), [shape], dtype)


def test_pad_gradcheck_and_errors():
    gradcheck(lambda m, x: m.nn.functional.pad(x, (1, 2, 2, 1), mode="reflect"), [(1, 2, 3, 4)],
              gradgrad=True)
    F = ember.nn.functional
    with pytest.raises(RuntimeError, match="Padding size should be less than"):
        F.pad(ember.randn(1, 2, 3), (3, 0), mode="reflect")
    with pytest.raises(RuntimeError, match="wrapping around more than once"):
        F.pad(ember.randn(1, 2, 3), (4, 0), mode="circular")
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 1D"):
        F.pad(ember.randn(5), (1, 1), mode="reflect")
    with pytest.raises(NotImplementedError, match="Unrecognised padding mode"):
        F.pad(ember.randn(1, 2, 3), (1, 1), mode="foo")
    with pytest.raises(RuntimeError, match="divisible by 2"):
        F.pad(ember.randn(1, 2, 3), (1, 1, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_unfold_fold(dtype):
    check(lambda m, x: m.nn.functional.unfold(x, (2, 3), dilation=(1, 2), padding=1,
                                              stride=(2, 1)), [(2, 3, 6, 7)], dtype)
    check(lambda m, x: m.nn.functional.unfold(x, 2), [(3, 4, 4)], dtype)  # unbatched
    check(lambda m, x: m.nn.functional.fold(x, (5, 6), (2, 3), padding=(1, 0), stride=(2, 1)),
          [(2, 12, 12)], dtype)
    check(lambda m, x: m.nn.functional.fold(x, 4, 2, dilation=2), [(8, 4)], dtype)
    gradcheck(lambda m, x: m.nn.functional.fold(
        m.nn.functional.unfold(x, 2, padding=1, stride=2), (4, 5), 2, padding=1, stride=2),
        [(1, 2, 4, 5)], gradgrad=True)
    with pytest.raises(RuntimeError, match="calculated number of sliding blocks"):
        ember.nn.functional.fold(ember.randn(1, 4, 5), (3, 3), 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shuffles(dtype):
    F = "nn.functional"
    del F
    check(lambda m, x: m.nn.functional.pixel_shuffle(x, 2), [(2, 8, 3, 4)], dtype)
    check(lambda m, x: m.nn.functional.pixel_shuffle(x, 3), [(2, 1, 9, 2, 2)], dtype)
    check(lambda m, x: m.nn.functional.pixel_unshuffle(x, 2), [(2, 2, 4, 6)], dtype)
    check(lambda m, x: m.nn.functional.channel_shuffle(x, 3), [(2, 6, 2, 2)], dtype)


MODULES = [
    ("ZeroPad1d", ((1, 2),), (2, 3, 4)),
    ("ZeroPad2d", (1,), (2, 3, 4, 5)),
    ("ZeroPad3d", ((1, 0, 2, 1, 0, 1),), (1, 2, 3, 4, 3)),
    ("ConstantPad1d", (2, 3.5), (2, 3, 4)),
    ("ConstantPad2d", ((1, 0, 2, 1), -1.0), (2, 3, 4, 5)),
    ("ConstantPad3d", (1, 0.5), (1, 2, 3, 4, 3)),
    ("ReflectionPad1d", (2,), (2, 3, 4)),
    ("ReflectionPad2d", ((1, 2, 0, 3),), (2, 3, 4, 5)),
    ("ReflectionPad3d", (1,), (1, 2, 3, 4, 3)),
    ("ReplicationPad1d", ((3, 1),), (2, 3, 4)),
    ("ReplicationPad2d", (2,), (2, 3, 4, 5)),
    ("ReplicationPad3d", ((1, 2, 0, 1, 2, 0),), (1, 2, 3, 4, 3)),
    ("CircularPad1d", (2,), (2, 3, 4)),
    ("CircularPad2d", ((1, 2, 0, 3),), (2, 3, 4, 5)),
    ("CircularPad3d", (1,), (1, 2, 3, 4, 3)),
    ("Unfold", ((2, 3),), (2, 3, 5, 6)),
    ("Fold", ((4, 5), 2), (2, 12, 12)),
    ("PixelShuffle", (2,), (2, 8, 3, 4)),
    ("PixelUnshuffle", (2,), (2, 2, 4, 6)),
    ("ChannelShuffle", (2,), (2, 4, 3, 3)),
]


@pytest.mark.parametrize("name,args,shape", MODULES)
def test_module(name, args, shape):
    tm = getattr(torch.nn, name)(*args)
    em = getattr(ember.nn, name)(*args)
    assert repr(em) == repr(tm)
    x = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_array_equal(em(ember.tensor(x)).numpy(), tm(torch.tensor(x)).numpy())
