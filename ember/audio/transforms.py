"""``ember.audio.transforms``: torchaudio's transforms as ``nn.Module``s over
``ember.audio.functional``. Windows, filterbanks and DCT matrices are buffers, so ``.to()``
and ``state_dict`` carry them as torchaudio's do."""

from __future__ import annotations

import math

import ember
from ember import nn

from . import functional as AF

__all__ = ["Spectrogram", "InverseSpectrogram", "MelScale", "InverseMelScale", "MelSpectrogram",
           "MFCC", "LFCC", "AmplitudeToDB", "Resample", "GriffinLim", "FrequencyMasking",
           "TimeMasking", "TimeStretch", "Vol", "Fade", "ComputeDeltas", "MuLawEncoding",
           "MuLawDecoding"]


def _window(window_fn, win_length, wkwargs):
    return window_fn(win_length, **(wkwargs or {}))


class Spectrogram(nn.Module):
    """Power (or complex, ``power=None``) spectrogram of ``(..., time)``:
    ``(..., n_fft // 2 + 1, frames)``."""

    def __init__(self, n_fft=400, win_length=None, hop_length=None, pad=0,
                 window_fn=ember.hann_window, power=2.0, normalized=False, wkwargs=None,
                 center=True, pad_mode="reflect", onesided=True, return_complex=None):
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.register_buffer("window", _window(window_fn, self.win_length, wkwargs))
        self.pad, self.power, self.normalized = pad, power, normalized
        self.center, self.pad_mode, self.onesided = center, pad_mode, onesided

    def forward(self, waveform):
        return AF.spectrogram(waveform, self.pad, self.window, self.n_fft, self.hop_length,
                              self.win_length, self.power, self.normalized, self.center,
                              self.pad_mode, self.onesided)


class InverseSpectrogram(nn.Module):
    """Complex spectrogram -> waveform (inverse STFT); ``forward(spectrogram, length=None)``."""

    def __init__(self, n_fft=400, win_length=None, hop_length=None, pad=0,
                 window_fn=ember.hann_window, normalized=False, wkwargs=None, center=True,
                 pad_mode="reflect", onesided=True):
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.register_buffer("window", _window(window_fn, self.win_length, wkwargs))
        self.pad, self.normalized = pad, normalized
        self.center, self.pad_mode, self.onesided = center, pad_mode, onesided

    def forward(self, spectrogram, length=None):
        return AF.inverse_spectrogram(spectrogram, length, self.pad, self.window, self.n_fft,
                                      self.hop_length, self.win_length, self.normalized,
                                      self.center, self.pad_mode, self.onesided)


class GriffinLim(nn.Module):
    """Waveform from a magnitude/power spectrogram by fast Griffin-Lim."""

    def __init__(self, n_fft=400, n_iter=32, win_length=None, hop_length=None,
                 window_fn=ember.hann_window, power=2.0, wkwargs=None, momentum=0.99,
                 length=None, rand_init=True):
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f"GriffinLim: momentum must be in [0, 1), got {momentum}")
        self.n_fft, self.n_iter = n_fft, n_iter
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.register_buffer("window", _window(window_fn, self.win_length, wkwargs))
        self.power, self.momentum, self.length, self.rand_init = power, momentum, length, \
            rand_init

    def forward(self, specgram):
        return AF.griffinlim(specgram, self.window, self.n_fft, self.hop_length,
                             self.win_length, self.power, self.n_iter, self.momentum,
                             self.length, self.rand_init)


class AmplitudeToDB(nn.Module):
    """Power (``stype="power"``, 10 log10) or magnitude ("magnitude", 20 log10) to decibels,
    optionally floored ``top_db`` below the maximum."""

    def __init__(self, stype="power", top_db=None):
        super().__init__()
        if stype not in ("power", "magnitude"):
            raise ValueError(f"AmplitudeToDB: stype must be 'power' or 'magnitude', got "
                             f"{stype!r}")
        if top_db is not None and top_db < 0:
            raise ValueError("top_db must be positive value")
        self.stype, self.top_db = stype, top_db
        self.multiplier = 10.0 if stype == "power" else 20.0
        self.amin = 1e-10
        self.ref_value = 1.0
        self.db_multiplier = math.log10(max(self.amin, self.ref_value))

    def forward(self, x):
        return AF.amplitude_to_DB(x, self.multiplier, self.amin, self.db_multiplier,
                                  self.top_db)


class MelScale(nn.Module):
    """Spectrogram ``(..., n_stft, time)`` -> mel spectrogram ``(..., n_mels, time)``."""

    def __init__(self, n_mels=128, sample_rate=16000, f_min=0.0, f_max=None, n_stft=201,
                 norm=None, mel_scale="htk"):
        super().__init__()
        self.n_mels, self.sample_rate = n_mels, sample_rate
        self.f_max = f_max if f_max is not None else float(sample_rate // 2)
        self.f_min, self.norm, self.mel_scale = f_min, norm, mel_scale
        if f_min > self.f_max:
            raise ValueError(f"Require f_min: {f_min} <= f_max: {self.f_max}")
        self.register_buffer("fb", AF.melscale_fbanks(n_stft, f_min, self.f_max, n_mels,
                                                      sample_rate, norm, mel_scale))

    def forward(self, specgram):
        fb = self.fb.to(specgram.dtype)
        return ember.matmul(specgram.transpose(-1, -2), fb).transpose(-1, -2)


class InverseMelScale(nn.Module):
    """Mel spectrogram -> linear-frequency spectrogram by non-negative least squares-like
    inversion: the least-squares solution of ``fb.T @ S = mel``, clipped at zero."""

    def __init__(self, n_stft, n_mels=128, sample_rate=16000, f_min=0.0, f_max=None,
                 norm=None, mel_scale="htk", driver="gels"):
        super().__init__()
        self.n_mels, self.sample_rate, self.n_stft = n_mels, sample_rate, n_stft
        self.f_max = f_max if f_max is not None else float(sample_rate // 2)
        self.f_min, self.driver = f_min, driver
        if f_min > self.f_max:
            raise ValueError(f"Require f_min: {f_min} <= f_max: {self.f_max}")
        self.register_buffer("fb", AF.melscale_fbanks(n_stft, f_min, self.f_max, n_mels,
                                                      sample_rate, norm, mel_scale))

    def forward(self, melspec):
        if melspec.shape[-2] != self.n_mels:
            raise ValueError(f"InverseMelScale: expected {self.n_mels} mel bins in dimension "
                             f"-2, got shape {list(melspec.shape)}")
        mel, lead = AF._flat(melspec, 2)
        fb_t = self.fb.to(mel.dtype).transpose(0, 1)  # (n_mels, n_stft)
        spec = ember.linalg.pinv(fb_t) @ mel  # minimum-norm least squares per item
        return ember.relu(spec).reshape(lead + tuple(spec.shape[-2:]))


class MelSpectrogram(nn.Module):
    """``Spectrogram`` followed by ``MelScale``: ``(..., time)`` -> ``(..., n_mels, frames)``."""

    def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None,
                 f_min=0.0, f_max=None, pad=0, n_mels=128, window_fn=ember.hann_window,
                 power=2.0, normalized=False, wkwargs=None, center=True, pad_mode="reflect",
                 onesided=None, norm=None, mel_scale="htk"):
        super().__init__()
        self.sample_rate, self.n_fft, self.n_mels = sample_rate, n_fft, n_mels
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.f_min, self.f_max, self.pad, self.power = f_min, f_max, pad, power
        self.spectrogram = Spectrogram(n_fft, self.win_length, self.hop_length, pad, window_fn,
                                       power, normalized, wkwargs, center, pad_mode, True)
        self.mel_scale = MelScale(n_mels, sample_rate, f_min, f_max, n_fft // 2 + 1, norm,
                                  mel_scale)

    def forward(self, waveform):
        return self.mel_scale(self.spectrogram(waveform))


class MFCC(nn.Module):
    """Mel-frequency cepstral coefficients: log (dB or natural log) mel spectrogram, then a
    DCT-II over the mel axis: ``(..., n_mfcc, frames)``."""

    def __init__(self, sample_rate=16000, n_mfcc=40, dct_type=2, norm="ortho", log_mels=False,
                 melkwargs=None):
        super().__init__()
        if dct_type != 2:
            raise ValueError(f"DCT type not supported: {dct_type}")
        self.sample_rate, self.n_mfcc, self.dct_type, self.norm = sample_rate, n_mfcc, \
            dct_type, norm
        self.top_db = 80.0
        self.amplitude_to_DB = AmplitudeToDB("power", self.top_db)
        self.MelSpectrogram = MelSpectrogram(sample_rate=sample_rate, **(melkwargs or {}))
        if n_mfcc > self.MelSpectrogram.n_mels:
            raise ValueError("Cannot select more MFCC coefficients than # mel bins")
        self.register_buffer("dct_mat", AF.create_dct(n_mfcc, self.MelSpectrogram.n_mels,
                                                      norm))
        self.log_mels = log_mels

    def forward(self, waveform):
        mel = self.MelSpectrogram(waveform)
        mel = ember.log(mel + 1e-6) if self.log_mels else self.amplitude_to_DB(mel)
        dct = self.dct_mat.to(mel.dtype)
        return ember.matmul(mel.transpose(-1, -2), dct).transpose(-1, -2)


class LFCC(nn.Module):
    """Linear-frequency cepstral coefficients: like MFCC with triangular filters equally
    spaced in Hz."""

    def __init__(self, sample_rate=16000, n_filter=128, f_min=0.0, f_max=None, n_lfcc=40,
                 dct_type=2, norm="ortho", log_lf=False, speckwargs=None):
        super().__init__()
        if dct_type != 2:
            raise ValueError(f"DCT type not supported: {dct_type}")
        if n_lfcc > n_filter:
            raise ValueError("Cannot select more LFCC coefficients than # filter bins")
        self.sample_rate, self.n_filter, self.n_lfcc = sample_rate, n_filter, n_lfcc
        self.f_min = f_min
        self.f_max = f_max if f_max is not None else float(sample_rate // 2)
        self.top_db, self.log_lf = 80.0, log_lf
        self.amplitude_to_DB = AmplitudeToDB("power", self.top_db)
        self.Spectrogram = Spectrogram(**(speckwargs or {}))
        if self.f_min > self.f_max:
            raise ValueError(f"Require f_min: {self.f_min} <= f_max: {self.f_max}")
        self.register_buffer("filter_mat", AF.linear_fbanks(self.Spectrogram.n_fft // 2 + 1,
                                                            f_min, self.f_max, n_filter,
                                                            sample_rate))
        self.register_buffer("dct_mat", AF.create_dct(n_lfcc, n_filter, norm))

    def forward(self, waveform):
        spec = self.Spectrogram(waveform)
        spec = ember.matmul(spec.transpose(-1, -2), self.filter_mat.to(spec.dtype))
        spec = spec.transpose(-1, -2)
        spec = ember.log(spec + 1e-6) if self.log_lf else self.amplitude_to_DB(spec)
        return ember.matmul(spec.transpose(-1, -2), self.dct_mat.to(spec.dtype)).transpose(-1,
                                                                                          -2)


class Resample(nn.Module):
    """Resample ``(..., time)`` from ``orig_freq`` to ``new_freq``; the sinc kernel is computed
    once and kept."""

    def __init__(self, orig_freq=16000, new_freq=16000, resampling_method="sinc_interp_hann",
                 lowpass_filter_width=6, rolloff=0.99, beta=None, *, dtype=None):
        super().__init__()
        self.orig_freq, self.new_freq = orig_freq, new_freq
        self.gcd = math.gcd(int(orig_freq), int(new_freq))
        self.resampling_method, self.lowpass_filter_width = resampling_method, \
            lowpass_filter_width
        self.rolloff, self.beta = rolloff, beta
        if orig_freq != new_freq:
            kernel, self.width = AF._sinc_resample_kernel(
                orig_freq, new_freq, self.gcd, lowpass_filter_width, rolloff, resampling_method,
                beta, dtype or ember.get_default_dtype())
            self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, waveform):
        if self.orig_freq == self.new_freq:
            return waveform
        return AF._apply_resample_kernel(waveform.to(self.kernel.dtype),
                                         int(self.orig_freq) // self.gcd,
                                         int(self.new_freq) // self.gcd, self.kernel, self.width)


class _AxisMasking(nn.Module):
    def __init__(self, mask_param, axis, iid_masks, p=1.0):
        super().__init__()
        self.mask_param, self.axis, self.iid_masks, self.p = mask_param, axis, iid_masks, p

    def forward(self, specgram, mask_value=0.0):
        if self.iid_masks and specgram.ndim == 4:
            return AF.mask_along_axis_iid(specgram, self.mask_param, mask_value,
                                          self.axis + 1, p=self.p)
        return AF.mask_along_axis(specgram, self.mask_param, mask_value,
                                  self.axis + specgram.ndim - 3, p=self.p)


class FrequencyMasking(_AxisMasking):
    """SpecAugment frequency masking: zero one random band of up to ``freq_mask_param`` bins
    (independently per item and channel of a 4D batch with ``iid_masks``)."""

    def __init__(self, freq_mask_param, iid_masks=False):
        super().__init__(freq_mask_param, 1, iid_masks)


class TimeMasking(_AxisMasking):
    """SpecAugment time masking: one random band of up to ``time_mask_param`` frames (at most
    a fraction ``p`` of them)."""

    def __init__(self, time_mask_param, iid_masks=False, p=1.0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"The value of p must be between 0.0 and 1.0 ({p} given).")
        super().__init__(time_mask_param, 2, iid_masks, p)


class TimeStretch(nn.Module):
    """Stretch a complex spectrogram in time by ``rate`` (phase vocoder) keeping its pitch."""

    def __init__(self, hop_length=None, n_freq=201, fixed_rate=None):
        super().__init__()
        self.fixed_rate = fixed_rate
        n_fft = (n_freq - 1) * 2
        hop_length = hop_length if hop_length is not None else n_fft // 2
        self.register_buffer("phase_advance",
                             ember.linspace(0, math.pi * hop_length, n_freq)[..., None])

    def forward(self, complex_specgrams, overriding_rate=None):
        if not complex_specgrams.is_complex():
            raise ValueError(f"TimeStretch: expected a complex spectrogram, got dtype "
                             f"{complex_specgrams.dtype}")
        rate = overriding_rate if overriding_rate is not None else self.fixed_rate
        if rate is None:
            raise ValueError("If no fixed_rate is specified, must pass a valid rate to the "
                             "forward method.")
        adv = self.phase_advance.to(ember.float64 if complex_specgrams.dtype ==
                                    ember.complex128 else ember.float32)
        return AF.phase_vocoder(complex_specgrams, rate, adv)


class Vol(nn.Module):
    """Scale the volume: ``gain_type`` "amplitude" (a factor), "power" (a power factor) or
    "db"; the result is clipped to [-1, 1]."""

    def __init__(self, gain, gain_type="amplitude"):
        super().__init__()
        if gain_type not in ("amplitude", "power", "db"):
            raise ValueError(f"Vol: gain_type must be 'amplitude', 'power' or 'db', got "
                             f"{gain_type!r}")
        if gain_type in ("amplitude", "power") and gain < 0:
            raise ValueError("If gain_type = amplitude or power, gain must be positive.")
        self.gain, self.gain_type = gain, gain_type

    def forward(self, waveform):
        if self.gain_type == "amplitude":
            waveform = waveform * self.gain
        elif self.gain_type == "db":
            waveform = AF.gain(waveform, self.gain)
        else:
            waveform = AF.gain(waveform, 10 * math.log10(self.gain))
        return ember.clamp(waveform, -1, 1)


class Fade(nn.Module):
    """Fade in and out (see ``functional.fade`` for the shapes)."""

    def __init__(self, fade_in_len=0, fade_out_len=0, fade_shape="linear"):
        super().__init__()
        self.fade_in_len, self.fade_out_len, self.fade_shape = fade_in_len, fade_out_len, \
            fade_shape

    def forward(self, waveform):
        return AF.fade(waveform, self.fade_in_len, self.fade_out_len, self.fade_shape)


class ComputeDeltas(nn.Module):
    """Delta coefficients along time (``functional.compute_deltas``)."""

    def __init__(self, win_length=5, mode="replicate"):
        super().__init__()
        self.win_length, self.mode = win_length, mode

    def forward(self, specgram):
        return AF.compute_deltas(specgram, self.win_length, self.mode)


class MuLawEncoding(nn.Module):
    """Mu-law companding to ``quantization_channels`` integer levels."""

    def __init__(self, quantization_channels=256):
        super().__init__()
        self.quantization_channels = quantization_channels

    def forward(self, x):
        return AF.mu_law_encoding(x, self.quantization_channels)


class MuLawDecoding(nn.Module):
    """The inverse of ``MuLawEncoding``."""

    def __init__(self, quantization_channels=256):
        super().__init__()
        self.quantization_channels = quantization_channels

    def forward(self, x_mu):
        return AF.mu_law_decoding(x_mu, self.quantization_channels)
