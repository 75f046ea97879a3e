"""ONNX export: an ``ember.export`` capture, mapped node by node to ONNX with ``onnx.helper``.

Each call_function node of the captured graph (targets are the core op classes' ``apply``,
their in-place forms, ``sym_size`` and a few ``operator`` functions on sizes) goes through a
handler in ``_HANDLERS`` keyed by the op class name. A handler receives the converter and the
node's arguments, where tensors are ONNX value names and sizes of dynamic dimensions are
1-element int64 tensors, and returns the ONNX name (or list of names) of its result.

Constant folding: a node whose tensor inputs are all weights or constants is evaluated in
ember at export time and becomes an initializer (BatchNorm's eval-mode scale and shift, for
instance), so the exported graph holds only the work that depends on the inputs.
"""

from __future__ import annotations

import io
import math
import operator
import os
import tempfile

import numpy as np

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(17, 22)
# protobuf's 2 GB message limit, less a margin for the graph: above it weights go to a
# separate data file beside the model
EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 2 ** 24


class OnnxExporterError(RuntimeError):
    """The model cannot be exported to ONNX as asked."""


class UnsupportedOperatorError(OnnxExporterError):
    """A captured op has no ONNX mapping in ember's exporter."""

    def __init__(self, msg, node=None):
        super().__init__(msg)
        self.node = node


def _onnx():
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ember.onnx needs the 'onnx' package: pip install 'ember[onnx]'") from e
    return onnx


# ---------------------------------------------------------------------------- converter
class _Converter:
    def __init__(self, opset, fold):
        self.onnx = _onnx()
        self.helper = self.onnx.helper
        self.opset = opset
        self.fold = fold
        self.nodes = []
        self.initializers = {}      # onnx name -> numpy array
        self.env = {}               # fx node -> onnx name | list of names | python value
        self.const = {}             # fx node -> ember Tensor (known at export time)
        self.syms = set()           # onnx names holding a dynamic size (int64, shape [1])
        self.dynamic = False        # whether some input size is known only at run time
        self._n = 0

    # names and small helpers
    def fresh(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def emit(self, op, inputs, n_out=1, name_hint=None, **attrs):
        outs = [self.fresh(name_hint or op) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs,
                                                name=self.fresh(f"n_{op}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def init(self, array, hint="const"):
        name = self.fresh(hint)
        self.initializers[name] = np.asarray(array)
        return name

    def ints(self, values):
        return self.init(np.asarray(values, dtype=np.int64), "ints")

    def scalar(self, value, like_dtype):
        return self.init(np.asarray(value, dtype=like_dtype), "scalar")

    def shape_input(self, shape):
        """A 1-D int64 shape tensor from ints and dynamic sizes (a Concat when dynamic)."""
        shape = list(shape)
        if not any(isinstance(s, str) for s in shape):
            return self.ints(shape)
        parts, run = [], []
        for s in shape:
            if isinstance(s, str):
                if run:
                    parts.append(self.ints(run))
                    run = []
                parts.append(s)
            else:
                run.append(int(s))
        if run:
            parts.append(self.ints(run))
        return self.emit("Concat", parts, axis=0, name_hint="shape")


def _np_dtype(meta_dtype):
    return np.dtype(meta_dtype.np)


def _meta(node):
    tm = node.meta.get("tensor_meta")
    return (tuple(tm[0]), tm[1]) if tm is not None else (None, None)


def _user_line(node):
    st = node.meta.get("stack_trace") or node.meta.get("source_line")
    if st:
        return st.strip().splitlines()[-1].strip()
    return "(source line not recorded by the capture)"


# files whose frames are the framework, not the model's code
_FRAMEWORK = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), p)
                   for p in ("ops", "autograd", "export", "onnx", "fx", "_tensor",
                             os.path.join("nn", "functional"), os.path.join("nn", "_"),
                             os.path.join("nn", "modules", "module.py")))


class _Locator:
    """A dispatch mode (``_MODES``) that finds the model's source line of the ``k``-th call
    of op ``cls`` in a rerun (the capture keeps no source lines)."""

    def __init__(self, cls, k):
        self.cls, self.k, self.seen, self.line = cls, k, 0, None

    def on_op(self, cls, args, kwargs, run):
        if cls is self.cls:
            if self.seen == self.k and self.line is None:
                import traceback
                for fr in reversed(traceback.extract_stack()[:-1]):
                    if not os.path.abspath(fr.filename).startswith(_FRAMEWORK):
                        self.line = f'File "{fr.filename}", line {fr.lineno}: {fr.line}'
                        break
            self.seen += 1
        return run()

    def on_inplace(self, cls, target, args, kwargs, run):
        return run()


def _locate(model, args, kwargs, graph, node):
    """The source line of ``node`` found by rerunning ``model`` eagerly (no grad)."""
    from ..autograd import graph as dispatch
    from ..autograd.grad_mode import no_grad
    cls = getattr(node.target, "__self__", None)
    if not isinstance(cls, type):
        return None
    k = 0
    for n in graph.nodes:
        if n is node:
            break
        if n.op == "call_function" and cls in (getattr(n.target, "__self__", None),
                                               getattr(n.target, "op", None)):
            k += 1
    loc = _Locator(cls, k)
    dispatch._MODES.append(loc)
    try:
        with no_grad():
            model(*args, **(kwargs or {}))
    except Exception:  # noqa: BLE001 - best effort: the error being reported matters more
        return None
    finally:
        dispatch._MODES.remove(loc)
    return loc.line


def _class_name(target):
    from ..export._capture import target_name
    try:
        name = target_name(target)
    except Exception:  # noqa: BLE001 - a target the capture cannot name
        name = getattr(target, "__name__", repr(target))
    return name


# ------------------------------------------------------------------------- handlers
_HANDLERS = {}
# ops known to exist in a later opset than the one asked for
_LATER_OPSET = {"Gelu": 20}


def _h(*names):
    def deco(f):
        for n in names:
            _HANDLERS[n] = f
        return f
    return deco


def _tensor_or_scalar(c, v, dtype):
    if isinstance(v, str):
        return v
    return c.scalar(v, dtype)


def _operands(c, node, vals, dt):
    """Elementwise operands as ONNX names. A constant filled with one value (``zeros_like``,
    ``full``: creation is not captured, so its shape is the example's) becomes a scalar when
    the other operands alone give the output's shape: same values, and it keeps dynamic
    dimensions dynamic."""
    from ..fx import Node
    args = node.args[len(node.args) - len(vals):]
    others = [_meta(a)[0] for a in args if isinstance(a, Node) and a not in c.const]
    out_shape = _meta(node)[0]
    try:
        alone = tuple(np.broadcast_shapes(*others)) if others else None
    except ValueError:
        alone = None
    names = []
    for a, v in zip(args, vals):
        t = c.const.get(a) if isinstance(a, Node) else None
        if t is not None and alone == out_shape and t._data.size > 1:
            flat = t._data.reshape(-1)
            if np.all(flat == flat[0]):
                names.append(c.init(np.asarray(flat[0], dtype=t._data.dtype), "fill"))
                continue
        names.append(_tensor_or_scalar(c, v, dt))
    return names


def _binary(op):
    def f(c, node, a, b):
        # a Python scalar takes its tensor operand's dtype (a comparison's result is bool)
        tensor = next(x for x in node.args if hasattr(x, "op"))
        dt = _np_dtype(_meta(tensor)[1])
        return c.emit(op, _operands(c, node, [a, b], dt))
    return f


for _name, _op in (("Add", "Add"), ("Sub", "Sub"), ("Mul", "Mul"), ("Div", "Div"),
                   ("Pow", "Pow"), ("Maximum", "Max"), ("Minimum", "Min"), ("Eq", "Equal"),
                   ("Lt", "Less"), ("Le", "LessOrEqual"), ("Gt", "Greater"),
                   ("Ge", "GreaterOrEqual"), ("LogicalAnd", "And"), ("LogicalOr", "Or"),
                   ("LogicalXor", "Xor")):
    _HANDLERS[_name] = _binary(_op)


@_h("Ne")
def _ne(c, node, a, b):
    return c.emit("Not", [_binary("Equal")(c, node, a, b)])


def _unary(op):
    def f(c, node, a):
        return c.emit(op, [a])
    return f


for _name, _op in (("Neg", "Neg"), ("Abs", "Abs"), ("Relu", "Relu"), ("Exp", "Exp"),
                   ("Log", "Log"), ("Sqrt", "Sqrt"), ("Reciprocal", "Reciprocal"),
                   ("Sin", "Sin"), ("Cos", "Cos"), ("Tanh", "Tanh"), ("Sigmoid", "Sigmoid"),
                   ("Erf", "Erf"), ("Sign", "Sign"), ("LogicalNot", "Not"),
                   ("Isnan", "IsNaN"), ("Softplus", "Softplus")):
    _HANDLERS[_name] = _unary(_op)


@_h("Rsqrt")
def _rsqrt(c, node, a):
    return c.emit("Reciprocal", [c.emit("Sqrt", [a])])


@_h("Silu")
def _silu(c, node, a):
    return c.emit("Mul", [a, c.emit("Sigmoid", [a])])


@_h("Square")
def _square(c, node, a):
    return c.emit("Mul", [a, a])


@_h("Elu")
def _elu(c, node, a, alpha=1.0, *rest):
    return c.emit("Elu", [a], alpha=float(alpha))


@_h("LeakyRelu")
def _leaky(c, node, a, slope=0.01, *rest):
    return c.emit("LeakyRelu", [a], alpha=float(slope))


@_h("Hardtanh", "Clamp")
def _clip(c, node, a, lo=None, hi=None):
    dt = _np_dtype(_meta(node)[1])
    ins = [a, "" if lo is None else _tensor_or_scalar(c, lo, dt),
           "" if hi is None else _tensor_or_scalar(c, hi, dt)]
    while ins[-1] == "":
        ins.pop()
    return c.emit("Clip", ins)


@_h("Where")
def _where(c, node, cond, a, b):
    dt = _np_dtype(_meta(node)[1])
    return c.emit("Where", _operands(c, node, [cond, a, b], dt))


@_h("Gelu")
def _gelu(c, node, x, approximate="none"):
    if c.opset >= 20:
        return c.emit("Gelu", [x], approximate=approximate)
    dt = _np_dtype(_meta(node)[1])
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = c.emit("Mul", [c.emit("Mul", [x, x]), x])
        inner = c.emit("Add", [x, c.emit("Mul", [x3, c.scalar(0.044715, dt)])])
        t = c.emit("Tanh", [c.emit("Mul", [inner, c.scalar(math.sqrt(2 / math.pi), dt)])])
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        t = c.emit("Erf", [c.emit("Mul", [x, c.scalar(1 / math.sqrt(2), dt)])])
    half = c.emit("Mul", [x, c.scalar(0.5, dt)])
    return c.emit("Mul", [half, c.emit("Add", [t, c.scalar(1.0, dt)])])


@_h("Softmax", "LogSoftmax")
def _softmax(c, node, x, dim):
    return c.emit("Softmax" if node.target.__self__.__name__ == "Softmax" else "LogSoftmax",
                  [x], axis=int(dim))


@_h("Linear")
def _linear(c, node, x, w, b):
    rank = len(c.shape_of(node.args[0]))
    if rank == 2:
        return c.emit("Gemm", [x, w] + ([b] if b is not None else []), transB=1)
    wt = c.transposed_const(node.args[1]) or c.emit("Transpose", [w], perm=[1, 0])
    y = c.emit("MatMul", [x, wt])
    return c.emit("Add", [y, b]) if b is not None else y


@_h("Matmul")
def _matmul(c, node, a, b):
    return c.emit("MatMul", [a, b])


@_h("Einsum")
def _einsum(c, node, eq, *arrays):
    return c.emit("Einsum", list(arrays), equation=eq.replace(" ", ""))


def _pads(pads):
    return [int(p[0]) for p in pads] + [int(p[1]) for p in pads]


@_h("ConvNd")
def _conv(c, node, x, w, b, stride, pads, dilation, groups):
    ins = [x, w] + ([b] if b is not None else [])
    return c.emit("Conv", ins, strides=list(stride), pads=_pads(pads),
                  dilations=list(dilation), group=int(groups))


@_h("ConvInputGrad")
def _conv_transpose(c, node, g, w, xshape, stride, pads, dilation, groups):
    """The transposed convolution (ember records it as the input gradient of a conv of
    output shape ``xshape``); ONNX's output_padding makes up the size's remainder."""
    ks = c.shape_of(node.args[1])[2:]
    insz = c.shape_of(node.args[0])[2:]
    extra = [int(o) - (s * (i - 1) + d * (k - 1) + 1 - lo - hi) for o, i, s, d, k, (lo, hi) in
             zip(xshape[2:], insz, stride, dilation, ks, pads)]
    return c.emit("ConvTranspose", [g, w], strides=list(stride), pads=_pads(pads),
                  dilations=list(dilation), group=int(groups), output_padding=extra)


@_h("ToDtype")
def _cast(c, node, a, dt):
    to = c.helper.np_dtype_to_tensor_dtype(_np_dtype(_meta(node)[1]))
    return c.emit("Cast", [a], to=int(to))


@_h("Gather")
def _gather_elements(c, node, a, dim, index):
    return c.emit("GatherElements", [a, index], axis=int(dim))


def _pool_pads(c, node, ks, st, dl, pads, osz):
    """MaxPool/AveragePool's pads and ceil_mode: the op's output size may be its rule
    ("floor"/"ceil", symmetric pads): kept as a rule (ceil_mode) where the spatial sizes
    vary, resolved to explicit pads for the example's sizes otherwise."""
    if not isinstance(osz, str):
        return _pads(pads), 0
    src = node.args[0]
    if any(d >= 2 for d in src.meta.get("dynamic_dims", ())):
        return _pads(pads), int(osz == "ceil")
    from ..ops.conv import _pool_geometry
    shape = c.shape_of(src)
    pads, _ = _pool_geometry(tuple(shape[2:]), ks, st, dl, pads, osz)
    return _pads(pads), 0


@_h("MaxPoolNd")
def _maxpool(c, node, x, ks, st, dl, pads, osz, return_indices):
    onnx_pads, ceil = _pool_pads(c, node, ks, st, dl, pads, osz)
    attrs = dict(kernel_shape=list(ks), strides=list(st), pads=onnx_pads, dilations=list(dl))
    if ceil:
        attrs["ceil_mode"] = 1
    if not return_indices:
        return c.emit("MaxPool", [x], **attrs)
    # ONNX numbers the indices over the whole (N, C, *spatial) input, PyTorch within each
    # (n, c) plane: the plane's offset is a multiple of the plane size, so a Mod recovers them
    shape = _meta(node.args[0])[0]
    spatial = shape[2:] if shape is not None else None
    if spatial is None or not all(isinstance(s, (int, np.integer)) for s in spatial):
        raise c.unsupported(node, "max pooling with return_indices=True over dynamic spatial "
                                  "sizes")
    y, idx = c.emit("MaxPool", [x], n_out=2, storage_order=0, **attrs)
    plane = c.init(np.asarray(int(np.prod(spatial)), dtype=np.int64), "plane")
    return [y, c.emit("Mod", [idx, plane])]


@_h("ScatterPlanes")
def _scatter_planes(c, node, g, flat, shape, accumulate):
    # max_unpool (and adaptive max pooling's gradient): each (n, c) plane of ``g`` written
    # (or added) into zeros of ``shape`` at per-plane flat indices, as one ScatterElements
    # over rows of planes
    gshape = _meta(node.args[0])[0]
    spatial_in, spatial_out = gshape[2:] if gshape is not None else None, tuple(shape[2:])
    if spatial_in is None or not all(isinstance(s, (int, np.integer))
                                     for s in tuple(spatial_in) + spatial_out):
        raise c.unsupported(node, "max_unpool over dynamic spatial sizes")
    dt = _np_dtype(_meta(node)[1])
    zeros = c.emit("ConstantOfShape", [c.shape_input(shape)],
                   value=c.helper.make_tensor("value", c.helper.np_dtype_to_tensor_dtype(dt),
                                              [1], [0]))
    rows_out = c.ints([-1, int(np.prod(spatial_out))])
    rows_in = c.ints([-1, int(np.prod(spatial_in))])
    out = c.emit("ScatterElements", [c.emit("Reshape", [zeros, rows_out]),
                                     c.emit("Reshape", [flat, rows_in]),
                                     c.emit("Reshape", [g, rows_in])],
                 axis=1, reduction="add" if accumulate else "none")
    return c.emit("Reshape", [out, c.shape_input(shape)])


@_h("AvgPoolNd")
def _avgpool(c, node, x, ks, st, pads, osz, div):
    # ember divides window sums by ``div`` (a number or a per-window tensor, or its rule);
    # ONNX's count_include_pad=1 divides by the window size, so rescale when they differ.
    k = int(np.prod(ks))
    dt = _np_dtype(_meta(node)[1])
    src = node.args[0]
    if isinstance(osz, str) and any(d >= 2 for d in src.meta.get("dynamic_dims", ())):
        # sizes known only at run time: ONNX's own rules, which are PyTorch's (ceil_mode's
        # windows and divisors included: checked against onnxruntime in the tests)
        y = c.emit("AveragePool", [x], kernel_shape=list(ks), strides=list(st),
                   pads=_pads(pads), count_include_pad=int(div != "exclude_pad"),
                   ceil_mode=int(osz == "ceil"))
        if isinstance(div, str):
            return y
        return c.emit("Mul", [y, c.scalar(k / float(div), dt)])
    if isinstance(osz, str) or isinstance(div, str):
        from ..ops.conv import _avg_geometry

        class _Shape:
            shape = tuple(c.shape_of(src))
            dtype = dt
        pads, osz, div = _avg_geometry(_Shape, ks, st, pads, osz, div)
    y = c.emit("AveragePool", [x], kernel_shape=list(ks), strides=list(st), pads=_pads(pads),
               count_include_pad=1)
    dv = c.const.get(node.args[5]) if hasattr(node.args[5], "op") else div
    if dv is not None and not hasattr(dv, "op"):
        arr = np.asarray(dv._data if hasattr(dv, "_data") else dv)
        if np.all(arr == k):
            return y
        return c.emit("Mul", [y, c.init((k / arr).astype(dt), "pool_scale")])
    return c.emit("Div", [c.emit("Mul", [y, c.scalar(k, dt)]), div])


@_h("Normalize")
def _normalize(c, node, x, w, b, axes, eps):
    shape = c.shape_of(node.args[0])
    r = len(shape)
    axes = sorted(a % r for a in axes)
    dt = _np_dtype(_meta(node)[1] or _meta(node.args[0])[1])
    norm = [shape[a] for a in axes]

    def fits(arg):  # an affine parameter over the normalized dims only
        return arg is None or int(np.prod(c.shape_of(arg))) == int(np.prod(norm))
    if axes == list(range(r - len(axes), r)):  # layer norm over the trailing dims
        wa, ba = node.args[1], node.args[2]
        affine_inside = fits(wa) and fits(ba)
        ins = [x, c.reshaped_const(wa, norm) or w if w is not None and affine_inside
               else c.init(np.ones(norm, dt), "ln_ones")]
        if b is not None and affine_inside:
            ins.append(c.reshaped_const(ba, norm) or b)
        y = c.emit("LayerNormalization", ins, axis=-len(axes), epsilon=float(eps))
        if not affine_inside:  # per-channel affine (instance norm): applied after
            y = c.emit("Mul", [y, w]) if w is not None else y
            y = c.emit("Add", [y, b]) if b is not None else y
        return [y, None, None]
    # general axes (group/instance norm): (x - mean) / sqrt(var + eps) * w + b
    ax = c.ints(axes)
    mean = c.emit("ReduceMean", [x, ax], keepdims=1)
    d = c.emit("Sub", [x, mean])
    var = c.emit("ReduceMean", [c.emit("Mul", [d, d]), ax], keepdims=1)
    y = c.emit("Div", [d, c.emit("Sqrt", [c.emit("Add", [var, c.scalar(eps, dt)])])])
    if w is not None:
        y = c.emit("Mul", [y, w])
    if b is not None:
        y = c.emit("Add", [y, b])
    return [y, mean, var]


def _reduce(op):
    def f(c, node, a, axis=None, keepdim=False, dtype=None):
        r = len(c.shape_of(node.args[0]))
        axes = list(range(r)) if axis is None else [int(x) for x in
                                                     (axis if isinstance(axis, (tuple, list))
                                                      else (axis,))]
        return c.emit(op, [a, c.ints(axes)], keepdims=int(bool(keepdim)))
    return f


_HANDLERS["Sum"] = _reduce("ReduceSum")
_HANDLERS["Mean"] = _reduce("ReduceMean")
_HANDLERS["Amax"] = _reduce("ReduceMax")
_HANDLERS["Amin"] = _reduce("ReduceMin")
_HANDLERS["Prod"] = _reduce("ReduceProd")


@_h("Var", "Std")
def _var(c, node, a, axis, correction=1, keepdim=False):
    shape = c.shape_of(node.args[0])
    axes = list(range(len(shape))) if axis is None else [
        int(x) for x in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    axes = [x % len(shape) for x in axes]
    dt = _np_dtype(_meta(node)[1])
    ax = c.ints(axes)
    d = c.emit("Sub", [a, c.emit("ReduceMean", [a, ax], keepdims=1)])
    ss = c.emit("ReduceSum", [c.emit("Mul", [d, d]), ax], keepdims=int(bool(keepdim)))
    if c.dynamic:
        # an export with dynamic axes: the count of reduced elements read at run time (the
        # example's count would be wrong at any other size)
        n = c.emit("ReduceProd", [c.emit("Gather", [c.emit("Shape", [a]), ax], axis=0)],
                   keepdims=0)
        n = c.emit("Cast", [n], to=int(c.helper.np_dtype_to_tensor_dtype(dt)))
        if correction:
            n = c.emit("Max", [c.emit("Sub", [n, c.scalar(float(correction), dt)]),
                               c.scalar(0.0, dt)])
    else:
        n = c.scalar(max(int(np.prod([shape[x] for x in axes])) - float(correction or 0),
                         0.0), dt)
    v = c.emit("Div", [ss, n])
    return c.emit("Sqrt", [v]) if node.target.__self__.__name__ == "Std" else v


@_h("MaxDim", "MinDim")
def _maxdim(c, node, a, dim, keepdim=False):
    big = node.target.__self__.__name__ == "MaxDim"
    v = c.emit("ReduceMax" if big else "ReduceMin", [a, c.ints([dim])], keepdims=int(keepdim))
    i = c.emit("ArgMax" if big else "ArgMin", [a], axis=int(dim), keepdims=int(keepdim))
    return [v, i]


@_h("Argmax")
def _argmax(c, node, a, dim, keepdim, largest=True):
    if dim is None:
        a = c.emit("Reshape", [a, c.ints([-1])])
        dim = 0
    return c.emit("ArgMax" if largest else "ArgMin", [a], axis=int(dim), keepdims=int(keepdim))


@_h("Cumsum")
def _cumsum(c, node, a, dim, dtype=None):
    return c.emit("CumSum", [a, c.ints(int(dim))])


@_h("View", "Reshape")
def _reshape(c, node, a, shape):
    return c.emit("Reshape", [a, c.shape_input(c.dynamic_shape(node, shape))])


@_h("Expand")
def _expand(c, node, a, shape):
    shape = [s if isinstance(s, str) or s != -1 else 1 for s in shape]
    return c.emit("Expand", [a, c.shape_input(shape)])


@_h("Permute")
def _permute(c, node, a, dims):
    return c.emit("Transpose", [a], perm=[int(d) for d in dims])


@_h("Contiguous", "Clone")
def _identity(c, node, a, *rest):
    return a  # no node: same values


@_h("Cat")
def _cat(c, node, dim, *arrays):
    return c.emit("Concat", list(arrays), axis=int(dim))


@_h("Stack")
def _stack(c, node, dim, *arrays):
    ax = c.ints([dim])
    return c.emit("Concat", [c.emit("Unsqueeze", [a, ax]) for a in arrays], axis=int(dim))


@_h("Split")
def _split(c, node, a, sizes, dim):
    return c.emit("Split", [a, c.ints(list(sizes))], n_out=len(sizes), axis=int(dim)) \
        if len(sizes) > 1 else [a]


@_h("Unbind")
def _unbind(c, node, a, dim):
    n = c.shape_of(node.args[0])[dim]
    parts = c.emit("Split", [a, c.ints([1] * n)], n_out=n, axis=int(dim))
    parts = parts if n > 1 else [parts]
    return [c.emit("Squeeze", [p, c.ints([dim])]) for p in parts]


@_h("Narrow")
def _narrow(c, node, a, dim, start, length):
    return c.emit("Slice", [a, c.ints([start]), c.ints([start + length]), c.ints([dim])])


@_h("Tril", "Triu")
def _tri(c, node, a, k=0):
    upper = node.target.__self__.__name__ == "Triu"
    return c.emit("Trilu", [a, c.ints(int(k))], upper=int(upper))


@_h("EmbeddingLookup")
def _embedding(c, node, weight, idx, padding_idx=None, scale=False):
    return c.emit("Gather", [weight, idx], axis=0)


@_h("IndexSelect")
def _index_select(c, node, a, dim, index):
    return c.emit("Gather", [a, index], axis=int(dim))


@_h("Index")
def _index(c, node, a, idx):
    """Basic indexing: ints, slices, None and Ellipsis (tensor indices: one, as Gather)."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    shape = c.shape_of(node.args[0])
    r = len(shape)
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    out, dim, unsq, pos = a, 0, [], 0
    for i in idx:
        if i is Ellipsis:
            pos += r - n_real
            dim += r - n_real
            continue
        if i is None:
            unsq.append(pos)
            pos += 1
            continue
        if isinstance(i, slice):
            if i != slice(None):
                start = 0 if i.start is None else i.start
                stop = np.iinfo(np.int64).max if i.stop is None else i.stop
                out = c.emit("Slice", [out, c.ints([start]), c.ints([stop]), c.ints([dim]),
                                       c.ints([1 if i.step is None else i.step])])
            dim += 1
            pos += 1
            continue
        if isinstance(i, int):
            out = c.emit("Gather", [out, c.ints(i)], axis=dim)
            continue  # the dimension disappears
        if isinstance(i, str):  # a tensor index
            out = c.emit("Gather", [out, i], axis=dim)
            dim += 1
            pos += 1
            continue
        raise c.unsupported(node, f"indexing with {type(i).__name__}")
    if unsq:
        out = c.emit("Unsqueeze", [out, c.ints(unsq)])
    return out


@_h("LSTMLayer", "GRULayer", "RNNLayer")
def _recurrent(c, node, *args):
    kind = node.target.__self__.__name__[:-5]
    a = node.args
    if kind == "LSTM":
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse = args
        if w_hr is not None:
            raise c.unsupported(node, "LSTM with proj_size (no ONNX equivalent)")
        wn, rn, bi, bh = a[3], a[4], a[5], a[6]
        # PyTorch gates i f g o -> ONNX i o f c
        order = [0, 3, 1, 2]
    elif kind == "GRU":
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse = args
        wn, rn, bi, bh = a[2], a[3], a[4], a[5]
        order = [1, 0, 2]          # PyTorch r z n -> ONNX z r h
    else:
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu = args
        wn, rn, bi, bh = a[2], a[3], a[4], a[5]
        order = [0]
    if lengths is not None:
        raise c.unsupported(node, f"{kind} over packed sequences")
    vals = [c.const.get(v) if hasattr(v, "op") else None for v in (wn, rn, bi, bh)]
    if vals[0] is None or vals[1] is None:
        raise c.unsupported(node, f"{kind} whose weights are not parameters or constants")

    def gates(t):
        arr = t._data
        parts = np.split(arr, len(order), axis=0)
        return np.concatenate([parts[i] for i in order], axis=0)[None]
    W = c.init(gates(vals[0]), f"{kind.lower()}_W")
    R = c.init(gates(vals[1]), f"{kind.lower()}_R")
    hsize = vals[1]._data.shape[1]
    zeros = np.zeros(len(order) * hsize, vals[0]._data.dtype)
    bias = [gates(v)[0] if v is not None else zeros for v in vals[2:]]
    B = c.init(np.concatenate(bias)[None], f"{kind.lower()}_B")
    ax0 = c.ints([0])

    def state(arg, val):
        # a zero state (the default one is made in forward, not captured: its batch size
        # is the example's) is left out, as ONNX starts from zeros; keeps the batch dynamic
        t = c.const.get(arg) if hasattr(arg, "op") else None
        if t is not None and not np.any(t._data):
            return ""
        return c.emit("Unsqueeze", [val, ax0]) if len(c.shape_of(arg)) == 2 else val
    ins = [x, W, R, B, "", state(a[1], h0)]
    attrs = {"hidden_size": int(hsize), "direction": "reverse" if reverse else "forward"}
    if kind == "LSTM":
        ins.append(state(a[2], c0))
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    if kind == "RNN":
        attrs["activations"] = ["Relu" if relu else "Tanh"]
    n_out = 3 if kind == "LSTM" else 2
    outs = c.emit(kind, ins, n_out=n_out, **attrs)
    y = c.emit("Squeeze", [outs[0], c.ints([1])])
    return [y] + [c.emit("Squeeze", [o, ax0]) for o in outs[1:]]


# ------------------------------------------------------------------- interpolate
def _pow2(s):
    return s > 0 and math.frexp(s)[0] == 0.5


@_h("Interpolate")
def _interpolate(c, node, x, size, scales, recompute, mode, align_corners, antialias):
    """``Resize`` where it computes what ember does: nearest modes with power-of-two scale
    factors (exact coordinates); linear/cubic modes with scale factors exact in float32, with
    sizes, or with ``recompute_scale_factor`` (sizes computed at run time as PyTorch does, in
    float64). Otherwise, and for float64/float16 inputs of static spatial sizes, the
    resampling as ember computes it: nearest modes as a Gather with indices computed in
    float32 (at run time where the sizes vary), the other modes (and lanczos, or antialias
    before opset 18) as MatMuls with constant matrices where the spatial sizes are static."""
    src = node.args[0]
    shape, meta_dt = _meta(src)
    dt = _np_dtype(meta_dt)
    nd = len(shape) - 2
    dyn = {d for d in src.meta.get("dynamic_dims", ()) if d >= 2}
    # Resize for float32, or where nothing else follows the sizes (onnxruntime has Resize
    # kernels for float32 and a few integer types only)
    resize = dt == np.float32 or bool(dyn)
    if mode in ("nearest", "nearest-exact"):
        if resize and dt.kind == "f" and scales is not None and not recompute and \
                all(_pow2(s) for s in scales):
            return _resize(c, x, nd, mode, align_corners, antialias, scales=scales)
        return _nearest_gathers(c, x, shape, dyn, size, scales, recompute, mode)
    if resize and mode != "lanczos" and (not antialias or c.opset >= 18):
        if scales is not None and not recompute and \
                all(float(np.float32(s)) == s for s in scales):
            return _resize(c, x, nd, mode, align_corners, antialias, scales=scales)
        if size is not None:
            return _resize(c, x, nd, mode, align_corners, antialias, sizes=list(size))
        if recompute:  # floor(in * s) in float64, as PyTorch
            ins = c.emit("Cast", [c.emit("Shape", [x], start=2)], to=11)
            out = c.emit("Floor", [c.emit("Mul", [ins, c.init(np.asarray(scales, np.float64))])])
            return _resize(c, x, nd, mode, align_corners, antialias,
                           spatial=c.emit("Cast", [out], to=7))
    if dyn:
        why = ("lanczos" if mode == "lanczos" else
               f"antialias at opset {c.opset} (Resize has it from 18)" if antialias else
               f"scale factors {list(scales)} (not exact in float32: Resize would size the "
               "output differently)")
        raise c.unsupported(node, f"interpolate(mode={mode!r}) with {why} over spatial sizes "
                                  "known only at run time")
    from ..ops.conv import Interpolate

    class _Ctx:
        pass
    ctx = _Ctx()
    Interpolate._steps(ctx, shape, dt, size, scales, recompute, mode, align_corners,
                       antialias)
    cur, cur_shape = x, list(shape)
    for axis, _, m in ctx.steps:
        m = m.astype(dt)
        if axis == len(shape) - 1:
            cur = c.emit("MatMul", [cur, c.init(np.ascontiguousarray(m.T), "resample")])
        else:
            # (batch * ..., in, rest): only the batch may vary (the spatial sizes are static)
            rest = int(np.prod(cur_shape[axis + 1:]))
            flat = c.emit("Reshape", [cur, c.ints([-1, cur_shape[axis], rest])])
            y = c.emit("MatMul", [c.init(m, "resample"), flat])
            cur = c.emit("Reshape", [y, c.ints([-1] + cur_shape[1:axis] + [m.shape[0]] +
                                                cur_shape[axis + 1:])])
        cur_shape[axis] = m.shape[0]
    return cur


def _resize(c, x, nd, mode, align_corners, antialias, scales=None, sizes=None,
            spatial=None):
    """``Resize`` by ``scales`` (floats), by ``sizes`` (ints or run-time sizes), or by
    ``spatial`` (an int64 tensor of every spatial size)."""
    nearest = mode in ("nearest", "nearest-exact")
    attrs = {"mode": "nearest" if nearest else "cubic" if mode == "bicubic" else "linear"}
    if nearest:
        exact = mode == "nearest-exact"
        attrs["coordinate_transformation_mode"] = "half_pixel" if exact else "asymmetric"
        attrs["nearest_mode"] = "round_prefer_ceil" if exact else "floor"
    else:
        attrs["coordinate_transformation_mode"] = "align_corners" if align_corners else \
            "half_pixel"
    if mode == "bicubic":
        attrs["cubic_coeff_a"] = -0.5 if antialias else -0.75
    if antialias:  # PyTorch's weights are renormalised over the inputs that exist
        attrs["antialias"] = 1
        attrs["exclude_outside"] = 1
    if scales is not None:
        return c.emit("Resize", [x, "", c.init(np.asarray([1.0, 1.0] + list(scales),
                                                          np.float32), "scales")], **attrs)
    if spatial is None:
        spatial = c.shape_input(sizes)
    lead = c.emit("Shape", [x], start=0, end=2)
    return c.emit("Resize", [x, "", "", c.emit("Concat", [lead, spatial], axis=0)], **attrs)


def _nearest_gathers(c, x, shape, dyn, size, scales, recompute, mode):
    """Nearest modes as ember computes them: per spatial dim, source index
    ``min(floor((dst [+ 0.5]) * scale), in - 1)`` in float32, then a Gather."""
    from ..ops.conv import _nearest_index
    exact = mode == "nearest-exact"
    cur = x
    for i in range(len(shape) - 2):
        axis = 2 + i
        coord = scales[i] if scales is not None and not recompute else None
        if axis not in dyn:
            n = shape[axis]
            out = size[i] if size is not None else int(math.floor(n * scales[i]))
            if out == n and coord in (None, 1.0):
                continue
            idx = c.init(_nearest_index(n, out, coord, exact), "nearest_idx")
            cur = c.emit("Gather", [cur, idx], axis=axis)
            continue
        n = c.emit("Shape", [x], start=axis, end=axis + 1)
        if size is not None:
            out = c.ints([size[i]])
        else:
            f = c.emit("Mul", [c.emit("Cast", [n], to=11),
                               c.init(np.asarray([scales[i]], np.float64), "scale")])
            out = c.emit("Cast", [c.emit("Floor", [f])], to=7)
        if coord is not None:
            sc = c.init(np.asarray([1.0 / coord], np.float32), "coord_scale")
        else:
            sc = c.emit("Div", [c.emit("Cast", [n], to=1), c.emit("Cast", [out], to=1)])
        zero, one = c.init(np.asarray(0, np.int64)), c.init(np.asarray(1, np.int64))
        dst = c.emit("Cast", [c.emit("Range", [zero, c.emit("Squeeze", [out, c.ints([0])]),
                                               one])], to=1)
        if exact:
            dst = c.emit("Add", [dst, c.init(np.asarray(0.5, np.float32))])
        idx = c.emit("Cast", [c.emit("Floor", [c.emit("Mul", [dst, sc])])], to=7)
        idx = c.emit("Min", [idx, c.emit("Sub", [n, c.ints([1])])])
        cur = c.emit("Gather", [cur, idx], axis=axis)
    return cur if cur is not x else c.emit("Identity", [x])


# ----------------------------------------------------------------------- conversion
class _GraphConverter(_Converter):
    def shape_of(self, arg):
        shape, _ = _meta(arg)
        if shape is None:
            raise OnnxExporterError(f"no shape recorded for node {arg}")
        return shape

    def transposed_const(self, arg):
        t = self.const.get(arg) if hasattr(arg, "op") else None
        if t is None:
            return None
        return self.init(np.array(t._data.T, order="C"), f"{arg.name}_t")

    def reshaped_const(self, arg, shape):
        t = self.const.get(arg) if hasattr(arg, "op") else None
        if t is None or tuple(t.shape) == tuple(shape):
            return None
        return self.init(t._data.reshape(shape), f"{arg.name}_r")

    def dynamic_shape(self, node, shape):
        """A reshape target: with dynamic inputs, one static unknown becomes -1 where the
        capture left a literal (so it follows the other sizes)."""
        return list(shape)

    def unsupported(self, node, what=None):
        tname = _class_name(node.target)
        later = _LATER_OPSET.get(tname.split(".")[-2] if "." in tname else tname)
        hint = f"; ONNX opset {later} has it" if later else ""
        msg = (f"ember.onnx.export: no ONNX mapping for {what or tname} (node {node.name}, "
               f"target {tname}) at opset {self.opset}{hint}. Source: {_user_line(node)}")
        return UnsupportedOperatorError(msg, node)

    def value(self, a):
        """An fx argument as handlers see it (names for tensors, python values otherwise)."""
        from ..fx import Node
        if isinstance(a, Node):
            if a in self.const and a not in self.env:
                self.env[a] = self.dynamic_fill(a) if a in self.fillable else \
                    self.const_name(a)
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(x) for x in a)
        return a

    def dynamic_fill(self, node):
        """A constant filled with one value whose dims include a dynamic size's example value
        (``ones(T, T)`` made in forward: creation ops are not captured, so its shape is the
        example's): rebuilt as ``Expand(value, shape)`` with those dims taken from the inputs
        at run time."""
        t = self.const[node]._data
        shape = [self.dyn_sizes.get(int(d), int(d)) for d in t.shape]
        fill = self.init(np.asarray(t.reshape(-1)[0], dtype=t.dtype), "fill")
        return self.emit("Expand", [fill, self.shape_input(shape)], name_hint="fill")

    def const_name(self, node):
        name = self.const_names.get(node)
        if name is None:
            t = self.const[node]
            # weights keep their dotted names as initializer names (as PyTorch's do)
            name = self.const_target.get(node)
            if name is None or name in self.initializers:
                name = self.fresh(node.name)
            self.initializers[name] = np.array(t._data, order="C")
            self.const_names[node] = name
        return name


def _is_const_arg(c, a):
    from ..fx import Node
    if isinstance(a, Node):
        return a in c.const
    if isinstance(a, (list, tuple)):
        return all(_is_const_arg(c, x) for x in a)
    return True


def _const_value(c, a):
    from ..fx import Node
    if isinstance(a, Node):
        return c.const[a]
    if isinstance(a, (list, tuple)):
        return type(a)(_const_value(c, x) for x in a)
    return a


_SYM_OPS = {operator.add: "Add", operator.sub: "Sub", operator.mul: "Mul",
            operator.floordiv: "Div"}


def _convert(ep, opset, fold, input_names, output_names, dynamic_axes, export_params=True):
    from .._tensor import Tensor
    from ..export import InputKind
    from ..export._capture import sym_size
    c = _GraphConverter(opset, fold)
    c.const_names, c.const_target, c.renamed = {}, {}, set()
    c.dyn_sizes, c.fillable = {}, set()  # example size -> its run-time size; see dynamic_fill
    c.dynamic = bool(dynamic_axes)  # some input size is known only at run time
    helper = c.helper
    sig = ep.graph_signature
    kinds = {s.arg.name if hasattr(s.arg, "name") else None: s for s in sig.input_specs}
    graph_inputs, user_i, weight_inputs = [], 0, []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = kinds.get(node.name)
            if spec is not None and spec.kind in (InputKind.PARAMETER, InputKind.BUFFER,
                                                  InputKind.CONSTANT_TENSOR):
                t = ep.state_dict.get(spec.target)
                if t is None:
                    t = ep.constants[spec.target]
                if not export_params:
                    # weights as graph inputs after the user's, named by their dotted path
                    # (nothing computed from them is folded into constants)
                    weight_inputs.append(helper.make_tensor_value_info(
                        spec.target, helper.np_dtype_to_tensor_dtype(t._data.dtype),
                        list(t.shape)))
                    c.env[node] = spec.target
                    continue
                c.const[node] = t
                c.const_target[node] = spec.target
                continue
            name = input_names[user_i] if input_names and user_i < len(input_names) \
                else node.target
            user_i += 1
            shape, dt = _meta(node)
            dims = list(shape)
            for ax, dn in (dynamic_axes or {}).get(name, {}).items():
                dims[ax] = dn
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(_np_dtype(dt)), dims))
            c.env[node] = name
        elif node.op == "get_attr":
            c.const[node] = _fetch_attr(ep, node.target)
            data = getattr(c.const[node], "_data", None)
            if c.dyn_sizes and data is not None and data.size > 1 and \
                    any(int(d) in c.dyn_sizes for d in data.shape) and \
                    np.all(data.reshape(-1) == data.reshape(-1)[0]):
                c.fillable.add(node)
        elif node.op == "call_function":
            _convert_call(c, node, sym_size, Tensor)
        elif node.op == "output":
            outs = node.args[0]
    graph_inputs += weight_inputs
    if fold:
        _fold_conv_affine(c, {c.value(o) for o in (outs if isinstance(outs, (list, tuple))
                                                     else (outs,))})
    graph_outputs = []
    flat = outs if isinstance(outs, (list, tuple)) else (outs,)
    for i, o in enumerate(flat):
        name = output_names[i] if output_names and i < len(output_names) else \
            ("output" if len(flat) == 1 else f"output_{i}")
        src = c.value(o)
        if src != name:
            _rename_output(c, src, name)
        shape, dt = _meta(o)
        dims = list(shape) if shape is not None else None
        dyn_out = (dynamic_axes or {}).get(name)
        if dims is not None and dynamic_axes:
            dims = [None] * len(dims)
            for ax, dn in (dyn_out or {}).items():
                dims[ax] = dn
        graph_outputs.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(_np_dtype(dt)), dims))
    return c, graph_inputs, graph_outputs


def _fold_conv_affine(c, keep):
    """Fold ``Conv -> Mul(per-channel constant) -> Add(per-channel constant)`` (what batch norm
    in eval mode becomes after constant folding) into the Conv's weight and bias, as
    PyTorch's exporter does. ``keep``: names that must stay (graph outputs)."""
    uses = {}
    for n in c.nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    consumers = {}
    for n in c.nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dropped = set()

    def channel_vector(name, cout, rank):
        arr = c.initializers.get(name)
        if arr is None or arr.ndim > rank:
            return None
        try:
            b = np.broadcast_to(arr, (1, cout) + (1,) * (rank - 2))
        except ValueError:
            return None
        full = np.broadcast_shapes(arr.shape, (1, cout) + (1,) * (rank - 2))
        return b.reshape(cout) if full == (1, cout) + (1,) * (rank - 2) else None

    for conv in list(c.nodes):
        if conv.op_type != "Conv" or id(conv) in dropped or conv.input[1] not in c.initializers:
            continue
        w = c.initializers[conv.input[1]]
        bias = c.initializers.get(conv.input[2]) if len(conv.input) > 2 else None
        if len(conv.input) > 2 and bias is None:
            continue
        cout, changed = w.shape[0], False
        for op in ("Mul", "Add"):
            out = conv.output[0]
            nxt = consumers.get(out, [])
            if uses.get(out, 0) != 1 or out in keep or len(nxt) != 1 or nxt[0].op_type != op:
                break
            node = nxt[0]
            other = node.input[1] if node.input[0] == out else node.input[0]
            vec = channel_vector(other, cout, w.ndim)
            if vec is None or vec.dtype != w.dtype:
                break
            if op == "Mul":
                w = w * vec.reshape((cout,) + (1,) * (w.ndim - 1))
                bias = None if bias is None else bias * vec
            else:
                bias = vec.copy() if bias is None else bias + vec
            conv.output[0] = node.output[0]
            dropped.add(id(node))
            changed = True
        if changed:
            wname = conv.input[1]
            if uses.get(wname, 0) != 1:
                wname = c.fresh(f"{wname}_fused")
            c.initializers[wname] = w
            conv.input[1] = wname
            if bias is not None:
                bname = conv.input[2] if len(conv.input) > 2 and uses.get(conv.input[2]) == 1 \
                    else c.fresh("conv_bias_fused")
                c.initializers[bname] = bias
                if len(conv.input) > 2:
                    conv.input[2] = bname
                else:
                    conv.input.append(bname)
    c.nodes = [n for n in c.nodes if id(n) not in dropped]


def _dead_code(c, outputs):
    """Drop nodes none of whose outputs is used (a handler may build operands it then
    replaces, such as a fill folded into a scalar)."""
    while True:
        used = set(outputs) | {i for n in c.nodes for i in n.input}
        keep = [n for n in c.nodes if any(o in used for o in n.output)]
        if len(keep) == len(c.nodes):
            return
        c.nodes = keep


def _rename_output(c, src, name):
    """Give graph output ``name`` to the value ``src``: rename the node output in place (no
    extra node) unless ``src`` is a graph input, an initializer or already an output."""
    producer = next((n for n in c.nodes if src in n.output), None)
    if producer is None or src in c.renamed:
        c.nodes.append(c.helper.make_node("Identity", [src], [name], name=c.fresh("n_out")))
        return
    c.renamed.add(src)
    for n in c.nodes:
        for i, v in enumerate(n.input):
            if v == src:
                n.input[i] = name
        for i, v in enumerate(n.output):
            if v == src:
                n.output[i] = name


def _fetch_attr(ep, target):
    obj = ep.constants.get(target) if hasattr(ep.constants, "get") else None
    if obj is not None:
        return obj
    gm = ep.graph_module
    for part in target.split("."):
        gm = getattr(gm, part)
    return gm


def _convert_call(c, node, sym_size, Tensor):
    target = node.target
    if target is sym_size:
        src, dim = node.args
        c.env[node] = c.emit("Shape", [c.value(src)], start=int(dim), end=int(dim) + 1,
                             name_hint="size")
        c.syms.add(c.env[node])
        c.dyn_sizes.setdefault(int(c.shape_of(src)[dim]), c.env[node])
        return
    if target is operator.getitem:
        seq, i = node.args
        if seq in c.const:
            c.const[node] = c.const[seq][i]
            return
        c.env[node] = c.value(seq)[i]
        return
    if target in _SYM_OPS:
        a, b = (c.value(x) for x in node.args)
        a = a if isinstance(a, str) else c.ints([a])
        b = b if isinstance(b, str) else c.ints([b])
        c.env[node] = c.emit(_SYM_OPS[target], [a, b], name_hint="size")
        c.syms.add(c.env[node])
        return
    op = getattr(target, "__self__", None)
    inplace_of = getattr(target, "op", None)
    cls = op if isinstance(op, type) else inplace_of
    if cls is None:
        raise c.unsupported(node)
    impure = getattr(target, "_fx_impure", False) and inplace_of is None
    fillable = any(a in c.fillable for a in node.args if hasattr(a, "op"))
    if c.fold and not impure and not fillable and cls.__name__ not in _NO_FOLD and \
            _is_const_arg(c, node.args) and \
            _is_const_arg(c, tuple(node.kwargs.values())):
        # constant folding: evaluate now, emit an initializer only where it is used
        args = _const_value(c, node.args)
        kwargs = {k: _const_value(c, v) for k, v in node.kwargs.items()}
        if inplace_of is not None:
            args = (args[0].clone(),) + tuple(args[1:])
        c.const[node] = target(*args, **kwargs)
        return
    handler = _HANDLERS.get(cls.__name__)
    if handler is None:
        raise c.unsupported(node)
    args = [c.value(a) for a in node.args]
    kwargs = {k: c.value(v) for k, v in node.kwargs.items()}
    res = handler(c, node, *args, **kwargs)
    c.env[node] = res
    if inplace_of is not None:
        # later readers of the written tensor see the new value
        src = node.args[0]
        c.env[src] = res
        c.const.pop(src, None)


# --------------------------------------------------------------------------- QDQ
# A fake-quantized model (``prepare_qat``, or ``prepare`` with fake-quantize qconfigs, after
# calibration) exports in ONNX's QDQ form: each fake-quantize op becomes QuantizeLinear +
# DequantizeLinear with its scale and zero point, weights included (never folded), which
# onnxruntime runs as integer kernels where it recognises the pattern.
_NO_FOLD = {"FakeQuantizePerTensorAffine", "FakeQuantizePerChannelAffine"}


def _qparam(c, node, i):
    """Argument ``i`` (a scale or zero point) as an array: it must be known at export time."""
    a = node.args[i]
    if not _is_const_arg(c, a):
        raise c.unsupported(node, "a fake-quantize op whose scale or zero point is computed "
                                  "in the graph (disable the observers before export)")
    v = _const_value(c, a)
    return np.asarray(v.detach().numpy() if hasattr(v, "detach") else v)


def _qdq(c, node, x, scale, zero_point, axis, qmin, qmax):
    scale = _qparam(c, node, 1).astype(np.float32).reshape(-1)
    zp = _qparam(c, node, 2).reshape(-1)
    if zp.dtype.kind == "f":
        raise c.unsupported(node, "float zero points (embedding qparams) have no QDQ form")
    if _np_dtype(_meta(node)[1]) != np.float32:
        raise c.unsupported(node, "QuantizeLinear takes float32 inputs here; export the model "
                                  "in float32")
    if 0 <= qmin and qmax <= 255:
        qdt, full = np.uint8, (0, 255)
    elif -128 <= qmin and qmax <= 127:
        qdt, full = np.int8, (-128, 127)
    else:
        raise c.unsupported(node, f"quantization range [{qmin}, {qmax}] is wider than 8 bits")
    attrs = {} if axis is None else {"axis": int(axis)}
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    s, z = c.init(scale, "scale"), c.init(zp.astype(qdt), "zero_point")
    y = c.emit("DequantizeLinear", [c.emit("QuantizeLinear", [x, s, z], **attrs), s, z],
               **attrs)
    if (qmin, qmax) != full:  # a narrower range (reduce_range): clamp on the float grid
        shape = [1] * len(_meta(node)[0])
        if axis is not None:
            shape[int(axis)] = -1
        lo = ((qmin - zp.astype(np.float32)) * scale).astype(np.float32).reshape(shape)
        hi = ((qmax - zp.astype(np.float32)) * scale).astype(np.float32).reshape(shape)
        y = c.emit("Min", [c.emit("Max", [y, c.init(lo, "qmin")]), c.init(hi, "qmax")])
    return y


@_h("FakeQuantizePerTensorAffine")
def _fake_quant(c, node, x, scale, zero_point, qmin, qmax):
    return _qdq(c, node, x, scale, zero_point, None, qmin, qmax)


@_h("FakeQuantizePerChannelAffine")
def _fake_quant_channel(c, node, x, scale, zero_point, axis, qmin, qmax):
    return _qdq(c, node, x, scale, zero_point, axis, qmin, qmax)


# --------------------------------------------------------------------------- public
def export(model, args=(), f=None, kwargs=None, *, input_names=None, output_names=None,
           dynamic_axes=None, dynamic_shapes=None, opset_version=None, export_params=True,
           do_constant_folding=True, dynamo=True, verbose=None, training=None,
           external_data=None, **unused):
    """Export ``model(*args, **kwargs)`` to ONNX and write it to ``f`` (a path or a binary
    file object); returns the ``onnx.ModelProto``.

    The model is captured with ``ember.export`` in eval mode (dropout removed, batch norm with
    its running statistics), then each captured op becomes ONNX nodes; weights are stored as
    initializers (as external data when above 2 GB); with ``export_params=False`` they are
    graph inputs instead, after the model's own, named by their dotted paths (as PyTorch does),
    and nothing computed from them is folded. ``dynamic_axes`` maps input/output names
    to ``{dim: name}``: those dimensions get symbolic names and may vary at run time.
    ``opset_version`` defaults to 18; 17-21 are supported. ``dynamo`` is accepted for
    PyTorch compatibility: ember always exports from its captured graph."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f"ember.onnx.export: opset_version {opset_version} is not supported; "
                         f"use one of {list(SUPPORTED_OPSETS)} (default {DEFAULT_OPSET})")
    if not isinstance(args, tuple):
        args = (args,)
    if args and isinstance(args[-1], dict) and kwargs is None:
        args, kwargs = args[:-1], args[-1]
    model_proto = _export_proto(model, args, kwargs, input_names, output_names, dynamic_axes,
                                dynamic_shapes, opset, do_constant_folding, export_params)
    if f is not None:
        _save(onnx, model_proto, f)
    return model_proto


def _dims_for_export(model, args, kwargs, input_names, dynamic_axes, dynamic_shapes):
    """``dynamic_axes`` (by ONNX input name) as ``ember.export`` dynamic_shapes."""
    if dynamic_shapes is not None or not dynamic_axes:
        return dynamic_shapes
    import inspect

    from ..export import Dim
    params = [p for p in inspect.signature(model.forward).parameters]
    names = list(input_names or [])
    dims, spec = {}, {}
    for i, p in enumerate(params[:len(args)]):
        onnx_name = names[i] if i < len(names) else p
        axes = dynamic_axes.get(onnx_name)
        if axes is None:
            continue
        if isinstance(axes, (list, tuple)):
            axes = {a: f"{onnx_name}_dynamic_axes_{a}" for a in axes}
        spec[p] = {int(a): dims.setdefault(n, Dim(_dim_name(n))) for a, n in axes.items()}
    for k in (kwargs or {}):
        if k in dynamic_axes:
            spec[k] = {int(a): dims.setdefault(n, Dim(_dim_name(n)))
                       for a, n in dynamic_axes[k].items()}
    return spec or None


def _axes_from_shapes(model, args, input_names, dynamic_shapes):
    """``dynamic_shapes`` (``ember.export``'s form) as ONNX dim names per input name."""
    import inspect
    params = list(inspect.signature(model.forward).parameters)
    names = list(input_names or [])
    specs = dynamic_shapes if isinstance(dynamic_shapes, dict) else \
        {params[i]: v for i, v in enumerate(dynamic_shapes) if i < len(params)}
    axes = {}
    for pname, spec in specs.items():
        if not spec:
            continue
        i = params.index(pname) if pname in params else None
        onnx_name = names[i] if i is not None and i < len(names) else pname
        items = spec.items() if isinstance(spec, dict) else enumerate(spec)
        dims = {int(a): d.__name__ for a, d in items if d is not None and hasattr(d, "__name__")}
        if dims:
            axes[onnx_name] = dims
    return axes


def _dim_name(name):
    """An identifier for ``Dim`` from an ONNX dim name such as "batch size"."""
    s = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(name))
    return s if s.isidentifier() else f"d_{s}"


def _export_proto(model, args, kwargs, input_names, output_names, dynamic_axes,
                  dynamic_shapes, opset, fold, export_params=True):
    from .. import export as _ember_export
    onnx = _onnx()
    dynamic_axes = {k: ({a: f"{k}_dynamic_axes_{a}" for a in v} if isinstance(v, (list, tuple))
                        else dict(v)) for k, v in (dynamic_axes or {}).items()}
    if dynamic_shapes is not None and not dynamic_axes:
        dynamic_axes = _axes_from_shapes(model, args, input_names, dynamic_shapes)
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        ep = _ember_export.export(model, args, kwargs, dynamic_shapes=_dims_for_export(
            model, args, kwargs, input_names, dynamic_axes, dynamic_shapes))
        ep = _ember_export.lower_creations(ep)  # zeros(B, ...) made in forward, in core ops
    finally:
        if was_training:
            model.train()
    try:
        c, ins, outs = _convert(ep, opset, fold, input_names, output_names, dynamic_axes,
                                export_params)
    except UnsupportedOperatorError as e:
        line = _locate(model, args, kwargs, ep.graph, e.node) if e.node is not None else None
        if line is None:
            raise
        raise UnsupportedOperatorError(str(e).replace(_user_line(e.node), line),
                                       e.node) from None
    helper = c.helper
    inits = []
    for name, arr in c.initializers.items():
        t = onnx.numpy_helper.from_array(np.array(arr, order="C"), name)
        inits.append(t)
    _dead_code(c, {o.name for o in outs})
    used = {i for n in c.nodes for i in n.input}
    inits = [t for t in inits if t.name in used]
    graph = helper.make_graph(c.nodes, "main_graph", ins, outs, initializer=inits)
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                    producer_name="ember")
    model_proto.ir_version = min(model_proto.ir_version, 10)
    size = sum(a.nbytes for a in c.initializers.values())
    if size < EXTERNAL_DATA_THRESHOLD:
        onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


def _save(onnx, model_proto, f):
    big = model_proto.ByteSize() > EXTERNAL_DATA_THRESHOLD if _fits(model_proto) else True
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=".onnx")
        os.close(fd)
        try:
            if big:
                # the data file is written under its final name; the model file is renamed
                # into place last, so a reader never sees a model without its data
                onnx.save_model(model_proto, tmp, save_as_external_data=True,
                                all_tensors_to_one_file=True,
                                location=os.path.basename(path) + ".data", size_threshold=0)
                onnx.checker.check_model(tmp, full_check=True)
            else:
                with open(tmp, "wb") as fh:
                    fh.write(model_proto.SerializeToString())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    if big:
        raise OnnxExporterError("ember.onnx.export: a model above 2 GB needs a path (its "
                                "weights go to an external data file), not a file object")
    f.write(model_proto.SerializeToString())
    if isinstance(f, io.BufferedIOBase) and hasattr(f, "flush"):
        f.flush()


def _fits(model_proto):
    try:
        model_proto.ByteSize()
        return True
    except Exception:  # noqa: BLE001 - protobuf refuses messages above 2 GB
        return False
