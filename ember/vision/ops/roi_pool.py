"""RoIPool (Fast R-CNN, Girshick 2015) and the sigmoid focal loss (RetinaNet, Lin et al.
2017), as torchvision computes them.

RoIPool: each region ``(batch_index, x1, y1, x2, y2)`` is scaled by ``spatial_scale`` and
rounded to whole pixels, cut into ``output_size`` bins (bin edges floored/ceiled), and each bin
takes the maximum of its pixels (an empty bin gives 0). The argmax of every bin is found in
NumPy, then the values are gathered with ember ops, so the gradient flows to the argmax
pixels through autograd."""

from __future__ import annotations

import math

import numpy as np

from ... import nn
from ..._tensor import Tensor, _make
from .roi_align import _pair, _rois

__all__ = ["RoIPool", "roi_pool", "sigmoid_focal_loss"]


def _round_half_away(v):
    # C's round(): halves away from zero (Python's round() rounds halves to even)
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool(input: Tensor, boxes, output_size, spatial_scale: float = 1.0) -> Tensor:
    """Max-pool each region of ``boxes`` (a ``(K, 5)`` tensor or a list of ``(L, 4)`` per
    image) of ``input`` ``(N, C, H, W)`` to ``output_size``; returns ``(K, C, PH, PW)``."""
    if input.ndim != 4:
        raise ValueError(f"roi_pool: input must be (N, C, H, W), got {tuple(input.shape)}")
    rois = _rois(boxes, "roi_pool")
    ph_n, pw_n = _pair(output_size)
    n, c, h, w = input.shape
    x = input.detach()._data
    k = len(rois)
    idx = np.zeros((k, c, ph_n * pw_n), np.int64)
    valid = np.zeros((k, 1, ph_n * pw_n), bool)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        if not 0 <= b < n:
            raise ValueError(f"roi_pool: box {r} names image {b}, the batch has {n}")
        x1, y1, x2, y2 = (_round_half_away(v * spatial_scale) for v in roi[1:])
        bin_h = max(y2 - y1 + 1, 1) / ph_n
        bin_w = max(x2 - x1 + 1, 1) / pw_n
        for ph in range(ph_n):
            hs = min(max(math.floor(ph * bin_h) + y1, 0), h)
            he = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), h)
            for pw in range(pw_n):
                ws = min(max(math.floor(pw * bin_w) + x1, 0), w)
                we = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), w)
                if he <= hs or we <= ws:
                    continue
                p = ph * pw_n + pw
                am = x[b, :, hs:he, ws:we].reshape(c, -1).argmax(axis=1)
                idx[r, :, p] = (hs + am // (we - ws)) * w + ws + am % (we - ws)
                valid[r, 0, p] = True
    batch = _make(rois[:, 0].astype(np.int64))
    per_roi = input.reshape(n, c, h * w).index_select(0, batch)
    out = per_roi.gather(2, _make(idx)) * _make(valid.astype(x.dtype))
    return out.reshape(k, c, ph_n, pw_n)


class RoIPool(nn.Module):
    """``roi_pool`` as a module."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self):
        return (f"{type(self).__name__}(output_size={self.output_size}, "
                f"spatial_scale={self.spatial_scale})")


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """The focal loss of logits ``inputs`` against binary ``targets`` (same shape):
    ``alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)`` with ``p = sigmoid(inputs)``,
    ``p_t = p`` where the target is 1 else ``1 - p``, ``alpha_t = alpha`` where the target is 1
    else ``1 - alpha`` (``alpha = -1`` leaves the weighting out)."""
    from ...nn import functional as F
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"Invalid alpha value: {alpha}. alpha must be in the range [0,1] or "
                         f"-1 for ignore.")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"Invalid Value for arg 'reduction': '{reduction} \n Supported "
                         f"reduction modes: 'none', 'mean', 'sum'")
    p = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
