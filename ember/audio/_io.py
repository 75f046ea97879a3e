"""Audio files: ``load``, ``save`` and ``info`` with torchaudio's signatures.

WAV is handled here: the RIFF chunks are parsed with ``struct`` (PCM, IEEE float and
WAVE_FORMAT_EXTENSIBLE), samples are decoded with NumPy (24-bit included), and integer PCM is
written through the standard library's ``wave`` module. Float32 WAV, which ``wave`` cannot
write, gets its RIFF/fmt/fact/data chunks written by hand. Other formats need ``soundfile``.
"""

from __future__ import annotations

import os
import struct
import tempfile
import wave
from dataclasses import dataclass

import numpy as np

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


@dataclass
class AudioMetaData:
    """What ``info`` reports about an audio file (torchaudio's ``AudioMetaData``)."""

    sample_rate: int
    num_frames: int
    num_channels: int
    bits_per_sample: int
    encoding: str


def _soundfile(feature):
    try:
        import soundfile
    except ImportError:
        raise RuntimeError(f"{feature} needs the optional 'soundfile' package: "
                           f"pip install 'ember[audio]' (or pip install soundfile)") from None
    return soundfile


def _is_wav(path, format):
    if format is not None:
        return format.lower() == "wav"
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if os.path.exists(p):
            with open(p, "rb") as f:
                head = f.read(12)
            return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
        return p.lower().endswith(".wav")
    return False


# --------------------------------------------------------------------------------- WAV reading

@dataclass
class _WavHeader:
    fmt: int
    channels: int
    sample_rate: int
    bits: int
    block_align: int
    data_offset: int
    data_size: int


def _read_wav_header(f, name):
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise RuntimeError(f"load: {name!r} is not a RIFF/WAVE file")
    fmt = None
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise RuntimeError(f"load: {name!r} has no 'data' chunk")
        cid, size = head[:4], struct.unpack("<I", head[4:])[0]
        if cid == b"fmt ":
            body = f.read(size + (size & 1))
            tag, ch, sr, _, align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and size >= 40:
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
            fmt = (tag, ch, sr, bits, align)
        elif cid == b"data":
            if fmt is None:
                raise RuntimeError(f"load: {name!r} has its 'data' chunk before 'fmt '")
            offset = f.tell()
            f.seek(0, os.SEEK_END)
            size = min(size, f.tell() - offset)  # a truncated file is read as far as it goes
            tag, ch, sr, bits, align = fmt
            if tag not in (_PCM, _FLOAT) or (tag == _FLOAT and bits not in (32, 64)) or (
                    tag == _PCM and bits not in (8, 16, 24, 32)):
                raise RuntimeError(f"load: {name!r} uses WAV format tag {tag:#x} with {bits} "
                                   f"bits per sample, which ember does not decode (PCM 8/16/24/"
                                   f"32-bit and float32/64 are supported)")
            return _WavHeader(tag, ch, sr, bits, align, offset, size)
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)


def _wav_encoding(h):
    if h.fmt == _FLOAT:
        return "PCM_F"
    return "PCM_U" if h.bits == 8 else "PCM_S"


def _decode(raw, h):
    """Interleaved bytes -> (frames, channels) array in the file's own type (24-bit -> int32
    holding the sample in its top 24 bits, as torchaudio does)."""
    if h.fmt == _FLOAT:
        a = np.frombuffer(raw, dtype="<f4" if h.bits == 32 else "<f8")
    elif h.bits == 8:
        a = np.frombuffer(raw, dtype=np.uint8)
    elif h.bits == 16:
        a = np.frombuffer(raw, dtype="<i2")
    elif h.bits == 32:
        a = np.frombuffer(raw, dtype="<i4")
    else:  # 24-bit little-endian triplets, placed in the high bytes of an int32
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
        a = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).view(np.int32)
    return a.reshape(-1, h.channels).astype(a.dtype.newbyteorder("="), copy=False)


def _normalize(a):
    """Integer PCM -> float32 in [-1, 1) with torchaudio's scaling."""
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype == np.int32:
        return (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    return a.astype(np.float32)


def _frames(frame_offset, num_frames, total):
    if frame_offset < 0:
        raise ValueError(f"load: frame_offset must be non-negative, got {frame_offset}")
    if num_frames == 0 or num_frames < -1:
        raise ValueError(f"load: num_frames must be -1 (all) or positive, got {num_frames}")
    start = min(frame_offset, total)
    stop = total if num_frames == -1 else min(total, start + num_frames)
    return start, stop


def _to_tensor(a, normalize, channels_first):
    from ..ops.creation import from_numpy
    if normalize:
        a = _normalize(a)
    a = np.ascontiguousarray(a.T if channels_first else a)
    return from_numpy(a)


# ------------------------------------------------------------------------------ public API

def info(uri, format=None, buffer_size=4096, backend=None):
    """Sample rate, frame and channel counts, bit depth and encoding of an audio file."""
    if _is_wav(uri, format):
        with open(uri, "rb") as f:
            h = _read_wav_header(f, os.fspath(uri))
        return AudioMetaData(h.sample_rate, h.data_size // h.block_align, h.channels, h.bits,
                             _wav_encoding(h))
    sf = _soundfile(f"info({uri!r}) for a non-WAV file")
    i = sf.info(os.fspath(uri))
    bits = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32,
            "DOUBLE": 64}.get(i.subtype, 0)
    enc = {"FLAC": "FLAC", "OGG": "VORBIS", "MP3": "MP3"}.get(i.format, _sf_encoding(i.subtype))
    return AudioMetaData(int(i.samplerate), int(i.frames), int(i.channels), bits, enc)


def _sf_encoding(subtype):
    if subtype.startswith("PCM_U"):
        return "PCM_U"
    if subtype.startswith("PCM"):
        return "PCM_S"
    if subtype in ("FLOAT", "DOUBLE"):
        return "PCM_F"
    return subtype


def load(uri, frame_offset=0, num_frames=-1, normalize=True, channels_first=True, format=None,
         buffer_size=4096, backend=None):
    """Read an audio file: ``(waveform, sample_rate)``.

    ``waveform`` is ``(channels, frames)`` (``(frames, channels)`` when ``channels_first`` is
    False), float32 in [-1, 1] when ``normalize``; otherwise WAV keeps its integer type (uint8,
    int16, int32; 24-bit comes as int32). ``frame_offset``/``num_frames`` select a span
    without reading the rest of the file.
    """
    if _is_wav(uri, format):
        with open(uri, "rb") as f:
            h = _read_wav_header(f, os.fspath(uri))
            total = h.data_size // h.block_align
            start, stop = _frames(frame_offset, num_frames, total)
            f.seek(h.data_offset + start * h.block_align)
            raw = f.read((stop - start) * h.block_align)
        return _to_tensor(_decode(raw, h), normalize, channels_first), h.sample_rate
    sf = _soundfile(f"load({uri!r}) for a non-WAV file")
    with sf.SoundFile(os.fspath(uri)) as f:
        start, stop = _frames(frame_offset, num_frames, f.frames)
        f.seek(start)
        if normalize:
            a = f.read(stop - start, dtype="float32", always_2d=True)
        else:  # keep integers as integers, like torchaudio
            dt = {"PCM_16": "int16", "PCM_24": "int32", "PCM_32": "int32"}.get(f.subtype,
                                                                                "float32")
            a = f.read(stop - start, dtype=dt, always_2d=True)
        return _to_tensor(a, False, channels_first), int(f.samplerate)


_DEFAULT_BITS = {"float32": ("PCM_F", 32), "float64": ("PCM_F", 32), "int32": ("PCM_S", 32),
                 "int16": ("PCM_S", 16), "uint8": ("PCM_U", 8)}


def _quantize(a, encoding, bits, op):
    """float or integer samples -> the integer PCM codes of (encoding, bits)."""
    if a.dtype.kind == "f":
        if encoding == "PCM_U":
            return np.clip(np.round(a * 128.0 + 128.0), 0, 255).astype(np.uint8)
        scale = float(2 ** (bits - 1))
        return np.clip(np.round(a.astype(np.float64) * scale), -scale, scale - 1).astype(np.int64)
    # integer input: rescale from its own width to the target width
    src = {np.dtype(np.uint8): 8, np.dtype(np.int16): 16, np.dtype(np.int32): 32}.get(a.dtype)
    if src is None:
        raise RuntimeError(f"{op}: unsupported waveform dtype {a.dtype}")
    v = a.astype(np.int64)
    if src == 8:
        v = v - 128
    v = v << (bits - src) if bits >= src else v >> (src - bits)
    return (v + 128).astype(np.uint8) if encoding == "PCM_U" else v


def _write_atomic(path, write):
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ember-audio-", suffix=os.path.splitext(path)[1], dir=d)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_float_wav(path, a, sample_rate):
    """IEEE-float WAV: ``wave`` writes only integer PCM, so the chunks are written here."""
    channels = a.shape[1]
    data = np.ascontiguousarray(a, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", _FLOAT, channels, sample_rate, sample_rate * 4 * channels,
                      4 * channels, 32, 0)
    fact = struct.pack("<I", a.shape[0])
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4)
            + fact + b"data" + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1))
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def _write_pcm_wav(path, codes, sample_rate, bits):
    codes = np.ascontiguousarray(codes)  # interleaved frames
    if bits == 8:
        raw = codes.astype(np.uint8).tobytes()
    elif bits == 16:
        raw = codes.astype("<i2").tobytes()
    elif bits == 32:
        raw = codes.astype("<i4").tobytes()
    else:  # 24-bit: the low three bytes of each little-endian int32
        raw = codes.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    with wave.open(path, "wb") as w:
        w.setnchannels(codes.shape[1])
        w.setsampwidth(bits // 8)
        w.setframerate(sample_rate)
        w.writeframes(raw)


def _wav_encoding_bits(default, encoding, bits):
    """torchaudio's choice of (encoding, bits) for WAV from the dtype's default and the options
    given: 8 bits means unsigned PCM, 16/24 signed, 32 keeps float for float input."""
    if encoding is None and bits is None:
        return default
    if encoding is None:
        if bits == 8:
            return "PCM_U", 8
        if bits == 32 and default[0] == "PCM_F":
            return "PCM_F", 32
        return "PCM_S", bits
    if bits is None:
        bits = {"PCM_U": 8, "PCM_F": 32}.get(encoding, default[1] if default[0] == "PCM_S"
                                              else 32)
    return encoding, bits


def save(uri, src, sample_rate, channels_first=True, compression=None, format=None,
         encoding=None, bits_per_sample=None, buffer_size=4096, backend=None):
    """Write ``src`` (``(channels, frames)``, or ``(frames, channels)`` when ``channels_first``
    is False) to an audio file, atomically (a temporary file, then a rename).

    WAV defaults follow the tensor's dtype as torchaudio's do: float -> 32-bit float, int32 ->
    32-bit PCM, int16 -> 16-bit PCM, uint8 -> 8-bit unsigned PCM. ``encoding`` ("PCM_S",
    "PCM_U", "PCM_F") and ``bits_per_sample`` (8, 16, 24, 32) override them. Float samples are
    scaled by 2**(bits-1), rounded and clipped.
    """
    a = src.detach().cpu().numpy() if hasattr(src, "detach") else np.asarray(src)
    if a.ndim != 2:
        raise ValueError(f"save: expected a 2D waveform (channels, frames), got shape "
                         f"{list(a.shape)}")
    if not channels_first:
        a = a.T
    a = a.T  # (frames, channels)
    sample_rate = int(sample_rate)
    fmt = format.lower() if format else os.path.splitext(os.fspath(uri))[1].lower().lstrip(".")
    if not fmt:
        raise ValueError(f"save: cannot tell the audio format of {os.fspath(uri)!r} from its "
                         f"name; pass format= ('wav', 'flac', 'ogg', ...)")
    if fmt == "wav":
        default = _DEFAULT_BITS.get(str(a.dtype))
        if default is None:
            raise ValueError(f"save: unsupported waveform dtype {a.dtype}")
        enc, bits = _wav_encoding_bits(default, encoding, bits_per_sample)
        if enc == "PCM_F":
            if bits != 32:
                raise ValueError(f"save: PCM_F WAV is written with 32 bits per sample, got "
                                 f"bits_per_sample={bits}")
            if a.dtype.kind != "f":
                a = _quantize(a, "PCM_S", 32, "save").astype(np.float64) / 2 ** 31
            _write_atomic(uri, lambda p: _write_float_wav(p, a, sample_rate))
            return
        if (enc, bits) not in (("PCM_U", 8), ("PCM_S", 16), ("PCM_S", 24), ("PCM_S", 32)):
            raise ValueError(f"save: WAV cannot be written with encoding={enc!r} and "
                             f"bits_per_sample={bits} (PCM_U 8, PCM_S 16/24/32, PCM_F 32)")
        codes = _quantize(a, enc, bits, "save")
        _write_atomic(uri, lambda p: _write_pcm_wav(p, codes, sample_rate, bits))
        return
    sf = _soundfile(f"save({uri!r}) in format {fmt!r}")
    subtype = None
    if fmt == "flac":
        subtype = {8: "PCM_S8", 16: "PCM_16", 24: "PCM_24"}.get(bits_per_sample or 16)
        if subtype is None:
            raise ValueError(f"save: FLAC takes bits_per_sample 8, 16 or 24, got "
                             f"{bits_per_sample}")
    elif fmt == "ogg":
        subtype = "VORBIS"
    data = a.astype(np.float32) if a.dtype.kind == "f" else a
    _write_atomic(uri, lambda p: sf.write(p, data, sample_rate, subtype=subtype,
                                          format=fmt.upper()))
