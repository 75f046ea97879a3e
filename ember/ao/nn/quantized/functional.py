"""``ember.ao.nn.quantized.functional``: quantized ops on quantized tensors (issue 20).

The arithmetic follows PyTorch's fbgemm/x86 kernels so that results agree with
``torch.ao.nn.quantized`` in their integers (tests/quantization/test_qmodules.py):

* linear/conv (fbgemm's ``ReQuantizeOutput`` with a float bias): the exact int32 sum
  ``raw = sum (x - zx)(w - zw)`` (``ember.ao._gemm``), then in float32
  ``raw + bias / (sx*sw)``, times ``(sx*sw) / sy``, rounded to nearest even, plus ``zy``,
  clamped to uint8 (from ``zy`` up when a ReLU is fused).
* dynamic linear (fbgemm's ``ReQuantizeForFloat``): the input quantized to uint8 with
  ``ChooseQuantizationParams`` over its own min/max (``reduce_range`` halves the range), then
  ``raw * (sx * sw) + bias`` as one fused multiply-add rounded to float32; all of it in one
  C call (``ember.ao._qfast``) where a compiler exists, the same arithmetic in NumPy else.
* elementwise ops: dequantize, compute in float32, quantize with the output's qparams.
"""

from __future__ import annotations

import numpy as np

from .... import _dtype as D
from ...._quantized import (QRANGE, QTensor, _plain, choose_qparams, dequantize_array,
                            per_tensor_affine, quantize_array)
from ...._tensor import Tensor
from ... import _gemm, _qfast

_f32 = np.float32

__all__ = ["linear", "conv1d", "conv2d", "conv3d", "relu6", "hardswish", "layer_norm",
           "batch_norm",
           "add", "mul", "cat", "add_relu", "add_scalar", "mul_scalar", "max_pool2d",
           "adaptive_avg_pool2d", "avg_pool2d", "dequantize", "quantize_per_tensor", "relu",
           "clamp", "hardtanh", "leaky_relu", "sigmoid", "tanh", "threshold", "elu",
           "interpolate", "upsample", "celu", "linear_dynamic"]


# ============================================================================ helpers
def _need_q(x, fn, dtypes=("quint8",)):
    if not isinstance(x, QTensor):
        raise RuntimeError(f"quantized::{fn}: expected a quantized tensor, got "
                           f"{type(x).__name__} of dtype {getattr(x, 'dtype', None)}")
    if x.dtype.name not in dtypes:
        raise RuntimeError(f"quantized::{fn}: expected {' or '.join(dtypes)} input, got "
                           f"{x.dtype}")
    if x._scales is not None:
        raise RuntimeError(f"quantized::{fn}: expected a per-tensor quantized input, got "
                           f"{x.qscheme()}")
    return x


def _out(q, scale, zp, qdtype=D.quint8):
    return QTensor._new(q, qdtype, per_tensor_affine, float(scale), int(zp))


def _quantize(values, scale, zp, qdtype=D.quint8):
    return _out(quantize_array(np.asarray(values, dtype=np.float32), scale, zp, qdtype),
                scale, zp, qdtype)


def _deq(x):
    return x._dequantized()


class PackedLinearWeight:
    """A quantized weight and float bias prepared for the int8 GEMM (fbgemm's packed
    params): the integers with their zero points, and per-output-channel float32 scales."""

    def __init__(self, qweight, bias):
        if not isinstance(qweight, QTensor) or qweight.dtype is not D.qint8:
            raise RuntimeError(f"quantized linear/conv: the weight must be a qint8 quantized "
                               f"tensor, got {getattr(qweight, 'dtype', type(qweight))}")
        self.qweight = qweight
        self.bias = bias
        n = qweight.shape[0]
        w2 = qweight._q.reshape(n, -1)
        if qweight._scales is None:
            scales = np.full(n, qweight._scale, dtype=np.float64)
            zps = np.full(n, qweight._zp, dtype=np.int64)
        else:
            if qweight._axis != 0:
                raise RuntimeError("quantized linear/conv: per-channel weights must be "
                                   f"quantized along axis 0, got axis {qweight._axis}")
            scales, zps = qweight._scales, qweight._zps
        self.w_scales32 = np.asarray(scales, dtype=np.float32)
        self.packed = _gemm.PackedWeight(w2, zps)
        self.bias32 = None if bias is None else np.ascontiguousarray(
            bias._data if isinstance(bias, Tensor) else bias, dtype=np.float32)
        if self.bias32 is not None and self.bias32.shape != (n,):
            raise RuntimeError(f"quantized linear/conv: bias of shape {self.bias32.shape} does "
                               f"not match {n} output channels")
        self._plans = {}

    def fast_plan(self, relu=False):
        """The fused C dynamic linear's constants (``ember.ao._qfast.Plan``, reduce_range),
        or None where it cannot serve: no C compiler, a forced GEMM backend, or K so large
        that int32 sums could overflow."""
        plan = self._plans.get(relu, False)
        if plan is False:
            plan = None
            if _gemm._FORCE[0] is None and _qfast.available():
                plan = _qfast.Plan(self, relu=relu)
                if not plan.ok:
                    plan = None
            self._plans[relu] = plan
        if plan is not None and _gemm._FORCE[0] is not None:
            return None
        return plan


def _requantize(raw, pw, x_scale, out_scale, out_zp, relu):
    """fbgemm's ReQuantizeOutput (float bias) on the exact sums ``raw`` [M, N]."""
    act_w = (_f32(x_scale) * pw.w_scales32).astype(np.float32)      # per output channel
    mult = (act_w / _f32(out_scale)).astype(np.float32)
    acc = raw.astype(np.float32)
    if pw.bias32 is not None:
        acc += (pw.bias32 / act_w).astype(np.float32)
    acc *= mult
    v = np.rint(acc)
    v += out_zp
    np.clip(v, out_zp if relu else 0, 255, out=v)
    return v.astype(np.uint8)


def linear(input, weight, bias=None, scale=None, zero_point=None, _packed=None, _relu=False):
    """Quantized linear: ``input`` quint8 [*, in], ``weight`` qint8 [out, in] (per tensor or
    per channel), ``bias`` float32; the result is quint8 with ``scale``/``zero_point``."""
    x = _need_q(input, "linear")
    pw = _packed if _packed is not None else PackedLinearWeight(weight, bias)
    if scale is None or zero_point is None:
        raise RuntimeError("quantized::linear: the output scale and zero_point are required")
    K = pw.packed.K
    if x.shape[-1] != K:
        raise RuntimeError(f"quantized::linear: input of shape {tuple(x.shape)} does not match "
                           f"a weight of shape ({pw.packed.N}, {K})")
    lead = x._q.shape[:-1]
    raw = _gemm.gemm_q(x._q.reshape(-1, K), x._zp, pw.packed)
    q = _requantize(raw, pw, x._scale, scale, int(zero_point), _relu)
    return _out(q.reshape(lead + (pw.packed.N,)), scale, zero_point)


def linear_dynamic(input, packed, reduce_range=True, _relu=False):
    """fbgemm's dynamic linear: float32 ``input`` quantized per call to uint8, exact int8
    GEMM, output ``raw * (sx * sw) + bias`` in float32."""
    x = input._data if isinstance(input, Tensor) else input
    if x.dtype != np.float32:
        raise RuntimeError(f"quantized::linear_dynamic: expected a float32 input, got "
                           f"{x.dtype}")
    K = packed.packed.K
    if x.ndim == 0 or x.shape[-1] != K:
        raise RuntimeError(f"quantized::linear_dynamic: input of shape {tuple(x.shape)} does "
                           f"not match a weight of shape ({packed.packed.N}, {K})")
    lead = x.shape[:-1]
    plan = packed.fast_plan(_relu) if reduce_range else None
    if plan is not None:  # everything in one C call (ember.ao._qfast)
        return _qfast.linear(plan, np.ascontiguousarray(x))
    x2 = x.reshape(-1, K)
    if x2.size:
        mn, mx = float(x2.min()), float(x2.max())
    else:
        mn = mx = 0.0
    sx, zx = choose_qparams(mn, mx, 0, 255, False, reduce_range)
    q = quantize_array(x2, sx, zx, D.quint8)
    a = q.astype(np.int16)
    a -= np.int16(zx)
    hi = 127 if reduce_range else 255
    raw = _gemm.gemm(a, packed.packed, max(zx, hi - zx))
    # fbgemm: fmadd(raw, sx * sw, bias), one rounding; float64 holds raw * multiplier exactly
    mult = (_f32(sx) * packed.w_scales32).astype(np.float32)
    out = raw.astype(np.float32).astype(np.float64)  # fbgemm converts the int32 sums to float
    out *= mult
    if packed.bias32 is not None:
        out += packed.bias32
    out = out.astype(np.float32)
    if _relu:
        np.maximum(out, 0, out=out)
    return out.reshape(lead + (packed.packed.N,))


# ============================================================================ convolution
def _pair(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", scale=1.0, zero_point=0, dtype=None, _packed=None,
           _relu=False):
    """Quantized 2-d convolution (NCHW, quint8 input, qint8 weight): im2col on the integers
    (padding holds the zero point), the int8 GEMM per group, fbgemm's requantization."""
    return _conv_nd(2, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                    scale, zero_point, _packed, _relu)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", scale=1.0, zero_point=0, dtype=None, _packed=None,
           _relu=False):
    """Quantized 3-d convolution (NCDHW, quint8 input, qint8 weight), as ``conv2d``."""
    return _conv_nd(3, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                    scale, zero_point, _packed, _relu)


def _conv_nd(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, scale,
             zero_point, _packed, _relu):
    name = f"conv{nd}d"
    x = _need_q(input, name)
    if padding_mode != "zeros":
        raise NotImplementedError(f"quantized::{name}: padding_mode={padding_mode!r} "
                                  "(only 'zeros' is supported)")
    if x.ndim != nd + 2:
        layout = "(N, C, H, W)" if nd == 2 else "(N, C, D, H, W)"
        raise RuntimeError(f"quantized::{name}: expected a {nd + 2}-D {layout} input, got "
                           f"shape {tuple(x.shape)}")
    w = weight if _packed is None else _packed.qweight
    cout, cin_g = w.shape[:2]
    ks = tuple(w.shape[2:])
    n, cin = x.shape[:2]
    if cin != cin_g * groups:
        raise RuntimeError(f"quantized::{name}: input of shape {tuple(x.shape)} has {cin} "
                           f"channels, the weight {tuple(w.shape)} with groups={groups} "
                           f"expects {cin_g * groups}")
    st, pad, dil = _pair(stride, nd), _pair(padding, nd), _pair(dilation, nd)
    a = x._q
    if any(pad):  # padding holds the zero point (a real 0)
        a = np.pad(a, ((0, 0), (0, 0)) + tuple((p, p) for p in pad), constant_values=x._zp)
    osz = tuple((s + 2 * p - d * (k - 1) - 1) // t + 1
                for s, p, d, k, t in zip(x.shape[2:], pad, dil, ks, st))
    if any(o <= 0 for o in osz):
        raise RuntimeError(f"quantized::{name}: input {tuple(x.shape)} is too small for "
                           f"kernel {ks} with padding {pad}")
    spatial = tuple(range(2, 2 + nd))
    win = np.lib.stride_tricks.sliding_window_view(
        a, tuple(d * (k - 1) + 1 for d, k in zip(dil, ks)), axis=spatial)
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, t) for t in st)
              + tuple(slice(None, None, d) for d in dil)]
    win = win[(slice(None), slice(None)) + tuple(slice(0, o) for o in osz)]  # n, c, *o, *k
    cols = win.transpose((0,) + tuple(range(2, 2 + nd)) + (1,)
                         + tuple(range(2 + nd, 2 + 2 * nd)))  # n, *o, cin, *k
    packs = _packed_groups(_packed, w, bias, groups)
    cout_g = cout // groups
    rows = n * int(np.prod(osz))
    out = np.empty((rows, cout), dtype=np.uint8)
    kprod = int(np.prod(ks))
    for g, pk in enumerate(packs):
        cg = cols[(Ellipsis, slice(g * cin_g, (g + 1) * cin_g)) + (slice(None),) * nd]
        raw = _gemm.gemm_q(cg.reshape(rows, cin_g * kprod), x._zp, pk.packed)
        out[:, g * cout_g:(g + 1) * cout_g] = _requantize(raw, pk, x._scale, scale,
                                                          int(zero_point), _relu)
    q = np.ascontiguousarray(np.moveaxis(out.reshape((n,) + osz + (cout,)), -1, 1))
    return _out(q, scale, zero_point)


def _packed_groups(packed, weight, bias, groups):
    """One PackedLinearWeight per group (cached on ``packed`` when given)."""
    if packed is not None and getattr(packed, "groups", None) is not None:
        return packed.groups
    cout = weight.shape[0]
    cg = cout // groups
    bias_t = None if bias is None else (bias._data if isinstance(bias, Tensor) else bias)
    if packed is not None:
        bias_t = packed.bias32
    packs = []
    for g in range(groups):
        wq = weight[g * cg:(g + 1) * cg]
        packs.append(PackedLinearWeight(wq, None if bias_t is None
                                        else bias_t[g * cg:(g + 1) * cg]))
    if packed is not None:
        packed.groups = packs
    return packs


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", scale=1.0, zero_point=0, dtype=None, _packed=None,
           _relu=False):
    """Quantized 1-d convolution: a 2-d one over a height of 1."""
    x = _need_q(input, "conv1d")
    if x.ndim != 3:
        raise RuntimeError(f"quantized::conv1d: expected a 3-D (N, C, L) input, got shape "
                           f"{tuple(x.shape)}")
    w = weight if _packed is None else _packed.qweight
    w4 = w.unsqueeze(2)
    p4 = None
    if _packed is not None:
        p4 = _packed.as_2d if getattr(_packed, "as_2d", None) is not None else None
        if p4 is None:
            p4 = _packed.as_2d = PackedLinearWeight(w4, _packed.bias32)
            p4.qweight = w4
    out = conv2d(x.unsqueeze(2), w4, bias, (1, _pair(stride, 1)[0]), (0, _pair(padding, 1)[0]),
                 (1, _pair(dilation, 1)[0]), groups, padding_mode, scale, zero_point,
                 _packed=p4, _relu=_relu)
    return out.squeeze(2)


# ============================================================================ elementwise
def _vec_split(n):
    """fbgemm/ATen run quint8 elementwise kernels on 32-lane AVX2 vectors and the tail with
    scalar code, whose rounding differs: the index where the scalar tail starts."""
    return (n // 32) * 32


def _dequant_vec(q, scale, zp):
    # vectorized dequantize: fmadd(scale, q, -zp*scale), one rounding (float64 is exact here)
    s = np.float64(_f32(scale))
    premul = np.float64(_f32(-zp * _f32(scale)))
    return (q.astype(np.float64) * s + premul).astype(np.float32)


def _quant_vec(v, scale, zp, qdtype=D.quint8):
    # vectorized quantize: round(v * inv_scale) + zp, clamped
    inv = _f32(1.0) / _f32(scale)
    r = np.rint((v * inv).astype(np.float32)) + zp
    return np.clip(r, *QRANGE[qdtype.name]).astype(qdtype.np)


def _binary(fn, x, y, scale, zero_point, op, relu=False):
    x = _need_q(x, fn)
    y = _need_q(y, fn)
    if x.shape != y.shape:
        xq, yq = np.broadcast_arrays(x._q, y._q)
    else:
        xq, yq = x._q, y._q
    shape = xq.shape
    xq, yq = xq.reshape(-1), yq.reshape(-1)
    k = _vec_split(xq.size)
    out = np.empty(xq.size, dtype=np.uint8)
    if k:
        v = op(_dequant_vec(xq[:k], x._scale, x._zp), _dequant_vec(yq[:k], y._scale, y._zp))
        if relu:
            v = np.maximum(v, _f32(0))
        out[:k] = _quant_vec(v, scale, zero_point)
    if k < xq.size:
        v = op(dequantize_array(xq[k:], x._scale, x._zp),
               dequantize_array(yq[k:], y._scale, y._zp))
        if relu:
            v = np.maximum(v, _f32(0))
        out[k:] = quantize_array(v.astype(np.float32), scale, zero_point, D.quint8)
    return _out(out.reshape(shape), scale, zero_point)


def add(qa, qb, scale, zero_point):
    """Quantized ``qa + qb`` with output qparams ``scale``/``zero_point``."""
    return _binary("add", qa, qb, scale, zero_point, np.add)


def add_relu(qa, qb, scale, zero_point):
    """Quantized ``relu(qa + qb)``."""
    return _binary("add_relu", qa, qb, scale, zero_point, np.add, relu=True)


def _mul(fn, qa, qb, scale, zero_point, relu):
    # PyTorch's qmul works on the integers: (a - za)(b - zb) in int32, times the float32
    # multiplier sa*sb/s, rounded to nearest even, plus the zero point
    x, y = _need_q(qa, fn), _need_q(qb, fn)
    xq, yq = np.broadcast_arrays(x._q, y._q)
    c = (xq.astype(np.int32) - x._zp) * (yq.astype(np.int32) - y._zp)
    mult = _f32(x._scale * y._scale * (1.0 / scale))
    v = np.rint((c.astype(np.float32) * mult).astype(np.float32)) + zero_point
    np.clip(v, zero_point if relu else 0, 255, out=v)
    return _out(v.astype(np.uint8), scale, zero_point)


def mul(qa, qb, scale, zero_point):
    """Quantized ``qa * qb``."""
    return _mul("mul", qa, qb, scale, zero_point, False)


def mul_relu(qa, qb, scale, zero_point):
    """Quantized ``relu(qa * qb)``."""
    return _mul("mul_relu", qa, qb, scale, zero_point, True)


def add_scalar(qa, b):
    """``qa + b`` for a python number: the integers stay, the zero point moves by
    ``round(b / scale)`` (PyTorch's quantized::add_scalar; requantizes at the range ends)."""
    x = _need_q(qa, "add_scalar")
    lo, hi = QRANGE[x.dtype.name]
    s, z = x._scale, x._zp
    c_q = int(np.rint(float(b) / s))
    if lo > z - c_q:
        s2, z2 = (hi - (z - c_q)) / (hi - lo) * s, lo
    elif hi < z - c_q:
        s2, z2 = ((z - c_q) - lo) / (hi - lo) * s, hi
    else:
        return _out(x._q.copy(), s, z - c_q, x.dtype)
    # the vectorized part dequantizes with an FMA, then adds c_q * scale; the tail is scalar
    flat = x._q.reshape(-1)
    k = _vec_split(flat.size)
    out = np.empty(flat.size, dtype=x._q.dtype)
    if k:
        v = _dequant_vec(flat[:k], s, z) + _f32(c_q * _f32(s))
        out[:k] = _quant_vec(v.astype(np.float32), s2, z2)
    if k < flat.size:
        v = (flat[k:].astype(np.int64) - z + c_q).astype(np.float32) * _f32(s)
        out[k:] = quantize_array(v.astype(np.float32), s2, z2, x.dtype)
    return _out(out.reshape(x._q.shape), s2, z2, x.dtype)


def mul_scalar(qa, b):
    """``qa * b`` for a python number: the scale becomes ``|b| * scale``; a negative ``b``
    mirrors the integers (PyTorch's quantized::mul_scalar)."""
    x = _need_q(qa, "mul_scalar")
    lo, hi = QRANGE[x.dtype.name]
    b = float(b)
    if b > 0:
        return _out(x._q.copy(), b * x._scale, x._zp, x.dtype)
    if b == 0:
        return _out(np.zeros_like(x._q), 1.0, 0, x.dtype)
    q = (hi - (x._q.astype(np.int64) - lo)).astype(x._q.dtype)
    return _out(q, -b * x._scale, hi - (x._zp - lo), x.dtype)


def cat(tensors, dim=0, scale=None, zero_point=None):
    """Quantized concatenation: inputs with the output's qparams are copied, others are
    requantized through float."""
    xs = [_need_q(t, "cat", ("quint8", "qint8", "qint32")) for t in tensors]
    if not xs:
        raise RuntimeError("quantized::cat: expected a non-empty list of tensors")
    if scale is None:
        scale, zero_point = xs[0]._scale, xs[0]._zp
    parts = []
    for t in xs:
        if t._scale == scale and t._zp == zero_point:
            parts.append(t._q)
        else:
            parts.append(quantize_array(t._dequantized(), scale, zero_point, xs[0].dtype))
    return _out(np.concatenate(parts, axis=dim), scale, zero_point, xs[0].dtype)


def _unary_float(fn_name, x, f, scale=None, zero_point=None):
    x = _need_q(x, fn_name, ("quint8", "qint8"))
    if scale is None:
        scale, zero_point = x._scale, x._zp
    # ATen's kernels: 32-lane vectors (FMA dequantize, multiply-by-inverse quantize), then a
    # scalar tail with the plain formulas
    flat = x._q.reshape(-1)
    k = _vec_split(flat.size)
    out = np.empty(flat.size, dtype=x._q.dtype)
    if k:
        v = f(_dequant_vec(flat[:k], x._scale, x._zp)).astype(np.float32)
        out[:k] = _quant_vec(v, scale, int(zero_point), x.dtype)
    if k < flat.size:
        v = f(dequantize_array(flat[k:], x._scale, x._zp)).astype(np.float32)
        out[k:] = quantize_array(v, scale, int(zero_point), x.dtype)
    return _out(out.reshape(x._q.shape), scale, zero_point, x.dtype)


def relu(input, inplace=False):
    """Quantized ReLU (integers below the zero point become it)."""
    return _need_q(input, "relu", ("quint8", "qint8", "qint32")).relu()


def relu6(input, inplace=False):
    """Quantized ReLU6: clamp the integers to [zero point, quantized 6]."""
    x = _need_q(input, "relu6", ("quint8", "qint8"))
    six = quantize_array(np.array([6.0], np.float32), x._scale, x._zp, x.dtype)[0]
    q = np.minimum(np.maximum(x._q, x._q.dtype.type(x._zp)), six)
    return _out(q, x._scale, x._zp, x.dtype)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """Quantized hardtanh: clamp in the integer domain."""
    x = _need_q(input, "hardtanh", ("quint8", "qint8"))
    lo, hi = quantize_array(np.array([min_val, max_val], np.float32), x._scale, x._zp, x.dtype)
    return _out(np.clip(x._q, lo, hi), x._scale, x._zp, x.dtype)


def clamp(input, min_=None, max_=None):
    """Quantized clamp (in the integer domain)."""
    lo = -np.inf if min_ is None else min_
    hi = np.inf if max_ is None else max_
    return hardtanh(input, lo, hi)


def hardswish(input, scale, zero_point):
    """Quantized hardswish: dequantize, ``x * relu6(x + 3) / 6``, quantize."""
    return _unary_float("hardswish", input,
                        lambda v: v * np.clip(v + _f32(3), 0, 6) / _f32(6), scale, zero_point)


def leaky_relu(input, negative_slope=0.01, inplace=False, scale=None, zero_point=None):
    """Quantized leaky ReLU (through float)."""
    return _unary_float("leaky_relu", input,
                        lambda v: np.where(v > 0, v, v * _f32(negative_slope)), scale,
                        zero_point)


def elu(input, scale, zero_point, alpha=1.0):
    """Quantized ELU (through float)."""
    return _unary_float("elu", input,
                        lambda v: np.where(v > 0, v, _f32(alpha) * np.expm1(v)), scale,
                        zero_point)


def celu(input, scale, zero_point, alpha=1.0):
    """Quantized CELU (through float)."""
    return _unary_float("celu", input, lambda v: np.maximum(v, 0) + np.minimum(
        0, _f32(alpha) * np.expm1(v / _f32(alpha))), scale, zero_point)


def threshold(input, threshold, value):
    """Quantized threshold (through float)."""
    return _unary_float("threshold", input, lambda v: np.where(v > threshold, v, value))


def sigmoid(input):
    """Quantized sigmoid; the output has PyTorch's fixed qparams (1/256, 0)."""
    return _unary_float("sigmoid", input, lambda v: 1 / (1 + np.exp(-v)), 1.0 / 256, 0)


def tanh(input):
    """Quantized tanh; the output has PyTorch's fixed qparams (2/256, 128)."""
    return _unary_float("tanh", input, np.tanh, 2.0 / 256, 128)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, output_scale=1.0,
               output_zero_point=0):
    """Quantized layer norm: normalise the dequantized values in float32, quantize."""
    x = _need_q(input, "layer_norm")
    nd = len(_pair(normalized_shape, 1))
    v = x._dequantized()
    axes = tuple(range(v.ndim - nd, v.ndim))
    mean = v.mean(axis=axes, keepdims=True, dtype=np.float64)
    var = ((v - mean) ** 2).mean(axis=axes, keepdims=True)
    y = ((v - mean) / np.sqrt(var + eps)).astype(np.float32)
    if weight is not None:
        y = y * weight._data
    if bias is not None:
        y = y + bias._data
    return _quantize(y, output_scale, int(output_zero_point))


def batch_norm(input, weight, bias, running_mean, running_var, eps, output_scale,
               output_zero_point):
    """Quantized batch norm (inference) on the integers, as PyTorch's kernel: per channel
    ``alpha = w / sqrt(var + eps) * in_scale / out_scale`` and ``beta = (b - mean * w /
    sqrt(var + eps)) / out_scale`` in float32, then ``q = round(alpha * (x - in_zp) + beta)
    + out_zp`` (one rounding, as its fused multiply-add), clamped."""
    x = _need_q(input, "batch_norm")
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.ndim - 2)
    f32 = np.float32
    w = weight._data.astype(f32) if weight is not None else np.ones(c, f32)
    b = bias._data.astype(f32) if bias is not None else np.zeros(c, f32)
    mean, var = running_mean._data.astype(f32), running_var._data.astype(f32)
    inv = (1.0 / np.sqrt(var + f32(eps)).astype(np.float64)).astype(f32)
    wi = inv * w
    alpha = (wi.astype(np.float64) * (float(x._scale) / float(output_scale))).astype(f32)
    beta = ((b - mean * inv * w).astype(np.float64) / float(output_scale)).astype(f32)
    xm = x._q.astype(np.float64) - x._zp
    y = (alpha.reshape(shape).astype(np.float64) * xm + beta.reshape(shape)).astype(f32)
    lo, hi = QRANGE["quint8"]
    q = np.clip(np.rint(y) + int(output_zero_point), lo, hi).astype(np.uint8)
    return _out(q, output_scale, output_zero_point)


# ============================================================================ pooling
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling on the integers (order-preserving, so exact)."""
    from .... import nn
    x = _need_q(input, "max_pool2d", ("quint8", "qint8"))
    if return_indices:
        raise NotImplementedError("quantized max_pool2d: return_indices=True")
    pooled = nn.functional.max_pool2d(_plain(x._q.astype(np.float32)), kernel_size, stride,
                                      padding, dilation, ceil_mode)
    return x._like(pooled._data.astype(x._q.dtype))


def _pool_through_float(x, f):
    # average pooling rounds the mean of the integers: PyTorch computes it on the integers
    v = f(_plain(x._q.astype(np.float32)))._data
    return x._like(np.clip(np.rint(v), *QRANGE[x.dtype.name]).astype(x._q.dtype))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Average pooling of the integers, rounded; keeps the input's qparams."""
    from .... import nn
    x = _need_q(input, "avg_pool2d", ("quint8", "qint8"))
    return _pool_through_float(x, lambda t: nn.functional.avg_pool2d(
        t, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override))


def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling of the integers, rounded; keeps the input's qparams."""
    from .... import nn
    x = _need_q(input, "adaptive_avg_pool2d", ("quint8", "qint8"))
    return _pool_through_float(x, lambda t: nn.functional.adaptive_avg_pool2d(t, output_size))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Nearest-neighbour resizing of a quantized tensor (other modes are not supported)."""
    from .... import nn
    x = _need_q(input, "interpolate", ("quint8", "qint8"))
    if mode != "nearest":
        raise NotImplementedError(f"quantized interpolate: mode={mode!r} (only 'nearest')")
    r = nn.functional.interpolate(_plain(x._q.astype(np.float32)), size, scale_factor, mode)
    return x._like(r._data.astype(x._q.dtype))


upsample = interpolate


def dequantize(input):
    """The float32 values of a quantized tensor."""
    return input.dequantize()


def quantize_per_tensor(input, scale, zero_point, dtype):
    from .... import quantize_per_tensor as q
    return q(input, scale, zero_point, dtype)
