"""A built-in digits dataset that needs no files: 28x28 grey images of the digits 0-9 drawn
from stroke skeletons, each sample under its own random affine jitter (rotation, scale,
shear, translation), stroke width, wobble and noise. Deterministic under a seed.

Rendering is vectorised over samples: each pixel's intensity falls off with its distance to
the nearest stroke segment, so a whole batch renders with a few array operations.
"""

from __future__ import annotations

import numpy as np


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in t]  # y grows downwards


def _line(*pts):
    return list(pts)


# Each digit: a list of strokes (polylines) in the unit square, y downwards.
_GLYPHS = {
    0: [_arc(0.5, 0.5, 0.2, 0.32, 0, 360, 24)],
    1: [_line((0.5, 0.18), (0.5, 0.82)), _line((0.5, 0.18), (0.37, 0.31))],
    2: [_arc(0.5, 0.35, 0.2, 0.17, 180, 400, 14) + [(0.3, 0.82)],
        _line((0.3, 0.82), (0.72, 0.82))],
    3: [_arc(0.5, 0.33, 0.19, 0.15, 200, 450, 12), _arc(0.5, 0.66, 0.21, 0.17, 270, 520, 14)],
    4: [_line((0.62, 0.82), (0.62, 0.18), (0.28, 0.62), (0.76, 0.62))],
    5: [_line((0.7, 0.18), (0.36, 0.18), (0.33, 0.47)), _arc(0.5, 0.63, 0.2, 0.19, 225, 500, 14)],
    6: [_arc(0.56, 0.5, 0.25, 0.33, 290, 180, 10), _arc(0.5, 0.66, 0.19, 0.16, 180, 540, 16)],
    7: [_line((0.28, 0.18), (0.72, 0.18), (0.42, 0.82))],
    8: [_arc(0.5, 0.33, 0.16, 0.15, 0, 360, 16), _arc(0.5, 0.66, 0.2, 0.17, 0, 360, 18)],
    9: [_arc(0.5, 0.36, 0.18, 0.17, 0, 360, 16),
        _line((0.68, 0.36), (0.66, 0.6), (0.58, 0.82))],
}


def _segments(digit):
    segs = []
    for stroke in _GLYPHS[digit]:
        pts = np.asarray(stroke, dtype=np.float64)
        segs.append(np.stack([pts[:-1], pts[1:]], axis=1))
    return np.concatenate(segs)  # (S, 2, 2)


_SEGS = {d: _segments(d) for d in range(10)}


def render(labels, rng, size=28):
    """Render digits ``labels`` (int array) as float32 images in [0, 1], shape (N, size, size).

    Samples are grouped by digit so each group carries only its own glyph's segments."""
    labels = np.asarray(labels)
    out = np.empty((len(labels), size, size), dtype=np.float32)
    for d in np.unique(labels):
        sel = np.nonzero(labels == d)[0]
        out[sel] = _render_glyph(_SEGS[d], len(sel), rng, size)
    return out


def _render_glyph(glyph_segs, n, rng, size):
    segs = np.broadcast_to(glyph_segs, (n,) + glyph_segs.shape).copy()  # (N, S, 2, 2)
    # wobble: move each segment end point a little (the same point in neighbouring segments
    # moves differently, which reads as an uneven hand)
    segs += rng.normal(0, 0.02, size=segs.shape)
    # a stray mark on some images: one short random stroke
    stray = rng.random(n) < 0.25
    if stray.any():
        start = rng.uniform(0.1, 0.9, (n, 2))
        end = start + rng.normal(0, 0.12, (n, 2))
        extra = np.stack([start, end], axis=1)[:, None]  # (N, 1, 2, 2)
        extra[~stray] = segs[~stray, :1]  # no stray mark: repeat a real segment
        segs = np.concatenate([segs, extra], axis=1)
    # random affine about the centre: rotation, anisotropic scale, shear, translation
    ang = rng.uniform(-0.4, 0.4, n)
    sx = rng.uniform(0.7, 1.12, n)
    sy = sx * rng.uniform(0.8, 1.2, n)
    sh = rng.uniform(-0.4, 0.4, n)
    tx, ty = rng.uniform(-0.13, 0.13, (2, n))
    c, s = np.cos(ang), np.sin(ang)
    a11, a12 = c * sx, (c * sh - s) * sy
    a21, a22 = s * sx, (s * sh + c) * sy
    p = segs - 0.5
    x = a11[:, None, None] * p[..., 0] + a12[:, None, None] * p[..., 1] + 0.5 + tx[:, None, None]
    y = a21[:, None, None] * p[..., 0] + a22[:, None, None] * p[..., 1] + 0.5 + ty[:, None, None]
    x, y = (x * size).astype(np.float32), (y * size).astype(np.float32)  # pixel units
    # distance from every pixel centre to every segment
    g = np.arange(size, dtype=np.float32) + 0.5
    px = np.tile(g, size)[None, :, None]  # (1, P, 1)
    py = np.repeat(g, size)[None, :, None]
    x0, y0 = x[:, None, :, 0], y[:, None, :, 0]  # (N, 1, S)
    dx, dy = x[:, None, :, 1] - x0, y[:, None, :, 1] - y0
    ln2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / ln2, 0.0, 1.0)
    ex, ey = px - (x0 + t * dx), py - (y0 + t * dy)
    d = np.sqrt((ex * ex + ey * ey).min(axis=2))  # (N, P)
    width = rng.uniform(0.6, 2.2, n)[:, None]
    img = np.clip(width + 0.8 - d, 0.0, 1.0)
    img *= rng.uniform(0.6, 1.0, n)[:, None]  # ink strength
    img += rng.normal(0, 0.1, img.shape)  # sensor noise
    return np.clip(img, 0.0, 1.0).astype(np.float32).reshape(n, size, size)


def generate(n, seed, size=28, chunk=512):
    """``n`` images and labels (balanced, shuffled), deterministic under ``seed``."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    images = np.empty((n, size, size), dtype=np.float32)
    for i in range(0, n, chunk):
        images[i:i + chunk] = render(labels[i:i + chunk], rng, size)
    return images, labels
