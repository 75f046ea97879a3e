"""RoIAlign (Mask R-CNN, He et al. 2017): average of bilinear samples over a regular grid
in each output bin of each region of interest, as torchvision's CPU kernel computes it.

Each region's output is a linear map of its image, ``out = image.reshape(C, H*W) @ M.T``,
with ``M`` the sampling weights built in NumPy; the matmul is an ember op, so the gradient
with respect to the input comes from autograd (boxes get none, as in torchvision)."""

from __future__ import annotations

import math

import numpy as np

from ... import nn
from ..._tensor import Tensor, _make


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _rois(boxes, fn):
    """``boxes`` as a NumPy ``(K, 5)`` array ``(batch_index, x1, y1, x2, y2)``."""
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            if b.ndim != 2 or b.shape[-1] != 4:
                raise ValueError(f"{fn}: each box tensor must have shape (L, 4), got "
                                 f"{tuple(b.shape)}")
            a = np.asarray(b.detach()._data, dtype=np.float64)
            parts.append(np.concatenate([np.full((len(a), 1), i), a], axis=1))
        return np.concatenate(parts) if parts else np.zeros((0, 5))
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 5:
        raise ValueError(f"{fn}: boxes must be a (K, 5) tensor or a list of (L, 4) tensors, "
                         f"got {getattr(boxes, 'shape', type(boxes).__name__)}")
    return np.asarray(boxes.detach()._data, dtype=np.float64)


def _weights(roi, height, width, ph_n, pw_n, scale, sampling_ratio, aligned):
    """The ``(PH*PW, H*W)`` matrix of bilinear sampling weights of one region."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v * scale - offset for v in roi[1:])
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # legacy behaviour: regions are at least one pixel
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_n)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_n)
    count = max(grid_h * grid_w, 1)
    m = np.zeros((ph_n * pw_n, height * width))
    if grid_h <= 0 or grid_w <= 0:
        return m
    # sample coordinates: (PH, grid_h) rows and (PW, grid_w) columns
    ys = (y1 + np.arange(ph_n)[:, None] * bin_h
          + (np.arange(grid_h)[None, :] + 0.5) * bin_h / grid_h)
    xs = (x1 + np.arange(pw_n)[:, None] * bin_w
          + (np.arange(grid_w)[None, :] + 0.5) * bin_w / grid_w)
    yy = np.broadcast_to(ys[:, None, :, None], (ph_n, pw_n, grid_h, grid_w)).ravel()
    xx = np.broadcast_to(xs[None, :, None, :], (ph_n, pw_n, grid_h, grid_w)).ravel()
    out_idx = np.repeat(np.arange(ph_n * pw_n), grid_h * grid_w)
    valid = (yy >= -1.0) & (yy <= height) & (xx >= -1.0) & (xx <= width)
    yy, xx, out_idx = np.clip(yy[valid], 0, None), np.clip(xx[valid], 0, None), out_idx[valid]
    y_low, x_low = yy.astype(np.int64), xx.astype(np.int64)
    top_y, top_x = y_low >= height - 1, x_low >= width - 1
    y_low[top_y], x_low[top_x] = height - 1, width - 1
    yy[top_y], xx[top_x] = y_low[top_y], x_low[top_x]
    y_high = np.where(top_y, y_low, y_low + 1)
    x_high = np.where(top_x, x_low, x_low + 1)
    ly, lx = yy - y_low, xx - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    for yi, xi, w in ((y_low, x_low, hy * hx), (y_low, x_high, hy * lx),
                      (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)):
        np.add.at(m, (out_idx, yi * width + xi), w / count)
    return m


def roi_align(input: Tensor, boxes, output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign of ``input`` ``(N, C, H, W)`` over ``boxes`` (a ``(K, 5)`` tensor of
    ``(batch_index, x1, y1, x2, y2)`` or a list of per-image ``(L, 4)`` tensors): a
    ``(K, C, PH, PW)`` tensor. ``sampling_ratio <= 0`` samples ``ceil(roi_size / bin)`` points
    per bin side; ``aligned=True`` shifts boxes by half a pixel for exact alignment."""
    import ember
    if input.ndim != 4:
        raise ValueError(f"roi_align: input must have shape (N, C, H, W), got "
                         f"{tuple(input.shape)}")
    rois = _rois(boxes, "roi_align")
    ph_n, pw_n = _pair(output_size)
    n, c, height, width = input.shape
    if len(rois) == 0:
        return input.new_zeros((0, c, ph_n, pw_n))
    outs = []
    for roi in rois:
        b = int(roi[0])
        if not 0 <= b < n:
            raise IndexError(f"roi_align: box batch index {b} is out of range for a batch of "
                             f"{n}")
        m = _weights(roi, height, width, ph_n, pw_n, spatial_scale, sampling_ratio, aligned)
        weights = _make(m.astype(input._data.dtype))
        outs.append(ember.matmul(input[b].reshape(c, height * width), weights.t()))
    return ember.stack(outs).reshape(len(rois), c, ph_n, pw_n)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int,
                 aligned: bool = False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def __repr__(self):
        return (f"{self.__class__.__name__}(output_size={self.output_size}, "
                f"spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}, "
                f"aligned={self.aligned})")
