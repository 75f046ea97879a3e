"""Mel filterbanks, mel/Hz scales and the MFCC pipeline against librosa (the reference the
issue names). librosa is heavy (numba): these tests run where the `audio-parity` extra is
installed (CI installs it) and skip elsewhere."""

import numpy as np
import pytest

import ember
from ember.audio import functional as AF

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("mel_scale,norm", [("htk", None), ("htk", "slaney"),
                                            ("slaney", None), ("slaney", "slaney")])
@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 400, 40, 0.0, 8000.0),
                                                       (22050, 1024, 128, 20.0, 11025.0),
                                                       (8000, 256, 23, 100.0, 3000.0)])
def test_melscale_fbanks_equal_librosa(mel_scale, norm, sr, n_fft, n_mels, fmin, fmax):
    got = AF.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sr, norm=norm,
                             mel_scale=mel_scale)
    want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                               htk=mel_scale == "htk", norm=norm, dtype=np.float64).T
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy().astype(np.float64), want, rtol=1e-6,
                               atol=1e-6 * np.abs(want).max())


def test_create_dct_equals_librosa_ortho_dct():
    # torchaudio's create_dct(n_mfcc, n_mels, "ortho") is the DCT-II matrix librosa's mfcc uses
    n_mfcc, n_mels = 13, 40
    dct = AF.create_dct(n_mfcc, n_mels, "ortho").numpy().astype(np.float64)
    x = np.random.default_rng(0).standard_normal((n_mels, 7))
    want = librosa.feature.mfcc(S=x, n_mfcc=n_mfcc, dct_type=2, norm="ortho")
    np.testing.assert_allclose(dct.T @ x, want, rtol=1e-5, atol=1e-6)


def test_mel_spectrogram_power_equals_librosa():
    sr, n_fft, hop, n_mels = 16000, 512, 128, 40
    y = np.random.default_rng(1).standard_normal(sr // 4)
    got = ember.audio.transforms.MelSpectrogram(
        sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, norm="slaney",
        mel_scale="slaney", center=True, pad_mode="reflect", power=2.0)(
        ember.tensor(y, dtype=ember.float64))
    want = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop,
                                          n_mels=n_mels, center=True, pad_mode="reflect",
                                          power=2.0, htk=False, norm="slaney")
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-9 * want.max())
