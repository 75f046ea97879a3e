"""Image utilities: ``make_grid`` and ``save_image`` (torchvision's behaviour)."""

from __future__ import annotations

import math
import os

import numpy as np

from .._tensor import Tensor, _make


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False,
              pad_value=0.0):
    """Tile a batch (B, C, H, W) (or a list of images) into one image (C, H', W')."""
    if isinstance(tensor, (list, tuple)):
        from .. import stack
        tensor = stack(list(tensor))
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor or list of tensors expected, got {type(tensor).__name__}")
    a = tensor.detach().numpy()
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 3:
        a = a[None] if a.shape[0] in (1, 3) else a[:, None]
    if a.shape[1] == 1:
        a = np.repeat(a, 3, axis=1)
    a = a.astype(np.float32) if a.dtype.kind != "f" else a.copy()
    if normalize:
        def norm(x, lo, hi):
            x.clip(lo, hi, out=x)
            x -= lo
            x /= max(hi - lo, 1e-5)
        if scale_each:
            for img in a:
                lo, hi = value_range if value_range else (img.min(), img.max())
                norm(img, lo, hi)
        else:
            lo, hi = value_range if value_range else (a.min(), a.max())
            norm(a, lo, hi)
    b, c, h, w = a.shape
    if b == 1:
        return _make(a[0])
    xmaps = min(nrow, b)
    ymaps = int(math.ceil(b / xmaps))
    H, W = h + padding, w + padding
    grid = np.full((c, ymaps * H + padding, xmaps * W + padding), pad_value, dtype=a.dtype)
    for k in range(b):
        y, x = divmod(k, xmaps)
        grid[:, y * H + padding: y * H + padding + h, x * W + padding: x * W + padding + w] = a[k]
    return _make(grid)


def save_image(tensor, fp, format=None, **kwargs):
    """Write a tensor (or batch, tiled by ``make_grid``) as an image file (needs Pillow)."""
    from PIL import Image
    grid = make_grid(tensor, **kwargs).numpy()
    arr = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    img = Image.fromarray(arr)
    if isinstance(fp, (str, os.PathLike)):
        fp = os.fspath(fp)
        tmp = fp + ".tmp"
        img.save(tmp, format=format or os.path.splitext(fp)[1][1:].upper().replace("JPG", "JPEG"))
        os.replace(tmp, fp)
    else:
        img.save(fp, format=format)
