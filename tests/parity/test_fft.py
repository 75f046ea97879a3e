"""Parity of ember.fft with torch.fft: values and gradients, with n/s, dim and norm."""

import numpy as np
import pytest

from .helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

NORMS = [None, "ortho", "forward"]


def _cplx(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


REAL = [
    ("fft", lambda m, a, nm: m.fft.fft(a, norm=nm), [(3, 8)]),
    ("fft_n_pad", lambda m, a, nm: m.fft.fft(a, n=10, dim=0, norm=nm), [(6, 2)]),
    ("fft_n_trim", lambda m, a, nm: m.fft.fft(a, n=5, norm=nm), [(2, 8)]),
    ("ifft", lambda m, a, nm: m.fft.ifft(a, norm=nm), [(7,)]),
    ("rfft", lambda m, a, nm: m.fft.rfft(a, norm=nm), [(3, 8)]),
    ("rfft_odd_n", lambda m, a, nm: m.fft.rfft(a, n=7, dim=0, norm=nm), [(6, 2)]),
    ("irfft", lambda m, a, nm: m.fft.irfft(a, norm=nm), [(2, 5)]),
    ("irfft_n_odd", lambda m, a, nm: m.fft.irfft(a, n=9, norm=nm), [(5,)]),
    ("irfft_n_pad", lambda m, a, nm: m.fft.irfft(a, n=12, norm=nm), [(4,)]),
    ("fft2", lambda m, a, nm: m.fft.fft2(a, norm=nm), [(2, 4, 6)]),
    ("ifft2_s", lambda m, a, nm: m.fft.ifft2(a, s=(3, 8), norm=nm), [(4, 6)]),
    ("rfft2", lambda m, a, nm: m.fft.rfft2(a, norm=nm), [(4, 6)]),
    ("irfft2", lambda m, a, nm: m.fft.irfft2(a, norm=nm), [(4, 4)]),
    ("fftn", lambda m, a, nm: m.fft.fftn(a, norm=nm), [(2, 3, 4)]),
    ("fftn_dims", lambda m, a, nm: m.fft.fftn(a, s=(5, -1), dim=(0, 2), norm=nm), [(2, 3, 4)]),
    ("ifftn", lambda m, a, nm: m.fft.ifftn(a, norm=nm), [(2, 3)]),
    ("rfftn", lambda m, a, nm: m.fft.rfftn(a, norm=nm), [(2, 3, 4)]),
    ("rfftn_s", lambda m, a, nm: m.fft.rfftn(a, s=(4, 5), norm=nm), [(2, 3, 4)]),
    ("irfftn", lambda m, a, nm: m.fft.irfftn(a, dim=(0, 1), norm=nm), [(3, 4)]),
    ("irfftn_s", lambda m, a, nm: m.fft.irfftn(a, s=(2, 7), norm=nm), [(3, 4)]),
    ("hfft", lambda m, a, nm: m.fft.hfft(a, norm=nm), [(2, 5)]),
    ("ihfft", lambda m, a, nm: m.fft.ihfft(a, n=7, norm=nm), [(2, 6)]),
    ("hfft2", lambda m, a, nm: m.fft.hfft2(a, norm=nm), [(3, 4)]),
    ("ihfftn", lambda m, a, nm: m.fft.ihfftn(a, norm=nm), [(2, 3, 4)]),
]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name,fn,shapes", REAL, ids=[c[0] for c in REAL])
def test_fft_real_input(name, fn, shapes, norm):
    check(lambda m, a: fn(m, a, norm), shapes)


@pytest.mark.parametrize("name", ["fft", "rfft_odd_n", "irfft", "irfft_n_odd", "rfftn_s",
                                  "irfftn_s", "fft_n_trim"])
def test_fft_float32(name):
    fn, shapes = {c[0]: c[1:] for c in REAL}[name]
    check(lambda m, a: fn(m, a, None), shapes, np.float32, atol=1e-4, rtol=1e-4)


COMPLEX = [
    ("fft", lambda m, a: m.fft.fft(a, norm="ortho"), (3, 5)),
    ("ifft_n", lambda m, a: m.fft.ifft(a, n=7, dim=0), (5, 2)),
    ("irfft", lambda m, a: m.fft.irfft(a), (2, 5)),
    ("irfft_odd", lambda m, a: m.fft.irfft(a, n=7, norm="forward"), (4,)),
    ("fft2", lambda m, a: m.fft.fft2(a), (3, 4)),
    ("irfftn", lambda m, a: m.fft.irfftn(a, s=(4, 6)), (3, 4)),
    ("ifftn", lambda m, a: m.fft.ifftn(a, norm="forward"), (2, 3, 2)),
    ("hfft", lambda m, a: m.fft.hfft(a, n=8, norm="ortho"), (2, 5)),
    ("hfftn", lambda m, a: m.fft.hfftn(a, s=(3, 6)), (3, 4)),
]


@pytest.mark.parametrize("name,fn,shape", COMPLEX, ids=[c[0] for c in COMPLEX])
def test_fft_complex_input(name, fn, shape):
    check(fn, None, arrays=[_cplx(shape)])


def test_fft_gradcheck():
    gradcheck(lambda m, a: m.fft.rfft(a, n=7).abs(), [(6,)])
    gradcheck(lambda m, a: m.fft.irfft(m.fft.rfft(a) * 1.5, n=8), [(8,)])
    gradcheck(lambda m, a: m.fft.fft2(a, norm="ortho").real, [(3, 4)])


def test_fft_helpers():
    check(lambda m: m.fft.fftfreq(8), [], grad=False)
    check(lambda m: m.fft.fftfreq(7, d=0.5, dtype=m.float64), [], grad=False)
    check(lambda m: m.fft.rfftfreq(9, 2.0), [], grad=False)
    check(lambda m, a: m.fft.fftshift(a), [(4, 5)])
    check(lambda m, a: m.fft.ifftshift(a, dim=1), [(4, 5)])
    check(lambda m, a: m.fft.ifftshift(m.fft.fftshift(a, (0,)), dim=(-2,)), [(5, 3)])


def test_fft_dtypes_and_errors():
    check(lambda m: m.fft.fft(m.arange(4)), [], grad=False)
    assert ember.fft.fft(ember.zeros(4)).dtype == ember.complex64
    assert ember.fft.irfft(ember.zeros(3, dtype=ember.complex128)).dtype == ember.float64
    with pytest.raises(ValueError):
        ember.fft.fft(ember.zeros(4), norm="bad")
    with pytest.raises(RuntimeError):
        ember.fft.rfft(ember.zeros(4, dtype=ember.complex64))
