"""Image transforms as functions, on PIL images (Pillow, optional) and on tensors (C, H, W) or
batches (..., C, H, W). Tensor paths compute on the backend arrays directly: transforms are
data preparation, not part of the autograd graph."""

from __future__ import annotations

import enum
import math
import numbers

import numpy as np

from ..._tensor import Tensor, _make


class InterpolationMode(str, enum.Enum):
    """Interpolation methods, as torchvision's enum; members equal their string values
    (``InterpolationMode.BILINEAR == "bilinear"``) and hash like them."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"

    __hash__ = str.__hash__


def _is_pil(img):
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(img, Image.Image)


def _check_img(img, fn):
    if not (_is_pil(img) or isinstance(img, Tensor)):
        raise TypeError(f"{fn}: img should be a PIL Image or a Tensor, got {type(img).__name__}")


def get_dimensions(img):
    """[channels, height, width]."""
    if _is_pil(img):
        return [len(img.getbands()), img.height, img.width]
    s = img.shape
    return [s[-3] if img.ndim >= 3 else 1, s[-2], s[-1]]


def get_image_size(img):
    """[width, height] (torchvision's order)."""
    _, h, w = get_dimensions(img)
    return [w, h]


# ---------------------------------------------------------------- conversions
def to_tensor(pic):
    """PIL image or HxWxC uint8 array -> float tensor (C, H, W) scaled to [0, 1]."""
    if _is_pil(pic):
        mode = pic.mode
        arr = np.array(pic, copy=True)
        if mode == "1":
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 2:
            arr = arr[:, :, None]
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        arr = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic).__name__}")
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
    if chw.dtype == np.uint8:
        return _make(chw.astype(np.float32) / 255.0)
    from ... import get_default_dtype
    return _make(chw.astype(get_default_dtype().np) if chw.dtype.kind == "f" else chw)


def pil_to_tensor(pic):
    """PIL image -> uint8 tensor (C, H, W), no scaling."""
    if not _is_pil(pic):
        raise TypeError(f"pic should be PIL Image. Got {type(pic).__name__}")
    arr = np.array(pic, copy=True)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return _make(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_pil_image(pic, mode=None):
    """Tensor (C, H, W) or array (H, W, C) -> PIL image (floats are scaled by 255)."""
    from PIL import Image
    if isinstance(pic, Tensor):
        arr = pic.detach().numpy()
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"pic should be 2/3 dimensional. Got {arr.ndim} dimensions.")
        arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
    if arr.dtype.kind == "f":
        arr = (arr * 255).clip(0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode=mode) if mode else Image.fromarray(arr[:, :, 0])
    return Image.fromarray(arr, mode=mode) if mode else Image.fromarray(arr)


def convert_image_dtype(image, dtype=None):
    """Change dtype, rescaling values (uint8 [0, 255] <-> float [0, 1])."""
    from ... import float32
    dtype = dtype or float32
    src = image._data
    dst = dtype.np
    if src.dtype == dst:
        return image
    if src.dtype.kind == "f" and dst.kind == "f":
        return _make(src.astype(dst))
    if src.dtype.kind in "iu" and dst.kind == "f":
        return _make(src.astype(dst) / float(np.iinfo(src.dtype).max))
    if src.dtype.kind == "f":
        m = np.iinfo(dst).max
        return _make((src * (m + 1.0 - 0.001)).astype(dst))
    si, di = np.iinfo(src.dtype).max, np.iinfo(dst).max
    return _make((src.astype(np.int64) * di // si).astype(dst))


# ---------------------------------------------------------------- colour
def normalize(tensor, mean, std, inplace=False):
    """(x - mean) / std per channel."""
    if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
        raise TypeError(f"Input tensor should be a float tensor. Got "
                        f"{getattr(tensor, 'dtype', type(tensor).__name__)}.")
    a = tensor._data
    m = np.asarray(mean, dtype=a.dtype).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=a.dtype).reshape(-1, 1, 1)
    if (s == 0).any():
        raise ValueError(f"std evaluated to zero after conversion to {a.dtype}, leading to "
                         "division by zero.")
    if inplace:
        a -= m
        a /= s
        return tensor
    return _make((a - m) / s)


def rgb_to_grayscale(img, num_output_channels=1):
    if _is_pil(img):
        g = img.convert("L")
        return g if num_output_channels == 1 else g.convert("RGB")
    a = img._data
    if a.shape[-3] == 1:
        g = a
    else:
        g = (0.2989 * a[..., 0, :, :] + 0.587 * a[..., 1, :, :] + 0.114 * a[..., 2, :, :])
        if a.dtype.kind in "iu":
            g = np.round(g)
        g = g.astype(a.dtype)[..., None, :, :]
    return _make(np.repeat(g, num_output_channels, axis=-3) if num_output_channels > 1 else g)


def _blend(a, b, ratio, bound):
    r = ratio * a + (1.0 - ratio) * b
    return np.clip(r, 0, bound).astype(a.dtype)


def _bound(a):
    return 1.0 if a.dtype.kind == "f" else 255


def adjust_brightness(img, brightness_factor):
    if _is_pil(img):
        from PIL import ImageEnhance
        return ImageEnhance.Brightness(img).enhance(brightness_factor)
    a = img._data
    return _make(_blend(a, np.zeros_like(a), brightness_factor, _bound(a)))


def adjust_contrast(img, contrast_factor):
    if _is_pil(img):
        from PIL import ImageEnhance
        return ImageEnhance.Contrast(img).enhance(contrast_factor)
    a = img._data
    g = rgb_to_grayscale(img)._data.astype(np.float32)
    mean = g.mean(axis=(-3, -2, -1), keepdims=True)
    return _make(_blend(a, mean, contrast_factor, _bound(a)))


def adjust_saturation(img, saturation_factor):
    if _is_pil(img):
        from PIL import ImageEnhance
        return ImageEnhance.Color(img).enhance(saturation_factor)
    a = img._data
    if a.shape[-3] == 1:
        return img
    return _make(_blend(a, rgb_to_grayscale(img)._data, saturation_factor, _bound(a)))


def adjust_hue(img, hue_factor):
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    if _is_pil(img):
        from PIL import Image
        mode = img.mode
        if mode in ("L", "1", "I", "F"):
            return img
        h, s, v = img.convert("HSV").split()
        nh = np.array(h, dtype=np.uint8)
        nh = (nh.astype(np.int16) + int(hue_factor * 255)).astype(np.uint8)
        return Image.merge("HSV", (Image.fromarray(nh, "L"), s, v)).convert(mode)
    a = img._data
    if a.shape[-3] == 1:
        return img
    x = a.astype(np.float32) / (255.0 if a.dtype.kind in "iu" else 1.0)
    hsv = _rgb2hsv(x)
    hsv[..., 0, :, :] = (hsv[..., 0, :, :] + hue_factor) % 1.0
    out = _hsv2rgb(hsv)
    if a.dtype.kind in "iu":
        out = np.round(out * 255.0)
    return _make(out.astype(a.dtype))


def _rgb2hsv(x):
    r, g, b = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    maxc, minc = x.max(axis=-3), x.min(axis=-3)
    v = maxc
    cr = maxc - minc
    s = cr / np.where(maxc == 0, 1, maxc)
    crd = np.where(cr == 0, 1, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    h = np.where(maxc == r, bc - gc, np.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(cr == 0, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-3)


def _hsv2rgb(x):
    h, s, v = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int32) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [np.select([i == k for k in range(6)], [c[ch] for c in choices]) for ch in range(3)]
    return np.stack(out, axis=-3)


# ---------------------------------------------------------------- geometry
def _size_pair(size):
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    size = tuple(size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _resized_hw(h, w, size, max_size=None):
    if isinstance(size, numbers.Number) or len(size) == 1:
        s = size if isinstance(size, numbers.Number) else size[0]
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = int(s), int(s * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_long, new_short) if w <= h else (new_short, new_long)
    return int(size[0]), int(size[1])


def _resize_array(a, oh, ow, mode):
    """Resize the last two dims of ``a`` (half-pixel centres, like align_corners=False)."""
    ih, iw = a.shape[-2], a.shape[-1]
    if (ih, iw) == (oh, ow):
        return a.copy()
    if mode in ("nearest", "nearest-exact"):
        off = 0.5 if mode == "nearest-exact" else 0.0
        ys = np.minimum(((np.arange(oh) + off) * ih / oh).astype(np.int64), ih - 1)
        xs = np.minimum(((np.arange(ow) + off) * iw / ow).astype(np.int64), iw - 1)
        return a[..., ys[:, None], xs[None, :]]
    x = a.astype(np.float32) if a.dtype.kind != "f" else a
    sy = np.clip((np.arange(oh) + 0.5) * ih / oh - 0.5, 0, ih - 1)
    sx = np.clip((np.arange(ow) + 0.5) * iw / ow - 0.5, 0, iw - 1)
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, ih - 1), np.minimum(x0 + 1, iw - 1)
    wy, wx = (sy - y0)[:, None], (sx - x0)[None, :]
    top = x[..., y0[:, None], x0[None, :]] * (1 - wx) + x[..., y0[:, None], x1[None, :]] * wx
    bot = x[..., y1[:, None], x0[None, :]] * (1 - wx) + x[..., y1[:, None], x1[None, :]] * wx
    out = top * (1 - wy) + bot * wy
    if a.dtype.kind in "iu":
        out = np.clip(np.round(out), 0, np.iinfo(a.dtype).max)
    return out.astype(a.dtype)


def _pil_resample(mode):
    from PIL import Image
    return {"nearest": Image.NEAREST, "nearest-exact": Image.NEAREST,
            "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "box": Image.BOX,
            "hamming": Image.HAMMING, "lanczos": Image.LANCZOS}[mode]


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    """Resize to ``size`` (h, w), or the shorter side to ``size`` keeping the aspect ratio."""
    _check_img(img, "resize")
    _, h, w = get_dimensions(img)
    oh, ow = _resized_hw(h, w, size, max_size)
    if _is_pil(img):
        return img.resize((ow, oh), _pil_resample(interpolation))
    if interpolation in ("nearest", "nearest-exact") or (oh, ow) == (h, w):
        return _make(_resize_array(img._data, oh, ow, interpolation))
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"resize of tensors supports nearest, nearest-exact, bilinear and "
                         f"bicubic interpolation, got {interpolation}")
    return _interpolate_image(img, oh, ow, str(interpolation.value if isinstance(
        interpolation, enum.Enum) else interpolation), antialias is not False)


def _interpolate_image(img, oh, ow, mode, antialias):
    """torchvision's tensor resize: ``interpolate`` over the last two dims (half-pixel
    centres, antialiased when downsampling unless ``antialias=False``); integer images are
    resampled in float32, then rounded and clamped to their dtype's range. Differentiable."""
    from ...nn.functional import interpolate
    lead, (ih, iw) = tuple(img.shape[:-2]), tuple(img.shape[-2:])
    x = img.reshape(-1, 1, ih, iw)
    integer = img.dtype.is_floating_point is False
    if integer:
        x = x.float()
    y = interpolate(x, size=(oh, ow), mode=mode, align_corners=False, antialias=antialias)
    if integer:
        info = np.iinfo(img._data.dtype)
        y = y.round().clamp(info.min, info.max).to(img.dtype)
    return y.reshape(*lead, oh, ow)


def crop(img, top, left, height, width):
    """Crop; regions outside the image are zero-filled (as torchvision's)."""
    _check_img(img, "crop")
    if _is_pil(img):
        return img.crop((left, top, left + width, top + height))
    a = img._data
    h, w = a.shape[-2], a.shape[-1]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        pad = [max(-left, 0), max(-top, 0), max(left + width - w, 0), max(top + height - h, 0)]
        a = pad_array(a, pad, 0, "constant")
        top, left = top + pad[1], left + pad[0]
    return _make(a[..., top:top + height, left:left + width].copy())


def center_crop(img, output_size):
    th, tw = _size_pair(output_size)
    _, h, w = get_dimensions(img)
    if th > h or tw > w:
        img = pad(img, [max((tw - w) // 2, 0), max((th - h) // 2, 0),
                        max((tw - w + 1) // 2, 0), max((th - h + 1) // 2, 0)])
        _, h, w = get_dimensions(img)
    return crop(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)


def resized_crop(img, top, left, height, width, size,
                 interpolation=InterpolationMode.BILINEAR, antialias=True):
    return resize(crop(img, top, left, height, width), size, interpolation)


def hflip(img):
    _check_img(img, "hflip")
    if _is_pil(img):
        from PIL import Image
        return img.transpose(Image.FLIP_LEFT_RIGHT)
    return _make(img._data[..., ::-1].copy())


def vflip(img):
    _check_img(img, "vflip")
    if _is_pil(img):
        from PIL import Image
        return img.transpose(Image.FLIP_TOP_BOTTOM)
    return _make(img._data[..., ::-1, :].copy())


def _pad_list(padding):
    if isinstance(padding, numbers.Number):
        return [int(padding)] * 4
    p = list(padding)
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[1], p[0], p[1]]
    if len(p) == 4:
        return p
    raise ValueError(f"Padding must be an int or a 1, 2, or 4 element tuple, not a "
                     f"{len(p)} element tuple")


def pad_array(a, pad_lrtb, fill, mode):
    l, t, r, b = pad_lrtb
    widths = [(0, 0)] * (a.ndim - 2) + [(t, b), (l, r)]
    np_mode = {"constant": "constant", "edge": "edge", "reflect": "reflect",
               "symmetric": "symmetric"}[mode]
    if np_mode == "constant":
        return np.pad(a, widths, mode="constant", constant_values=fill)
    return np.pad(a, widths, mode=np_mode)


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad left/top/right/bottom; modes constant, edge, reflect, symmetric."""
    _check_img(img, "pad")
    p = _pad_list(padding)
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
    if _is_pil(img):
        from PIL import Image
        arr = np.asarray(img)
        out = pad_array(arr.transpose(2, 0, 1) if arr.ndim == 3 else arr, p,
                        fill if not isinstance(fill, (tuple, list)) else fill[0], padding_mode)
        out = out.transpose(1, 2, 0) if arr.ndim == 3 else out
        return Image.fromarray(np.ascontiguousarray(out), mode=img.mode)
    return _make(pad_array(img._data, p, fill, padding_mode))


def _inverse_affine_matrix(center, angle, translate, scale, shear):
    # output pixel -> input pixel: C * T * R * S * Sh * C^-1, inverted (torchvision's model)
    rot = math.radians(angle)
    sx, sy = (math.radians(s) for s in shear)
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m = [x / scale for x in m]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _warp(a, m, interpolation, fill):
    """Sample ``a`` (..., H, W) at the inverse-mapped coordinates of every output pixel."""
    h, w = a.shape[-2], a.shape[-1]
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    sx = m[0] * xs + m[1] * ys + m[2] - 0.5
    sy = m[3] * xs + m[4] * ys + m[5] - 0.5
    fillv = 0 if fill is None else fill
    x = a.astype(np.float32)
    if interpolation == "nearest":
        ix, iy = np.floor(sx + 0.5).astype(np.int64), np.floor(sy + 0.5).astype(np.int64)
        valid = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        out = np.where(valid, x[..., np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)], fillv)
    else:
        x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
        out = 0.0
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                wgt = (1 - np.abs(sx - xi)) * (1 - np.abs(sy - yi))
                valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                v = np.where(valid, x[..., np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], fillv)
                out = out + wgt * v
    if a.dtype.kind in "iu":
        out = np.clip(np.round(out), 0, np.iinfo(a.dtype).max)
    return np.asarray(out).astype(a.dtype)


def affine(img, angle, translate, scale, shear, interpolation=InterpolationMode.NEAREST,
           fill=None, center=None):
    """Affine transform about the centre: rotate (degrees, counter-clockwise), translate,
    scale, shear (degrees)."""
    _check_img(img, "affine")
    if isinstance(shear, numbers.Number):
        shear = [shear, 0.0]
    shear = list(shear) + [0.0] * (2 - len(shear))
    _, h, w = get_dimensions(img)
    ctr = [w * 0.5, h * 0.5] if center is None else list(center)
    if _is_pil(img):
        m = _inverse_affine_matrix(ctr, -angle, translate, scale, shear)
        from PIL import Image
        kw = {"fillcolor": fill} if fill is not None else {}
        return img.transform((w, h), Image.AFFINE, m, _pil_resample(interpolation), **kw)
    m = _inverse_affine_matrix(ctr, -angle, translate, scale, shear)
    return _make(_warp(img._data, m, interpolation, fill))


def rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False, center=None,
           fill=None):
    """Rotate counter-clockwise by ``angle`` degrees."""
    if _is_pil(img):
        from PIL import Image
        del Image
        return img.rotate(angle, _pil_resample(interpolation), expand, center, fillcolor=fill)
    if expand:
        raise NotImplementedError("rotate(expand=True) on tensors is not supported yet")
    return affine(img, angle, [0, 0], 1.0, [0.0, 0.0], interpolation, fill, center)


def gaussian_blur(img, kernel_size, sigma=None):
    """Separable Gaussian blur with reflect padding."""
    ks = _size_pair(kernel_size)
    if any(k % 2 == 0 or k <= 0 for k in ks):
        raise ValueError(f"kernel_size should have odd and positive integers. Got {kernel_size}")
    if sigma is None:
        sigma = [k * 0.15 + 0.35 for k in ks]
    elif isinstance(sigma, numbers.Number):
        sigma = [float(sigma)] * 2
    pil = _is_pil(img)
    t = pil_to_tensor(img) if pil else img
    a = t._data.astype(np.float32)
    out = a
    for axis, (k, s) in zip((-1, -2), zip(ks[::-1], sigma[::-1])):
        x = np.arange(k) - k // 2
        kern = np.exp(-0.5 * (x / s) ** 2)
        kern /= kern.sum()
        widths = [(0, 0)] * out.ndim
        widths[axis] = (k // 2, k // 2)
        p = np.pad(out, widths, mode="reflect")
        from numpy.lib.stride_tricks import sliding_window_view
        win = sliding_window_view(p, k, axis=axis)
        out = win @ kern
    if t._data.dtype.kind in "iu":
        out = np.clip(np.round(out), 0, 255)
    res = _make(out.astype(t._data.dtype))
    return to_pil_image(res) if pil else res


def erase(img, i, j, h, w, v, inplace=False):
    a = img._data if inplace else img._data.copy()
    a[..., i:i + h, j:j + w] = v._data if isinstance(v, Tensor) else v
    return img if inplace else _make(a)
