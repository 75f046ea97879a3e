"""A small formant synthesiser for ``GeneratedKeywords``: spoken-digit-like words.

Each word is a sequence of segments: voiced ones (vowels, approximants, nasals) are sums of
the harmonics of a glottal pitch contour, weighted by a three-formant resonance envelope that
glides between the segments' targets (coarticulation); unvoiced ones (fricatives, stop bursts)
are band-limited noise. Speakers differ in pitch, vocal-tract length (all formants scaled),
speaking rate and loudness; every utterance adds its own jitter, position in the clip and
background noise. Everything is drawn from NumPy generators seeded by (seed, split, index),
so an item is the same on every call and machine.
"""

from __future__ import annotations

import numpy as np

# segment kinds: ("V", F1, F2, F3, seconds) voiced; ("N", seconds) nasal murmur;
# ("F", low Hz, high Hz, level, seconds) fricative noise; ("B", low, high, level, seconds) burst;
# ("S", seconds) silence (a stop closure)
_NASAL = (260.0, 1700.0, 2600.0)
WORDS = {
    "zero": [("F", 3500, 7500, 0.35, 0.09), ("V", 300, 2250, 2900, 0.08),
             ("V", 480, 1350, 1700, 0.07), ("V", 450, 820, 2800, 0.17)],
    "one": [("V", 320, 650, 2200, 0.07), ("V", 640, 1190, 2390, 0.15), ("N", 0.12)],
    "two": [("S", 0.03), ("B", 2500, 6500, 0.7, 0.04), ("V", 310, 870, 2240, 0.28)],
    "three": [("F", 5000, 7800, 0.2, 0.10), ("V", 490, 1350, 1690, 0.06),
              ("V", 270, 2290, 3010, 0.22)],
    "four": [("F", 1200, 7000, 0.25, 0.10), ("V", 570, 840, 2410, 0.20),
             ("V", 490, 1350, 1690, 0.10)],
    "five": [("F", 1200, 7000, 0.25, 0.09), ("V", 730, 1090, 2440, 0.14),
             ("V", 390, 1990, 2550, 0.10), ("F", 1500, 6000, 0.15, 0.06)],
    "six": [("F", 4000, 7800, 0.6, 0.11), ("V", 390, 1990, 2550, 0.11), ("S", 0.04),
            ("B", 1500, 3500, 0.6, 0.03), ("F", 4000, 7800, 0.6, 0.10)],
    "seven": [("F", 4000, 7800, 0.6, 0.10), ("V", 530, 1840, 2480, 0.10),
              ("F", 1500, 6000, 0.15, 0.04), ("V", 500, 1500, 2500, 0.07), ("N", 0.10)],
    "eight": [("V", 530, 1840, 2480, 0.12), ("V", 390, 1990, 2550, 0.12), ("S", 0.04),
              ("B", 3000, 6500, 0.6, 0.04)],
    "nine": [("N", 0.08), ("V", 730, 1090, 2440, 0.13), ("V", 390, 1990, 2550, 0.10),
             ("N", 0.10)],
}
LABELS = list(WORDS)

_AMPS = np.array([1.0, 0.5, 0.25])[:, None, None]
_BWS = np.array([90.0, 120.0, 180.0])[:, None, None]


def speaker(seed, speaker_id):
    """Speaker traits: (pitch Hz, formant scale, speaking rate, loudness)."""
    r = np.random.default_rng([seed, 7919, speaker_id])
    f0 = r.choice([r.uniform(85, 150), r.uniform(160, 260)])  # lower and higher voices
    return f0, r.uniform(0.85, 1.2), r.uniform(0.8, 1.25), r.uniform(0.3, 0.9)


def _smooth(a, n):
    """Moving average over ``n`` samples along the last axis (edges held)."""
    if n <= 1:
        return a
    k = np.ones(n) / n
    pad = [(0, 0)] * (a.ndim - 1) + [(n // 2, n - 1 - n // 2)]
    ap = np.pad(a, pad, mode="edge")
    c = np.cumsum(ap, axis=-1)
    c = np.concatenate([np.zeros(a.shape[:-1] + (1,)), c], axis=-1)
    return (c[..., n:] - c[..., :-n]) * k[0]


def _band_noise(r, n, lo, hi, sr):
    size = 1 << max(4, (n - 1).bit_length())  # a power of two: NumPy's FFT is slow on primes
    spec = np.fft.rfft(r.standard_normal(size))
    f = np.fft.rfftfreq(size, 1.0 / sr)
    spec *= 1.0 / (1.0 + np.exp(-(f - lo) / 150.0)) / (1.0 + np.exp((f - hi) / 300.0))
    out = np.fft.irfft(spec, size)[:n]
    return out / (np.abs(out).max() + 1e-9)


def synthesise(word, spk, r, sample_rate=16000, length=16000):
    """One utterance of ``word`` by speaker traits ``spk`` with generator ``r``: a float32
    array of ``length`` samples in [-1, 1]."""
    sr = sample_rate
    f0_base, tract, rate, loud = spk
    rate *= r.uniform(0.9, 1.1)
    segs = WORDS[word]
    lens = [max(8, int(s[-1] / rate * r.uniform(0.85, 1.15) * sr)) for s in segs]
    n = sum(lens)
    formants = np.full((3, n), np.nan)
    voice = np.zeros(n)
    noise = np.zeros(n)
    pos = 0
    for s, m in zip(segs, lens):
        sl = slice(pos, pos + m)
        if s[0] == "V":
            jit = r.uniform(0.94, 1.06, size=3)
            formants[:, sl] = (np.array(s[1:4]) * tract * jit)[:, None]
            voice[sl] = 1.0
        elif s[0] == "N":
            formants[:, sl] = (np.array(_NASAL) * tract)[:, None]
            voice[sl] = 0.35
        elif s[0] in ("F", "B"):
            lo, hi = s[1] * r.uniform(0.9, 1.1), min(s[2], sr / 2 - 200)
            env = np.ones(m)
            if s[0] == "B":
                env = np.exp(-np.arange(m) / (0.3 * m))
            noise[sl] = s[3] * _band_noise(r, m, lo, hi, sr) * env
        pos += m
    # unvoiced stretches take the neighbouring formants (forward, then backward fill)
    for row in formants:
        idx = np.where(~np.isnan(row), np.arange(n), 0)
        np.maximum.accumulate(idx, out=idx)
        row[:] = row[idx]
        first = np.flatnonzero(~np.isnan(row))
        row[np.isnan(row)] = row[first[0]] if len(first) else 500.0
    glide = max(1, int(0.03 * sr))
    formants = _smooth(formants, glide)
    voice = _smooth(voice, max(1, int(0.01 * sr)))
    # pitch: the speaker's, a falling or rising contour, a little vibrato
    t = np.arange(n) / sr
    f0 = f0_base * r.uniform(0.92, 1.08) * (1 + r.uniform(-0.15, 0.1) * t / max(t[-1], 1e-3))
    f0 = f0 * (1 + 0.015 * np.sin(2 * np.pi * r.uniform(4, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    k = np.arange(1, int(min(4000.0, sr / 2 - 100) / f0.min()) + 1)[:, None]
    # harmonic weights on a coarse grid (every 32 samples), then held: the envelope moves slowly
    step = 32
    fk = k * f0[None, ::step]
    env = (_AMPS / (1 + ((fk[None] - formants[:, None, ::step]) / _BWS) ** 2)).sum(0)
    env = env / np.sqrt(k)
    # sum_k env_k sin(k phase) by the Chebyshev recurrence sin((k+1)x) = 2 cos x sin kx -
    # sin((k-1)x): one multiply-add per harmonic instead of a sine per harmonic and sample
    two_cos = 2 * np.cos(phase)
    prev, cur = np.zeros(n), np.sin(phase)
    voiced = np.zeros(n)
    for row in env:
        voiced += np.repeat(row, step)[:n] * cur
        prev, cur = cur, two_cos * cur - prev
    voiced /= np.abs(voiced).max() + 1e-9
    w = voice * voiced + noise
    ramp = min(n // 4, int(0.01 * sr))
    w[:ramp] *= np.linspace(0, 1, ramp)
    w[n - ramp:] *= np.linspace(1, 0, ramp)
    w = w / (np.abs(w).max() + 1e-9) * loud * r.uniform(0.7, 1.0)
    out = np.zeros(length)
    if n >= length:
        out[:] = w[:length]
    else:
        start = r.integers(0, length - n + 1)
        out[start:start + n] = w
    # background: white plus low-frequency (brown-ish) noise at 0-30 dB below the word
    snr_db = r.uniform(0, 30)
    bg = r.standard_normal(length)
    low = np.cumsum(r.standard_normal(length))
    low -= _smooth(low[None], 401)[0]  # drop the drift, keep the rumble
    bg = bg / bg.std() + r.uniform(0, 1.5) * low / (low.std() + 1e-9)
    out += bg / (np.abs(bg).std() + 1e-9) * (loud * 10 ** (-snr_db / 20)) * 0.3
    return np.clip(out, -1, 1).astype(np.float32)
