"""ember.audio load/save/info: WAV round trips at every bit depth, spans, errors, soundfile."""

import struct
import wave

import numpy as np
import pytest

import ember
from ember import audio


def _tone(channels=2, n=1000, dtype=np.float32):
    t = np.arange(n) / 8000.0
    x = np.stack([0.8 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)])
    return x.astype(dtype)


@pytest.mark.parametrize("bits,enc,dtype,scale", [
    (8, "PCM_U", ember.uint8, 128), (16, "PCM_S", ember.int16, 2 ** 15),
    (24, "PCM_S", ember.int32, 2 ** 23), (32, "PCM_S", ember.int32, 2 ** 31),
    (32, "PCM_F", ember.float32, None)])
def test_wav_round_trip_all_depths(tmp_path, bits, enc, dtype, scale):
    x = _tone()
    p = tmp_path / f"x{bits}{enc}.wav"
    audio.save(p, ember.from_numpy(x), 8000, bits_per_sample=bits, encoding=enc)
    meta = audio.info(p)
    assert (meta.sample_rate, meta.num_frames, meta.num_channels) == (8000, 1000, 2)
    assert (meta.bits_per_sample, meta.encoding) == (bits, enc)
    y, sr = audio.load(p)
    assert sr == 8000 and y.dtype == ember.float32 and tuple(y.shape) == (2, 1000)
    tol = 1e-7 if scale is None else 1.0 / scale
    np.testing.assert_allclose(y.numpy(), x, atol=tol)
    raw, _ = audio.load(p, normalize=False)
    assert raw.dtype == dtype
    if scale is not None:  # the integer codes are the rounded, scaled samples
        codes = np.clip(np.round(x.astype(np.float64) * (128 if bits == 8 else scale)),
                        -scale, scale - 1)
        got = raw.numpy().astype(np.int64)
        if bits == 8:
            got = got - 128
        if bits == 24:
            got = got >> 8  # 24-bit samples sit in the top bytes of int32, as in torchaudio
        np.testing.assert_array_equal(got, codes)


def test_wav_readable_by_stdlib_and_scipy(tmp_path):
    scipy_io = pytest.importorskip("scipy.io.wavfile")
    x = _tone(1)
    p = tmp_path / "a.wav"
    audio.save(p, ember.from_numpy(x), 8000, bits_per_sample=16)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == \
            (1, 2, 8000, 1000)
    sr, d = scipy_io.read(p)
    np.testing.assert_array_equal(d, np.round(x[0] * 32768).astype(np.int16))
    # float32 WAV written by hand: scipy reads it back exactly
    audio.save(tmp_path / "f.wav", ember.from_numpy(_tone(2)), 8000)
    sr, d = scipy_io.read(tmp_path / "f.wav")
    assert d.dtype == np.float32 and sr == 8000
    np.testing.assert_array_equal(d.T, _tone(2))
    # and files scipy writes load in ember (24-bit aside, scipy covers 8/16/32/float)
    for arr in (np.round(x[0] * 32767).astype(np.int16), x[0], (x[0] * 2 ** 31).astype(np.int32)):
        scipy_io.write(tmp_path / "s.wav", 8000, arr)
        y, _ = audio.load(tmp_path / "s.wav", normalize=False)
        np.testing.assert_array_equal(y.numpy()[0], arr)


def test_dtype_defaults_and_layout(tmp_path):
    x = _tone(2)
    for dt, enc, bits in ((np.float32, "PCM_F", 32), (np.int16, "PCM_S", 16),
                          (np.int32, "PCM_S", 32), (np.uint8, "PCM_U", 8)):
        data = x if dt == np.float32 else (
            (x * 100 + 128).astype(dt) if dt == np.uint8 else (x * 1000).astype(dt))
        audio.save(tmp_path / "d.wav", ember.from_numpy(data), 16000)
        m = audio.info(tmp_path / "d.wav")
        assert (m.encoding, m.bits_per_sample) == (enc, bits)
        y, _ = audio.load(tmp_path / "d.wav", normalize=False)
        np.testing.assert_array_equal(y.numpy(), data)
    audio.save(tmp_path / "t.wav", ember.from_numpy(np.ascontiguousarray(x.T)), 8000,
               channels_first=False)
    y, _ = audio.load(tmp_path / "t.wav", channels_first=False)
    np.testing.assert_array_equal(y.numpy(), x.T)


def test_frame_offset_and_num_frames(tmp_path):
    x = _tone(2)
    audio.save(tmp_path / "a.wav", ember.from_numpy(x), 8000)
    y, _ = audio.load(tmp_path / "a.wav", frame_offset=100, num_frames=250)
    np.testing.assert_array_equal(y.numpy(), x[:, 100:350])
    y, _ = audio.load(tmp_path / "a.wav", frame_offset=900)
    np.testing.assert_array_equal(y.numpy(), x[:, 900:])
    y, _ = audio.load(tmp_path / "a.wav", frame_offset=5000)
    assert tuple(y.shape) == (2, 0)
    with pytest.raises(ValueError, match="frame_offset"):
        audio.load(tmp_path / "a.wav", frame_offset=-1)


def test_extensible_and_extra_chunks(tmp_path):
    # WAVE_FORMAT_EXTENSIBLE with a LIST chunk before fmt: the sub-format decides
    x = (np.arange(-50, 50, dtype=np.int16) * 300).reshape(-1, 1)
    data = x.astype("<i2").tobytes()
    guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + guid
    lst = b"INFOjunk"
    body = (b"WAVE" + b"LIST" + struct.pack("<I", len(lst)) + lst + b"fmt " +
            struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    (tmp_path / "e.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    y, sr = audio.load(tmp_path / "e.wav", normalize=False)
    assert sr == 8000
    np.testing.assert_array_equal(y.numpy()[0], x[:, 0])


def test_errors(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(RuntimeError, match="data"):
        audio.load(tmp_path / "bad.wav")
    with pytest.raises(ValueError, match="format"):
        audio.save(tmp_path / "noext", ember.zeros(1, 10), 8000)
    with pytest.raises(ValueError, match="2D"):
        audio.save(tmp_path / "x.wav", ember.zeros(10), 8000)
    with pytest.raises(ValueError, match="bits_per_sample"):
        audio.save(tmp_path / "x.wav", ember.zeros(1, 10), 8000, encoding="PCM_F",
                   bits_per_sample=16)
    assert not (tmp_path / "x.wav").exists()  # a failed save leaves no file behind
    assert [p.name for p in tmp_path.iterdir()] == ["bad.wav"]


def test_soundfile_missing_names_the_extra(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(RuntimeError, match=r"ember\[audio\]"):
        audio.save(tmp_path / "x.flac", ember.zeros(1, 10), 8000)


def test_flac_round_trip(tmp_path):
    pytest.importorskip("soundfile")
    x = _tone(2)
    audio.save(tmp_path / "a.flac", ember.from_numpy(x), 8000, bits_per_sample=16)
    m = audio.info(tmp_path / "a.flac")
    assert (m.sample_rate, m.num_frames, m.num_channels, m.bits_per_sample, m.encoding) == \
        (8000, 1000, 2, 16, "FLAC")
    y, sr = audio.load(tmp_path / "a.flac", frame_offset=10, num_frames=20)
    np.testing.assert_allclose(y.numpy(), x[:, 10:30], atol=1 / 32768)
    raw, _ = audio.load(tmp_path / "a.flac", normalize=False)
    assert raw.dtype == ember.int16
