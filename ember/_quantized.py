"""Quantized tensors (issue 20): integers plus a quantizer, as PyTorch's ``QuantizedCPU``.

A quantized tensor is a :class:`QTensor`: its integers live in ``_q`` (an int8, uint8 or int32
NumPy array) and its quantizer in ``_qscheme`` with either ``_scale``/``_zp`` (per tensor) or
``_scales``/``_zps``/``_axis`` (per channel). The real value of an element is
``(q - zero_point) * scale``.

Ops that PyTorch has no quantized kernel for raise ``NotImplementedError``, as PyTorch's
dispatcher does: ``QTensor._data`` (what every ordinary op reads) is a property that raises,
so no float op can silently compute on the integers. The few ops PyTorch runs on quantized
tensors (views, indexing, ``clone``, ``relu``, ``equal``...) are methods of ``QTensor``; the
quantized kernels (linear, conv, add...) live in ``ember.ao.nn.quantized``.

Rounding follows PyTorch's x86 kernels bit for bit (checked against torch in
tests/quantization/test_qtensor.py): per-tensor int8/uint8 quantization rounds
``x * (1/scale) + zero_point`` once to float32 (a fused multiply-add), then to the nearest
integer, ties to even; per-channel and int32 quantization round ``x * (1/scale)`` to float32
first. Dequantization is ``(q - zero_point) * scale`` in float32.
"""

from __future__ import annotations

import numpy as np

from . import _dtype as D
from ._device import CPU
from ._tensor import Size, Tensor

_f32 = np.float32


# ============================================================================ qschemes
class qscheme:
    """A quantization scheme (``ember.per_tensor_affine`` and friends)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "ember." + self.name

    def __reduce__(self):
        return (_qscheme_by_name, (self.name,))


per_tensor_affine = qscheme("per_tensor_affine")
per_channel_affine = qscheme("per_channel_affine")
per_tensor_symmetric = qscheme("per_tensor_symmetric")
per_channel_symmetric = qscheme("per_channel_symmetric")
per_channel_affine_float_qparams = qscheme("per_channel_affine_float_qparams")
_QSCHEMES = {q.name: q for q in (per_tensor_affine, per_channel_affine, per_tensor_symmetric,
                                 per_channel_symmetric, per_channel_affine_float_qparams)}


def _qscheme_by_name(name):
    return _QSCHEMES[name]


# integer range of each quantized dtype
QRANGE = {"qint8": (-128, 127), "quint8": (0, 255), "qint32": (-(2 ** 31), 2 ** 31 - 1),
          "quint4x2": (0, 15), "quint2x4": (0, 3)}


def _check_qdtype(dtype, fn):
    d = D.to_dtype(dtype)
    if d not in D._QUANT:
        raise RuntimeError(f"{fn}: expected a quantized dtype (ember.quint8, ember.qint8, "
                           f"ember.qint32), got {d}")
    if d in (D.quint4x2, D.quint2x4) and fn not in ("quantize_per_channel",
                                                    "quantize_per_tensor"):
        raise NotImplementedError(f"{fn}: {d} (sub-byte packed) tensors come from "
                                  "quantize_per_tensor or quantize_per_channel (float qparams)")
    return d


# Sub-byte dtypes: a QTensor keeps one value per uint8 element (so views and indexing work as
# for quint8); their packed form, low bits first, ``8 // bits`` values per byte, is what
# ``int_repr`` returns and what checkpoints store, as in PyTorch.
SUBBYTE_BITS = {"quint4x2": 4, "quint2x4": 2}


def pack_subbyte(q, qdtype, row_padded=False):
    """The packed bytes of the sub-byte values ``q``, flat (PyTorch's ``int_repr``); with
    ``row_padded``, followed by zero bytes up to PyTorch's storage size for that shape
    (``prod(shape[:-1]) * ceil(shape[-1] / per_byte)``)."""
    bits = SUBBYTE_BITS[qdtype.name]
    per = 8 // bits
    flat = np.ascontiguousarray(q, dtype=np.uint8).reshape(-1)
    n = -(-flat.size // per)
    if row_padded and q.ndim:
        rows = int(np.prod(q.shape[:-1], dtype=np.int64))
        n = max(n, rows * -(-q.shape[-1] // per))
    vals = np.zeros(n * per, dtype=np.uint8)
    vals[:flat.size] = flat
    vals = vals.reshape(n, per)
    out = np.zeros(n, dtype=np.uint8)
    for i in range(per):
        out |= vals[:, i] << np.uint8(bits * i)
    return out


def unpack_subbyte(packed, shape, qdtype):
    """The sub-byte values of ``packed`` bytes as a uint8 array of ``shape``."""
    bits = SUBBYTE_BITS[qdtype.name]
    per = 8 // bits
    n = int(np.prod(shape, dtype=np.int64))
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size * per < n:
        raise RuntimeError(f"{qdtype}: {packed.size} packed bytes cannot hold {n} values")
    mask = np.uint8((1 << bits) - 1)
    vals = np.stack([(packed >> np.uint8(bits * i)) & mask for i in range(per)], axis=-1)
    return vals.reshape(-1)[:n].reshape(shape).copy()


# ============================================================================ kernels
def quantize_array(x, scale, zero_point, qdtype):
    """Per-tensor quantization of a float32 array as PyTorch's x86 kernel does it."""
    lo, hi = QRANGE[qdtype.name]
    inv = _f32(1.0) / _f32(scale)
    if qdtype.name in SUBBYTE_BITS:  # PyTorch's generic kernel: zp + nearbyint(x * inv)
        v = np.rint((x * inv).astype(np.float32)) + zero_point
        return np.clip(v, lo, hi).astype(np.uint8)
    if qdtype is D.qint32:
        v = np.rint((x * inv).astype(np.float32) + _f32(zero_point))
        return np.clip(v, lo, hi).astype(np.int32)
    # one rounding of x*inv + zp to float32 (fbgemm's FMA), then to the nearest integer:
    # float64 holds the product of two float32s exactly
    v = x.astype(np.float64) * np.float64(inv)
    v += zero_point
    v = np.rint(v.astype(np.float32))
    return np.clip(v, lo, hi).astype(qdtype.np)


def quantize_array_per_channel(x, scales, zero_points, axis, qdtype, float_qparams=False):
    """Per-channel quantization along ``axis`` (scales/zero points broadcast on that axis)."""
    lo, hi = QRANGE[qdtype.name]
    shape = [1] * x.ndim
    shape[axis] = -1
    s = np.asarray(scales, dtype=np.float32).reshape(shape)
    if float_qparams:
        # PyTorch: lrintf(x * inv_scale + zero_point) with float zero points
        inv = np.where(s == 0, _f32(1), _f32(1) / np.where(s == 0, _f32(1), s))
        zp = np.asarray(zero_points, dtype=np.float32).reshape(shape)
        v = np.rint((x * inv).astype(np.float32) + zp)
    else:
        inv = _f32(1) / s
        zp = np.asarray(zero_points, dtype=np.int64).reshape(shape).astype(np.float32)
        v = np.rint((x * inv).astype(np.float32) + zp)
    return np.clip(v, lo, hi).astype(np.uint8 if qdtype.name.startswith("quint")
                                      else qdtype.np)


def dequantize_array(q, scale, zero_point):
    """``(q - zero_point) * scale`` in float32."""
    return ((q.astype(np.int64) - zero_point).astype(np.float32) * _f32(scale)).astype(
        np.float32)


# ============================================================================ QTensor
def _no_kernel(self):
    raise NotImplementedError(
        "Could not run this operator with arguments from the 'QuantizedCPU' backend: ember "
        f"has no quantized kernel for it (a {self._qdtype} tensor). Call .dequantize() first, "
        "or use the modules of ember.ao.nn.quantized")


class QTensor(Tensor):
    """A quantized tensor: integers ``_q`` and a quantizer (see the module docstring)."""

    is_quantized = True
    _data = property(_no_kernel)  # every op not written for quantized tensors raises
    _scales = _zps = _axis = None
    _scale = 1.0
    _zp = 0

    # ------------------------------------------------------------ construction
    @classmethod
    def _new(cls, q, qdtype, qscheme_, scale=1.0, zp=0, scales=None, zps=None, axis=None):
        t = object.__new__(cls)
        t._q = q
        t._qdtype = qdtype
        t._qscheme = qscheme_
        if scales is None:
            t._scale, t._zp = float(scale), int(zp)
        else:
            t._scales, t._zps, t._axis = scales, zps, int(axis)
        return t

    def _like(self, q, axis=None):
        """A tensor with this one's quantizer over new integers ``q``."""
        if self._scales is None:
            return QTensor._new(q, self._qdtype, self._qscheme, self._scale, self._zp)
        return QTensor._new(q, self._qdtype, self._qscheme, scales=self._scales,
                            zps=self._zps, axis=self._axis if axis is None else axis)

    # ------------------------------------------------------------ metadata
    @property
    def dtype(self):
        return self._qdtype

    @property
    def shape(self):
        return Size(self._q.shape)

    @property
    def ndim(self):
        return self._q.ndim

    device = CPU
    requires_grad = False
    grad_fn = None

    def size(self, dim=None):
        return self.shape if dim is None else self._q.shape[dim]

    def dim(self):
        return self._q.ndim

    ndimension = dim

    def numel(self):
        return int(self._q.size)

    nelement = numel

    def __len__(self):
        if self._q.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._q.shape[0]

    def element_size(self):
        return self._q.itemsize

    def stride(self, dim=None):
        st = tuple(s // self._q.itemsize for s in self._q.strides)
        return st if dim is None else st[dim]

    def is_contiguous(self, memory_format=None):
        return bool(self._q.flags.c_contiguous)

    def is_floating_point(self):
        return False

    def requires_grad_(self, requires_grad=True):
        if requires_grad:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        return self

    def cpu(self):
        return self

    def detach(self):
        return self._like(self._q)

    def to(self, *args, **kwargs):
        """Only moves between devices (cpu); a dtype conversion raises as in PyTorch."""
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, D.dtype) and a is not self._qdtype:
                raise RuntimeError("Creation of quantized tensor requires quantized dtype "
                                   "like ember.quint8")
        return self

    def __hash__(self):
        return id(self)

    # ------------------------------------------------------------ the quantizer
    def qscheme(self):
        """The quantization scheme (``ember.per_tensor_affine``...)."""
        return self._qscheme

    def q_scale(self):
        """Scale of a per-tensor quantized tensor."""
        self._need_per_tensor("q_scale")
        return self._scale

    def q_zero_point(self):
        """Zero point of a per-tensor quantized tensor."""
        self._need_per_tensor("q_zero_point")
        return self._zp

    def q_per_channel_scales(self):
        """The per-channel scales (a float64 tensor)."""
        self._need_per_channel("q_per_channel_scales")
        return _plain(np.asarray(self._scales, dtype=np.float64).copy())

    def q_per_channel_zero_points(self):
        """The per-channel zero points (int64; float for float qparams)."""
        self._need_per_channel("q_per_channel_zero_points")
        return _plain(np.asarray(self._zps).copy())

    def q_per_channel_axis(self):
        """The axis the per-channel quantizer runs along."""
        self._need_per_channel("q_per_channel_axis")
        return self._axis

    def _need_per_tensor(self, fn):
        if self._scales is not None:
            raise RuntimeError(f"Expected quantizer->qscheme() == kPerTensorAffine to be true, "
                               f"but got false. ({fn} on a {self._qscheme} tensor)")

    def _need_per_channel(self, fn):
        if self._scales is None:
            raise RuntimeError(f"Expected (qscheme == kPerChannelAffine || qscheme == "
                               f"kPerChannelAffineFloatQParams) to be true, but got false. "
                               f"({fn} on a {self._qscheme} tensor)")

    def int_repr(self):
        """The stored integers as a uint8/int8/int32 tensor (a copy); for quint4x2/quint2x4
        the packed bytes, flat, as PyTorch returns them."""
        if self._qdtype.name in SUBBYTE_BITS:
            return _plain(pack_subbyte(self._q, self._qdtype))
        return _plain(self._q.copy())

    def dequantize(self):
        """The real values ``(q - zero_point) * scale`` as float32."""
        return _plain(self._dequantized())

    def _dequantized(self):
        if self._scales is None:
            return dequantize_array(self._q, self._scale, self._zp)
        shape = [1] * self._q.ndim
        shape[self._axis] = -1
        s = np.asarray(self._scales, dtype=np.float32).reshape(shape)
        if self._qscheme is per_channel_affine_float_qparams:
            zp = np.asarray(self._zps, dtype=np.float32).reshape(shape)
            return ((self._q.astype(np.float32) - zp) * s).astype(np.float32)
        # PyTorch multiplies by the float64 scales here, then rounds to float32
        zp = np.asarray(self._zps, dtype=np.int64).reshape(shape)
        s64 = np.asarray(self._scales, dtype=np.float64).reshape(shape)
        return ((self._q.astype(np.int64) - zp) * s64).astype(np.float32)

    # ------------------------------------------------------------ values
    def item(self):
        if self._q.size != 1:
            raise RuntimeError(f"a Tensor with {self._q.size} elements cannot be converted to "
                               "Scalar")
        return float(self._dequantized().reshape(()))

    def __float__(self):
        return self.item()

    def equal(self, other):
        """True when both have the same quantizer and the same integers."""
        if not isinstance(other, QTensor):
            return False
        if (self._qdtype is not other._qdtype or self._qscheme is not other._qscheme
                or self._q.shape != other._q.shape):
            return False
        if self._scales is None:
            same_q = self._scale == other._scale and self._zp == other._zp
        else:
            same_q = (self._axis == other._axis
                      and np.array_equal(self._scales, other._scales)
                      and np.array_equal(self._zps, other._zps))
        return bool(same_q and np.array_equal(self._q, other._q))

    def __repr__(self, *, tensor_contents=None):
        from ._printing import _body, _with_suffixes
        prefix = "tensor("
        arr = self._dequantized()
        suffixes = [f"size={tuple(arr.shape)}", f"dtype={self._qdtype!r}",
                    f"quantization_scheme={self._qscheme!r}"]
        if self._scales is None:
            suffixes += [f"scale={self._scale}", f"zero_point={self._zp}"]
        else:
            suffixes += [f"scale={self.q_per_channel_scales()!r}",
                         f"zero_point={self.q_per_channel_zero_points()!r}",
                         f"axis={self._axis}"]
        body = _body(arr, len(prefix)) if arr.size else "[]"
        return _with_suffixes(prefix + body, suffixes, len(prefix))

    __str__ = __repr__

    def __format__(self, spec):
        return object.__format__(self, spec) if self._q.ndim else format(self.item(), spec)

    # ------------------------------------------------------------ views and copies
    def clone(self, memory_format=None):
        return self._like(self._q.copy())

    def contiguous(self, memory_format=None):
        return self if self._q.flags.c_contiguous else self._like(np.ascontiguousarray(self._q))

    def _uniform_only(self):
        if self._scales is not None:
            raise RuntimeError("Setting strides is possible only on uniformly quantized tensor")

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        q = self._q.reshape(shape)
        if self._scales is None:
            return self._like(q)
        # per channel: the quantized axis must survive as a dimension of its own
        lead = int(np.prod(self._q.shape[:self._axis]))
        n = self._q.shape[self._axis]
        acc = 1
        for i, s in enumerate(q.shape):
            if acc == lead and s == n:
                return self._like(q, axis=i)
            acc *= s
        raise NotImplementedError(
            f"reshape of a per-channel quantized tensor of shape {tuple(self._q.shape)} "
            f"(axis {self._axis}) to {tuple(q.shape)} would split its quantized axis")

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], D.dtype):
            raise RuntimeError("view(dtype) is not supported for quantized tensors")
        if not self._q.flags.c_contiguous:
            raise RuntimeError("view size is not compatible with input tensor's size and "
                               "stride; use .reshape(...) instead.")
        return self.reshape(*shape)

    def flatten(self, start_dim=0, end_dim=-1):
        nd = max(self._q.ndim, 1)
        s, e = start_dim % nd, end_dim % nd
        shp = self._q.shape or (1,)
        new = shp[:s] + (int(np.prod(shp[s:e + 1])),) + shp[e + 1:]
        return self.reshape(new)

    def permute(self, *dims):
        self._uniform_only()
        return self._like(self._q.transpose(_shape_arg(dims)))

    def transpose(self, dim0, dim1):
        self._uniform_only()
        return self._like(np.swapaxes(self._q, dim0, dim1))

    def t(self):
        if self._q.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                               f"{self._q.ndim}D")
        return self.transpose(0, 1) if self._q.ndim == 2 else self

    def expand(self, *sizes):
        self._uniform_only()
        sizes = _shape_arg(sizes)
        full = tuple(o if n == -1 else n for n, o in
                     zip(sizes, (1,) * (len(sizes) - self._q.ndim) + self._q.shape))
        return self._like(np.broadcast_to(self._q, full))

    def squeeze(self, dim=None):
        if dim is None:
            new = tuple(s for s in self._q.shape if s != 1)
        else:
            d = dim % max(self._q.ndim, 1)
            new = self._q.shape if self._q.ndim == 0 or self._q.shape[d] != 1 else (
                self._q.shape[:d] + self._q.shape[d + 1:])
        return self.reshape(new)

    def unsqueeze(self, dim):
        d = dim % (self._q.ndim + 1)
        return self.reshape(self._q.shape[:d] + (1,) + self._q.shape[d:])

    def __getitem__(self, idx):
        if isinstance(idx, Tensor):
            idx = idx._q if isinstance(idx, QTensor) else idx._data
        elif isinstance(idx, tuple):
            idx = tuple(i._data if isinstance(i, Tensor) else i for i in idx)
        if self._scales is None:
            return self._like(self._q[idx])
        return self._index_per_channel(idx)

    def _index_per_channel(self, idx):
        # Basic indexing only: the quantized axis is sliced (its scales with it), kept whole,
        # or picked by an integer (the result is per-tensor with that channel's qparams).
        items = idx if isinstance(idx, tuple) else (idx,)
        if any(not isinstance(i, (int, np.integer, slice)) and i is not Ellipsis
               for i in items):
            raise NotImplementedError("advanced indexing of per-channel quantized tensors")
        if Ellipsis in items:
            k = items.index(Ellipsis)
            fill = self._q.ndim - (len(items) - 1)
            items = items[:k] + (slice(None),) * fill + items[k + 1:]
        items = items + (slice(None),) * (self._q.ndim - len(items))
        q = self._q[items]
        pick = items[self._axis]
        if isinstance(pick, slice):
            axis = sum(1 for i in items[:self._axis] if isinstance(i, slice))
            return QTensor._new(q, self._qdtype, self._qscheme, scales=self._scales[pick],
                                zps=self._zps[pick], axis=axis)
        scale, zp = float(self._scales[pick]), self._zps[pick]
        return QTensor._new(q, self._qdtype, per_tensor_affine, scale, int(zp))

    def relu(self):
        """Quantized ReLU: integers below the zero point become the zero point."""
        if self._scales is not None:
            zp = np.asarray(self._zps).reshape([-1 if i == self._axis else 1
                                                for i in range(self._q.ndim)])
            return self._like(np.maximum(self._q, zp.astype(self._q.dtype)))
        return self._like(np.maximum(self._q, self._q.dtype.type(self._zp)))

    def relu_(self):
        self._q = self.relu()._q
        return self

    def _qop(self, name, *args):
        """Run ``ember.ao.nn.quantized.functional.<name>`` on this tensor (the float ops
        that PyTorch also runs on quantized tensors, such as max_pool2d, call it)."""
        from .ao.nn.quantized import functional
        return getattr(functional, name)(self, *args)

    # ------------------------------------------------------------ copying and pickling
    def __deepcopy__(self, memo):
        if id(self) not in memo:
            memo[id(self)] = self.clone()
        return memo[id(self)]

    def __reduce_ex__(self, proto):
        return (_rebuild_q, (self._q, self._qdtype.name, self._qscheme.name, self._scale,
                             self._zp, self._scales, self._zps, self._axis))


def _rebuild_q(q, qdtype, scheme, scale, zp, scales, zps, axis):
    return QTensor._new(q, D._BY_NAME[qdtype], _QSCHEMES[scheme], scale, zp, scales, zps, axis)


def _plain(arr):
    t = object.__new__(Tensor)
    t._data = arr
    return t


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        return tuple(int(s) for s in shape[0])
    return tuple(int(s) for s in shape)


def _float32_input(x, fn):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be Tensor, not {type(x).__name__}")
    if isinstance(x, QTensor):
        raise RuntimeError(f"{fn}: the input is already quantized ({x.dtype})")
    if x._data.dtype != np.float32:
        name = D._SCALAR_NAMES.get(x.dtype.name, x.dtype.name)
        raise RuntimeError(f"Quantize only works on Float Tensor, got {name}")
    return x._data


def _scalar(v, what):
    if isinstance(v, Tensor):
        if v.numel() != 1:
            raise RuntimeError(f"quantize_per_tensor: {what} must be a one-element tensor, "
                               f"got shape {tuple(v.shape)}")
        return v._data.reshape(()).item()
    return v


# ============================================================================ public functions
def quantize_per_tensor(input, scale, zero_point, dtype):
    """Quantize a float32 tensor (or a list of them) with one scale and zero point:
    ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``."""
    if isinstance(input, (list, tuple)):
        scales = scale._data.reshape(-1).tolist() if isinstance(scale, Tensor) else scale
        zps = (zero_point._data.reshape(-1).tolist() if isinstance(zero_point, Tensor)
               else zero_point)
        if len(scales) != len(input) or len(zps) != len(input):
            raise RuntimeError(f"quantize_per_tensor: {len(input)} tensors need as many "
                               f"scales and zero points, got {len(scales)} and {len(zps)}")
        return [quantize_per_tensor(x, s, z, dtype) for x, s, z in zip(input, scales, zps)]
    d = _check_qdtype(dtype, "quantize_per_tensor")
    x = _float32_input(input, "quantize_per_tensor")
    scale, zero_point = float(_scalar(scale, "scale")), int(_scalar(zero_point, "zero_point"))
    lo, hi = QRANGE[d.name]
    if not lo <= zero_point <= hi:
        raise RuntimeError(f"quantize_per_tensor: zero_point {zero_point} is out of the range "
                           f"[{lo}, {hi}] of {d}")
    if not scale > 0 or np.isinf(_f32(1) / _f32(scale)):
        raise RuntimeError(f"quantize_per_tensor: scale must be positive and its reciprocal "
                           f"finite in float32, got {scale}")
    return QTensor._new(quantize_array(x, scale, zero_point, d), d, per_tensor_affine, scale,
                        zero_point)


def choose_qparams(min_val, max_val, qmin, qmax, preserve_sparsity=False, reduce_range=False):
    """PyTorch's ``ChooseQuantizationParams`` (fbgemm): scale and zero point covering
    ``[min(min_val, 0), max(max_val, 0)]`` on ``[qmin, qmax]``; the scale is a float32."""
    if reduce_range:
        qmin, qmax = qmin // 2, qmax // 2
    min_val, max_val = _f32(min_val), _f32(max_val)
    if min_val < 0 and max_val > 0 and preserve_sparsity:
        symmetric_qmin = int(-((qmax - qmin) / 2 + 1))
        symmetric_qmax = int((qmax - qmin) / 2)
        max_scale = max(abs(min_val / symmetric_qmin), abs(max_val / symmetric_qmax))
        min_val, max_val = _f32(max_scale * symmetric_qmin), _f32(max_scale * symmetric_qmax)
    min_val, max_val = min(min_val, _f32(0)), max(max_val, _f32(0))
    scale = (float(max_val) - float(min_val)) / (qmax - qmin)
    if _f32(scale) == 0 or np.isinf(_f32(1) / _f32(scale)):
        scale = 0.1
    small = _f32(6.1e-5)  # fbgemm's SMALL_SCALE_THRESHOLD
    if scale < small:
        org = _f32(scale)
        scale = float(small)
        if min_val == 0:
            max_val = _f32(small * (qmax - qmin))
        elif max_val == 0:
            min_val = _f32(-small * (qmax - qmin))
        else:
            amp = _f32(small / org)
            min_val, max_val = _f32(min_val * amp), _f32(max_val * amp)
    # the zero point comes from the float64 scale; only the returned scale is float32
    zp_min = qmin - float(min_val) / scale
    zp_max = qmax - float(max_val) / scale
    err_min = abs(qmin) - abs(float(min_val) / scale)
    err_max = abs(qmax) - abs(float(max_val) / scale)
    zp = zp_min if err_min < err_max else zp_max
    if min_val < 0 and max_val > 0 and preserve_sparsity:
        zp = (qmin + qmax) / 2
    if zp < qmin:
        nudged = qmin
    elif zp > qmax:
        nudged = qmax
    else:
        nudged = int(np.rint(zp))
    return float(_f32(scale)), nudged


def quantize_per_tensor_dynamic(input, dtype, reduce_range):
    """Quantize with a scale and zero point chosen from the tensor's own min and max."""
    d = _check_qdtype(dtype, "quantize_per_tensor_dynamic")
    if d not in (D.quint8, D.qint8):
        raise RuntimeError(f"quantize_per_tensor_dynamic: dtype must be ember.quint8 or "
                           f"ember.qint8, got {d}")
    x = _float32_input(input, "quantize_per_tensor_dynamic")
    lo, hi = QRANGE[d.name]
    mn, mx = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    scale, zp = choose_qparams(mn, mx, lo, hi, False, bool(reduce_range))
    return QTensor._new(quantize_array(x, scale, zp, d), d, per_tensor_affine, scale, zp)


def quantize_per_channel(input, scales, zero_points, axis, dtype):
    """Quantize along ``axis`` with one scale and zero point per slice. Float zero points
    give ``per_channel_affine_float_qparams`` (used by quantized embeddings)."""
    d = _check_qdtype(dtype, "quantize_per_channel")
    x = _float32_input(input, "quantize_per_channel")
    if not isinstance(scales, Tensor) or not isinstance(zero_points, Tensor):
        raise TypeError("quantize_per_channel(): scales and zero_points must be Tensors")
    axis = int(axis)
    if not 0 <= axis < x.ndim:
        raise RuntimeError(f"quantize_per_channel: axis {axis} is out of range for a tensor "
                           f"of {x.ndim} dimensions")
    n = x.shape[axis]
    s = np.asarray(scales._data, dtype=np.float64).reshape(-1)
    zdata = zero_points._data.reshape(-1)
    if s.size != n or zdata.size != n:
        raise RuntimeError(f"quantize_per_channel: expected {n} scales and zero points for "
                           f"axis {axis} of shape {tuple(x.shape)}, got {s.size} and "
                           f"{zdata.size}")
    float_qparams = zdata.dtype.kind == "f"
    if float_qparams:
        if d not in (D.quint8, D.quint4x2, D.quint2x4):
            raise RuntimeError(f"quantize_per_channel: float zero points need ember.quint8 or "
                               f"ember.quint4x2, got {d}")
        zps = zdata.astype(np.float32)
        scheme = per_channel_affine_float_qparams
    else:
        if d in (D.quint4x2, D.quint2x4):
            raise RuntimeError(f"quantize_per_channel: {d} needs float zero points")
        zps = zdata.astype(np.int64)
        scheme = per_channel_affine
    q = quantize_array_per_channel(x, s, zps, axis, d, float_qparams)
    return QTensor._new(q, d, scheme, scales=s.astype(np.float32).astype(np.float64)
                        if float_qparams else s, zps=zps, axis=axis)


def dequantize(tensor):
    """Real values of a quantized tensor (a list of them: a list); float tensors pass."""
    if isinstance(tensor, (list, tuple)):
        return [dequantize(t) for t in tensor]
    if isinstance(tensor, QTensor):
        return tensor.dequantize()
    return tensor


def _make_per_tensor_quantized_tensor(input, scale, zero_point):
    """A quantized tensor viewing the integers of an int8/uint8/int32 tensor."""
    d = {np.dtype(np.int8): D.qint8, np.dtype(np.uint8): D.quint8,
         np.dtype(np.int32): D.qint32}.get(input._data.dtype)
    if d is None:
        raise RuntimeError(f"_make_per_tensor_quantized_tensor: expected an int8, uint8 or "
                           f"int32 tensor, got {input.dtype}")
    return QTensor._new(input._data.copy(), d, per_tensor_affine, float(scale), int(zero_point))


def _make_per_channel_quantized_tensor(input, scales, zero_points, axis):
    """A per-channel quantized tensor over the integers of an int8/uint8/int32 tensor."""
    d = {np.dtype(np.int8): D.qint8, np.dtype(np.uint8): D.quint8,
         np.dtype(np.int32): D.qint32}.get(input._data.dtype)
    if d is None:
        raise RuntimeError(f"_make_per_channel_quantized_tensor: expected an int8, uint8 or "
                           f"int32 tensor, got {input.dtype}")
    return QTensor._new(input._data.copy(), d, per_channel_affine,
                        scales=np.asarray(scales._data, np.float64).reshape(-1),
                        zps=np.asarray(zero_points._data, np.int64).reshape(-1), axis=axis)


def _empty_affine_quantized(size, *, scale=1.0, zero_point=0, dtype=None, device=None,
                            **_):
    d = _check_qdtype(dtype or D.quint8, "_empty_affine_quantized")
    return QTensor._new(np.zeros(_shape_arg(tuple(size)) if not isinstance(size, int)
                                 else (size,), dtype=d.np), d, per_tensor_affine, scale,
                        zero_point)


def _tensor_dequantize(self):
    """``Tensor.dequantize()`` of a float tensor: itself, as in PyTorch."""
    if self.is_quantized:
        return self.dequantize()
    if self._data.dtype != np.float32:
        raise RuntimeError(f"dequantize: expected a quantized or float32 tensor, got "
                           f"{self.dtype}")
    return self


def _not_quantized(name):
    def method(self, *args, **kwargs):
        raise RuntimeError(f"{name}: expected a quantized tensor, got a tensor of dtype "
                           f"{self.dtype} (quantize it with ember.quantize_per_tensor first)")
    method.__name__ = name
    return method


def install():
    """Give plain tensors the quantized-tensor methods (they raise, as in PyTorch)."""
    Tensor.dequantize = _tensor_dequantize
    for name in ("int_repr", "q_scale", "q_zero_point", "q_per_channel_scales",
                 "q_per_channel_zero_points", "q_per_channel_axis", "qscheme"):
        if name not in Tensor.__dict__:
            setattr(Tensor, name, _not_quantized(name))


install()
