"""Box operations (torchvision.ops.boxes). Boxes are ``(N, 4)`` tensors, ``(x1, y1, x2, y2)``
unless said otherwise. The overlap measures are built from differentiable tensor ops, so
losses such as generalized IoU train through them; ``nms`` works on the values only."""

from __future__ import annotations

import math

import numpy as np

from ..._tensor import Tensor, _make


def _check_boxes(boxes, fn):
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{fn}: boxes must be a Tensor, got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{fn}: boxes must have shape (N, 4), got {tuple(boxes.shape)}")


def _upcast(t):
    # areas of integer boxes could overflow a narrow type: compute in a wide one
    if t.is_floating_point():
        return t if t.dtype in (_f32(), _f64()) else t.float()
    return t.long() if t.dtype != _i64() else t


def _f32():
    import ember
    return ember.float32


def _f64():
    import ember
    return ember.float64


def _i64():
    import ember
    return ember.int64


def box_area(boxes: Tensor) -> Tensor:
    """The area ``(x2 - x1) * (y2 - y1)`` of each box."""
    _check_boxes(boxes, "box_area")
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(boxes1, boxes2):
    import ember
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = ember.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = ember.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: an ``(N, M)`` matrix."""
    _check_boxes(boxes1, "box_iou")
    _check_boxes(boxes2, "box_iou")
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU (Rezatofighi et al. 2019): IoU minus the share of the smallest
    enclosing box that the union leaves empty."""
    import ember
    _check_boxes(boxes1, "generalized_box_iou")
    _check_boxes(boxes2, "generalized_box_iou")
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union
    lt = ember.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = ember.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    area = wh[:, :, 0] * wh[:, :, 1]
    return iou - (area - union) / area


def _diou_iou(boxes1, boxes2, eps):
    import ember
    iou = box_iou(boxes1, boxes2)
    lti = ember.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    rbi = ember.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    whi = _upcast(rbi - lti).clamp(min=0)
    diagonal_sq = whi[:, :, 0] ** 2 + whi[:, :, 1] ** 2 + eps
    b1, b2 = _upcast(boxes1), _upcast(boxes2)
    cx1, cy1 = (b1[:, 0] + b1[:, 2]) / 2, (b1[:, 1] + b1[:, 3]) / 2
    cx2, cy2 = (b2[:, 0] + b2[:, 2]) / 2, (b2[:, 1] + b2[:, 3]) / 2
    centers_sq = (cx1[:, None] - cx2[None, :]) ** 2 + (cy1[:, None] - cy2[None, :]) ** 2
    return iou - centers_sq / diagonal_sq, iou


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Distance IoU (Zheng et al. 2020): IoU minus the squared distance of the centres over
    the squared diagonal of the enclosing box."""
    _check_boxes(boxes1, "distance_box_iou")
    _check_boxes(boxes2, "distance_box_iou")
    return _diou_iou(boxes1, boxes2, eps)[0]


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU (Zheng et al. 2020): distance IoU minus an aspect-ratio consistency
    term ``alpha * v``."""
    import ember
    _check_boxes(boxes1, "complete_box_iou")
    _check_boxes(boxes2, "complete_box_iou")
    b1, b2 = _upcast(boxes1), _upcast(boxes2)
    diou, iou = _diou_iou(b1, b2, eps)
    w1, h1 = b1[:, None, 2] - b1[:, None, 0], b1[:, None, 3] - b1[:, None, 1]
    w2, h2 = b2[None, :, 2] - b2[None, :, 0], b2[None, :, 3] - b2[None, :, 1]
    v = (4 / math.pi ** 2) * (ember.atan(w1 / h1) - ember.atan(w2 / h2)) ** 2
    with ember.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert between ``'xyxy'``, ``'xywh'`` (corner, size) and ``'cxcywh'`` (centre, size)."""
    import ember
    fmts = ("xyxy", "xywh", "cxcywh")
    if in_fmt not in fmts or out_fmt not in fmts:
        raise ValueError(f"box_convert: unsupported box format ({in_fmt!r} -> {out_fmt!r}); "
                         f"expected one of {fmts}")
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return ember.stack((a, b, c, d), dim=-1)


def clip_boxes_to_image(boxes: Tensor, size) -> Tensor:
    """Clip ``(..., 4)`` boxes to an image of ``size = (height, width)``."""
    import ember
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return ember.stack((x, y), dim=boxes.ndim).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose sides are both at least ``min_size``."""
    import ember
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (ws >= min_size) & (hs >= min_size)
    return ember.where(keep)[0]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: the indices (int64, by decreasing score) of the boxes
    kept after dropping every box whose IoU with a higher-scoring kept box exceeds
    ``iou_threshold``."""
    _check_boxes(boxes, "nms")
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"nms: scores must have shape ({boxes.shape[0]},), got "
                         f"{tuple(scores.shape)}")
    b = np.asarray(boxes.detach()._data, dtype=np.float64)
    s = np.asarray(scores.detach()._data, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2) - np.maximum(x1[i], x1), 0, None)
        h = np.clip(np.minimum(y2[i], y2) - np.maximum(y1[i], y1), 0, None)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas - inter)
        suppressed |= iou > iou_threshold
    return _make(np.asarray(keep, dtype=np.int64))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs``: boxes of different categories never suppress each
    other. Indices by decreasing score."""
    import ember
    if boxes.numel() == 0:
        return ember.empty((0,), dtype=ember.int64)
    # shift each category's boxes by its own offset so that categories cannot overlap
    max_coordinate = boxes.detach().max()
    offsets = idxs.to(boxes.dtype) * (max_coordinate + 1)
    return nms(boxes.detach() + offsets[:, None], scores, iou_threshold)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """The ``(N, 4)`` xyxy bounding boxes of ``(N, H, W)`` masks (non-zero pixels)."""
    import ember
    if masks.numel() == 0:
        return ember.zeros((0, 4), dtype=ember.float32)
    m = np.asarray(masks.detach()._data) != 0
    out = np.zeros((m.shape[0], 4), dtype=np.float32)
    for i, mask in enumerate(m):
        ys, xs = np.nonzero(mask)
        if len(xs):
            out[i] = (xs.min(), ys.min(), xs.max(), ys.max())
    return _make(out)
