"""Elementwise ops: arithmetic, math functions, activations' primitives, comparisons,
logical and bitwise ops. Each op is a forward (on arrays) beside its backward (in ember ops).
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from .. import _dtype as D
from .._meta import MetaArray, asarray as xp_asarray
from .._tensor import Tensor
from .. import _parallel as _par
from ..autograd.elision import MIN_SIZE as _ELIDE_MIN, unary as _elide_unary
from ..autograd.graph import Node, _pt_name, apply_inplace, apply_unary
from ..autograd import forward_ad as _fad
from ._util import promote, result_dtype, to_float

_ndarray = np.ndarray
_PAR_MIN = _par.MIN_SIZE  # from this many elements, ufuncs are split over every core
_ARRAYS = (np.ndarray, MetaArray)  # backend array types: NumPy and the meta device's
_np = np  # the CPU array module; ops reach it through ``xp`` below
xp = np

__all__ = [
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "floor_divide",
    "remainder", "fmod", "pow", "neg", "negative", "abs", "absolute", "sign", "exp", "exp2",
    "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "reciprocal", "sin",
    "cos", "tan", "asin", "acos", "atan", "atan2", "arctan2", "sinh", "cosh", "tanh", "asinh",
    "acosh", "atanh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "sigmoid",
    "logit", "erf", "erfc", "erfinv", "relu", "floor", "ceil", "round", "trunc", "fix", "frac",
    "clamp", "clip", "maximum", "minimum", "where", "lerp", "addcmul", "addcdiv", "hypot",
    "logaddexp", "logaddexp2", "nan_to_num", "eq", "ne", "lt", "le", "gt", "ge", "greater",
    "greater_equal", "less", "less_equal", "not_equal", "isclose", "allclose", "equal", "isnan",
    "isinf", "isfinite", "isposinf", "isneginf", "isreal", "logical_and", "logical_or",
    "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    "bitwise_left_shift", "bitwise_right_shift", "conj", "real", "imag", "positive",
    "clamp_min", "clamp_max", "sgn", "lgamma", "digamma", "polygamma", "mvlgamma", "i0",
    "xlogy", "sinc", "copysign", "nextafter", "ldexp", "frexp", "signbit", "heaviside", "gcd",
    "lcm", "float_power", "deg2rad", "rad2deg", "angle", "fmax", "fmin",
]


def _shape_error(*xs):
    """PyTorch's broadcasting error for arrays that do not broadcast (NumPy raised)."""
    shapes = [x.shape for x in xs if type(x) in _ARRAYS]
    for i in range(builtins.max(len(s) for s in shapes)):
        sizes = [s[len(s) - 1 - i] for s in shapes if i < len(s)]
        big = [n for n in sizes if n != 1]
        if len(set(big)) > 1:
            nd = builtins.max(len(s) for s in shapes)
            return RuntimeError(f"The size of tensor a ({sizes[0]}) must match the size of tensor "
                                f"b ({sizes[1]}) at non-singleton dimension {nd - 1 - i}")
    return RuntimeError(f"shapes {[list(s) for s in shapes]} cannot be broadcast together")


def _out(result, out):
    """Write ``result`` into the user's ``out=`` tensor (resized like PyTorch does)."""
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a Tensor, got {type(out).__name__}")
    if out._data.shape != result._data.shape:
        out._data = np.empty(result._data.shape, dtype=out._data.dtype)
    np.copyto(out._data, result._data, casting="unsafe")
    from .._tensor import _bump_version
    _bump_version(out)
    return out


# ====================================================================== arithmetic
class Add(Node):
    @staticmethod
    def forward(ctx, a, b):
        if type(a) in _ARRAYS and type(b) in _ARRAYS and a.dtype is b.dtype and \
                a.dtype.kind in "fc":  # one float dtype: nothing to promote (the common case)
            try:
                if a.size >= _PAR_MIN:  # large: split over every core
                    return _par.elementwise(np.add, a, b)
                return a + b
            except ValueError:
                raise _shape_error(a, b) from None
        a, b = promote(a, b)
        try:
            return a + b
        except ValueError:
            raise _shape_error(a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, g

    @staticmethod
    def jvp(ctx, ta, tb):
        return _fad.add_tangents(ta, tb)

    array_backward = backward


class Sub(Node):
    @staticmethod
    def forward(ctx, a, b):
        if type(a) in _ARRAYS and a.dtype == np.bool_ or type(b) in _ARRAYS and \
                b.dtype == np.bool_:
            if (type(a) not in _ARRAYS or a.dtype == np.bool_) and \
                    (type(b) not in _ARRAYS or b.dtype == np.bool_):
                raise RuntimeError(
                    "Subtraction, the `-` operator, with two bool tensors is not supported. "
                    "Use the `^` or `logical_xor()` operator instead.")
        a, b = promote(a, b)
        try:
            return a - b
        except ValueError:
            raise _shape_error(a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)

    @staticmethod
    def jvp(ctx, ta, tb):
        return _fad.add_tangents(ta, None if tb is None else -tb)

    array_backward = backward


class Mul(Node):
    saves = (0, 1)
    saves_for = {0: (1,), 1: (0,)}  # d/da reads b, d/db reads a

    @staticmethod
    def forward(ctx, a, b):
        if type(a) in _ARRAYS and type(b) in _ARRAYS and a.dtype is b.dtype and \
                a.dtype.kind in "fc":  # as in Add
            try:
                if a.size >= _PAR_MIN:
                    return _par.elementwise(np.multiply, a, b)
                return a * b
            except ValueError:
                raise _shape_error(a, b) from None
        a, b = promote(a, b)
        if a.dtype == np.bool_ if type(a) in _ARRAYS else False:
            if type(b) not in _ARRAYS or b.dtype == np.bool_:
                return np.logical_and(a, b)
        try:
            return a * b
        except ValueError:
            raise _shape_error(a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        return (g * _conj(b) if na else None, g * _conj(a) if nb else None)

    jvp = staticmethod(_fad.multilinear_jvp)

    @staticmethod
    def array_backward(ctx, g):
        a, b = ctx.saved_arrays
        na, nb = ctx.needs_input_grad
        return (g * _conj(b) if na else None, g * _conj(a) if nb else None)


class Div(Node):
    saves = (0, 1)
    saves_for = {0: (1,), 1: (0, 1)}

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        if type(a) in _ARRAYS and a.dtype.kind in "biu":
            a = to_float(a)
        if type(b) in _ARRAYS and b.dtype.kind in "biu":
            b = to_float(b)
            if type(a) not in _ARRAYS:
                a = b.dtype.type(a)
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                return a / b
        except ValueError:
            raise _shape_error(a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = g / _conj(b) if na else None
        gb = -g * _conj(a) / _conj(b * b) if nb else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        # d(a/b) = da/b - db a/b^2 = (da - db out)/b
        b, out = ctx.inputs[1], ctx.output
        return _fad.add_tangents(None if ta is None else ta / b,
                                 None if tb is None else -(tb * out) / b)

    @staticmethod
    def array_backward(ctx, g):
        a, b = ctx.saved_arrays
        na, nb = ctx.needs_input_grad
        with np.errstate(divide="ignore", invalid="ignore"):
            ga = g / _conj(b) if na else None
            gb = -g * _conj(a) / _conj(b * b) if nb else None
        return ga, gb


class FloorDivide(Node):
    """``div(rounding_mode='floor')``: piecewise constant, so a zero gradient."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            if (type(a) in _ARRAYS and a.dtype.kind in "iu") and _any_zero(b):
                raise RuntimeError("ZeroDivisionError")
            return np.floor_divide(a, b)

    @staticmethod
    def backward(ctx, g):
        return g * 0, g * 0


class FloorDivideOp(FloorDivide):
    """``floor_divide``: like PyTorch, it records a node whose backward raises."""

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("derivative for aten::floor_divide is not implemented")


class TruncDivide(FloorDivide):
    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        if (type(a) in _ARRAYS and a.dtype.kind in "iu") or \
                (type(b) in _ARRAYS and b.dtype.kind in "iu" and type(a) not in _ARRAYS):
            if _any_zero(b):
                raise RuntimeError("ZeroDivisionError")
            q = np.floor_divide(a, b)
            # floor and trunc differ by one where the quotient is negative and inexact
            return q + ((q < 0) & (q * b != a)).astype(q.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.trunc(a / b)


def _any_zero(b):
    return bool(np.any(np.asarray(b) == 0))


class Remainder(Node):
    saves = (0, 1)
    saves_for = {1: (0, 1)}

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        if type(a) in _ARRAYS and a.dtype.kind in "iu" and _any_zero(b):
            raise RuntimeError("ZeroDivisionError")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.remainder(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        gb = None
        if ctx.needs_input_grad[1]:
            gb = -g * div(a, b, rounding_mode="floor")
        return g, gb


class Fmod(Node):
    saves = (0, 1)
    saves_for = {1: (0, 1)}

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        if type(a) in _ARRAYS and a.dtype.kind in "iu" and _any_zero(b):
            raise RuntimeError("ZeroDivisionError")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.fmod(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        gb = None
        if ctx.needs_input_grad[1]:
            gb = -g * div(a, b, rounding_mode="trunc")
        return g, gb


class Pow(Node):
    saves = (0, 1)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        if type(a) in _ARRAYS and type(b) not in _ARRAYS:
            # tensor ** scalar: the scalar is weak
            if a.dtype.kind in "iu" and isinstance(b, (int, np.integer)) and b < 0:
                raise RuntimeError("Integers to negative integer powers are not allowed.")
            a, b = promote(a, b)
            if b == 2:
                return a * a
            if b == 0.5 and a.dtype.kind == "f":
                with np.errstate(invalid="ignore"):
                    return np.sqrt(a)
        else:
            if type(b) is _ndarray:  # PyTorch's node names for tensor and scalar bases
                ctx._node_name = "PowBackward1" if type(a) is _ndarray else "PowBackward2"
            a, b = promote(a, b)
            if type(a) in _ARRAYS and a.dtype.kind in "iu" and type(b) in _ARRAYS and \
                    (b < 0).any():
                raise RuntimeError("Integers to negative integer powers are not allowed.")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.power(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            # complex inputs take the conjugate derivative (PyTorch's convention)
            if isinstance(b, Tensor):
                ga = g * _conj(b * where(b == 0, 0.0, pow(a, b - 1)))
            elif b == 0:
                ga = g * 0.0
            else:
                ga = g * _conj(b * pow(a, b - 1))
        if nb:
            if isinstance(a, Tensor):
                # d/db a**b = a**b * log(a); PyTorch masks the a == 0, b >= 0 case to 0
                d = out * log(a)
                if a._data.dtype.kind != "c":
                    d = where((a == 0) & (b >= 0), 0.0, d)
                gb = g * _conj(d)
            elif a > 0:
                gb = g * _conj(out * math.log(a))
            else:
                gb = _pow_grad_nonpos_base(g, a, b, out)
        return ga, gb


def _pow_grad_nonpos_base(g, a, b, out):
    """d/db a**b for a python scalar base ``a <= 0``: PyTorch zeroes it where a == 0, b >= 0."""
    if a == 0:
        return where(b >= 0, 0.0, g * out * -math.inf)
    return g * out * math.nan


def _conj(t):
    """Conjugate of a Tensor, array or Python scalar; the value itself unless complex."""
    if isinstance(t, Tensor):
        return t.conj() if t._data.dtype.kind == "c" else t
    if type(t) in _ARRAYS:
        return np.conj(t) if t.dtype.kind == "c" else t
    return t.conjugate() if isinstance(t, complex) else t


class Neg(Node):
    @staticmethod
    def forward(ctx, a):
        if a.dtype == np.bool_:
            raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                               "If you are trying to invert a mask, use the `~` or "
                               "`logical_not()` operator instead.")
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g

    jvp = staticmethod(_fad.linear_jvp)

    array_backward = backward


class Abs(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        if a.dtype == np.bool_:
            return a.copy()
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        if a._data.dtype.kind == "c":
            return g * sgn(a)
        return g * sign(a)


def _sign_np(a):
    if a.dtype.kind == "f":
        return np.subtract(a > 0, a < 0, dtype=a.dtype)  # NaN gives 0, as in PyTorch
    return np.sign(a)


class Sign(Node):
    @staticmethod
    def forward(ctx, a):
        if a.dtype == np.bool_:
            return a.copy()
        return _sign_np(a)

    @staticmethod
    def backward(ctx, g):
        return g * 0  # zero almost everywhere, as PyTorch's


class Sgn(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        ctx.complex = a.dtype.kind == "c"
        if ctx.complex:
            m = np.abs(a)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(m == 0, 0, a / np.where(m == 0, 1, m)).astype(a.dtype)
        return a.copy() if a.dtype == np.bool_ else _sign_np(a)  # bool: itself, as sign does

    @staticmethod
    def backward(ctx, g):
        if not ctx.complex:
            return g * 0
        z, s = ctx.saved_tensors
        # z/|z| only turns: the gradient drops g's component along s, divided by |z| (0 at 0)
        m = abs(z)
        return where(m == 0, 0j, (g - s * real(g * s.conj())) / m)


# ====================================================================== unary math
def _unary(name, fwd, bwd=None, saves_input=False, saves_out=False, doc=None, arrays=False):
    """Make an op class from a forward on arrays and a backward on (ctx, g, x, y) Tensors.

    ``arrays=True``: ``bwd`` uses only operators and ``_cg``, so it also runs on arrays
    (the engine's array mode)."""

    def forward(ctx, a):
        a = to_float(a)
        with np.errstate(all="ignore"):
            if ufunc is not None and type(a) is _ndarray and a.size >= _PAR_MIN:
                return _par.elementwise(ufunc, a)  # large: every core
            return fwd(a)

    def backward(ctx, g):
        saved = ctx.saved_tensors
        x = saved[0] if saves_input else None
        y = saved[-1] if saves_out else None
        return bwd(g, x, y)

    def array_backward(ctx, g):
        saved = ctx.saved_arrays
        x = saved[0] if saves_input else None
        y = saved[-1] if saves_out else None
        with np.errstate(all="ignore"):
            return bwd(g, x, y)

    def jvp(ctx, t):
        # backward is g times the conjugate derivative, so for real dtypes jvp(t) = bwd(t);
        # for complex (holomorphic) ones jvp(t) = f'(x) t = conj(bwd(conj(t)))
        x, y = ctx.inputs[0], ctx.output
        if t._data.dtype.kind == "c":
            return bwd(t.conj(), x, y).conj()
        return bwd(t, x, y)

    ufunc = fwd if isinstance(fwd, np.ufunc) else None
    attrs = {"forward": staticmethod(forward), "saves": (0,) if saves_input else (),
             "saves_output": saves_out, "__doc__": doc,
             "ufunc": fwd if isinstance(fwd, np.ufunc) else None}
    if bwd is None:
        attrs["differentiable"] = False
    else:
        attrs["backward"] = staticmethod(backward)
        attrs["jvp"] = staticmethod(jvp)
        if arrays:
            attrs["array_backward"] = staticmethod(array_backward)
    return type(name, (Node,), attrs)


def _cg(g, t):
    """Gradient through a holomorphic function: multiply by the conjugate derivative."""
    return _conj(t)


Exp = _unary("Exp", np.exp, lambda g, x, y: g * _cg(g, y), saves_out=True, arrays=True)
Exp2 = _unary("Exp2", np.exp2, lambda g, x, y: g * _cg(g, y) * math.log(2.0),
              saves_out=True, arrays=True)
Expm1 = _unary("Expm1", np.expm1, lambda g, x, y: g * (_cg(g, y) + 1), saves_out=True, arrays=True)
Log = _unary("Log", np.log, lambda g, x, y: g / _cg(g, x), saves_input=True, arrays=True)
Log2 = _unary("Log2", np.log2, lambda g, x, y: g / (_cg(g, x) * math.log(2.0)),
              saves_input=True, arrays=True)
Log10 = _unary("Log10", np.log10, lambda g, x, y: g / (_cg(g, x) * math.log(10.0)),
               saves_input=True, arrays=True)
Log1p = _unary("Log1p", np.log1p, lambda g, x, y: g / (_cg(g, x) + 1),
               saves_input=True, arrays=True)
Sqrt = _unary("Sqrt", np.sqrt, lambda g, x, y: g / (2 * _cg(g, y)), saves_out=True, arrays=True)
Rsqrt = _unary("Rsqrt", lambda a: 1 / np.sqrt(a),
               lambda g, x, y: -0.5 * g * _cg(g, y) ** 3, saves_out=True, arrays=True)
Reciprocal = _unary("Reciprocal", lambda a: 1 / a, lambda g, x, y: -g * _cg(g, y * y),
                    saves_out=True, arrays=True)
Sin = _unary("Sin", np.sin, lambda g, x, y: g * _cg(g, cos(x)), saves_input=True)
Cos = _unary("Cos", np.cos, lambda g, x, y: -g * _cg(g, sin(x)), saves_input=True)
Tan = _unary("Tan", np.tan, lambda g, x, y: g * _cg(g, 1 + y * y), saves_out=True, arrays=True)
Asin = _unary("Asin", np.arcsin, lambda g, x, y: g * _cg(g, rsqrt(1 - x * x)), saves_input=True)
Acos = _unary("Acos", np.arccos, lambda g, x, y: -g * _cg(g, rsqrt(1 - x * x)), saves_input=True)
Atan = _unary("Atan", np.arctan, lambda g, x, y: g / _cg(g, 1 + x * x),
              saves_input=True, arrays=True)
Sinh = _unary("Sinh", np.sinh, lambda g, x, y: g * _cg(g, cosh(x)), saves_input=True)
Cosh = _unary("Cosh", np.cosh, lambda g, x, y: g * _cg(g, sinh(x)), saves_input=True)
Tanh = _unary("Tanh", np.tanh, lambda g, x, y: g * _cg(g, 1 - y * y), saves_out=True, arrays=True)
Asinh = _unary("Asinh", np.arcsinh, lambda g, x, y: g * _cg(g, rsqrt(x * x + 1)),
               saves_input=True)
Acosh = _unary("Acosh", np.arccosh, lambda g, x, y: g * _cg(g, rsqrt(x * x - 1)),
               saves_input=True)
Atanh = _unary("Atanh", np.arctanh, lambda g, x, y: g / _cg(g, 1 - x * x),
               saves_input=True, arrays=True)


def _sigmoid_fast(a):
    if a.dtype.kind == "c":
        return 1 / (1 + np.exp(-a))
    with np.errstate(over="ignore"):
        return (0.5 * np.tanh(0.5 * a) + 0.5).astype(a.dtype, copy=False)


Sigmoid = _unary("Sigmoid", _sigmoid_fast, lambda g, x, y: g * _cg(g, y * (1 - y)),
                 saves_out=True, arrays=True)


def _erf_np(a):
    from ._special import erf as _erf
    return _erf(a)


def _erfinv_np(a):
    from ._special import erfinv as _erfinv
    return _erfinv(a)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
Erf = _unary("Erf", _erf_np, lambda g, x, y: g * _TWO_OVER_SQRT_PI * exp(-x * x),
             saves_input=True)
Erfc = _unary("Erfc", lambda a: 1 - _erf_np(a) if a.dtype.kind == "f" else a,
              lambda g, x, y: -g * _TWO_OVER_SQRT_PI * exp(-x * x), saves_input=True)
Erfinv = _unary("Erfinv", _erfinv_np,
                lambda g, x, y: g * (0.5 * math.sqrt(math.pi)) * exp(y * y), saves_out=True)


class Logit(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a, eps=None):
        a = to_float(a)
        ctx.eps = eps
        if eps is not None:
            a = np.clip(a, eps, 1 - eps)
        with np.errstate(all="ignore"):
            return np.log(a / (1 - a))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        eps = ctx.eps
        gx = g / (x * (1 - x))
        if eps is not None:
            gx = where((x < eps) | (x > 1 - eps), 0.0, gx)
        return gx, None


# ReLU over this many elements (a convolution's output) runs in blocks over every core: a
# max or a masked select over 256K floats is ~0.1 ms of one core's memory traffic.
_RELU_SPLIT = 1 << 18
_RELU_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_RELU_F32, _RELU_F64 = _RELU_DTYPES
_maximum = np.maximum
_relu_c: dict = {}  # dtype -> (relu, relu_bwd) C kernels (``_nn_c``), or None


def _relu_kernels(dt):
    k = _relu_c.get(dt, False)
    if k is False:
        from . import _nn_c
        k = _relu_c[dt] = _nn_c.relu_kernels(dt)
    return k


def _relu_run(fn, arrays, out, size):
    """A ReLU C kernel over ``size`` contiguous elements: ``fn(*addresses, i0, i1, out)``;
    blocks of rows over every core from ``_RELU_SPLIT`` elements."""
    addr = [a.__array_interface__["data"][0] for a in arrays]
    dst = out.__array_interface__["data"][0]
    if size < _RELU_SPLIT:
        fn(*addr, 0, size, dst)
    else:
        _par.run_rows(lambda s, e: fn(*addr, s, e, dst), size, 1, _RELU_SPLIT)


class Relu(Node):
    """ReLU. Float32/float64 C-contiguous arrays of ``_RELU_C_MIN`` elements or more take
    C kernels (``_nn_c``: NumPy's maximum against a scalar runs ~2 elements/ns, 31 -> 4 us
    for 128 x 512 float32); the backward passes the gradient where the output is not <= 0,
    PyTorch's threshold_backward."""

    saves_output = True

    @staticmethod
    def forward(ctx, a):
        dt = a.dtype
        if (dt is _RELU_F32 or dt is _RELU_F64) and type(a) is np.ndarray:
            if a.size >= _RELU_C_MIN and a.flags.c_contiguous:
                k = _relu_kernels(dt)
                if k is not None:
                    out = np.empty(a.shape, dt)
                    _relu_run(k[0], (a,), out, a.size)
                    return out
            if a.size < _RELU_SPLIT:
                return _maximum(a, 0)  # the usual case: the same loop as below, no keyword
        if dt == np.bool_:
            raise RuntimeError('"clamp_min_cpu" not implemented for \'Bool\'')
        if a.size >= _RELU_SPLIT and type(a) is np.ndarray and a.dtype in _RELU_DTYPES \
                and a.flags.c_contiguous:
            out = np.empty(a.shape, a.dtype)
            src, dst = a.reshape(-1), out.reshape(-1)
            _par.run_rows(lambda s, e: np.maximum(src[s:e], 0, out=dst[s:e]), a.size, 1,
                          _RELU_SPLIT)
            return out
        return np.maximum(a, 0, dtype=a.dtype)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return where(y <= 0, 0.0, g)

    @staticmethod
    def jvp(ctx, t):
        return t * (ctx.output > 0)

    @staticmethod
    def array_backward(ctx, g):
        (y,) = ctx.saved_arrays
        dt = y.dtype
        if y.size >= _RELU_C_MIN and type(g) is np.ndarray and type(y) is np.ndarray and \
                g.shape == y.shape and g.dtype is dt and (dt is _RELU_F32 or dt is _RELU_F64) \
                and g.flags.c_contiguous and y.flags.c_contiguous:
            k = _relu_kernels(dt)
            if k is not None:
                out = np.empty(y.shape, dt)
                _relu_run(k[1], (g, y), out, y.size)
                return out
        if y.size >= _RELU_SPLIT and type(g) is np.ndarray and g.shape == y.shape and \
                g.dtype == y.dtype and y.dtype in _RELU_DTYPES and g.flags.c_contiguous and \
                y.flags.c_contiguous:
            # cache-sized blocks over every core: the mask never goes to memory
            out = np.empty(y.shape, y.dtype)
            gf, yf, of = g.reshape(-1), y.reshape(-1), out.reshape(-1)
            _par.run_rows(lambda s, e: np.copyto(of[s:e], gf[s:e]) or
                          np.copyto(of[s:e], 0, where=yf[s:e] <= 0), y.size, 1, _RELU_SPLIT)
            return out
        return np.where(y <= 0, np.zeros((), g.dtype), g)


_RELU_C_MIN = 1 << 12  # elements from which ReLU takes the C kernels: below, a ctypes call
# costs about what NumPy's loop does


class Square(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        if a.dtype == np.bool_:
            a = a.astype(np.int64)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (2 * _conj(x))

    @staticmethod
    def array_backward(ctx, g):
        (x,) = ctx.saved_arrays
        return g * (2 * _conj(x))


# --------------------------------------------------------------- rounding (zero gradient)
class _Rounding(Node):
    @staticmethod
    def backward(ctx, g):
        return g * 0


def _rounding(name, fn):
    def forward(ctx, a, *args):
        if a.dtype.kind in "biu":
            return a.copy()
        return fn(a, *args)
    return type(name, (_Rounding,), {"forward": staticmethod(forward)})


Floor = _rounding("Floor", np.floor)
Ceil = _rounding("Ceil", np.ceil)
Trunc = _rounding("Trunc", np.trunc)


class Round(_Rounding):
    @staticmethod
    def forward(ctx, a, decimals=0):
        if a.dtype.kind in "biu":
            if decimals != 0:
                raise NotImplementedError(
                    f'"round_cpu" not implemented for \'{_pt_name(D._BY_NP[a.dtype])}\'')
            return a.copy()
        if decimals == 0:
            return np.round(a)
        s = 10.0 ** decimals
        with np.errstate(all="ignore"):
            return (np.round(a * s) / s).astype(a.dtype)

    @staticmethod
    def backward(ctx, g):
        return g * 0, None


class Frac(Node):
    @staticmethod
    def forward(ctx, a):
        return a - np.trunc(a)

    @staticmethod
    def backward(ctx, g):
        return g


# --------------------------------------------------------------- clamp, min/max, where
class Clamp(Node):
    saves = (0, 1, 2)

    @staticmethod
    def forward(ctx, a, lo, hi):
        if lo is None and hi is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        rt = result_dtype(*(x for x in (a, lo, hi) if x is not None)).np
        a = a.astype(rt, copy=False)
        out = a
        # a Python bound is cast to the result dtype first: NumPy cannot cast a float into
        # ml_dtypes' bfloat16/float8 loops by itself
        if lo is not None:
            out = np.maximum(out, lo if type(lo) in _ARRAYS else np.asarray(lo, rt), dtype=rt) \
                if type(lo) in _ARRAYS or not np.isnan(lo) else np.full_like(out, np.nan)
        if hi is not None:
            out = np.minimum(out, hi if type(hi) in _ARRAYS else np.asarray(hi, rt), dtype=rt) \
                if type(hi) in _ARRAYS or not np.isnan(hi) else np.full_like(out, np.nan)
        if out is a:
            out = a.copy()
        # NaN in the input propagates
        return out

    @staticmethod
    def backward(ctx, g):
        x, lo, hi = ctx.saved_tensors
        n0, n1, n2 = ctx.needs_input_grad
        mask = None
        if lo is not None:
            mask = x >= lo
        if hi is not None:
            m2 = x <= hi
            mask = m2 if mask is None else mask & m2
        gx = where(mask, g, 0.0) if n0 else None
        # where min > max the output is max, so max takes the gradient (PyTorch's rule)
        crossed = (hi < lo) if lo is not None and hi is not None else None
        glo = ghi = None
        if n1:
            glo = where(x < lo, g, 0.0)
            if crossed is not None:
                glo = where(crossed, 0.0, glo)
        if n2:
            ghi = where(x > hi, g, 0.0)
            if crossed is not None:
                ghi = where(crossed, g, ghi)
        return gx, glo, ghi


class Maximum(Node):
    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _max_min_grads(g, *ctx.saved_tensors, ctx.needs_input_grad)


class Minimum(Node):
    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _max_min_grads(g, *ctx.saved_tensors, ctx.needs_input_grad, largest=False)


def _max_min_grads(g, a, b, needs, largest=True):
    """Gradients of maximum/minimum: ties split evenly; a NaN sends the gradient to both."""
    half = where(a == b, g * 0.5, g)
    a_loses, b_loses = (a < b, a > b) if largest else (a > b, a < b)
    ga = where(a_loses, 0.0, half) if needs[0] else None
    gb = where(b_loses, 0.0, half) if needs[1] else None
    return ga, gb


class Where(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, cond, a, b):
        if cond.dtype != np.bool_:
            if cond.dtype == np.uint8:
                cond = cond.astype(bool)
            else:
                raise RuntimeError(f"where expected condition to be a boolean tensor, but got a "
                                   f"tensor with dtype {D._BY_NP[cond.dtype].name.capitalize()}")
        a, b = promote(a, b)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (c,) = ctx.saved_tensors
        _, na, nb = ctx.needs_input_grad
        z = zeros_scalar_like(g)
        return None, where(c, g, z) if na else None, where(c, z, g) if nb else None

    @staticmethod
    def jvp(ctx, tc, ta, tb):
        cond, a, b = ctx.inputs
        from .creation import zeros_like
        if ta is None:
            ta = zeros_like(ctx.output)
        if tb is None:
            tb = zeros_like(ctx.output)
        return Where.apply(cond, ta, tb)


def zeros_scalar_like(g):
    return 0.0 if g._data.dtype.kind != "c" else 0j


class Lerp(Node):
    saves = (0, 1, 2)

    @staticmethod
    def forward(ctx, a, b, w):
        if type(w) in _ARRAYS:
            return a + w * (b - a)
        return (a + w * (b - a)).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        a, b, w = ctx.saved_tensors
        na, nb, nw = ctx.needs_input_grad
        return (g * _conj(1 - w) if na else None, g * _conj(w) if nb else None,
                g * _conj(b - a) if nw else None)


class Addcmul(Node):
    saves = (1, 2)

    @staticmethod
    def forward(ctx, a, t1, t2, value=1):
        ctx.value = value
        r = t1 * t2
        if value != 1:
            r = r * value
        a, r = promote(a, r)
        return a + r

    @staticmethod
    def backward(ctx, g):
        t1, t2 = ctx.saved_tensors
        v = ctx.value
        _, n1, n2 = ctx.needs_input_grad
        return g, g * _conj(t2 * v) if n1 else None, g * _conj(t1 * v) if n2 else None


class Addcdiv(Node):
    saves = (1, 2)

    @staticmethod
    def forward(ctx, a, t1, t2, value=1):
        if t1.dtype.kind in "biu" and t2.dtype.kind in "biu":
            raise RuntimeError("Integer division with addcdiv is no longer supported, and in a "
                               "future release addcdiv will perform a true division of tensor1 "
                               "and tensor2. The historic addcdiv behavior can be implemented as "
                               "(input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) "
                               "for integer inputs and as (input + value * tensor1 / tensor2) for "
                               "float inputs. The future addcdiv behavior is just the latter "
                               "implementation: (input + value * tensor1 / tensor2), for all "
                               "dtypes.")
        ctx.value = value
        r = t1 / t2
        if value != 1:
            r = r * value
        a, r = promote(a, r)
        return a + r

    @staticmethod
    def backward(ctx, g):
        t1, t2 = ctx.saved_tensors
        v = ctx.value
        _, n1, n2 = ctx.needs_input_grad
        return (g, g * _conj(v / t2) if n1 else None,
                -g * _conj(v * t1 / (t2 * t2)) if n2 else None)


class Atan2(Node):
    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(to_float(a), to_float(b) if type(b) in _ARRAYS else b)
        return np.arctan2(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        d = a * a + b * b
        return g * b / d, -g * a / d


class Hypot(Node):
    saves = (0, 1)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        return np.hypot(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        return g * a / out, g * b / out


class Logaddexp(Node):
    saves = (0, 1)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        return np.logaddexp(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        return g * exp(a - out), g * exp(b - out)


class Logaddexp2(Node):
    saves = (0, 1)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        return np.logaddexp2(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        return g * exp2(a - out), g * exp2(b - out)


class NanToNum(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a, nan=0.0, posinf=None, neginf=None):
        if a.dtype.kind in "biu":
            return a.copy()
        return np.nan_to_num(a, nan=nan, posinf=posinf, neginf=neginf)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return where(isfinite(x), g, 0.0), None, None, None


class Conj(Node):
    @staticmethod
    def forward(ctx, a):
        return np.conj(a) if a.dtype.kind == "c" else a

    @staticmethod
    def backward(ctx, g):
        return g.conj()

    jvp = staticmethod(_fad.linear_jvp)


class Real(Node):
    view = "maybe"

    @staticmethod
    def forward(ctx, a):
        return a.real

    @staticmethod
    def backward(ctx, g):
        return g


class Imag(Node):
    view = True

    @staticmethod
    def forward(ctx, a):
        if a.dtype.kind != "c":
            raise RuntimeError("imag is not implemented for tensors with non-complex dtypes.")
        return a.imag

    @staticmethod
    def backward(ctx, g):
        return g * 1j


# --------------------------------------------------------------- comparisons, logic, bits
def _nondiff(name, fn, promote_args=False):
    def forward(ctx, *args):
        return fn(*args)
    return type(name, (Node,), {"forward": staticmethod(forward), "differentiable": False})


Eq = _nondiff("Eq", np.equal)
Ne = _nondiff("Ne", np.not_equal)
Lt = _nondiff("Lt", np.less)
Le = _nondiff("Le", np.less_equal)
Gt = _nondiff("Gt", np.greater)
Ge = _nondiff("Ge", np.greater_equal)
Isnan = _nondiff("Isnan", np.isnan)
Isinf = _nondiff("Isinf", np.isinf)
Isfinite = _nondiff("Isfinite", np.isfinite)
Isposinf = _nondiff("Isposinf", np.isposinf)
Isneginf = _nondiff("Isneginf", np.isneginf)
LogicalAnd = _nondiff("LogicalAnd", np.logical_and)
LogicalOr = _nondiff("LogicalOr", np.logical_or)
LogicalXor = _nondiff("LogicalXor", np.logical_xor)
LogicalNot = _nondiff("LogicalNot", np.logical_not)


def _bitwise(name, fn):
    def forward(ctx, a, b=None):
        for x in (a, b):
            if type(x) in _ARRAYS and x.dtype.kind in "fc" or isinstance(x, float):
                raise NotImplementedError(f'"{name}_cpu" not implemented for '
                                          f"'{'Float' if type(x) not in _ARRAYS else x.dtype}'")
        if b is None:
            return fn(a)
        a, b = promote(a, b)
        return fn(a, b)
    return type(name, (Node,), {"forward": staticmethod(forward), "differentiable": False})


BitwiseAnd = _bitwise("bitwise_and", np.bitwise_and)
BitwiseOr = _bitwise("bitwise_or", np.bitwise_or)
BitwiseXor = _bitwise("bitwise_xor", np.bitwise_xor)
BitwiseNot = _bitwise("bitwise_not", np.invert)
BitwiseLeftShift = _bitwise("bitwise_left_shift", np.left_shift)
BitwiseRightShift = _bitwise("bitwise_right_shift", np.right_shift)


class Isclose(Node):
    differentiable = False

    @staticmethod
    def forward(ctx, a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
        if type(b) in _ARRAYS and a.dtype != b.dtype:
            raise RuntimeError(f"{D._BY_NP[a.dtype]} did not match {D._BY_NP[b.dtype]}")
        return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


# ====================================================================== public functions
def _binary(cls, name):
    def fn(input, other, *, out=None):
        if not isinstance(input, Tensor) and not isinstance(other, Tensor):
            raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not "
                            f"{type(input).__name__}")
        try:
            return _out(cls.apply(input, other), out)
        except ValueError as e:
            if "broadcast" not in str(e):
                raise
            raise _shape_error(*(x._data for x in (input, other) if isinstance(x, Tensor))) \
                from None
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` with broadcasting and PyTorch's type promotion."
    return fn


def add(input, other, *, alpha=1, out=None):
    """``input + alpha * other`` with broadcasting and PyTorch's type promotion."""
    if alpha != 1:
        other = other * alpha
    return _out(Add.apply(input, other), out)


def sub(input, other, *, alpha=1, out=None):
    """``input - alpha * other``."""
    if alpha != 1:
        other = other * alpha
    return _out(Sub.apply(input, other), out)


subtract = sub
mul = _binary(Mul, "mul")
multiply = mul


def div(input, other, *, rounding_mode=None, out=None):
    """True division, or ``rounding_mode='trunc'``/``'floor'`` (those have no gradient)."""
    if rounding_mode is None:
        r = Div.apply(input, other)
    elif rounding_mode == "trunc":
        r = TruncDivide.apply(input, other)
    elif rounding_mode == "floor":
        r = FloorDivide.apply(input, other)
    else:
        raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                           f"but found '{rounding_mode}'")
    return _out(r, out)


divide = div
true_divide = _binary(Div, "true_divide")
floor_divide = _binary(FloorDivideOp, "floor_divide")
remainder = _binary(Remainder, "remainder")
fmod = _binary(Fmod, "fmod")
atan2 = _binary(Atan2, "atan2")
arctan2 = atan2
hypot = _binary(Hypot, "hypot")
logaddexp = _binary(Logaddexp, "logaddexp")
logaddexp2 = _binary(Logaddexp2, "logaddexp2")
maximum = _binary(Maximum, "maximum")
minimum = _binary(Minimum, "minimum")


def pow(input, exponent, *, out=None):
    """``input ** exponent``; either side may be a python scalar."""
    return _out(Pow.apply(input, exponent), out)


def _unary_fn(cls, name):
    ufunc = cls.__dict__.get("ufunc")
    if ufunc is not None:  # may reuse a temporary input's array (autograd.elision)
        def fn(input, *, out=None):
            if out is None and type(input) is Tensor and input._data.size >= _ELIDE_MIN:
                r = _elide_unary(input, ufunc, "unary")
                if r is not None:
                    return r
            if out is None:
                return apply_unary(cls, input)
            return _out(cls.apply(input), out)
    else:
        def fn(input, *, out=None):
            if out is None:
                return apply_unary(cls, input)
            return _out(cls.apply(input), out)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}``."
    return fn


neg = _unary_fn(Neg, "neg")
negative = neg
abs = _unary_fn(Abs, "abs")
absolute = abs
sign = _unary_fn(Sign, "sign")
sgn = _unary_fn(Sgn, "sgn")
exp = _unary_fn(Exp, "exp")
exp2 = _unary_fn(Exp2, "exp2")
expm1 = _unary_fn(Expm1, "expm1")
log = _unary_fn(Log, "log")
log2 = _unary_fn(Log2, "log2")
log10 = _unary_fn(Log10, "log10")
log1p = _unary_fn(Log1p, "log1p")
sqrt = _unary_fn(Sqrt, "sqrt")
rsqrt = _unary_fn(Rsqrt, "rsqrt")
square = _unary_fn(Square, "square")
reciprocal = _unary_fn(Reciprocal, "reciprocal")
sin = _unary_fn(Sin, "sin")
cos = _unary_fn(Cos, "cos")
tan = _unary_fn(Tan, "tan")
asin = arcsin = _unary_fn(Asin, "asin")
acos = arccos = _unary_fn(Acos, "acos")
atan = arctan = _unary_fn(Atan, "atan")
sinh = _unary_fn(Sinh, "sinh")
cosh = _unary_fn(Cosh, "cosh")
tanh = _unary_fn(Tanh, "tanh")
asinh = arcsinh = _unary_fn(Asinh, "asinh")
acosh = arccosh = _unary_fn(Acosh, "acosh")
atanh = arctanh = _unary_fn(Atanh, "atanh")
sigmoid = _unary_fn(Sigmoid, "sigmoid")
erf = _unary_fn(Erf, "erf")
erfc = _unary_fn(Erfc, "erfc")
erfinv = _unary_fn(Erfinv, "erfinv")
relu = _unary_fn(Relu, "relu")
floor = _unary_fn(Floor, "floor")
ceil = _unary_fn(Ceil, "ceil")
trunc = fix = _unary_fn(Trunc, "trunc")
frac = _unary_fn(Frac, "frac")
conj = _unary_fn(Conj, "conj")
real = _unary_fn(Real, "real")
imag = _unary_fn(Imag, "imag")
isnan = _unary_fn(Isnan, "isnan")
isinf = _unary_fn(Isinf, "isinf")
isfinite = _unary_fn(Isfinite, "isfinite")
isposinf = _unary_fn(Isposinf, "isposinf")
isneginf = _unary_fn(Isneginf, "isneginf")
logical_not = _unary_fn(LogicalNot, "logical_not")
bitwise_not = _unary_fn(BitwiseNot, "bitwise_not")


def positive(input):
    if input.dtype is D.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return input


def isreal(input):
    if input._data.dtype.kind != "c":
        return ones_like_bool(input)
    return eq(imag(input), 0)


def ones_like_bool(input):
    from .._tensor import _make
    return _make(np.ones(input._data.shape, dtype=bool, like=input._data))


def round(input, *, decimals=0, out=None):
    return _out(Round.apply(input, decimals), out)


def logit(input, eps=None, *, out=None):
    return _out(Logit.apply(input, eps), out)


def _scalar_or_tensor(x):
    if isinstance(x, Tensor) or x is None:
        return x
    if isinstance(x, (int, float, bool, np.number)):
        return x
    raise TypeError(f"clamp(): min/max must be a Number or Tensor, got {type(x).__name__}")


def clamp(input, min=None, max=None, *, out=None):
    """Clamp into ``[min, max]`` (scalars or broadcastable tensors)."""
    return _out(Clamp.apply(input, _scalar_or_tensor(min), _scalar_or_tensor(max)), out)


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


def where(condition, input=None, other=None, *, out=None):
    """``input`` where ``condition``, else ``other``; ``where(cond)`` is ``nonzero(as_tuple)``."""
    if input is None and other is None:
        from .indexing import nonzero
        return nonzero(condition, as_tuple=True)
    if not isinstance(condition, Tensor):
        raise TypeError("where(): argument 'condition' must be Tensor")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        # two scalars: result dtype from the scalars (weak) as PyTorch does
        dt = result_dtype(input, other)
        from .._tensor import _make
        input = _make(np.asarray(input, dtype=dt.np))
    return _out(Where.apply(condition, input, other), out)


def lerp(input, end, weight, *, out=None):
    return _out(Lerp.apply(input, end, weight), out)


def addcmul(input, tensor1, tensor2, *, value=1, out=None):
    return _out(Addcmul.apply(input, tensor1, tensor2, value=value), out)


def addcdiv(input, tensor1, tensor2, *, value=1, out=None):
    return _out(Addcdiv.apply(input, tensor1, tensor2, value=value), out)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    return _out(NanToNum.apply(input, nan, posinf, neginf), out)


eq = _binary(Eq, "eq")
ne = not_equal = _binary(Ne, "ne")
lt = less = _binary(Lt, "lt")
le = less_equal = _binary(Le, "le")
gt = greater = _binary(Gt, "gt")
ge = greater_equal = _binary(Ge, "ge")
logical_and = _binary(LogicalAnd, "logical_and")
logical_or = _binary(LogicalOr, "logical_or")
logical_xor = _binary(LogicalXor, "logical_xor")
bitwise_and = _binary(BitwiseAnd, "bitwise_and")
bitwise_or = _binary(BitwiseOr, "bitwise_or")
bitwise_xor = _binary(BitwiseXor, "bitwise_xor")
bitwise_left_shift = _binary(BitwiseLeftShift, "bitwise_left_shift")
bitwise_right_shift = _binary(BitwiseRightShift, "bitwise_right_shift")


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return Isclose.apply(input, other, rtol, atol, equal_nan)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return builtins.bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def equal(input, other):
    """True when both tensors have the same shape and elements."""
    a, b = input._data, other._data
    return a.shape == b.shape and builtins.bool((a == b).all())


# in-place variants: ``name_`` dispatches the same op through ``apply_inplace``
def _inplace(cls, name, preprocess=None):
    def fn(self, *args, **kwargs):
        if preprocess is not None:
            args, kwargs = preprocess(*args, **kwargs)
        return apply_inplace(cls, self, *args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    return fn


def _alpha(other, alpha=1):
    return ((other * alpha if alpha != 1 else other),), {}


def _clamp_args(min=None, max=None):
    return (_scalar_or_tensor(min), _scalar_or_tensor(max)), {}


INPLACE = {
    "add_": _inplace(Add, "add_", _alpha), "sub_": _inplace(Sub, "sub_", _alpha),
    "mul_": _inplace(Mul, "mul_"), "true_divide_": _inplace(Div, "true_divide_"),
    "floor_divide_": _inplace(FloorDivideOp, "floor_divide_"),
    "remainder_": _inplace(Remainder, "remainder_"), "fmod_": _inplace(Fmod, "fmod_"),
    "pow_": _inplace(Pow, "pow_"), "neg_": _inplace(Neg, "neg_"), "abs_": _inplace(Abs, "abs_"),
    "sign_": _inplace(Sign, "sign_"), "exp_": _inplace(Exp, "exp_"),
    "exp2_": _inplace(Exp2, "exp2_"), "expm1_": _inplace(Expm1, "expm1_"),
    "log_": _inplace(Log, "log_"), "log2_": _inplace(Log2, "log2_"),
    "log10_": _inplace(Log10, "log10_"), "log1p_": _inplace(Log1p, "log1p_"),
    "sqrt_": _inplace(Sqrt, "sqrt_"), "rsqrt_": _inplace(Rsqrt, "rsqrt_"),
    "square_": _inplace(Square, "square_"), "reciprocal_": _inplace(Reciprocal, "reciprocal_"),
    "sin_": _inplace(Sin, "sin_"), "cos_": _inplace(Cos, "cos_"), "tan_": _inplace(Tan, "tan_"),
    "asin_": _inplace(Asin, "asin_"), "acos_": _inplace(Acos, "acos_"),
    "atan_": _inplace(Atan, "atan_"), "sinh_": _inplace(Sinh, "sinh_"),
    "cosh_": _inplace(Cosh, "cosh_"), "tanh_": _inplace(Tanh, "tanh_"),
    "asinh_": _inplace(Asinh, "asinh_"), "acosh_": _inplace(Acosh, "acosh_"),
    "atanh_": _inplace(Atanh, "atanh_"), "sigmoid_": _inplace(Sigmoid, "sigmoid_"),
    "erf_": _inplace(Erf, "erf_"), "erfc_": _inplace(Erfc, "erfc_"),
    "erfinv_": _inplace(Erfinv, "erfinv_"), "relu_": _inplace(Relu, "relu_"),
    "floor_": _inplace(Floor, "floor_"), "ceil_": _inplace(Ceil, "ceil_"),
    "trunc_": _inplace(Trunc, "trunc_"), "frac_": _inplace(Frac, "frac_"),
    "round_": _inplace(Round, "round_"),
    "clamp_": _inplace(Clamp, "clamp_", _clamp_args), "atan2_": _inplace(Atan2, "atan2_"),
    "lerp_": _inplace(Lerp, "lerp_"), "hypot_": _inplace(Hypot, "hypot_"),
    "addcmul_": _inplace(Addcmul, "addcmul_"), "addcdiv_": _inplace(Addcdiv, "addcdiv_"),
    "nan_to_num_": _inplace(NanToNum, "nan_to_num_"), "logit_": _inplace(Logit, "logit_"),
    "eq_": _inplace(Eq, "eq_"), "ne_": _inplace(Ne, "ne_"), "lt_": _inplace(Lt, "lt_"),
    "le_": _inplace(Le, "le_"), "gt_": _inplace(Gt, "gt_"), "ge_": _inplace(Ge, "ge_"),
    "logical_and_": _inplace(LogicalAnd, "logical_and_"),
    "logical_or_": _inplace(LogicalOr, "logical_or_"),
    "logical_xor_": _inplace(LogicalXor, "logical_xor_"),
    "logical_not_": _inplace(LogicalNot, "logical_not_"),
    "bitwise_and_": _inplace(BitwiseAnd, "bitwise_and_"),
    "bitwise_or_": _inplace(BitwiseOr, "bitwise_or_"),
    "bitwise_xor_": _inplace(BitwiseXor, "bitwise_xor_"),
    "bitwise_not_": _inplace(BitwiseNot, "bitwise_not_"),
    "maximum_": _inplace(Maximum, "maximum_"), "minimum_": _inplace(Minimum, "minimum_"),
}


def _div_(self, other, *, rounding_mode=None):
    cls = {None: Div, "trunc": TruncDivide, "floor": FloorDivide}[rounding_mode]
    return apply_inplace(cls, self, other)


INPLACE["div_"] = _div_
INPLACE["divide_"] = _div_
INPLACE["clip_"] = INPLACE["clamp_"]
INPLACE["clamp_min_"] = lambda self, min: apply_inplace(Clamp, self, min, None)
INPLACE["clamp_max_"] = lambda self, max: apply_inplace(Clamp, self, None, max)
INPLACE["subtract_"] = INPLACE["sub_"]
INPLACE["multiply_"] = INPLACE["mul_"]
INPLACE["negative_"] = INPLACE["neg_"]
INPLACE["absolute_"] = INPLACE["abs_"]
INPLACE["fix_"] = INPLACE["trunc_"]


# ====================================================================== special functions
# Forward values come from ``_special`` (SciPy when installed, NumPy series otherwise).
from . import _special as _S  # noqa: E402

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _where0(cond, value):
    """``value`` with zeros where ``cond`` (used to take PyTorch's limits at removable points)."""
    return where(cond, 0.0, value)


Lgamma = _unary("Lgamma", _S.lgamma, lambda g, x, y: g * digamma(x), saves_input=True)
Digamma = _unary("Digamma", _S.digamma, lambda g, x, y: g * polygamma(1, x), saves_input=True)
I0 = _unary("I0", _S.i0, lambda g, x, y: g * special_i1(x), saves_input=True)
I0e = _unary("I0e", _S.i0e, lambda g, x, y: g * (special_i1e(x) - sign(x) * y),
             saves_input=True, saves_out=True)
# I1'(x) = I0(x) - I1(x)/x, which is 1/2 at 0
I1 = _unary("I1", _S.i1, lambda g, x, y: g * where(x == 0, 0.5, i0(x) - y / x),
            saves_input=True, saves_out=True)
I1e = _unary("I1e", _S.i1e,
             lambda g, x, y: g * where(x == 0, 0.5, special_i0e(x) - y * (sign(x) + 1 / x)),
             saves_input=True, saves_out=True)
Erfcx = _unary("Erfcx", _S.erfcx,
               lambda g, x, y: g * (2 * x * y - _TWO_OVER_SQRT_PI), saves_input=True,
               saves_out=True)
Ndtr = _unary("Ndtr", _S.ndtr, lambda g, x, y: g * _INV_SQRT_2PI * exp(-0.5 * x * x),
              saves_input=True)
Ndtri = _unary("Ndtri", _S.ndtri,
               lambda g, x, y: g * math.sqrt(2 * math.pi) * exp(0.5 * y * y), saves_out=True)
LogNdtr = _unary("LogNdtr", _S.log_ndtr,
                 lambda g, x, y: g * _INV_SQRT_2PI * exp(-0.5 * x * x - y), saves_input=True,
                 saves_out=True)


def _entr_np(a):
    with np.errstate(all="ignore"):
        r = np.where(a > 0, -a * np.log(a), np.where(a == 0, 0.0, -np.inf))
    return np.where(np.isnan(a), a, r).astype(a.dtype, copy=False)


Entr = _unary("Entr", _entr_np, lambda g, x, y: -g * (1 + log(x)), saves_input=True)


def _sinc_grad(g, x, y):
    px = math.pi * x
    # (cos(pi x) pi x - sin(pi x)) / (pi x^2), which is 0 at x = 0
    return g * _where0(x == 0, (px * cos(px) - sin(px)) / (px * x))


Sinc = _unary("Sinc", lambda a: np.sinc(a).astype(a.dtype, copy=False), _sinc_grad,
              saves_input=True)


class Polygamma(Node):
    saves = (0,)

    @staticmethod
    def meta(ctx, a, n):
        ctx.n = n
        return MetaArray(a.shape, to_float(a).dtype)

    @staticmethod
    def forward(ctx, a, n):
        ctx.n = n
        with np.errstate(all="ignore"):
            return _S.polygamma(n, to_float(a))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * polygamma(ctx.n + 1, x), None


class Zeta(Node):
    """Hurwitz zeta(x, q); like PyTorch, only q has a derivative."""

    saves = (0, 1)

    @staticmethod
    def forward(ctx, x, q):
        x, q = promote(to_float(x) if type(x) in _ARRAYS else x,
                       to_float(q) if type(q) in _ARRAYS else q)
        with np.errstate(all="ignore"):
            return _S.zeta(x, q)

    @staticmethod
    def backward(ctx, g):
        x, q = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            raise RuntimeError("the derivative for 'self' (x of special.zeta) is not "
                               "implemented.")
        return None, -g * x * special_zeta(x + 1, q)


class Xlogy(Node):
    """``x * log(y)``, 0 where x == 0 (unless y is NaN)."""

    saves = (0, 1)
    _log = staticmethod(np.log)
    _pole = 0.0  # where y <= _pole and x == 0, PyTorch zeroes the gradient of x

    @classmethod
    def forward(cls, ctx, x, y):
        x, y = promote(x, y)
        x = to_float(x) if type(x) in _ARRAYS else x
        y = to_float(y) if type(y) in _ARRAYS else y
        with np.errstate(all="ignore"):
            r = np.where((x == 0) & ~np.isnan(y), 0.0, x * cls._log(y))
        dt = (x if type(x) in _ARRAYS else y).dtype
        return r.astype(dt, copy=False)

    @classmethod
    def backward(cls, ctx, g):
        x, y = ctx.saved_tensors
        nx, ny = ctx.needs_input_grad
        gx = gy = None
        if nx:
            gx = cls._fn(g, y)
            zero_y = (y <= cls._pole) if isinstance(y, Tensor) else y <= cls._pole
            gx = where((x == 0) & zero_y, 0.0, gx) if isinstance(zero_y, Tensor) else \
                (where(x == 0, 0.0, gx) if zero_y else gx)
        if ny:
            gy = g * x / (y + 1 if cls._pole == -1.0 else y)
        return gx, gy


class Xlog1py(Xlogy):
    _log = staticmethod(np.log1p)
    _pole = -1.0


Xlogy._fn = staticmethod(lambda g, y: xlogy(g, y))
Xlog1py._fn = staticmethod(lambda g, y: special_xlog1py(g, y))


def _float_pair(a, b):
    a, b = promote(a, b)
    if type(a) in _ARRAYS and a.dtype.kind in "biu":
        a = to_float(a)
    if type(b) in _ARRAYS and b.dtype.kind in "biu":
        b = to_float(b)
    return a, b


class Copysign(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        a, b = _float_pair(a, b)
        r = np.copysign(a, b)
        return r.astype((a if type(a) in _ARRAYS else b).dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        ga = g * _where0(a == 0, out / a) if ctx.needs_input_grad[0] else None
        return ga, (g * 0 if ctx.needs_input_grad[1] else None)


class Nextafter(Node):
    differentiable = False

    @staticmethod
    def forward(ctx, a, b):
        a, b = promote(a, b)
        return np.nextafter(a, b)


class Frexp(Node):
    @staticmethod
    def forward(ctx, a):
        if a.dtype.kind not in "f" and a.dtype != D._BF16:
            raise RuntimeError("torch.frexp() only supports floating-point dtypes")
        m, e = np.frexp(a)
        ctx.scale = np.ldexp(np.ones((), a.dtype), -e).astype(a.dtype)
        return m.astype(a.dtype, copy=False), e.astype(np.int32)

    @staticmethod
    def backward(ctx, g, ge):
        from .._tensor import _make
        return g * _make(ctx.scale)  # mantissa = x * 2^-e with e locally constant


class Heaviside(Node):
    differentiable = False

    @staticmethod
    def forward(ctx, a, v):
        if type(v) in _ARRAYS and v.dtype != a.dtype:
            raise RuntimeError("heaviside is not yet implemented for tensors with different "
                               "dtypes.")
        if a.dtype.kind == "c":
            raise RuntimeError("heaviside is not yet implemented for complex tensors.")
        return np.where(a == 0, v, a > 0).astype(a.dtype)  # NaN input gives 0, as PyTorch


def _int_only(name, fn):
    def forward(ctx, a, b):
        for x in (a, b):
            if type(x) in _ARRAYS and x.dtype.kind not in "iu" or isinstance(x, float):
                dt = x.dtype if type(x) in _ARRAYS else "Float"
                raise RuntimeError(f'"{name}_cpu" not implemented for \'{dt}\'')
        a, b = promote(a, b)
        return fn(a, b)
    return type(name.capitalize(), (Node,), {"forward": staticmethod(forward),
                                              "differentiable": False})


Gcd = _int_only("gcd", np.gcd)
Lcm = _int_only("lcm", np.lcm)
Signbit = _nondiff("Signbit", np.signbit)


class Fmax(Node):
    """Elementwise max that ignores NaN (a NaN loses unless both are NaN)."""

    saves = (0, 1)
    _fn = staticmethod(np.fmax)

    @classmethod
    def forward(cls, ctx, a, b):
        a, b = promote(a, b)
        return cls._fn(a, b)

    @classmethod
    def backward(cls, ctx, g):
        a, b = ctx.saved_tensors
        # PyTorch's rule: a takes the gradient where it wins or ties, or where b is NaN
        a_wins = ((a >= b) if cls._fn is np.fmax else (a <= b)) | isnan(b)
        na, nb = ctx.needs_input_grad
        return (where(a_wins, g, 0.0) if na else None, where(a_wins, 0.0, g) if nb else None)


class Fmin(Fmax):
    _fn = staticmethod(np.fmin)


class Angle(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        if a.dtype.kind == "c":
            return np.angle(a).astype(a.real.dtype)
        a = to_float(a)
        r = np.where(a < 0, np.pi, 0.0).astype(a.dtype)
        return np.where(np.isnan(a), a, r)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        if z._data.dtype.kind != "c":
            return g * 0
        # d angle: the gradient for a complex input is i z / |z|^2, 0 at z = 0
        return where(z == 0, 0j, g * z * 1j / (abs(z) * abs(z)))


def lgamma(input, *, out=None):
    """log |Gamma(x)|."""
    return _out(Lgamma.apply(input), out)


def digamma(input, *, out=None):
    """psi(x) = d/dx lgamma(x); -inf at 0."""
    return _out(Digamma.apply(input), out)


def polygamma(n, input, *, out=None):
    """The ``n``-th derivative of digamma."""
    if n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    return _out(Polygamma.apply(input, int(n)), out)


def mvlgamma(input, p, *, out=None):
    """Multivariate log-gamma of dimension ``p``: sum_j lgamma(x - j/2) + p(p-1)/4 log(pi)."""
    if p < 1:
        raise RuntimeError("p has to be greater than or equal to 1")
    if input._data.dtype.kind not in "fc":  # integers promote to the default float, as in PyTorch
        input = input.to(D.get_default_dtype())
    if type(input._data) is not MetaArray and \
            not builtins.bool(np.all(input._data > (p - 1) / 2)):  # meta: no values to check
        raise RuntimeError(f"All elements must be greater than (p-1)/2 = {(p - 1) / 2}")
    from .._tensor import _make
    offsets = _make(-np.arange(p, dtype=input._data.dtype) / 2)
    if type(input._data) is MetaArray:
        offsets = offsets.to("meta")
    r = lgamma(input.unsqueeze(-1) + offsets).sum(-1) + p * (p - 1) / 4 * math.log(math.pi)
    return _out(r, out)


def i0(input, *, out=None):
    """Modified Bessel function of the first kind, order 0."""
    return _out(I0.apply(input), out)


def special_i0e(input, *, out=None):
    return _out(I0e.apply(input), out)


def special_i1(input, *, out=None):
    return _out(I1.apply(input), out)


def special_i1e(input, *, out=None):
    return _out(I1e.apply(input), out)


def special_zeta(input, other, *, out=None):
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError("zeta(): expected at least one Tensor argument")
    return _out(Zeta.apply(input, other), out)


def xlogy(input, other, *, out=None):
    """``input * log(other)``, 0 where input == 0; either side may be a python scalar."""
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError("xlogy(): expected at least one Tensor argument")
    return _out(Xlogy.apply(input, other), out)


def special_xlog1py(input, other, *, out=None):
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError("xlog1py(): expected at least one Tensor argument")
    return _out(Xlog1py.apply(input, other), out)


sinc = _unary_fn(Sinc, "sinc")
special_erfcx = _unary_fn(Erfcx, "erfcx")
special_ndtr = _unary_fn(Ndtr, "ndtr")
special_ndtri = _unary_fn(Ndtri, "ndtri")
special_log_ndtr = _unary_fn(LogNdtr, "log_ndtr")
special_entr = _unary_fn(Entr, "entr")
copysign = _binary(Copysign, "copysign")
nextafter = _binary(Nextafter, "nextafter")
heaviside = _binary(Heaviside, "heaviside")
gcd = _binary(Gcd, "gcd")
lcm = _binary(Lcm, "lcm")
fmax = _binary(Fmax, "fmax")
fmin = _binary(Fmin, "fmin")
signbit = _unary_fn(Signbit, "signbit")
angle = _unary_fn(Angle, "angle")


def frexp(input, *, out=None):
    """``(mantissa, exponent)``: ``input = mantissa * 2 ** exponent``, abs(mantissa) in [0.5, 1)."""
    from .reduction import return_types
    return return_types.frexp(*Frexp.apply(input))


def ldexp(input, other, *, out=None):
    """``input * 2 ** other``."""
    return _out(mul(input, pow(2.0, other)), out)


def float_power(input, exponent, *, out=None):
    """``input ** exponent`` computed in double precision (float64 or complex128)."""
    def wide(x):
        if isinstance(x, Tensor):
            return x.to(D.complex128 if x._data.dtype.kind == "c" else D.float64)
        return x
    return _out(pow(wide(input), wide(exponent)), out)


def deg2rad(input, *, out=None):
    """Degrees to radians."""
    return _out(mul(input, math.pi / 180.0), out)


def rad2deg(input, *, out=None):
    """Radians to degrees."""
    return _out(mul(input, 180.0 / math.pi), out)


INPLACE.update({
    "lgamma_": _inplace(Lgamma, "lgamma_"), "digamma_": _inplace(Digamma, "digamma_"),
    "polygamma_": lambda self, n: apply_inplace(Polygamma, self, int(n)),
    "i0_": _inplace(I0, "i0_"), "sinc_": _inplace(Sinc, "sinc_"),
    "xlogy_": _inplace(Xlogy, "xlogy_"), "copysign_": _inplace(Copysign, "copysign_"),
    "nextafter_": _inplace(Nextafter, "nextafter_"), "gcd_": _inplace(Gcd, "gcd_"),
    "lcm_": _inplace(Lcm, "lcm_"), "heaviside_": _inplace(Heaviside, "heaviside_"),
    "sgn_": _inplace(Sgn, "sgn_"),
    "deg2rad_": lambda self: self.mul_(math.pi / 180.0),
    "rad2deg_": lambda self: self.mul_(180.0 / math.pi),
    "ldexp_": lambda self, other: self.mul_(pow(2.0, other)),
    "float_power_": lambda self, exponent: _float_power_(self, exponent),
})


def _float_power_(self, exponent):
    if self._data.dtype not in (np.float64, np.complex128):
        raise RuntimeError(f"the base given to float_power_ has dtype {self.dtype.name} but the "
                           "operation's result requires dtype Double")
    return self.pow_(exponent)


# ---------------------------------------------------------------------- composites
def rsub(input, other, *, alpha=1):
    """``other - alpha * input`` (subtraction with the operands reversed)."""
    return sub(other, input, alpha=alpha)


class Fill(Node):
    """A tensor like ``a`` filled with ``value`` (a Python scalar or a 0-d array)."""

    @staticmethod
    def forward(ctx, a, value):
        return np.full_like(a, value)

    @staticmethod
    def backward(ctx, g):
        from .creation import zeros_like
        return zeros_like(g), (g.sum() if ctx.needs_input_grad[1] else None)


def fill(input, value):
    """A tensor like ``input`` filled with ``value`` (out of place: the gradient reaching
    ``input`` is zero; a tensor ``value`` gets the sum)."""
    if isinstance(value, Tensor) and value._data.ndim:
        raise RuntimeError(f"fill only supports 0-dimension value tensor but got tensor with "
                           f"{value._data.ndim} dimensions.")
    return Fill.apply(input, value)


def conj_physical(input):
    """The complex conjugate as a new tensor (``conj`` for real inputs is the input)."""
    return conj(input).clone() if input._data.dtype.kind == "c" else input.clone()


__all__ += ["rsub", "fill", "conj_physical"]


# ---------------------------------------------------------------------- orthogonal polynomials
def _poly_start(kind, x):
    """(P_0, P_1) of each family at ``x`` (float64)."""
    one = np.ones_like(x)
    first = {"t": x, "u": 2 * x, "v": 2 * x - 1, "w": 2 * x + 1, "h": 2 * x, "he": x,
             "l": 1 - x, "p": x}[kind]
    return one, first


def _poly_next(kind, x, k, prev, cur):
    """P_{k+1} from P_k (``cur``) and P_{k-1} (``prev``)."""
    if kind in ("t", "u", "v", "w"):
        return 2 * x * cur - prev
    if kind == "h":
        return 2 * x * cur - 2 * k * prev
    if kind == "he":
        return x * cur - k * prev
    if kind == "l":
        return ((2 * k + 1 - x) * cur - k * prev) / (k + 1)
    return ((2 * k + 1) * x * cur - k * prev) / (k + 1)  # Legendre


def _orthogonal_poly(kind, x, n):
    """P_n(x) by the three-term recurrence, elementwise over broadcast ``x`` and ``n``
    (``n`` truncated to an integer; 0 where it is negative), computed in float64."""
    x, n = np.broadcast_arrays(np.asarray(x, np.float64), np.trunc(np.asarray(n, np.float64)))
    out = np.zeros(x.shape)
    if x.size == 0:
        return out
    p0, p1 = _poly_start(kind, x)
    out = np.where(n == 0, p0, out)
    out = np.where(n == 1, p1, out)
    top = int(np.nanmax(n)) if np.isfinite(np.nanmax(n)) else 0
    prev, cur = p0, p1
    for k in range(1, top):
        prev, cur = cur, _poly_next(kind, x, k, prev, cur)
        out = np.where(n == k + 1, cur, out)
    return out


class OrthogonalPolynomial(Node):
    """``special.*_polynomial_*``: values only (PyTorch defines no derivative for them)."""

    differentiable = False

    @staticmethod
    def meta(ctx, x, n, kind, shifted):
        rt = result_dtype(x, n)
        rt = rt if rt.is_floating_point else D.get_default_dtype()
        return MetaArray(np.broadcast_shapes(np.shape(x), np.shape(n)), rt.np)

    @staticmethod
    def forward(ctx, x, n, kind, shifted):
        rt = result_dtype(x, n)
        rt = rt if rt.is_floating_point else D.get_default_dtype()
        xv = xp_asarray(x, np.float64)
        if shifted:
            xv = 2 * xv - 1
        with np.errstate(all="ignore"):
            return xp_asarray(_orthogonal_poly(kind, xv, n)).astype(rt.np)


def _poly_fn(name, kind, shifted=False):
    def fn(input, n, *, out=None):
        if not isinstance(input, Tensor) and not isinstance(n, Tensor):
            raise TypeError(f"{name}(): expected at least one Tensor argument")
        return _out(OrthogonalPolynomial.apply(input, n, kind, shifted), out)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``special.{name}(input, n)``: the polynomial of degree ``n`` at ``input``."
    return fn


chebyshev_polynomial_t = _poly_fn("chebyshev_polynomial_t", "t")
chebyshev_polynomial_u = _poly_fn("chebyshev_polynomial_u", "u")
chebyshev_polynomial_v = _poly_fn("chebyshev_polynomial_v", "v")
chebyshev_polynomial_w = _poly_fn("chebyshev_polynomial_w", "w")
shifted_chebyshev_polynomial_t = _poly_fn("shifted_chebyshev_polynomial_t", "t", True)
shifted_chebyshev_polynomial_u = _poly_fn("shifted_chebyshev_polynomial_u", "u", True)
shifted_chebyshev_polynomial_v = _poly_fn("shifted_chebyshev_polynomial_v", "v", True)
shifted_chebyshev_polynomial_w = _poly_fn("shifted_chebyshev_polynomial_w", "w", True)
hermite_polynomial_h = _poly_fn("hermite_polynomial_h", "h")
hermite_polynomial_he = _poly_fn("hermite_polynomial_he", "he")
laguerre_polynomial_l = _poly_fn("laguerre_polynomial_l", "l")
legendre_polynomial_p = _poly_fn("legendre_polynomial_p", "p")
_POLYNOMIALS = ["chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
                "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t",
                "shifted_chebyshev_polynomial_u", "shifted_chebyshev_polynomial_v",
                "shifted_chebyshev_polynomial_w", "hermite_polynomial_h",
                "hermite_polynomial_he", "laguerre_polynomial_l", "legendre_polynomial_p"]


# ---------------------------------------------------------------------- Bessel and Airy
def _spherical_j0(x):
    with np.errstate(all="ignore"):
        return np.where(x == 0, 1.0, np.sin(x) / np.where(x == 0, 1.0, x))


# special.<name>: (SciPy function name, or a NumPy formula)
_BESSEL = {"bessel_j0": "j0", "bessel_j1": "j1", "bessel_y0": "y0", "bessel_y1": "y1",
           "modified_bessel_i0": "i0", "modified_bessel_i1": "i1", "modified_bessel_k0": "k0",
           "modified_bessel_k1": "k1", "scaled_modified_bessel_k0": "k0e",
           "scaled_modified_bessel_k1": "k1e", "airy_ai": "airy",
           "spherical_bessel_j0": _spherical_j0}


class BesselFunction(Node):
    """``special.bessel_*`` and friends: values only (PyTorch defines no derivative)."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, name):
        rt = x.dtype if x.dtype.kind == "f" else D.get_default_dtype().np
        fn = _BESSEL[name]
        xv = x.astype(np.float64)
        if not callable(fn):
            sp = _S._scipy()
            if sp is None:
                raise NotImplementedError(f"special.{name} needs SciPy: pip install "
                                          f"'ember[special]'")
            fn = (lambda v: sp.airy(v)[0]) if fn == "airy" else getattr(sp, fn)
        with np.errstate(all="ignore"):
            return xp_asarray(fn(xv)).astype(rt)


def _bessel_fn(name):
    def fn(input, *, out=None):
        return _out(BesselFunction.apply(input, name), out)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``special.{name}`` (values; SciPy computes them where it is needed)."
    return fn


for _n in _BESSEL:
    globals()["special_" + _n] = _bessel_fn(_n)
_BESSEL_NAMES = list(_BESSEL)


# ---------------------------------------------------------------------- regularised gamma
class _IncompleteGamma(Node):
    """``igamma`` (lower, P) / ``igammac`` (upper, Q) regularised incomplete gamma functions
    of ``a`` (input) and ``x`` (other); the gradient flows to ``x`` only, as in PyTorch."""

    saves = (0, 1)
    upper = False

    @classmethod
    def _values(cls, a, x):
        sp = _S._scipy()
        if sp is None:
            raise NotImplementedError(f"{'igammac' if cls.upper else 'igamma'} needs SciPy: "
                                      "pip install 'ember[special]'")
        return (sp.gammaincc if cls.upper else sp.gammainc)(a, x)

    @classmethod
    def forward(cls, ctx, a, x):
        a, x = promote(a, x)
        rt = result_dtype(a, x)
        rt = rt.np if rt.is_floating_point else D.get_default_dtype().np
        with np.errstate(all="ignore"):
            return xp_asarray(cls._values(xp_asarray(a, np.float64),
                                          xp_asarray(x, np.float64))).astype(rt)

    @classmethod
    def backward(cls, ctx, g):
        a, x = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            raise NotImplementedError(f"the derivative for '{'igammac' if cls.upper else 'igamma'}"
                                      f": input' is not implemented.")
        # d/dx P(a, x) = x^(a-1) e^(-x) / Gamma(a) = -d/dx Q(a, x)
        d = exp((a - 1) * log(x) - x - lgamma(a))
        return None, (-g * d if cls.upper else g * d)


class Igamma(_IncompleteGamma):
    pass


class Igammac(_IncompleteGamma):
    upper = True


def igamma(input, other, *, out=None):
    """The regularised lower incomplete gamma function P(input, other)."""
    return _out(Igamma.apply(input, other), out)


def igammac(input, other, *, out=None):
    """The regularised upper incomplete gamma function Q(input, other)."""
    return _out(Igammac.apply(input, other), out)


__all__ += ["igamma", "igammac"]
