"""``torchvision.io``: reading and writing image files as ``uint8`` tensors of shape
``(C, H, W)``, decoded and encoded with Pillow (the ``vision`` extra). Video decoding, which
torchvision itself removed in 0.26, is not provided."""

from __future__ import annotations

import enum
import io as _io
import os

__all__ = ["ImageReadMode", "decode_image", "decode_jpeg", "decode_png", "encode_jpeg",
           "encode_png", "read_file", "read_image", "read_video", "write_file", "write_jpeg",
           "write_png"]


class ImageReadMode(enum.Enum):
    """The channels to decode to: as stored, gray, gray+alpha, RGB or RGBA."""

    UNCHANGED = 0
    GRAY = 1
    GRAY_ALPHA = 2
    RGB = 3
    RGB_ALPHA = 4


_PIL_MODES = {ImageReadMode.GRAY: "L", ImageReadMode.GRAY_ALPHA: "LA",
              ImageReadMode.RGB: "RGB", ImageReadMode.RGB_ALPHA: "RGBA"}


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("ember.vision.io needs Pillow: pip install 'ember[vision]' "
                          "(or pip install pillow)") from e
    return Image


def read_file(path):
    """The bytes of the file at ``path`` as a 1-d ``uint8`` tensor."""
    import numpy as np

    from .. import from_numpy
    with open(os.fspath(path), "rb") as f:
        return from_numpy(np.frombuffer(f.read(), dtype=np.uint8).copy())


def write_file(filename, data):
    """Write a 1-d ``uint8`` tensor's bytes to ``filename`` (atomically: temp file, rename)."""
    filename = os.fspath(filename)
    tmp = f"{filename}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data.numpy().tobytes())
    os.replace(tmp, filename)


def decode_image(input, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=False):
    """Decode encoded image bytes (a 1-d ``uint8`` tensor, or a path) to ``(C, H, W)``
    ``uint8``."""
    import numpy as np

    from .. import from_numpy
    if isinstance(input, (str, os.PathLike)):
        input = read_file(input)
    if isinstance(mode, str):
        mode = ImageReadMode[mode.upper()]
    Image = _pil()
    img = Image.open(_io.BytesIO(input.numpy().tobytes()))
    if apply_exif_orientation:
        from PIL import ImageOps
        img = ImageOps.exif_transpose(img)
    if mode is not ImageReadMode.UNCHANGED:
        img = img.convert(_PIL_MODES[mode])
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


decode_jpeg = decode_png = decode_image


def read_image(path, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=False):
    """Read and decode the image file at ``path`` to ``(C, H, W)`` ``uint8``."""
    return decode_image(read_file(path), mode, apply_exif_orientation)


def _encode(input, fmt, **kwargs):
    import numpy as np

    from .. import from_numpy, uint8
    if input.dtype != uint8 or input.dim() != 3 or input.shape[0] not in (1, 3, 4):
        raise ValueError(f"encode_{fmt.lower()}: expected a uint8 tensor (C, H, W) with C in "
                         f"(1, 3, 4), got {input.dtype} of shape {tuple(input.shape)}")
    arr = input.numpy().transpose(1, 2, 0)
    img = _pil().fromarray(arr[:, :, 0] if arr.shape[2] == 1 else np.ascontiguousarray(arr))
    buf = _io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return from_numpy(np.frombuffer(buf.getvalue(), dtype=np.uint8).copy())


def encode_png(input, compression_level=6):
    """PNG bytes of a ``(C, H, W)`` ``uint8`` image, as a 1-d ``uint8`` tensor."""
    return _encode(input, "PNG", compress_level=compression_level)


def encode_jpeg(input, quality=75):
    """JPEG bytes of a ``(C, H, W)`` ``uint8`` image, as a 1-d ``uint8`` tensor."""
    if not 1 <= quality <= 100:
        raise ValueError(f"encode_jpeg: quality must be in [1, 100], got {quality}")
    return _encode(input, "JPEG", quality=quality)


def write_png(input, filename, compression_level=6):
    """Write a ``(C, H, W)`` ``uint8`` image to ``filename`` as PNG."""
    write_file(filename, encode_png(input, compression_level))


def write_jpeg(input, filename, quality=75):
    """Write a ``(C, H, W)`` ``uint8`` image to ``filename`` as JPEG."""
    write_file(filename, encode_jpeg(input, quality))


def read_video(*args, **kwargs):
    """torchvision removed video decoding in 0.26; ember does not provide it."""
    raise NotImplementedError("ember.vision.io.read_video: video decoding is not provided "
                              "(torchvision removed it in 0.26); decode frames with PyAV or "
                              "torchcodec")
