"""``ember.onnx.load``: an ONNX model as an ``ember.fx.GraphModule`` with trainable weights.

Covers the opset subset ember's exporter writes. Each ONNX node becomes one call_function
node whose target is a small function of this module (``onnx_<OpType>``) written with ember
ops, so the imported model runs eagerly, differentiates and fine-tunes like any module.
Floating-point initializers become ``nn.Parameter``s (by their initializer names, e.g.
``0.weight``); other initializers become buffers.
"""

from __future__ import annotations

import math

import numpy as np

from ._export import OnnxExporterError, _onnx

_OPS = {}


def _op(name):
    def deco(f):
        f.__name__ = f"onnx_{name}"
        f.__qualname__ = f.__name__
        _OPS[name] = f
        return f
    return deco


def _ints(t):
    """A shape-like tensor (or list) as a tuple of Python ints."""
    if t is None:
        return None
    return tuple(int(v) for v in (t.tolist() if hasattr(t, "tolist") else t))


def _e():
    import ember
    return ember


def _axes(t, attr):
    return _ints(t) if t is not None else (tuple(attr) if attr is not None else None)


# elementwise
for _n, _f in (("Add", lambda a, b: a + b), ("Sub", lambda a, b: a - b),
               ("Mul", lambda a, b: a * b), ("Div", lambda a, b: a / b),
               ("Pow", lambda a, b: a ** b), ("Equal", lambda a, b: a == b),
               ("Less", lambda a, b: a < b), ("LessOrEqual", lambda a, b: a <= b),
               ("Greater", lambda a, b: a > b), ("GreaterOrEqual", lambda a, b: a >= b),
               ("And", lambda a, b: a & b), ("Or", lambda a, b: a | b),
               ("Xor", lambda a, b: a ^ b)):
    _op(_n)(lambda a, b, _f=_f: _f(a, b))
_op("Max")(lambda *xs: _reduce_pair(_e().maximum, xs))
_op("Min")(lambda *xs: _reduce_pair(_e().minimum, xs))
for _n, _m in (("Neg", "neg"), ("Abs", "abs"), ("Relu", "relu"), ("Exp", "exp"),
               ("Log", "log"), ("Sqrt", "sqrt"), ("Reciprocal", "reciprocal"), ("Sin", "sin"),
               ("Cos", "cos"), ("Tanh", "tanh"), ("Sigmoid", "sigmoid"), ("Erf", "erf"),
               ("Sign", "sign"), ("Not", "logical_not"), ("IsNaN", "isnan")):
    _op(_n)(lambda a, _m=_m: getattr(a, _m)())


def _reduce_pair(f, xs):
    out = xs[0]
    for x in xs[1:]:
        out = f(out, x)
    return out


@_op("Identity")
def _identity(a):
    return a


@_op("Softplus")
def _softplus(a):
    return _e().nn.functional.softplus(a)


@_op("Elu")
def _elu(a, alpha=1.0):
    return _e().nn.functional.elu(a, alpha)


@_op("LeakyRelu")
def _leaky(a, alpha=0.01):
    return _e().nn.functional.leaky_relu(a, alpha)


@_op("Clip")
def _clip(a, lo=None, hi=None):
    return a.clamp(None if lo is None else lo.item(), None if hi is None else hi.item())


@_op("Where")
def _where(c, a, b):
    return _e().where(c, a, b)


@_op("Gelu")
def _gelu(a, approximate="none"):
    return _e().nn.functional.gelu(a, approximate=approximate)


@_op("Softmax")
def _softmax(a, axis=-1):
    return a.softmax(axis)


@_op("LogSoftmax")
def _log_softmax(a, axis=-1):
    return a.log_softmax(axis)


@_op("Gemm")
def _gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.t() if transA else a
    b = b.t() if transB else b
    y = a @ b
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@_op("MatMul")
def _matmul(a, b):
    return a @ b


@_op("Einsum")
def _einsum(*xs, equation):
    return _e().einsum(equation, *xs)


def _pairs(pads, n):
    pads = list(pads or [0] * (2 * n))
    return tuple((pads[i], pads[i + n]) for i in range(n))


@_op("Conv")
def _conv(x, w, b=None, strides=None, pads=None, dilations=None, group=1, kernel_shape=None,
          auto_pad="NOTSET"):
    from ..ops.conv import ConvNd
    n = w.ndim - 2
    return ConvNd.apply(x, w, b, tuple(strides or (1,) * n), _pairs(pads, n),
                        tuple(dilations or (1,) * n), int(group))


@_op("ConvTranspose")
def _conv_transpose(x, w, b=None, strides=None, pads=None, dilations=None, group=1,
                    output_padding=None, kernel_shape=None, output_shape=None,
                    auto_pad="NOTSET"):
    from ..ops.conv import ConvInputGrad
    n = w.ndim - 2
    st, dl, pp = tuple(strides or (1,) * n), tuple(dilations or (1,) * n), _pairs(pads, n)
    op = list(output_padding or (0,) * n)
    if output_shape is not None:
        raise NotImplementedError("ember.onnx.load: ConvTranspose with output_shape")
    size = [s * (i - 1) + d * (k - 1) + 1 - lo - hi + e for i, s, d, k, (lo, hi), e in
            zip(x.shape[2:], st, dl, w.shape[2:], pp, op)]
    xshape = (x.shape[0], w.shape[1] * group, *size)
    y = ConvInputGrad.apply(x, w, xshape, st, pp, dl, int(group))
    return y if b is None else y + b.reshape((1, -1) + (1,) * n)


@_op("Cast")
def _cast(a, to, saturate=1):
    from onnx import helper
    from .._dtype import all_dtypes
    want = np.dtype(helper.tensor_dtype_to_np_dtype(to))
    return a.to(next(d for d in all_dtypes if d.np is not None and np.dtype(d.np) == want))


@_op("GatherElements")
def _gather_elements(a, idx, axis=0):
    return _e().gather(a, axis, idx)


def _out_size(size, k, s, d, lo, hi):
    return tuple((n + a + b - dd * (kk - 1) - 1) // ss + 1
                 for n, kk, ss, dd, a, b in zip(size, k, s, d, lo, hi))


@_op("MaxPool")
def _maxpool(x, kernel_shape, strides=None, pads=None, dilations=None, ceil_mode=0,
             auto_pad="NOTSET", storage_order=0):
    from ..ops.conv import MaxPoolNd
    n = len(kernel_shape)
    st, dl, pp = tuple(strides or (1,) * n), tuple(dilations or (1,) * n), _pairs(pads, n)
    if ceil_mode:
        raise NotImplementedError("ember.onnx.load: MaxPool with ceil_mode=1")
    osz = _out_size(x.shape[2:], kernel_shape, st, dl, [p[0] for p in pp], [p[1] for p in pp])
    return MaxPoolNd.apply(x, tuple(kernel_shape), st, dl, pp, osz, False)


@_op("AveragePool")
def _avgpool(x, kernel_shape, strides=None, pads=None, count_include_pad=0, ceil_mode=0,
             auto_pad="NOTSET"):
    from ..ops.conv import AvgPoolNd
    n = len(kernel_shape)
    st, pp = tuple(strides or (1,) * n), _pairs(pads, n)
    if ceil_mode or (not count_include_pad and any(a or b for a, b in pp)):
        raise NotImplementedError("ember.onnx.load: AveragePool with ceil_mode or with "
                                  "padding excluded from the count")
    osz = _out_size(x.shape[2:], kernel_shape, st, (1,) * n, [p[0] for p in pp],
                    [p[1] for p in pp])
    return AvgPoolNd.apply(x, tuple(kernel_shape), st, pp, osz, float(np.prod(kernel_shape)))


@_op("LayerNormalization")
def _layer_norm(x, scale, bias=None, axis=-1, epsilon=1e-5, stash_type=1):
    axis = axis % x.ndim
    return _e().nn.functional.layer_norm(x, tuple(x.shape[axis:]), scale, bias, epsilon)


def _reducer(method):
    def f(a, axes=None, keepdims=1, noop_with_empty_axes=0):
        ax = _axes(axes, None)
        if not ax:
            ax = tuple(range(a.ndim))
        return getattr(a, method)(dim=ax, keepdim=bool(keepdims))
    return f


for _n, _m in (("ReduceSum", "sum"), ("ReduceMean", "mean"), ("ReduceMax", "amax"),
               ("ReduceMin", "amin"), ("ReduceProd", "prod")):
    _op(_n)(_reducer(_m))


@_op("ArgMax")
def _argmax(a, axis=0, keepdims=1, select_last_index=0):
    return a.argmax(dim=axis, keepdim=bool(keepdims))


@_op("ArgMin")
def _argmin(a, axis=0, keepdims=1, select_last_index=0):
    return a.argmin(dim=axis, keepdim=bool(keepdims))


@_op("CumSum")
def _cumsum(a, axis, exclusive=0, reverse=0):
    if exclusive or reverse:
        raise NotImplementedError("ember.onnx.load: CumSum with exclusive or reverse")
    return a.cumsum(int(axis.item()))


@_op("Reshape")
def _reshape(a, shape, allowzero=0):
    shape = [a.shape[i] if (s == 0 and not allowzero) else s for i, s in enumerate(_ints(shape))]
    return a.reshape(shape)


@_op("Expand")
def _expand(a, shape):
    shape = list(_ints(shape))
    # ONNX Expand broadcasts both ways (a 1 in ``shape`` keeps the input's size)
    full = np.broadcast_shapes(tuple(a.shape), tuple(shape))
    return a.expand(*full)


@_op("Transpose")
def _transpose(a, perm=None):
    return a.permute(*(perm if perm is not None else reversed(range(a.ndim))))


@_op("Concat")
def _concat(*xs, axis):
    return _e().cat(list(xs), dim=axis)


@_op("Unsqueeze")
def _unsqueeze(a, axes):
    out = a
    axes = sorted(x % (a.ndim + len(_ints(axes))) for x in _ints(axes))
    for ax in axes:
        out = out.unsqueeze(ax)
    return out


@_op("Squeeze")
def _squeeze(a, axes=None):
    if axes is None:
        return a.squeeze()
    out = a
    for ax in sorted((x % a.ndim for x in _ints(axes)), reverse=True):
        out = out.squeeze(ax)
    return out


@_op("Split")
def _split(a, split=None, axis=0, num_outputs=None):
    sizes = list(_ints(split)) if split is not None else \
        a.shape[axis] // num_outputs
    return tuple(_e().split(a, sizes, dim=axis))


@_op("Slice")
def _slice(a, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else tuple(range(len(starts)))
    steps = _ints(steps) if steps is not None else (1,) * len(starts)
    idx = [slice(None)] * a.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st <= 0:
            raise NotImplementedError("ember.onnx.load: Slice with a non-positive step")
        n = a.shape[ax]
        idx[ax] = slice(max(min(s, n), -n) if s < 0 else min(s, n), min(e, n) if e >= 0 else e,
                        st)
    return a[tuple(idx)]


@_op("Trilu")
def _trilu(a, k=None, upper=1):
    k = 0 if k is None else int(k.item())
    return a.triu(k) if upper else a.tril(k)


@_op("Gather")
def _gather(a, idx, axis=0):
    if idx.ndim == 0:
        return a.select(axis, int(idx.item()))
    return _e().index_select(a, axis, idx.reshape(-1)).reshape(
        tuple(a.shape[:axis]) + tuple(idx.shape) + tuple(a.shape[axis + 1:]))


@_op("Range")
def _range(start, limit, delta):
    return _e().arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@_op("Floor")
def _floor(a):
    return a.floor()


_RESIZE_MODES = {  # (mode, coordinate mode, nearest mode, cubic a, antialias) -> ember mode
    ("nearest", "asymmetric", "floor", None, 0): ("nearest", None),
    ("nearest", "half_pixel", "round_prefer_ceil", None, 0): ("nearest-exact", None),
    ("linear", "half_pixel", None, None, 0): ("linear", False),
    ("linear", "align_corners", None, None, 0): ("linear", True),
    ("linear", "half_pixel", None, None, 1): ("linear", False),
    ("cubic", "half_pixel", None, -0.75, 0): ("bicubic", False),
    ("cubic", "align_corners", None, -0.75, 0): ("bicubic", True),
    ("cubic", "half_pixel", None, -0.5, 1): ("bicubic", False),
}


@_op("Resize")
def _resize(x, roi=None, scales=None, sizes=None, mode="nearest",
            coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor",
            cubic_coeff_a=-0.75, antialias=0, exclude_outside=0, **rest):
    """The Resize forms ember's exporter writes, as ``F.interpolate``."""
    key = (mode, coordinate_transformation_mode, nearest_mode if mode == "nearest" else None,
           round(float(cubic_coeff_a), 6) if mode == "cubic" else None, int(antialias))
    found = _RESIZE_MODES.get(key)
    if found is None or int(exclude_outside) != int(antialias) or rest or \
            (roi is not None and roi.numel()):
        raise NotImplementedError(f"ember.onnx.load: Resize with mode={mode!r}, "
                                  f"coordinate_transformation_mode="
                                  f"{coordinate_transformation_mode!r}, nearest_mode="
                                  f"{nearest_mode!r}, cubic_coeff_a={cubic_coeff_a}, antialias="
                                  f"{antialias}, exclude_outside={exclude_outside}, roi or "
                                  f"{sorted(rest)} has no ember mapping")
    name, align = found
    if name == "linear":
        name = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.ndim]
    F = _e().nn.functional
    if sizes is not None and sizes.numel():
        size = _ints(sizes)
        if size[:2] != tuple(x.shape[:2]):
            raise NotImplementedError("ember.onnx.load: Resize of the batch or channel dims")
        return F.interpolate(x, size=size[2:], mode=name, align_corners=align,
                             antialias=bool(antialias))
    factors = [float(v) for v in scales.tolist()]
    if factors[:2] != [1.0, 1.0]:
        raise NotImplementedError("ember.onnx.load: Resize of the batch or channel dims")
    return F.interpolate(x, scale_factor=factors[2:], mode=name, align_corners=align,
                         antialias=bool(antialias))


@_op("Shape")
def _shape(a, start=0, end=None):
    return _e().tensor(list(a.shape)[start:end], dtype=_e().int64)


def _split_gates(w, order):
    """ONNX gate blocks (rows of ``w``) back to PyTorch's order."""
    parts = _e().chunk(w, len(order), dim=0)
    inv = [order.index(i) for i in range(len(order))]
    return _e().cat([parts[i] for i in inv], dim=0)


def _recurrent(kind, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None,
               hidden_size=None, direction="forward", linear_before_reset=0,
               activations=None):
    from ..ops import rnn as K
    if direction not in ("forward", "reverse"):
        raise NotImplementedError(f"ember.onnx.load: {kind} with direction={direction!r}")
    if sequence_lens is not None:
        raise NotImplementedError(f"ember.onnx.load: {kind} with sequence_lens")
    order = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}[kind]
    nb = len(order)
    w_ih, w_hh = _split_gates(W[0], order), _split_gates(R[0], order)
    H = w_hh.shape[1]
    b_ih = b_hh = None
    if B is not None:
        b_ih, b_hh = _split_gates(B[0, :nb * H], order), _split_gates(B[0, nb * H:], order)
    N = X.shape[1]
    zeros = _e().zeros(N, H, dtype=X.dtype)
    h0 = initial_h[0] if initial_h is not None else zeros
    rev = direction == "reverse"
    if kind == "LSTM":
        c0 = initial_c[0] if initial_c is not None else zeros
        out, h, c = K.LSTMLayer.apply(X, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, rev)
        return out.unsqueeze(1), h.unsqueeze(0), c.unsqueeze(0)
    if kind == "GRU":
        if not linear_before_reset:
            raise NotImplementedError("ember.onnx.load: GRU with linear_before_reset=0")
        out, h = K.GRULayer.apply(X, h0, w_ih, w_hh, b_ih, b_hh, None, rev)
    else:
        relu = (activations or ["Tanh"])[0] == "Relu"
        out, h = K.RNNLayer.apply(X, h0, w_ih, w_hh, b_ih, b_hh, None, rev, relu)
    return out.unsqueeze(1), h.unsqueeze(0)


for _n in ("LSTM", "GRU", "RNN"):
    _op(_n)(lambda *a, _n=_n, **k: _recurrent(_n, *a, **k))


# ---------------------------------------------------------------------------- loader
def load(f):
    """Read an ONNX model (a path, a file object or an ``onnx.ModelProto``) written by
    ``ember.onnx.export`` (or using the same op subset) and return an ``ember.fx.GraphModule``
    that computes it; float initializers are trainable ``nn.Parameter``s."""
    import ember
    from ..fx import Graph, GraphModule
    from ..nn import Parameter
    onnx = _onnx()
    from onnx import numpy_helper
    model = f if isinstance(f, onnx.ModelProto) else onnx.load(f)
    g = model.graph
    graph = Graph()
    env, root = {"": None}, {}
    inits = {t.name for t in g.initializer}
    for t in g.initializer:
        arr = numpy_helper.to_array(t).copy()
        value = ember.from_numpy(arr)
        attr = _attr_name(t.name)
        root[attr] = Parameter(value) if arr.dtype.kind == "f" else value
        env[t.name] = graph.get_attr(attr)
    for i in g.input:
        if i.name not in inits:
            env[i.name] = graph.placeholder(_py_name(i.name))
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            raise OnnxExporterError(f"ember.onnx.load: op domain {node.domain!r} of node "
                                    f"{node.name} is not supported")
        fn = _OPS.get(node.op_type)
        if fn is None:
            raise NotImplementedError(f"ember.onnx.load: ONNX op {node.op_type} (node "
                                      f"{node.name}) has no ember mapping")
        args = [env[n] for n in node.input]
        while args and args[-1] is None:
            args.pop()
        kwargs = {a.name: _attr_value(onnx, a) for a in node.attribute}
        out = graph.call_function(fn, tuple(args), kwargs)
        if len(node.output) == 1:
            env[node.output[0]] = out
        else:
            import operator
            for k, name in enumerate(node.output):
                if name:
                    env[name] = graph.call_function(operator.getitem, (out, k))
    outs = [env[o.name] for o in g.output]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    return GraphModule(root, graph)


def _py_name(name):
    s = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return s if s and not s[0].isdigit() else f"x_{s}"


def _attr_name(name):
    """Initializer names as attribute paths: dotted names keep their structure."""
    parts = [_py_name(p) if not p.isdigit() else p for p in name.split(".")]
    return ".".join(parts)


def _attr_value(onnx, a):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    if isinstance(v, float) and math.isfinite(v):
        return float(v)
    return v
