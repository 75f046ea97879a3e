"""``ember.audio.functional``: torchaudio's functional DSP, written with ember ops.

Everything that torchaudio differentiates is differentiable here too: spectrograms are built
on ``ember.stft``/``ember.istft``, filterbanks and DCTs are plain matrices, resampling is a
strided ``conv1d`` with a windowed-sinc kernel, and ``lfilter`` has an all-pole op whose
backward is the same filter run backwards in time (so double backward works as well).
Waveforms are ``(..., time)``; spectrograms are ``(..., freq, time)``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

import ember
from ember.autograd import Function
from ember.nn import functional as F

__all__ = ["spectrogram", "inverse_spectrogram", "griffinlim", "melscale_fbanks",
           "linear_fbanks", "create_dct", "amplitude_to_DB", "DB_to_amplitude",
           "mu_law_encoding", "mu_law_decoding", "resample", "lfilter", "filtfilt", "biquad",
           "lowpass_biquad", "highpass_biquad", "bandpass_biquad", "bandreject_biquad",
           "allpass_biquad", "equalizer_biquad", "compute_deltas", "fade", "gain",
           "phase_vocoder", "mask_along_axis", "mask_along_axis_iid"]


def _flat(x, keep):
    """``(..., *last keep dims)`` -> ``(N, *last keep dims)`` and the leading shape."""
    lead = tuple(x.shape[:x.ndim - keep])
    return x.reshape((-1,) + tuple(x.shape[x.ndim - keep:])), lead


# ------------------------------------------------------------------------------ spectrograms

def _norm_flags(normalized):
    if isinstance(normalized, str):
        if normalized not in ("window", "frame_length"):
            raise ValueError(f"normalized must be a bool, 'window' or 'frame_length', got "
                             f"{normalized!r}")
        return normalized == "window", normalized == "frame_length"
    return bool(normalized), False


def spectrogram(waveform, pad, window, n_fft, hop_length, win_length, power, normalized,
                center=True, pad_mode="reflect", onesided=True, return_complex=None):
    """A (power) spectrogram of ``waveform`` ``(..., time)``: ``(..., n_fft // 2 + 1, frames)``.

    ``power=None`` returns the complex STFT; ``normalized=True`` (or "window") divides by the
    window's L2 norm, "frame_length" uses the STFT's orthonormal scaling.
    """
    if return_complex is not None:
        warnings.warn("spectrogram: return_complex is deprecated; pass power=None for a "
                      "complex spectrogram", UserWarning, stacklevel=2)
    if pad > 0:
        waveform = F.pad(waveform, (pad, pad), "constant")
    window_norm, frame_norm = _norm_flags(normalized)
    x, lead = _flat(waveform, 1)
    spec = ember.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                      window=window, center=center, pad_mode=pad_mode, normalized=frame_norm,
                      onesided=onesided, return_complex=True)
    spec = spec.reshape(lead + tuple(spec.shape[-2:]))
    if window_norm:
        spec = spec / window.pow(2.0).sum().sqrt()
    if power is None:
        return spec
    if power == 1.0:
        return spec.abs()
    return spec.abs().pow(power)


def inverse_spectrogram(spectrogram, length, pad, window, n_fft, hop_length, win_length,
                        normalized, center=True, pad_mode="reflect", onesided=True):
    """The waveform of a complex spectrogram ``(..., freq, frames)`` by inverse STFT."""
    if not spectrogram.is_complex():
        raise ValueError(f"inverse_spectrogram: expected a complex spectrogram, got dtype "
                         f"{spectrogram.dtype}")
    window_norm, frame_norm = _norm_flags(normalized)
    if window_norm:
        spectrogram = spectrogram * window.pow(2.0).sum().sqrt()
    spec, lead = _flat(spectrogram, 2)
    wave = ember.istft(spec, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                       window=window, center=center, normalized=frame_norm, onesided=onesided,
                       length=length + 2 * pad if length is not None else None,
                       return_complex=False)
    if pad > 0:
        wave = wave[:, pad:-pad]
    return wave.reshape(lead + tuple(wave.shape[-1:]))


def griffinlim(specgram, window, n_fft, hop_length, win_length, power, n_iter, momentum,
               length, rand_init):
    """A waveform whose spectrogram magnitude matches ``specgram``, by fast Griffin-Lim
    (Perraudin et al. 2013: alternating projections with ``momentum``)."""
    if not 0 <= momentum < 1:
        raise ValueError(f"griffinlim: momentum must be in [0, 1), got {momentum}")
    spec, lead = _flat(specgram, 2)
    mag = spec.pow(1.0 / power)
    cdt = ember.complex128 if mag.dtype == ember.float64 else ember.complex64
    if rand_init:
        angles = ember.complex(ember.rand(mag.shape, dtype=mag.dtype),
                               ember.rand(mag.shape, dtype=mag.dtype))
    else:
        angles = ember.ones(mag.shape, dtype=cdt)
    tprev = None
    kw = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window)
    for _ in range(n_iter):
        inverse = ember.istft(mag * angles, length=length, **kw)
        rebuilt = ember.stft(inverse, center=True, pad_mode="reflect", normalized=False,
                             onesided=True, return_complex=True, **kw)
        angles = rebuilt
        if momentum and tprev is not None:
            angles = angles - tprev * (momentum / (1 + momentum))
        angles = angles / (angles.abs() + 1e-16)
        tprev = rebuilt
    wave = ember.istft(mag * angles, length=length, **kw)
    return wave.reshape(lead + tuple(wave.shape[-1:]))


def phase_vocoder(complex_specgrams, rate, phase_advance):
    """Speed a complex spectrogram ``(..., freq, time)`` up by ``rate`` without changing its
    pitch: magnitudes interpolated between frames, phases advanced by the measured
    instantaneous frequency."""
    if rate == 1.0:
        return complex_specgrams
    spec, lead = _flat(complex_specgrams, 2)
    real_dt = ember.float64 if spec.dtype == ember.complex128 else ember.float32
    steps = ember.arange(0, spec.shape[-1], rate, dtype=real_dt)
    alphas = steps % 1.0
    phase_0 = spec[..., :1].angle()
    spec = F.pad(spec, (0, 2))
    idx = steps.long()
    s0 = spec.index_select(-1, idx)
    s1 = spec.index_select(-1, idx + 1)
    phase = s1.angle() - s0.angle() - phase_advance
    phase = phase - 2 * math.pi * ember.round(phase / (2 * math.pi))
    phase = ember.cat([phase_0, (phase + phase_advance)[..., :-1]], dim=-1)
    mag = alphas * s1.abs() + (1 - alphas) * s0.abs()
    out = ember.polar(mag, ember.cumsum(phase, -1))
    return out.reshape(lead + tuple(out.shape[-2:]))


# ---------------------------------------------------------------------- filterbanks and DCT

def _hz_to_mel(f, mel_scale):
    f = np.asarray(f, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    lin = f / f_sp
    with np.errstate(divide="ignore"):
        log = min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def _mel_to_hz(m, mel_scale):
    m = np.asarray(m, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _triangles(all_freqs, f_pts):
    """Triangular filters with corners ``f_pts``, sampled at ``all_freqs``: (freqs, filters)."""
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk"):
    """Triangular mel filterbank ``(n_freqs, n_mels)`` (multiply a spectrogram's frequency
    axis by it). ``mel_scale`` "htk" or "slaney"; ``norm="slaney"`` scales each triangle to
    unit area (2 / bandwidth in Hz)."""
    if norm not in (None, "slaney"):
        raise ValueError(f'melscale_fbanks: norm must be one of None or "slaney", got {norm!r}')
    if mel_scale not in ("htk", "slaney"):
        raise ValueError(f'melscale_fbanks: mel_scale should be one of "htk" or "slaney", got '
                         f'{mel_scale!r}')
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_pts = np.linspace(_hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale), n_mels + 2)
    f_pts = _mel_to_hz(m_pts, mel_scale)
    fb = _triangles(all_freqs, f_pts)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2:n_mels + 2] - f_pts[:n_mels]))[None, :]
    if (fb.max(axis=0) == 0.0).any():
        warnings.warn(f"At least one mel filterbank has all zero values. The value for "
                      f"`n_mels` ({n_mels}) may be set too high. Or, the value for `n_freqs` "
                      f"({n_freqs}) may be set too low.", UserWarning, stacklevel=2)
    return ember.from_numpy(fb.astype(np.float32))


def linear_fbanks(n_freqs, f_min, f_max, n_filter, sample_rate):
    """Triangular filters equally spaced in Hz: ``(n_freqs, n_filter)`` (used by LFCC)."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    f_pts = np.linspace(f_min, f_max, n_filter + 2)
    return ember.from_numpy(_triangles(all_freqs, f_pts).astype(np.float32))


def create_dct(n_mfcc, n_mels, norm):
    """The DCT-II matrix ``(n_mels, n_mfcc)``; ``norm="ortho"`` makes it orthonormal, ``None``
    gives the unnormalised DCT-II (scale 2)."""
    if norm not in (None, "ortho"):
        raise ValueError(f'create_dct: norm must be None or "ortho", got {norm!r}')
    n = np.arange(n_mels, dtype=np.float64)
    k = np.arange(n_mfcc, dtype=np.float64)[:, None]
    dct = np.cos(math.pi / n_mels * (n + 0.5) * k)  # (n_mfcc, n_mels)
    if norm is None:
        dct *= 2.0
    else:
        dct[0] *= 1.0 / math.sqrt(2.0)
        dct *= math.sqrt(2.0 / n_mels)
    return ember.from_numpy(np.ascontiguousarray(dct.T).astype(np.float32))


# ----------------------------------------------------------------------- amplitudes, mu-law

def amplitude_to_DB(x, multiplier, amin, db_multiplier, top_db=None):
    """``multiplier * log10(max(x, amin)) - multiplier * db_multiplier``; with ``top_db``,
    values more than ``top_db`` below each spectrogram's maximum are raised to that floor
    (the maximum is taken per item over channel, freq and time, as torchaudio does)."""
    x_db = multiplier * ember.log10(ember.clamp(x, min=amin))
    x_db = x_db - multiplier * db_multiplier
    if top_db is not None:
        shape = tuple(x_db.shape)
        channels = shape[-3] if x_db.ndim > 2 else 1
        packed = x_db.reshape(-1, channels, shape[-2], shape[-1])
        floor = packed.amax(dim=(-3, -2, -1)) - top_db
        x_db = ember.max(packed, floor.view(-1, 1, 1, 1)).reshape(shape)
    return x_db


def DB_to_amplitude(x, ref, power):
    """The inverse of ``amplitude_to_DB``: ``ref * (10 ** (x / 10)) ** power``."""
    return ref * ember.pow(ember.pow(10.0, 0.1 * x), power)


def mu_law_encoding(x, quantization_channels):
    """Mu-law companding of ``x`` in [-1, 1] to integers in [0, quantization_channels)."""
    mu = quantization_channels - 1.0
    if not x.is_floating_point():
        warnings.warn("mu_law_encoding expects a floating point input; converting it",
                      UserWarning, stacklevel=2)
        x = x.to(ember.float32)
    x_mu = ember.sign(x) * ember.log1p(mu * ember.abs(x)) / math.log1p(mu)
    return ((x_mu + 1) / 2 * mu + 0.5).to(ember.int64)


def mu_law_decoding(x_mu, quantization_channels):
    """The inverse of ``mu_law_encoding``: integers -> floats in [-1, 1]."""
    mu = quantization_channels - 1.0
    if not x_mu.is_floating_point():
        x_mu = x_mu.to(ember.get_default_dtype())
    x = (x_mu / mu) * 2 - 1.0
    return ember.sign(x) * (ember.exp(ember.abs(x) * math.log1p(mu)) - 1.0) / mu


def gain(waveform, gain_db=1.0):
    """Scale by ``gain_db`` decibels (amplitude times ``10 ** (gain_db / 20)``)."""
    if gain_db == 0:
        return waveform
    return waveform * (10.0 ** (gain_db / 20.0))


_FADE_SHAPES = ("linear", "exponential", "logarithmic", "quarter_sine", "half_sine")


def _fade_curve(n, shape, rising):
    t = np.linspace(0.0, 1.0, n) if n > 0 else np.zeros(0)
    if rising:
        c = {"linear": lambda: t, "exponential": lambda: 2.0 ** ((t - 1) * 5),
             "logarithmic": lambda: np.log10(0.1 + t) + 1,
             "quarter_sine": lambda: np.sin(t * np.pi / 2),
             "half_sine": lambda: np.sin(t * np.pi - np.pi / 2) / 2 + 0.5}[shape]()
    else:
        c = {"linear": lambda: 1 - t, "exponential": lambda: 2.0 ** (-t * 5) * (1 - t),
             "logarithmic": lambda: np.log10(1.1 - t) + 1,
             "quarter_sine": lambda: np.sin(t * np.pi / 2 + np.pi / 2),
             "half_sine": lambda: np.sin(t * np.pi + np.pi / 2) / 2 + 0.5}[shape]()
    return np.clip(c, 0.0, 1.0)


def fade(waveform, fade_in_len=0, fade_out_len=0, fade_shape="linear"):
    """Fade the first ``fade_in_len`` samples in and the last ``fade_out_len`` out, with one
    of torchaudio's curves (linear, exponential, logarithmic, quarter_sine, half_sine)."""
    if fade_shape not in _FADE_SHAPES:
        raise ValueError(f"fade: fade_shape must be one of {_FADE_SHAPES}, got {fade_shape!r}")
    n = waveform.shape[-1]
    if fade_in_len < 0 or fade_out_len < 0 or fade_in_len > n or fade_out_len > n:
        raise ValueError(f"fade: fade lengths must lie in [0, {n}] for a waveform of {n} "
                         f"samples, got fade_in_len={fade_in_len}, fade_out_len={fade_out_len}")
    env = np.ones(n)
    env[:fade_in_len] *= _fade_curve(fade_in_len, fade_shape, True)
    env[n - fade_out_len:] *= _fade_curve(fade_out_len, fade_shape, False)
    dt = waveform.dtype if waveform.is_floating_point() else ember.get_default_dtype()
    return waveform * ember.tensor(env, dtype=dt)


# --------------------------------------------------------------------------------- resample

def _sinc_resample_kernel(orig, new, gcd, lowpass_filter_width, rolloff, method, beta, dtype):
    if int(orig) != orig or int(new) != new:
        raise ValueError(f"resample: frequencies must be integers, got orig_freq={orig}, "
                         f"new_freq={new}")
    if method not in ("sinc_interp_hann", "sinc_interp_kaiser"):
        raise ValueError(f"resample: invalid resampling_method {method!r} (sinc_interp_hann "
                         f"or sinc_interp_kaiser)")
    if lowpass_filter_width <= 0:
        raise ValueError(f"resample: lowpass_filter_width must be positive, got "
                         f"{lowpass_filter_width}")
    orig, new = int(orig) // gcd, int(new) // gcd
    # the cutoff sits just below the lower Nyquist rate; rolloff trades aliasing for bandwidth
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    if method == "sinc_interp_hann":
        window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    else:
        beta = 14.769656459379492 if beta is None else float(beta)
        window = np.i0(beta * np.sqrt(1 - (t / lowpass_filter_width) ** 2)) / np.i0(beta)
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    kernel = sinc * window * (base / orig)
    return ember.tensor(kernel[:, None, :], dtype=dtype), width


def resample(waveform, orig_freq, new_freq, lowpass_filter_width=6, rolloff=0.99,
             resampling_method="sinc_interp_hann", beta=None):
    """Band-limited resampling of ``(..., time)`` from ``orig_freq`` to ``new_freq`` Hz by
    windowed-sinc interpolation (torchaudio's kernel, hann or kaiser window); the output has
    ``ceil(new_freq * time / orig_freq)`` samples."""
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"resample: frequencies must be positive, got orig_freq={orig_freq}, "
                         f"new_freq={new_freq}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    dtype = waveform.dtype if waveform.is_floating_point() else ember.get_default_dtype()
    kernel, width = _sinc_resample_kernel(orig_freq, new_freq, gcd, lowpass_filter_width,
                                          rolloff, resampling_method, beta, dtype)
    return _apply_resample_kernel(waveform.to(dtype), int(orig_freq) // gcd,
                                  int(new_freq) // gcd, kernel, width)


def _apply_resample_kernel(waveform, orig, new, kernel, width):
    x, lead = _flat(waveform, 1)
    n, length = x.shape
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x[:, None], kernel, stride=orig)  # (n, new, blocks): one phase per channel
    y = y.transpose(1, 2).reshape(n, -1)
    target = math.ceil(new * length / orig)
    return y[:, :target].reshape(lead + (target,))


# ---------------------------------------------------------------------------------- filters

def _allpole_np(v, a):
    """``y[n] = v[n] - sum_k a[k] y[n-k]`` per row (a[:, 0] == 1), on NumPy arrays."""
    try:
        from scipy.signal import lfilter as _sp_lfilter
    except ImportError:
        _sp_lfilter = None
    if _sp_lfilter is not None:
        out = np.empty_like(v)
        for i in range(v.shape[0]):
            out[i] = _sp_lfilter([1.0], a[i], v[i])
        return out
    order = a.shape[1] - 1
    y = np.zeros((v.shape[0], v.shape[1] + order), dtype=v.dtype)
    fb = a[:, :0:-1]  # (rows, order): a[order], ..., a[1], lined up with past outputs
    for n in range(v.shape[1]):
        y[:, n + order] = v[:, n] - np.einsum("ij,ij->i", fb, y[:, n:n + order])
    return y[:, order:]


class _AllPole(Function):
    """The recursive half of an IIR filter. Its adjoint is the same recursion run backwards
    in time, so backward calls this op again (on the flipped gradient) and stays
    differentiable."""

    @staticmethod
    def forward(ctx, v, a):
        y = ember.from_numpy(_allpole_np(v.detach().numpy(), a.detach().numpy()))
        ctx.save_for_backward(a, y)
        return y

    @staticmethod
    def backward(ctx, dy):
        a, y = ctx.saved_tensors
        g = _AllPole.apply(dy.flip(-1), a).flip(-1)  # dL/dv
        da = None
        if ctx.needs_input_grad[1]:
            length, k = y.shape[-1], a.shape[-1]
            # dL/da_k = -sum_n g[n] y[n-k]; a_0 is fixed at one by the normalisation
            cols = [ember.zeros_like(g[:, 0])] + [-(g[:, j:] * y[:, :length - j]).sum(-1)
                                                  for j in range(1, k)]
            da = ember.stack(cols, dim=-1)
        return g, da


def _fir(x, b):
    """``v[n] = sum_k b[k] x[n-k]`` per row, with ember ops (differentiable in x and b)."""
    k = b.shape[-1]
    frames = F.pad(x, (k - 1, 0)).unfold(-1, x.shape[-1], 1)  # (rows, k, time): x shifted
    return (frames * b.flip(-1)[:, :, None]).sum(1)


def _coeffs(c, dtype):
    if not isinstance(c, ember.Tensor):
        c = ember.tensor(c, dtype=dtype)
    return c.to(dtype)


def lfilter(waveform, a_coeffs, b_coeffs, clamp=True, batching=True):
    """IIR filter ``a[0] y[n] = sum_k b[k] x[n-k] - sum_{k>0} a[k] y[n-k]`` along the last
    dimension, differentiable in the waveform and both coefficient vectors.

    Coefficients are ``(order + 1,)``, or ``(filters, order + 1)``: with ``batching`` the
    waveform's second-to-last dimension must equal ``filters`` (one filter per channel);
    otherwise every filter runs over the whole waveform and a ``filters`` dimension is added.
    ``clamp`` clips the output to [-1, 1].
    """
    dtype = waveform.dtype if waveform.is_floating_point() else ember.get_default_dtype()
    a = _coeffs(a_coeffs, dtype)
    b = _coeffs(b_coeffs, dtype)
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise ValueError(f"lfilter: a_coeffs and b_coeffs must have the same 1D or 2D shape, "
                         f"got {list(a.shape)} and {list(b.shape)}")
    one = a.ndim == 1
    if one:
        a, b = a[None], b[None]
    nf, k = a.shape
    t = waveform.shape[-1]
    if one:
        x = waveform.reshape(-1, 1, t)
        out_shape = tuple(waveform.shape)
    elif batching:
        if waveform.ndim < 2 or waveform.shape[-2] != nf:
            raise ValueError(f"lfilter: with batching, the waveform's dimension -2 must equal "
                             f"the number of filters {nf}; got waveform shape "
                             f"{list(waveform.shape)}")
        x = waveform.reshape(-1, nf, t)
        out_shape = tuple(waveform.shape)
    else:
        x = waveform.reshape(-1, 1, t).expand(-1, nf, t)
        out_shape = tuple(waveform.shape[:-1]) + (nf, t)
    m = x.shape[0]
    a0 = a[:, :1]
    a_n = (a / a0).repeat(m, 1)
    b_n = (b / a0).repeat(m, 1)
    x = x.reshape(m * nf, t).to(dtype)
    y = _AllPole.apply(_fir(x, b_n), a_n)
    if clamp:
        y = ember.clamp(y, -1.0, 1.0)
    return y.reshape(out_shape)


def filtfilt(waveform, a_coeffs, b_coeffs, clamp=True):
    """Zero-phase filtering: ``lfilter`` forwards, then backwards over the result (torchaudio's
    definition: zero initial state and no edge padding)."""
    fwd = lfilter(waveform, a_coeffs, b_coeffs, clamp=False, batching=True)
    return lfilter(fwd.flip(-1), a_coeffs, b_coeffs, clamp=clamp, batching=True).flip(-1)


def biquad(waveform, b0, b1, b2, a0, a1, a2):
    """A second-order IIR filter with the given coefficients."""
    dtype = waveform.dtype if waveform.is_floating_point() else ember.get_default_dtype()
    to = lambda c: c.to(dtype).reshape(()) if isinstance(c, ember.Tensor) else \
        ember.tensor(float(c), dtype=dtype)
    return lfilter(waveform, ember.stack([to(a0), to(a1), to(a2)]),
                   ember.stack([to(b0), to(b1), to(b2)]))


def _w0_alpha(waveform, sample_rate, freq, Q):
    """RBJ cookbook terms (Bristow-Johnson's "Audio EQ Cookbook"): w0 and alpha, as tensors so
    that a tensor frequency or Q gets gradients."""
    dtype = waveform.dtype if waveform.is_floating_point() else ember.get_default_dtype()
    f = ember.as_tensor(freq, dtype=dtype)
    q = ember.as_tensor(Q, dtype=dtype)
    w0 = 2 * math.pi * f / sample_rate
    return w0, ember.sin(w0) / 2.0 / q


def lowpass_biquad(waveform, sample_rate, cutoff_freq, Q=0.707):
    """Second-order low-pass filter (RBJ cookbook)."""
    w0, alpha = _w0_alpha(waveform, sample_rate, cutoff_freq, Q)
    c = ember.cos(w0)
    return biquad(waveform, (1 - c) / 2, 1 - c, (1 - c) / 2, 1 + alpha, -2 * c, 1 - alpha)


def highpass_biquad(waveform, sample_rate, cutoff_freq, Q=0.707):
    """Second-order high-pass filter (RBJ cookbook)."""
    w0, alpha = _w0_alpha(waveform, sample_rate, cutoff_freq, Q)
    c = ember.cos(w0)
    return biquad(waveform, (1 + c) / 2, -1 - c, (1 + c) / 2, 1 + alpha, -2 * c, 1 - alpha)


def bandpass_biquad(waveform, sample_rate, central_freq, Q=0.707, const_skirt_gain=False):
    """Second-order band-pass filter: constant 0 dB peak gain, or constant skirt gain (peak
    gain Q) with ``const_skirt_gain``."""
    w0, alpha = _w0_alpha(waveform, sample_rate, central_freq, Q)
    temp = ember.sin(w0) / 2 if const_skirt_gain else alpha
    c = ember.cos(w0)
    return biquad(waveform, temp, 0.0, -temp, 1 + alpha, -2 * c, 1 - alpha)


def bandreject_biquad(waveform, sample_rate, central_freq, Q=0.707):
    """Second-order band-reject (notch) filter."""
    w0, alpha = _w0_alpha(waveform, sample_rate, central_freq, Q)
    c = ember.cos(w0)
    return biquad(waveform, 1.0, -2 * c, 1.0, 1 + alpha, -2 * c, 1 - alpha)


def allpass_biquad(waveform, sample_rate, central_freq, Q=0.707):
    """Second-order all-pass filter (unit gain, phase shift around ``central_freq``)."""
    w0, alpha = _w0_alpha(waveform, sample_rate, central_freq, Q)
    c = ember.cos(w0)
    return biquad(waveform, 1 - alpha, -2 * c, 1 + alpha, 1 + alpha, -2 * c, 1 - alpha)


def equalizer_biquad(waveform, sample_rate, center_freq, gain, Q=0.707):
    """Peaking equaliser: ``gain`` dB at ``center_freq`` (RBJ cookbook)."""
    w0, alpha = _w0_alpha(waveform, sample_rate, center_freq, Q)
    A = ember.exp(ember.as_tensor(gain, dtype=w0.dtype) / 40.0 * math.log(10))
    c = ember.cos(w0)
    return biquad(waveform, 1 + alpha * A, -2 * c, 1 - alpha * A, 1 + alpha / A, -2 * c,
                  1 - alpha / A)


# ----------------------------------------------------------------------------------- deltas

def compute_deltas(specgram, win_length=5, mode="replicate"):
    """Delta coefficients along time: ``d[t] = sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)`` for
    ``n = 1..(win_length-1)//2``, the edges padded with ``mode``."""
    if win_length < 3:
        raise ValueError(f"compute_deltas: win_length must be >= 3, got {win_length}")
    n = (win_length - 1) // 2
    denom = n * (n + 1) * (2 * n + 1) / 3
    x, lead = _flat(specgram, 1)
    x = F.pad(x[:, None], (n, n), mode=mode)[:, 0]
    kernel = ember.arange(-n, n + 1, dtype=x.dtype)
    out = (x.unfold(-1, 2 * n + 1, 1) * kernel).sum(-1) / denom
    return out.reshape(tuple(specgram.shape))


# ---------------------------------------------------------------------------------- masking

def _mask_bounds(mask_param, size, p, shape):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"masking: p must be in [0, 1], got {p}")
    mask_param = min(mask_param, int(size * p)) if p < 1.0 else mask_param
    value = ember.rand(shape) * mask_param
    start = ember.rand(shape) * (size - value)
    return start.long(), (start.long() + value.long())


def mask_along_axis(specgram, mask_param, mask_value, axis, p=1.0):
    """Mask one random band ``[start, start + width)`` of ``axis`` (width uniform in
    ``[0, mask_param)``), the same band for every item and channel."""
    if axis not in (specgram.ndim - 2, specgram.ndim - 1, -2, -1):
        raise ValueError("mask_along_axis: axis must be the frequency (-2) or time (-1) axis")
    axis = axis % specgram.ndim
    size = specgram.shape[axis]
    start, end = _mask_bounds(mask_param, size, p, (1,))
    idx = ember.arange(size)
    mask = (idx >= start) & (idx < end)
    if axis == specgram.ndim - 2:
        mask = mask[:, None]
    return specgram.masked_fill(mask, mask_value)


def mask_along_axis_iid(specgrams, mask_param, mask_value, axis, p=1.0):
    """Like ``mask_along_axis`` with an independent band per item and channel of a
    ``(batch, channel, freq, time)`` batch."""
    if specgrams.ndim != 4:
        raise ValueError(f"mask_along_axis_iid: expected a 4D (batch, channel, freq, time) "
                         f"tensor, got shape {list(specgrams.shape)}")
    axis = axis % 4
    if axis not in (2, 3):
        raise ValueError("mask_along_axis_iid: axis must be 2 (frequency) or 3 (time)")
    size = specgrams.shape[axis]
    start, end = _mask_bounds(mask_param, size, p, tuple(specgrams.shape[:2]))
    idx = ember.arange(size)
    mask = (idx >= start[..., None]) & (idx < end[..., None])  # (batch, channel, size)
    mask = mask[:, :, :, None] if axis == 2 else mask[:, :, None, :]
    return specgrams.masked_fill(mask, mask_value)
