"""Layer 0: dtypes and PyTorch's type-promotion rules.

An ember dtype wraps a NumPy dtype. Promotion follows PyTorch, not NumPy:
integer + float gives the float (``int64 + float32 -> float32``), float16 + bfloat16
gives float32, and python scalars are *weak* (they only decide the category).
See https://pytorch.org/docs/stable/tensor_attributes.html#type-promotion-doc
"""

from __future__ import annotations

import builtins as _b

import numpy as np

try:  # bfloat16 storage is optional
    import ml_dtypes as _ml_dtypes

    _BF16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    _ml_dtypes = None
    _BF16 = None

# category ranks: bool < integer < floating < complex
_BOOL, _INT, _FLOAT, _COMPLEX = 0, 1, 2, 3


class dtype:
    """A tensor element type (``ember.float32`` and friends)."""

    __slots__ = ("name", "np", "itemsize", "is_floating_point", "is_complex", "is_signed",
                 "_cat", "_rank", "__weakref__")

    def __init__(self, name, np_dtype, cat, rank):
        self.name = name
        self.np = np_dtype
        self.itemsize = np_dtype.itemsize if np_dtype is not None else 2
        self.is_floating_point = cat == _FLOAT
        self.is_complex = cat == _COMPLEX
        self.is_signed = name not in ("bool", "uint8", "uint16", "uint32", "uint64")
        self._cat = cat
        self._rank = rank  # order within a category (by precision)

    def __repr__(self):
        return "ember." + self.name

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))

    def to_complex(self):
        # no complex32 in ember: float16/bfloat16 widen to complex64
        return {"float16": complex64, "bfloat16": complex64, "float32": complex64,
                "float64": complex128}.get(
            self.name, self)

    def to_real(self):
        return {"complex64": float32, "complex128": float64, "complex32": float16}.get(
            self.name, self)


bool_ = dtype("bool", np.dtype(np.bool_), _BOOL, 0)
uint8 = dtype("uint8", np.dtype(np.uint8), _INT, 1)
int8 = dtype("int8", np.dtype(np.int8), _INT, 1)
int16 = dtype("int16", np.dtype(np.int16), _INT, 2)
int32 = dtype("int32", np.dtype(np.int32), _INT, 3)
int64 = dtype("int64", np.dtype(np.int64), _INT, 4)
float16 = dtype("float16", np.dtype(np.float16), _FLOAT, 1)
bfloat16 = dtype("bfloat16", _BF16, _FLOAT, 1)
float32 = dtype("float32", np.dtype(np.float32), _FLOAT, 2)
float64 = dtype("float64", np.dtype(np.float64), _FLOAT, 3)
complex64 = dtype("complex64", np.dtype(np.complex64), _COMPLEX, 2)
complex128 = dtype("complex128", np.dtype(np.complex128), _COMPLEX, 3)

# Storage-first dtypes (PyTorch supports few ops on them either): unsigned integers wider than
# a byte, the two float8 formats (ml_dtypes) and complex32, held as pairs of float16 since
# NumPy has no complex32. They convert, save and load; promotion with other dtypes raises as
# PyTorch's does.
uint16 = dtype("uint16", np.dtype(np.uint16), _INT, 2)
uint32 = dtype("uint32", np.dtype(np.uint32), _INT, 3)
uint64 = dtype("uint64", np.dtype(np.uint64), _INT, 4)
_F8 = ((np.dtype(_ml_dtypes.float8_e4m3fn), np.dtype(_ml_dtypes.float8_e5m2))
       if _ml_dtypes is not None else (None, None))
float8_e4m3fn = dtype("float8_e4m3fn", _F8[0], _FLOAT, 0)
float8_e5m2 = dtype("float8_e5m2", _F8[1], _FLOAT, 0)
_C32 = np.dtype([("real", "<f2"), ("imag", "<f2")])
complex32 = dtype("complex32", _C32, _COMPLEX, 1)
chalf = complex32
_SHELL_UINTS = (uint16, uint32, uint64)

# Quantized dtypes (ember/_quantized.py): the element type of a quantized tensor, stored as the
# integers of ``np`` (quint4x2 packs two 4-bit values in a byte). They are not in the NumPy
# lookup (an int8 array is an int8 tensor) and take part in no promotion.
qint8 = dtype("qint8", np.dtype(np.int8), _INT, 1)
quint8 = dtype("quint8", np.dtype(np.uint8), _INT, 1)
qint32 = dtype("qint32", np.dtype(np.int32), _INT, 3)
quint4x2 = dtype("quint4x2", np.dtype(np.uint8), _INT, 1)
quint2x4 = dtype("quint2x4", np.dtype(np.uint8), _INT, 1)
quint8.is_signed = quint4x2.is_signed = quint2x4.is_signed = False
_QUANT = (qint8, quint8, qint32, quint4x2, quint2x4)
_FLOAT8 = (float8_e4m3fn, float8_e5m2)

# PyTorch's aliases
half, float, double = float16, float32, float64
short, int, long = int16, int32, int64
cfloat, cdouble = complex64, complex128

all_dtypes = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64,
              complex64, complex128, uint16, uint32, uint64, float8_e4m3fn, float8_e5m2,
              complex32)
_BY_NAME = {d.name: d for d in all_dtypes}
_BY_NP = {d.np: d for d in all_dtypes if d.np is not None}
_BY_NAME.update({d.name: d for d in _QUANT})

# PyTorch's ScalarType names, for promotion errors
_SCALAR_NAMES = {"bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short",
                 "int32": "Int", "int64": "Long", "float16": "Half", "bfloat16": "BFloat16",
                 "float32": "Float", "float64": "Double", "complex64": "ComplexFloat",
                 "complex128": "ComplexDouble", "uint16": "UInt16", "uint32": "UInt32",
                 "uint64": "UInt64", "float8_e4m3fn": "Float8_e4m3fn",
                 "float8_e5m2": "Float8_e5m2", "complex32": "ComplexHalf",
                 "qint8": "QInt8", "quint8": "QUInt8", "qint32": "QInt32",
                 "quint4x2": "QUInt4x2", "quint2x4": "QUInt2x4"}


def cast_array(a, np_dtype):
    """``a.astype(np_dtype)``, also to and from complex32 (stored as float16 pairs)."""
    if a.dtype == _C32:
        a = (a["real"].astype(np.float32) + 1j * a["imag"].astype(np.float32)).astype(
            np.complex64)
        if np_dtype == np.complex64:
            return a
    if np_dtype == _C32:
        c = a.astype(np.complex64) if a.dtype != np.complex64 else a
        out = np.empty(a.shape, dtype=_C32)
        out["real"] = c.real.astype(np.float16)
        out["imag"] = c.imag.astype(np.float16)
        return out
    return a.astype(np_dtype)


def _dtype_by_name(name):
    return _BY_NAME[name]


def from_numpy_dtype(np_dtype) -> dtype:
    """The ember dtype that stores a NumPy dtype; TypeError for unsupported ones."""
    try:
        return _BY_NP[np_dtype]
    except KeyError:
        try:
            return _BY_NP[np.dtype(np_dtype)]
        except (KeyError, TypeError):
            raise TypeError(
                f"can't convert np.ndarray of type {np_dtype}. The only supported types are: "
                "float64, float32, float16, complex64, complex128, int64, int32, int16, int8, "
                "uint8, and bool.") from None


def to_dtype(d) -> dtype:
    """Accept an ember dtype, a NumPy dtype, a python type or a name."""
    if type(d) is dtype:
        return d
    if d is _b.float:
        return get_default_dtype()
    if d is _b.int:
        return int64
    if d is _b.bool:
        return bool_
    if d is _b.complex:
        return _default_complex()
    if isinstance(d, str):
        name = d.replace("torch.", "").replace("ember.", "")
        alias = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                 "int": "int32", "short": "int16", "bool": "bool", "cfloat": "complex64",
                 "cdouble": "complex128", "chalf": "complex32"}
        name = alias.get(name, name)
        if name in _BY_NAME:
            return _BY_NAME[name]
        raise TypeError(f"unknown dtype name {d!r}")
    return from_numpy_dtype(d)


# ---------------------------------------------------------------- default dtype
class _Defaults:
    dtype = float32


def get_default_dtype() -> dtype:
    return _Defaults.dtype


def set_default_dtype(d) -> None:
    d = to_dtype(d)
    if d not in (float16, float32, float64, bfloat16):
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _Defaults.dtype = d


def _default_complex():
    return complex128 if _Defaults.dtype is float64 else complex64


# ---------------------------------------------------------------- promotion
def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both ``a`` and ``b`` cast to safely (PyTorch's table)."""
    if a is b:
        return a
    if a in _FLOAT8 or b in _FLOAT8:
        raise RuntimeError(f"Promotion for Float8 Types is not supported, attempted to promote "
                           f"{_SCALAR_NAMES[a.name]} and {_SCALAR_NAMES[b.name]}")
    if a in _QUANT or b in _QUANT:
        raise RuntimeError(f"Promotion for quantized types is not supported, attempted to "
                           f"promote {_SCALAR_NAMES[a.name]} and {_SCALAR_NAMES[b.name]}")
    if (a in _SHELL_UINTS or b in _SHELL_UINTS) and a._cat == b._cat == _INT:
        raise RuntimeError(f"Promotion for uint16, uint32, uint64 types is not supported, "
                           f"attempted to promote {_SCALAR_NAMES[a.name]} and "
                           f"{_SCALAR_NAMES[b.name]}")
    if complex32 in (a, b):
        other = b if a is complex32 else a
        if other._cat == _FLOAT:  # complex32 with a float wider than half widens
            return complex32 if other._rank <= 1 else other.to_complex()
        if other._cat == _COMPLEX:
            return other
        return complex32
    ca, cb = a._cat, b._cat
    if ca != cb:
        if ca < cb:
            a, b, ca, cb = b, a, cb, ca
        # a has the higher category
        if ca == _COMPLEX and cb == _FLOAT:
            if b is float64:
                return complex128
            return a
        return a
    if ca == _BOOL:
        return a
    if ca == _INT:
        if a is uint8 or b is uint8:
            other = b if a is uint8 else a
            return int16 if other is int8 else other
        return a if a._rank > b._rank else b
    # same floating / complex category
    if {a, b} == {float16, bfloat16}:
        return float32
    return a if a._rank > b._rank else b


def _category_combine(higher, lower):
    """PyTorch's combine_categories: ``higher`` wins unless ``lower`` is a higher category."""
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher._cat == _COMPLEX:
        return higher
    if lower._cat == _COMPLEX:
        if higher._cat == _FLOAT:
            return higher.to_complex() if higher is not float16 else complex64
        return lower
    if higher._cat == _FLOAT:
        return higher
    if higher is bool_ or lower._cat == _FLOAT:
        return promote_types(higher, lower)
    return higher


def scalar_dtype(x) -> dtype:
    """dtype a python scalar takes as a *weak* operand."""
    t = type(x)
    if t is _b.bool or t is np.bool_:
        return bool_
    if t is _b.int or isinstance(x, np.integer):
        return int64
    if t is _b.float or isinstance(x, np.floating):
        return _Defaults.dtype
    if t is _b.complex or isinstance(x, np.complexfloating):
        return _default_complex()
    raise TypeError(f"unsupported scalar type {t.__name__}")


def result_type_of(*operands) -> dtype:
    """PyTorch's ``result_type`` over tensors (``_dtype``/``ndim`` known) and python scalars."""
    dim_r = zero_r = wrap_r = None
    for x in operands:
        arr = getattr(x, "_data", None)
        if arr is not None:
            d = _BY_NP[arr.dtype]
            if arr.ndim:
                dim_r = d if dim_r is None else promote_types(dim_r, d)
            else:
                zero_r = d if zero_r is None else promote_types(zero_r, d)
        else:
            d = scalar_dtype(x)
            wrap_r = d if wrap_r is None else promote_types(wrap_r, d)
    return _category_combine(dim_r, _category_combine(zero_r, wrap_r))


def can_cast(from_: dtype, to: dtype) -> bool:
    """PyTorch's ``can_cast``: no cast to a lower category (float->int, complex->float...)."""
    return from_._cat <= to._cat


def np_finfo(dt):
    """``np.finfo`` that also serves ml_dtypes' floats (bfloat16, float8), which NumPy's own
    ``finfo`` accepts only with ml_dtypes 0.7 and later."""
    try:
        return np.finfo(dt)
    except ValueError:
        return _ml_dtypes.finfo(dt)


class finfo:
    """Machine limits of a floating dtype (``ember.finfo``)."""

    def __init__(self, type=None):
        d = to_dtype(type) if type is not None else get_default_dtype()
        if d._cat < _FLOAT:
            raise TypeError(f"finfo requires a floating point or complex dtype, got {d}")
        d = d.to_real()
        if d is bfloat16 or d in _FLOAT8:
            info = _ml_dtypes.finfo(d.np)
        else:
            info = np.finfo(d.np)
        self.dtype = d.name
        self.bits = d.itemsize * 8
        self.eps = _b.float(info.eps)
        self.max = _b.float(info.max)
        self.min = _b.float(info.min)
        self.tiny = _b.float(info.tiny)
        self.smallest_normal = self.tiny
        self.resolution = 10.0 ** -_b.int(info.precision)  # PyTorch's: 10 ** -digits

    def __repr__(self):
        return (f"finfo(resolution={self.resolution}, min={self.min:e}, max={self.max:e}, "
                f"eps={self.eps:e}, smallest_normal={self.tiny:e}, tiny={self.tiny:e}, "
                f"dtype={self.dtype})")


class iinfo:
    """Machine limits of an integer dtype (``ember.iinfo``)."""

    def __init__(self, type):
        d = to_dtype(type)
        if d._cat > _INT:
            raise TypeError(f"iinfo requires an integer dtype, got {d}")
        info = np.iinfo(d.np) if d is not bool_ else None
        self.dtype = d.name
        self.bits = d.itemsize * 8
        self.max = _b.int(info.max) if info else 1
        self.min = _b.int(info.min) if info else 0

    def __repr__(self):
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"
