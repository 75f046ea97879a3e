"""ember.audio.functional against SciPy, against formulas written here, and gradchecks."""

import math

import numpy as np
import pytest

import ember
from ember.audio import functional as AF

signal = pytest.importorskip("scipy.signal")


def _t(a, dtype=ember.float64, rg=False):
    return ember.tensor(np.asarray(a), dtype=dtype, requires_grad=rg)


def _noise(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape) * 0.3


# -- mel filterbanks: a reference written from the published formulas ---------------------

def _ref_hz_to_mel(f, scale):
    if scale == "htk":
        return 2595.0 * math.log10(1.0 + f / 700.0)
    # Slaney (Auditory Toolbox): 3 mels per 200 Hz below 1 kHz, then log steps of 6.4^(1/27)
    if f < 1000.0:
        return f * 3.0 / 200.0
    return 15.0 + math.log(f / 1000.0) * 27.0 / math.log(6.4)


def _ref_mel_to_hz(m, scale):
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if m < 15.0:
        return m * 200.0 / 3.0
    return 1000.0 * 6.4 ** ((m - 15.0) / 27.0)


def _ref_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm, scale):
    freqs = [i * (sr // 2) / (n_freqs - 1) for i in range(n_freqs)]
    lo, hi = _ref_hz_to_mel(f_min, scale), _ref_hz_to_mel(f_max, scale)
    corners = [_ref_mel_to_hz(lo + (hi - lo) * j / (n_mels + 1), scale) for j in range(n_mels + 2)]
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        left, centre, right = corners[m], corners[m + 1], corners[m + 2]
        for i, f in enumerate(freqs):
            rise = (f - left) / (centre - left)
            fall = (right - f) / (right - centre)
            fb[i, m] = max(0.0, min(rise, fall))
        if norm == "slaney":
            fb[:, m] *= 2.0 / (right - left)
    return fb


@pytest.mark.parametrize("scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize("n_freqs,f_min,f_max,n_mels,sr", [(201, 0.0, 8000.0, 40, 16000),
                                                          (513, 20.0, 7600.0, 64, 22050)])
def test_melscale_fbanks_match_formulas(scale, norm, n_freqs, f_min, f_max, n_mels, sr):
    fb = AF.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm=norm, mel_scale=scale)
    assert fb.dtype == ember.float32 and tuple(fb.shape) == (n_freqs, n_mels)
    ref = _ref_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm, scale)
    np.testing.assert_allclose(fb.numpy(), ref, atol=1e-6, rtol=1e-6)


def test_melscale_fbanks_errors_and_warning():
    with pytest.raises(ValueError, match="norm"):
        AF.melscale_fbanks(201, 0, 8000, 40, 16000, norm="l2")
    with pytest.raises(ValueError, match="mel_scale"):
        AF.melscale_fbanks(201, 0, 8000, 40, 16000, mel_scale="bark")
    with pytest.warns(UserWarning, match="all zero"):
        AF.melscale_fbanks(10, 0, 8000, 40, 16000)


def test_linear_fbanks_and_dct_vs_scipy():
    fb = AF.linear_fbanks(65, 0.0, 4000.0, 8, 8000).numpy()
    corners = np.linspace(0, 4000, 10)
    freqs = np.linspace(0, 4000, 65)
    for m in range(8):  # triangles on corners equally spaced in Hz
        l, c, r = corners[m:m + 3]
        ref = np.maximum(0, np.minimum((freqs - l) / (c - l), (r - freqs) / (r - c)))
        np.testing.assert_allclose(fb[:, m], ref, atol=1e-6)
    from scipy.fft import dct
    x = _noise(3, 40)
    for norm in ("ortho", None):
        d = AF.create_dct(13, 40, norm).numpy().astype(np.float64)
        ref = dct(x, type=2, norm=norm, axis=-1)[:, :13]
        np.testing.assert_allclose(x @ d, ref, atol=1e-5)


# -- spectrograms -------------------------------------------------------------------------

def test_spectrogram_matches_scipy_stft():
    x = _noise(2, 3, 800)
    win = ember.hann_window(256, dtype=ember.float64)
    spec = AF.spectrogram(_t(x), 0, win, 256, 64, 256, 2.0, False)
    assert tuple(spec.shape) == (2, 3, 129, 13)
    # the same frames by hand: reflect-pad n_fft // 2, periodic hann, rfft, |.|^2
    xp = np.pad(x, [(0, 0), (0, 0), (128, 128)], mode="reflect")
    w = signal.get_window("hann", 256, fftbins=True)
    frames = np.stack([xp[..., i * 64:i * 64 + 256] * w for i in range(13)], -1)
    ref = np.abs(np.fft.rfft(frames, axis=-2)) ** 2
    np.testing.assert_allclose(spec.numpy(), ref, rtol=1e-9, atol=1e-9)
    norm = AF.spectrogram(_t(x), 0, win, 256, 64, 256, 1.0, True)
    np.testing.assert_allclose(norm.numpy(), np.sqrt(ref) / np.sqrt((w ** 2).sum()), rtol=1e-9)
    padded = AF.spectrogram(_t(x), 10, win, 256, 64, 256, None, False)
    assert padded.is_complex() and padded.shape[-1] == 1 + 820 // 64


def test_inverse_spectrogram_round_trip():
    x = _noise(2, 1000)
    win = ember.hann_window(128, dtype=ember.float64)
    for normalized in (False, True, "frame_length"):
        for pad in (0, 7):
            spec = AF.spectrogram(_t(x), pad, win, 128, 32, 128, None, normalized)
            y = AF.inverse_spectrogram(spec, 1000, pad, win, 128, 32, 128, normalized)
            np.testing.assert_allclose(y.numpy(), x, atol=1e-10)
    with pytest.raises(ValueError, match="complex"):
        AF.inverse_spectrogram(_t(np.ones((65, 10))), None, 0, win, 128, 32, 128, False)


def test_spectrogram_gradcheck():
    x = _t(_noise(1, 64), rg=True)
    win = ember.hann_window(16, dtype=ember.float64)
    assert ember.autograd.gradcheck(
        lambda v: AF.spectrogram(v, 2, win, 16, 4, 16, 2.0, True), (x,))


def test_griffinlim_recovers_magnitude():
    ember.manual_seed(0)
    t = np.arange(4000) / 8000
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1250 * t)
    win = ember.hann_window(256, dtype=ember.float64)
    spec = AF.spectrogram(_t(x), 0, win, 256, 64, 256, 2.0, False)
    y = AF.griffinlim(spec, win, 256, 64, 256, 2.0, 60, 0.99, 4000, True)
    assert tuple(y.shape) == (4000,) and y.dtype == ember.float64
    rebuilt = AF.spectrogram(y, 0, win, 256, 64, 256, 2.0, False)
    rel = (rebuilt.sqrt() - spec.sqrt()).norm() / spec.sqrt().norm()
    assert float(rel) < 0.1
    with pytest.raises(ValueError, match="momentum"):
        AF.griffinlim(spec, win, 256, 64, 256, 2.0, 1, 1.5, None, True)


# -- amplitudes ---------------------------------------------------------------------------

def test_amplitude_to_db_top_db_and_inverse():
    x = np.abs(_noise(2, 3, 5, 7)) ** 2 + 1e-12
    db = AF.amplitude_to_DB(_t(x), 10.0, 1e-10, 0.0, top_db=20.0).numpy()
    ref = 10 * np.log10(np.maximum(x, 1e-10))
    for b in range(2):  # floor per item over (channel, freq, time)
        np.testing.assert_allclose(db[b], np.maximum(ref[b], ref[b].max() - 20.0), rtol=1e-12)
    db = AF.amplitude_to_DB(_t(x), 10.0, 1e-10, 0.0)
    np.testing.assert_allclose(AF.DB_to_amplitude(db, 1.0, 1.0).numpy(), x, rtol=1e-9)
    amp = AF.amplitude_to_DB(_t(np.sqrt(x)), 20.0, 1e-10, 0.0)
    np.testing.assert_allclose(AF.DB_to_amplitude(amp, 1.0, 0.5).numpy(), np.sqrt(x), rtol=1e-9)


def test_mu_law_round_trip_and_formula():
    x = np.linspace(-1, 1, 101)
    enc = AF.mu_law_encoding(_t(x), 256)
    assert enc.dtype == ember.int64 and int(enc.min()) == 0 and int(enc.max()) == 255
    ref = ((np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255) + 1) / 2 * 255 + 0.5)
    np.testing.assert_array_equal(enc.numpy(), ref.astype(np.int64))
    dec = AF.mu_law_decoding(enc, 256).numpy()
    assert np.abs(dec - x).max() < 0.021


def test_gain_and_fade():
    x = np.ones((2, 100))
    np.testing.assert_allclose(AF.gain(_t(x), 6.0).numpy(), x * 10 ** 0.3)
    y = AF.fade(_t(x), 10, 20, "linear").numpy()
    np.testing.assert_allclose(y[0, :10], np.linspace(0, 1, 10))
    np.testing.assert_allclose(y[0, 80:], np.linspace(1, 0, 20))
    np.testing.assert_allclose(y[0, 10:80], 1.0)
    for shape in ("exponential", "logarithmic", "quarter_sine", "half_sine"):
        y = AF.fade(_t(x), 10, 10, shape).numpy()
        assert y[0, 0] <= 0.05 and y[0, 9] == pytest.approx(1.0) and y[0, -1] <= 0.05
        assert np.all(np.diff(y[0, :10]) >= 0) and np.all(np.diff(y[0, -10:]) <= 0)
    with pytest.raises(ValueError, match="fade_shape"):
        AF.fade(_t(x), 1, 1, "cubic")


# -- resampling ---------------------------------------------------------------------------

@pytest.mark.parametrize("orig,new", [(16000, 8000), (8000, 16000), (44100, 16000), (3, 7)])
@pytest.mark.parametrize("method", ["sinc_interp_hann", "sinc_interp_kaiser"])
def test_resample_band_limited_sine(orig, new, method):
    n = 3 * orig if orig > 100 else 300
    f = 0.05 * min(orig, new)
    x = np.sin(2 * np.pi * f * np.arange(n) / orig)
    y = AF.resample(_t(x[None]), orig, new, resampling_method=method).numpy()[0]
    assert y.shape == (math.ceil(new * n / orig),)
    ref = np.sin(2 * np.pi * f * np.arange(len(y)) / new)
    m = len(y) // 8  # edges see the zero padding
    np.testing.assert_allclose(y[m:-m], ref[m:-m], atol=2e-3)
    # and against SciPy's polyphase resampler (a different FIR design: loose agreement)
    g = math.gcd(orig, new)
    sp = signal.resample_poly(x, new // g, orig // g)
    np.testing.assert_allclose(y[m:-m], sp[:len(y)][m:-m], atol=5e-3)


def test_resample_identity_dtype_gradcheck_and_errors():
    x = _t(_noise(2, 3, 50), dtype=ember.float32)
    assert AF.resample(x, 100, 100) is x
    assert AF.resample(x, 2, 3).dtype == ember.float32
    xg = _t(_noise(1, 30), rg=True)
    assert ember.autograd.gradcheck(lambda v: AF.resample(v, 3, 2, lowpass_filter_width=3), (xg,))
    with pytest.raises(ValueError, match="resampling_method"):
        AF.resample(x, 2, 3, resampling_method="linear")
    with pytest.raises(ValueError, match="positive"):
        AF.resample(x, 0, 3)


# -- filters ------------------------------------------------------------------------------

def test_lfilter_matches_scipy():
    x = _noise(2, 3, 500)
    b, a = signal.butter(4, 0.2)
    y = AF.lfilter(_t(x), _t(a), _t(b), clamp=False).numpy()
    np.testing.assert_allclose(y, signal.lfilter(b, a, x, axis=-1), atol=1e-10)
    # a[0] != 1 is normalised; clamp clips to [-1, 1]
    y = AF.lfilter(_t(x * 10), _t(a * 3), _t(b * 3)).numpy()
    np.testing.assert_allclose(y, np.clip(signal.lfilter(b, a, x * 10, axis=-1), -1, 1),
                               atol=1e-10)
    # float32 in, float32 out
    y32 = AF.lfilter(_t(x, ember.float32), _t(a, ember.float32), _t(b, ember.float32), False)
    assert y32.dtype == ember.float32


def test_lfilter_filter_banks():
    x = _noise(4, 2, 300)
    (b1, a1), (b2, a2) = signal.butter(2, 0.1), signal.butter(2, 0.4, "high")
    A, B = _t(np.stack([a1, a2])), _t(np.stack([b1, b2]))
    y = AF.lfilter(_t(x), A, B, clamp=False, batching=True).numpy()
    np.testing.assert_allclose(y[:, 0], signal.lfilter(b1, a1, x[:, 0]), atol=1e-10)
    np.testing.assert_allclose(y[:, 1], signal.lfilter(b2, a2, x[:, 1]), atol=1e-10)
    y = AF.lfilter(_t(x[:, 0]), A, B, clamp=False, batching=False).numpy()
    assert y.shape == (4, 2, 300)
    np.testing.assert_allclose(y[:, 1], signal.lfilter(b2, a2, x[:, 0]), atol=1e-10)
    with pytest.raises(ValueError, match="number of filters"):
        AF.lfilter(_t(_noise(3, 300)), A, B)
    with pytest.raises(ValueError, match="same"):
        AF.lfilter(_t(x), _t(a1), _t(b1[:2]))


def test_lfilter_gradcheck_and_gradgradcheck():
    x = _t(_noise(2, 20), rg=True)
    a = _t([1.0, -0.5, 0.2], rg=True)
    b = _t([0.4, 0.3, 0.1], rg=True)
    f = lambda x, a, b: AF.lfilter(x, a, b, clamp=False)
    assert ember.autograd.gradcheck(f, (x, a, b))
    assert ember.autograd.gradgradcheck(f, (x, a, b))
    # a0 that is not one: gradients flow through the normalisation too
    a2 = _t([2.0, -0.5, 0.2], rg=True)
    assert ember.autograd.gradcheck(f, (x, a2, b))


def test_filtfilt_is_forward_backward_lfilter():
    x = _noise(2, 400)
    b, a = signal.butter(3, 0.15)
    y = AF.filtfilt(_t(x), _t(a), _t(b), clamp=False).numpy()
    fwd = signal.lfilter(b, a, x, axis=-1)
    ref = signal.lfilter(b, a, fwd[:, ::-1], axis=-1)[:, ::-1]
    np.testing.assert_allclose(y, ref, atol=1e-10)


def _cookbook(kind, sr, f, Q, gain_db=0.0):
    w0 = 2 * np.pi * f / sr
    alpha = np.sin(w0) / (2 * Q)
    c = np.cos(w0)
    A = 10 ** (gain_db / 40)
    return {
        "lowpass": ([(1 - c) / 2, 1 - c, (1 - c) / 2], [1 + alpha, -2 * c, 1 - alpha]),
        "highpass": ([(1 + c) / 2, -(1 + c), (1 + c) / 2], [1 + alpha, -2 * c, 1 - alpha]),
        "bandpass": ([alpha, 0, -alpha], [1 + alpha, -2 * c, 1 - alpha]),
        "bandreject": ([1, -2 * c, 1], [1 + alpha, -2 * c, 1 - alpha]),
        "allpass": ([1 - alpha, -2 * c, 1 + alpha], [1 + alpha, -2 * c, 1 - alpha]),
        "equalizer": ([1 + alpha * A, -2 * c, 1 - alpha * A], [1 + alpha / A, -2 * c, 1 - alpha / A]),
    }[kind]


@pytest.mark.parametrize("kind", ["lowpass", "highpass", "bandpass", "bandreject", "allpass",
                                  "equalizer"])
def test_biquad_family_matches_cookbook(kind):
    x = _noise(2, 400) * 0.5
    sr, f, Q = 16000, 1500.0, 0.9
    if kind == "equalizer":
        y = AF.equalizer_biquad(_t(x), sr, f, 6.0, Q)
    else:
        y = getattr(AF, kind + "_biquad")(_t(x), sr, f, Q)
    b, a = _cookbook(kind, sr, f, Q, 6.0)
    np.testing.assert_allclose(y.numpy(), np.clip(signal.lfilter(b, a, x), -1, 1), atol=1e-10)
    # an independent check of the design: the frequency response at the centre/cutoff
    _, h = signal.freqz(b, a, worN=[f], fs=sr)
    expect = {"lowpass": Q, "highpass": Q, "bandpass": 1.0, "bandreject": 0.0, "allpass": 1.0,
              "equalizer": 10 ** (6.0 / 20)}[kind]
    assert abs(abs(h[0]) - expect) < 1e-9


def test_lowpass_gradient_wrt_cutoff():
    x = _t(_noise(1, 40))
    fc = _t(1000.0, rg=True)
    assert ember.autograd.gradcheck(lambda f: AF.lowpass_biquad(x, 8000, f), (fc,))


# -- deltas and masking ----------------------------------------------------------------------

def test_compute_deltas_formula_and_grad():
    c = _noise(2, 5, 30)
    for win in (3, 5, 9):
        n = (win - 1) // 2
        cp = np.pad(c, [(0, 0), (0, 0), (n, n)], mode="edge")
        ref = sum(k * (cp[..., n + k:n + k + 30] - cp[..., n - k:n - k + 30])
                  for k in range(1, n + 1)) / (2 * sum(k * k for k in range(1, n + 1)))
        np.testing.assert_allclose(AF.compute_deltas(_t(c), win).numpy(), ref, atol=1e-12)
    x = _t(_noise(3, 12), rg=True)
    assert ember.autograd.gradcheck(lambda v: AF.compute_deltas(v), (x,))


def test_masking_bands():
    ember.manual_seed(0)
    s = ember.ones(2, 3, 20, 30)
    m = AF.mask_along_axis(s, 10, 0.0, axis=-1)
    cols = (m[0, 0] == 0).all(0).numpy()
    assert cols.sum() < 10 and np.all(m.numpy()[:, :, :, cols] == 0)
    idx = np.flatnonzero(cols)
    assert len(idx) == 0 or np.all(np.diff(idx) == 1)  # one contiguous band
    m = AF.mask_along_axis_iid(s, 8, -1.0, axis=2).numpy()
    rows = (m == -1).all(-1)  # (batch, channel, freq)
    assert rows.sum(-1).max() < 8
    assert (rows.sum(-1) > 0).any()

