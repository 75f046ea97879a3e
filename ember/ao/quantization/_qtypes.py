"""The quantized dtypes and qschemes the flows refer to, and their integer ranges.

The quantized tensor types themselves (``ember.qint8`` ...) belong to ``ember``'s core; this
module only looks them up, and stands in a named placeholder for any the core does not
define yet, so that observers and fake-quantization (which compute on float tensors) work
with or without quantized tensors.
"""

from __future__ import annotations

import ember


class _Placeholder:
    """A dtype or qscheme name the core does not define: compared by identity."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "ember." + self.name

    def __reduce__(self):
        return (_lookup, (self.name,))


_CACHE: dict = {}


def _lookup(name):
    try:
        return getattr(ember, name)
    except AttributeError:
        return _CACHE.setdefault(name, _Placeholder(name))


qint8, quint8, qint32, quint4x2 = (_lookup(n) for n in ("qint8", "quint8", "qint32", "quint4x2"))
int8, uint8, int16, uint16, int32 = (ember.int8, ember.uint8, ember.int16, ember.uint16,
                                     ember.int32)
float16, float32 = ember.float16, ember.float32
per_tensor_affine = _lookup("per_tensor_affine")
per_tensor_symmetric = _lookup("per_tensor_symmetric")
per_channel_affine = _lookup("per_channel_affine")
per_channel_symmetric = _lookup("per_channel_symmetric")
per_channel_affine_float_qparams = _lookup("per_channel_affine_float_qparams")

PER_TENSOR = (per_tensor_affine, per_tensor_symmetric)
PER_CHANNEL = (per_channel_affine, per_channel_symmetric, per_channel_affine_float_qparams)
SYMMETRIC = (per_tensor_symmetric, per_channel_symmetric)

# (min, max) of each integer type the observers accept, as torch.iinfo gives them
_RANGES = {"qint8": (-128, 127), "int8": (-128, 127), "quint8": (0, 255), "uint8": (0, 255),
           "qint32": (-2 ** 31, 2 ** 31 - 1), "int32": (-2 ** 31, 2 ** 31 - 1),
           "int16": (-2 ** 15, 2 ** 15 - 1), "uint16": (0, 2 ** 16 - 1), "quint4x2": (0, 15)}


def qrange(dtype):
    """``(min, max)`` of an integer or quantized dtype (``torch.iinfo``'s bounds)."""
    name = getattr(dtype, "name", str(dtype))
    if name not in _RANGES:
        raise TypeError(f"quantization: {dtype} is not an integer or quantized dtype")
    return _RANGES[name]


def bits(dtype):
    """Bit width of an integer or quantized dtype."""
    lo, hi = qrange(dtype)
    return (hi - lo + 1).bit_length() - 1


def is_per_tensor(qscheme):
    return qscheme in PER_TENSOR


def is_per_channel(qscheme):
    return qscheme in PER_CHANNEL


def is_symmetric(qscheme):
    return qscheme in SYMMETRIC


def is_float_qparams(qscheme):
    return qscheme is per_channel_affine_float_qparams
