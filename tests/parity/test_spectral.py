"""stft / istft and the *_window constructors against PyTorch."""

import warnings

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

CONFIGS = [
    dict(n_fft=16),
    dict(n_fft=16, hop_length=5, win_length=12, center=False),
    dict(n_fft=16, normalized=True, onesided=False),
    dict(n_fft=15, hop_length=4, pad_mode="constant"),
    dict(n_fft=8, hop_length=2, pad_mode="replicate"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", CONFIGS, ids=str)
@pytest.mark.parametrize("windowed", [False, True])
def test_stft_parity(kw, windowed, dtype):
    win = kw.get("win_length", kw["n_fft"])

    def fn(m, x):
        w = m.hann_window(win, dtype=x.dtype) if windowed else m.ones(win, dtype=x.dtype)
        return m.view_as_real(m.stft(x, window=w, return_complex=True, **kw))
    check(fn, [(2, 40)], dtype)
    check(fn, [(37,)], dtype)  # unbatched


@pytest.mark.parametrize("kw", [c for c in CONFIGS if c.get("center", True)], ids=str)
def test_istft_parity_and_round_trip(kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 60))
    win = kw.get("win_length", kw["n_fft"])
    kwi = {k: v for k, v in kw.items() if k != "pad_mode"}
    spec_t = torch.stft(torch.tensor(x), window=torch.hann_window(win, dtype=torch.float64),
                        return_complex=True, **kw)
    spec_e = ember.tensor(spec_t.numpy())
    for length in (None, 60, 70):
        a = ember.istft(spec_e, window=ember.hann_window(win, dtype=ember.float64),
                        length=length, **kwi)
        b = torch.istft(spec_t, window=torch.hann_window(win, dtype=torch.float64),
                        length=length, **kwi)
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)
    if "pad_mode" not in kw:  # reflect padding: the round trip gives the signal back
        np.testing.assert_allclose(a.numpy()[:, :60], x, atol=1e-12)

    def rt(m, t):
        w = m.hann_window(win, dtype=t.dtype)
        return m.istft(m.stft(t, window=w, return_complex=True, **kw), window=w, length=60,
                       **kwi)
    check(rt, [(2, 60)])
    gradcheck(rt, [(1, 30)])


def test_stft_errors_and_warnings():
    x = ember.randn(32)
    with pytest.raises(RuntimeError):
        ember.stft(x, 8)  # return_complex is required for real input
    with pytest.raises(RuntimeError):
        ember.stft(x, 64, return_complex=True, window=ember.ones(64), center=False)
    with pytest.raises(RuntimeError):
        ember.stft(x, 8, win_length=9, return_complex=True)
    with pytest.warns(UserWarning):
        ember.stft(x, 8, return_complex=True)
    with pytest.warns(UserWarning):
        r = ember.stft(x, 8, window=ember.ones(8), return_complex=False)
    assert r.shape[-1] == 2 and not r.is_complex()
    with pytest.raises(RuntimeError):
        ember.istft(ember.randn(5, 3), 8)  # not complex
    w = ember.hann_window(12, dtype=ember.float64)
    s = ember.stft(ember.randn(100, dtype=ember.float64), 16, 5, 12, w, center=False,
                   return_complex=True)
    with pytest.raises(RuntimeError):
        ember.istft(s, 16, 5, 12, w, center=False)  # the envelope is zero at the edges
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x.stft(8, window=ember.ones(8), return_complex=True)  # a window given: no warning


@pytest.mark.parametrize("name", ["hann_window", "hamming_window", "blackman_window",
                                  "bartlett_window", "kaiser_window"])
def test_window_constructors(name):
    for n in (0, 1, 2, 7, 8):
        for periodic in (True, False):
            a = getattr(ember, name)(n, periodic, dtype=ember.float64)
            b = getattr(torch, name)(n, periodic, dtype=torch.float64)
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)
    assert getattr(ember, name)(4).dtype == ember.float32
