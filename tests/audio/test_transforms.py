"""ember.audio.transforms: composition identities, formulas, gradients, buffers."""

import math

import numpy as np
import pytest

import ember
from ember.audio import functional as AF
from ember.audio import transforms as T


def _x(*shape, dtype=ember.float32, rg=False, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape) * 0.3
    return ember.tensor(a, dtype=dtype, requires_grad=rg)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_mel_spectrogram_is_spectrogram_times_fbanks(dtype):
    x = _x(2, 1600, dtype=dtype)
    m = T.MelSpectrogram(sample_rate=16000, n_fft=256, hop_length=80, n_mels=32, norm="slaney",
                         mel_scale="slaney")
    out = m(x)
    assert tuple(out.shape) == (2, 32, 21) and out.dtype == dtype
    spec = T.Spectrogram(n_fft=256, hop_length=80)(x).numpy().astype(np.float64)
    fb = AF.melscale_fbanks(129, 0.0, 8000.0, 32, 16000, "slaney", "slaney").numpy()
    ref = np.einsum("bft,fm->bmt", spec, fb.astype(np.float64))
    tol = 1e-4 if dtype == ember.float32 else 1e-10
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol)
    assert {"spectrogram.window", "mel_scale.fb"} <= set(m.state_dict())


def test_spectrogram_defaults_match_torchaudio():
    s = T.Spectrogram()
    assert (s.n_fft, s.win_length, s.hop_length, s.power) == (400, 400, 200, 2.0)
    out = s(_x(16000))
    assert tuple(out.shape) == (201, 81)
    c = T.Spectrogram(n_fft=64, power=None)(_x(3, 640))
    assert c.is_complex() and tuple(c.shape) == (3, 33, 21)


def test_mfcc_and_lfcc_formulas():
    from scipy.fft import dct
    x = _x(1, 4000, dtype=ember.float64)
    mf = T.MFCC(sample_rate=8000, n_mfcc=13,
                melkwargs=dict(n_fft=256, hop_length=128, n_mels=40))
    out = mf(x).numpy()
    mel = T.MelSpectrogram(8000, n_fft=256, hop_length=128, n_mels=40)(x).numpy()
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    ref = dct(db, type=2, norm="ortho", axis=-2)[:, :13]
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    logm = T.MFCC(8000, 13, log_mels=True, melkwargs=dict(n_fft=256, hop_length=128,
                                                          n_mels=40))(x).numpy()
    np.testing.assert_allclose(logm, dct(np.log(mel + 1e-6), type=2, norm="ortho",
                                         axis=-2)[:, :13], rtol=1e-6, atol=1e-6)
    lf = T.LFCC(8000, n_filter=32, n_lfcc=10, speckwargs=dict(n_fft=256, hop_length=128))
    spec = T.Spectrogram(256, hop_length=128)(x).numpy()
    fb = AF.linear_fbanks(129, 0.0, 4000.0, 32, 8000).numpy().astype(np.float64)
    lin = np.einsum("bft,fm->bmt", spec, fb)
    db = 10 * np.log10(np.maximum(lin, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    np.testing.assert_allclose(lf(x).numpy(), dct(db, type=2, norm="ortho", axis=-2)[:, :10],
                               rtol=1e-6, atol=1e-6)
    # (the default 128 mels over 201 bins leave empty filters: torchaudio warns too)
    with pytest.warns(UserWarning, match="all zero"), pytest.raises(ValueError, match="MFCC"):
        T.MFCC(n_mfcc=200)


def test_gradcheck_mel_and_mfcc():
    x = _x(1, 96, dtype=ember.float64, rg=True)
    mel = T.MelSpectrogram(sample_rate=800, n_fft=32, hop_length=16, n_mels=6)
    assert ember.autograd.gradcheck(mel, (x,))
    mf = T.MFCC(sample_rate=800, n_mfcc=4, log_mels=True,
                melkwargs=dict(n_fft=32, hop_length=16, n_mels=6))
    assert ember.autograd.gradcheck(mf, (x,))


def test_inverse_spectrogram_and_griffinlim_modules():
    x = _x(2, 800, dtype=ember.float64)
    spec = T.Spectrogram(n_fft=128, hop_length=32, power=None)(x)
    y = T.InverseSpectrogram(n_fft=128, hop_length=32)(spec, length=800)
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-6)
    ember.manual_seed(0)
    gl = T.GriffinLim(n_fft=128, hop_length=32, n_iter=4, length=800)
    assert tuple(gl(spec.abs() ** 2).shape) == (2, 800)
    with pytest.raises(ValueError, match="momentum"):
        T.GriffinLim(momentum=1.0)


def test_inverse_mel_scale_recovers_mel():
    spec = _x(2, 65, 10, dtype=ember.float64).abs()
    ms = T.MelScale(n_mels=16, sample_rate=8000, n_stft=65)
    mel = ms(spec)
    inv = T.InverseMelScale(n_stft=65, n_mels=16, sample_rate=8000)(mel)
    assert tuple(inv.shape) == (2, 65, 10) and float(inv.min()) >= 0
    # the minimum-norm least-squares solution of fb.T @ S = mel, clipped at zero
    fb = ms.fb.numpy().astype(np.float64)
    ref = np.maximum(np.linalg.pinv(fb.T) @ mel.numpy(), 0)
    np.testing.assert_allclose(inv.numpy(), ref, rtol=1e-8, atol=1e-10)
    rel = np.linalg.norm(ms(inv).numpy() - mel.numpy()) / np.linalg.norm(mel.numpy())
    assert rel < 0.1


def test_amplitude_to_db_module():
    x = _x(3, 10, 20).abs()
    np.testing.assert_allclose(T.AmplitudeToDB("magnitude")(x).numpy(),
                               20 * np.log10(np.maximum(x.numpy(), 1e-10)), rtol=1e-5)
    with pytest.raises(ValueError):
        T.AmplitudeToDB(top_db=-1)


def test_resample_module_matches_functional():
    x = _x(2, 441)
    r = T.Resample(44100, 16000)
    np.testing.assert_allclose(r(x).numpy(), AF.resample(x, 44100, 16000).numpy(), atol=1e-6)
    assert r(x).shape[-1] == math.ceil(441 * 16000 / 44100)
    assert T.Resample(8000, 8000)(x) is x
    assert "kernel" not in T.Resample(2, 3).state_dict()


def test_masking_and_time_stretch():
    ember.manual_seed(1)
    s = ember.ones(4, 2, 30, 40)
    f = T.FrequencyMasking(10, iid_masks=True)(s).numpy()
    masked = (f == 0).all(-1)  # (batch, channel, freq)
    assert masked.sum(-1).max() < 10
    t = T.TimeMasking(15)(ember.ones(30, 40)).numpy()
    cols = (t == 0).all(0)
    assert cols.sum() < 15
    with pytest.raises(ValueError):
        T.TimeMasking(5, p=2.0)
    spec = T.Spectrogram(n_fft=64, hop_length=32, power=None)(_x(1, 2000))
    st = T.TimeStretch(hop_length=32, n_freq=33)
    for rate in (0.8, 1.3):
        out = st(spec, rate)
        assert out.is_complex() and out.shape[-1] == math.ceil(spec.shape[-1] / rate)
    assert st(spec, 1.0) is spec
    # magnitudes on integer steps are the original frames
    out = T.TimeStretch(32, 33, fixed_rate=2.0)(spec)
    np.testing.assert_allclose(out.abs().numpy(), spec.abs().numpy()[..., ::2], rtol=1e-5)


def test_vol_fade_deltas_mulaw():
    x = _x(2, 100)
    np.testing.assert_allclose(T.Vol(2.0)(x).numpy(), np.clip(x.numpy() * 2, -1, 1))
    np.testing.assert_allclose(T.Vol(6.0, "db")(x).numpy(),
                               np.clip(x.numpy() * 10 ** 0.3, -1, 1), rtol=1e-6)
    np.testing.assert_allclose(T.Vol(4.0, "power")(x).numpy(),
                               np.clip(x.numpy() * 2, -1, 1), rtol=1e-6)
    np.testing.assert_allclose(T.Fade(5, 5, "half_sine")(x).numpy(),
                               AF.fade(x, 5, 5, "half_sine").numpy())
    np.testing.assert_allclose(T.ComputeDeltas(7)(x).numpy(), AF.compute_deltas(x, 7).numpy())
    enc = T.MuLawEncoding(64)(x.clamp(-1, 1))
    assert int(enc.max()) < 64
    assert T.MuLawDecoding(64)(enc).dtype == ember.float32
