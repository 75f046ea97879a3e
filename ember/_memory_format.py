"""Memory formats: ``contiguous_format``, ``channels_last`` (NHWC in memory for a 4-d NCHW
tensor) and ``channels_last_3d`` (NDHWC for 5-d), with PyTorch's semantics.

A tensor keeps its logical NCHW shape; only its strides change. In NumPy that is a C-contiguous
NHWC array seen through a transpose, so every op that does not care about strides works on it
unchanged, NumPy's ufuncs keep the layout of their inputs (order "K"), and the convolution
takes an NHWC path (``ops/conv.py``) that needs no relayout copies.
"""

from __future__ import annotations

import numpy as np

from ._namespaces import channels_last, channels_last_3d, contiguous_format, preserve_format

_TO_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
_FROM_LAST = {4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}
_RANK = {channels_last: 4, channels_last_3d: 5}


def is_channels_last(a):
    """Whether array ``a`` (4-d or 5-d) is laid out channels-last and not plain C order."""
    perm = _TO_LAST.get(a.ndim)
    if perm is None or type(a) is not np.ndarray or a.flags.c_contiguous:
        return False
    return a.transpose(perm).flags.c_contiguous


def is_contiguous_as(a, fmt):
    """``Tensor.is_contiguous(memory_format=fmt)`` on an array."""
    if fmt is None or fmt is contiguous_format or fmt is preserve_format:
        return bool(a.flags.c_contiguous)
    rank = _check(a, fmt)
    if a.size <= 1:
        return True
    return bool(a.transpose(_TO_LAST[rank]).flags.c_contiguous)


def _check(a, fmt):
    rank = _RANK.get(fmt)
    if rank is None:
        raise RuntimeError(f"unsupported memory format {fmt!r}")
    if a.ndim != rank:
        raise RuntimeError(f"required rank {rank} tensor to use {fmt.name} format")
    return rank


def as_format(a, fmt):
    """``a`` in memory format ``fmt`` (``a`` itself when it already is)."""
    if fmt is None or fmt is preserve_format:
        return a
    if fmt is contiguous_format:
        return np.ascontiguousarray(a)
    rank = _check(a, fmt)
    if a.transpose(_TO_LAST[rank]).flags.c_contiguous:
        return a
    return np.ascontiguousarray(a.transpose(_TO_LAST[rank])).transpose(_FROM_LAST[rank])


def copy_as(a, fmt):
    """A copy of ``a`` in memory format ``fmt``; ``preserve_format`` (or None) keeps a
    channels-last layout and otherwise gives C order."""
    if fmt is None or fmt is preserve_format:
        fmt = _format_of(a)
    if fmt is contiguous_format:
        return a.copy()
    rank = _check(a, fmt)
    return np.ascontiguousarray(a.transpose(_TO_LAST[rank])).transpose(_FROM_LAST[rank])


def _format_of(a):
    if is_channels_last(a):
        return channels_last if a.ndim == 4 else channels_last_3d
    return contiguous_format


def empty(shape, dtype, fmt):
    """An uninitialised array of ``shape`` in memory format ``fmt``."""
    if fmt is None or fmt is contiguous_format or fmt is preserve_format:
        return np.empty(shape, dtype)
    rank = len(shape)
    if _RANK.get(fmt) != rank:
        raise RuntimeError(f"required rank {_RANK.get(fmt)} tensor to use {fmt.name} format")
    last = tuple(shape[i] for i in _TO_LAST[rank])
    return np.empty(last, dtype).transpose(_FROM_LAST[rank])
