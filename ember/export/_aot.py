"""``ember.export.aot_compile``: an ExportedProgram as a self-contained C library.

``aot_compile(ep, out_dir)`` writes into ``out_dir``:

* ``ember_model.c``: the runtime kernels (``_aot_runtime``) followed by the model: one
  ``ember_model_run`` that checks its inputs, sizes a workspace and calls a kernel per op;
* ``ember_model.h``: the documented C API (the same for every model);
* ``ember_model.weights``: the constants as raw float32 after a header (magic, version,
  tensor count and sizes, checksum) that ``ember_model_create`` checks;
* ``libember_model.so``: the library built by the system C compiler (-O3), needing only libc
  and libm (and a CBLAS when ``blas=`` is given);
* ``ember_model.json``: what ``aot_load`` needs to call it from Python.

How a graph becomes C. The capture's graph is replayed in ember at the example size (and, when
the program has a dynamic dimension, at two more sizes): every value's shape is recorded and
each dimension is fitted as ``a * D + c`` in the dynamic size ``D``, so the C code computes
every shape at run time from ``D`` (a dimension that is not affine is refused). Nodes whose
inputs are all constants (weights, buffers, BatchNorm's eval-mode scale and shift) are folded
into constants at compile time. Every other node is lowered by a handler in ``_LOWER`` (keyed
by the op class name) to a kernel call; views that keep the layout (view, reshape,
contiguous) share their input's buffer, other layouts are copied. All values are contiguous
float32 (booleans as 0/1 and integer ids as exact floats). Buffers are assigned to slots by
liveness, so a slot is reused once its value is dead; the slots' sizes are computed per call.

As the ONNX exporter does, a constant filled with one value whose dimensions include the
example's dynamic size (``zeros(batch, hidden)`` made in forward: creation is not captured) is
rebuilt at run time with those dimensions following the dynamic size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import numpy as np

from ._aot_runtime import HEADER, MODEL_API, MODEL_PRELUDE, RUNTIME_C

WEIGHTS_MAGIC = b"EMBERAOT"
WEIGHTS_VERSION = 1
_ALIGN = 16          # slot alignment in floats (64 bytes)

# error codes of the C API (kept in step with the header)
ERRORS = {0: "EMBER_OK", 1: "EMBER_ERR_NULL", 2: "EMBER_ERR_COUNT", 3: "EMBER_ERR_RANK",
          4: "EMBER_ERR_SHAPE", 5: "EMBER_ERR_CAPACITY", 6: "EMBER_ERR_MEMORY",
          7: "EMBER_ERR_VALUE", 8: "EMBER_ERR_INDEX"}


class _Unsupported(NotImplementedError):
    pass


# ------------------------------------------------------------------------ shapes
class Dimx:
    """A dimension ``a * D + c`` of the dynamic size ``D`` (``a == 0``: static)."""

    __slots__ = ("a", "c")

    def __init__(self, a, c):
        self.a, self.c = int(a), int(c)

    @property
    def static(self):
        return self.a == 0

    def at(self, d):
        return self.a * d + self.c

    def c_expr(self):
        if self.a == 0:
            return str(self.c)
        t = "D" if self.a == 1 else f"{self.a}*D"
        return t if self.c == 0 else f"({t}{self.c:+d})"

    def __eq__(self, other):
        return isinstance(other, Dimx) and (self.a, self.c) == (other.a, other.c)

    def __hash__(self):
        return hash((self.a, self.c))

    def __repr__(self):
        return self.c_expr()


def _prod_expr(dims):
    static = 1
    parts = []
    for d in dims:
        if d.static:
            static *= d.c
        else:
            parts.append(d.c_expr())
    if static != 1 or not parts:
        parts.insert(0, str(static))
    return "*".join(f"(int64_t){p}" if i == 0 else p for i, p in enumerate(parts))


def _shape_lit(dims):
    inner = ", ".join(d.c_expr() for d in dims) or "1"
    return f"(const int64_t[]){{{inner}}}"


# ------------------------------------------------------------------------ values
class Val:
    """A run-time value: a user input, a constant in the weights, a fill made per call, a
    scalar literal, or a buffer of the workspace (``alias_of``: shares another's buffer)."""

    def __init__(self, kind, dims, *, index=None, alias_of=None, dtype="float32"):
        self.kind = kind          # "input" | "const" | "buf" | "scalar"
        self.dims = list(dims)
        self.index = index        # input number / const number / scalar number
        self.alias_of = alias_of
        self.dtype = dtype
        self.id = None

    @property
    def rank(self):
        return len(self.dims)

    def root(self):
        v = self
        while v.alias_of is not None:
            v = v.alias_of
        return v

    def numel(self):
        return _prod_expr(self.dims)

    def shape(self):
        return _shape_lit(self.dims)


class _Stmt:
    """One kernel call. ``inplace``: operands whose buffer the (single) output may take over
    when this is their last use (pointwise kernels read each element before writing it)."""

    def __init__(self, code, uses, defs, temps=(), inplace=()):
        self.code, self.uses, self.defs, self.temps = code, list(uses), list(defs), list(temps)
        self.inplace = list(inplace)


def _user_line(node):
    st = node.meta.get("source_line") or node.meta.get("stack_trace") or \
        getattr(node, "stack_trace", None)
    if st:
        return st.strip().splitlines()[-1].strip()
    return f"graph line `{node.format_node()}`" if hasattr(node, "format_node") else \
        f"graph node {node.name}"


def _op_name(target):
    cls = getattr(target, "__self__", None)
    if isinstance(cls, type):
        return cls.__name__, False
    op = getattr(target, "op", None)
    if op is not None:
        return op.__name__, True
    return getattr(target, "__name__", repr(target)), False


# ------------------------------------------------------------------------ the compiler
class _Compiler:
    def __init__(self, ep):
        self.ep = ep
        self.vals = {}            # fx node -> Val | list of Val | python value
        self.const = {}           # fx node -> numpy array (known at compile time)
        self.consts = []          # numpy float32 arrays in the weights file
        self.scalars = []         # float literals
        self.stmts = []
        self.inputs = []          # (node, Val, dtype name)
        self.fills = []           # (Val, value)
        self.bufs = []
        self._const_ids = {}

    # -- values
    def new_buf(self, dims, dtype="float32"):
        v = Val("buf", dims, dtype=dtype)
        self.bufs.append(v)
        return v

    def alias(self, src, dims):
        v = Val("buf", dims, alias_of=src, dtype=src.dtype)
        self.bufs.append(v)
        return v

    def add_const(self, arr, key=None):
        if key is not None and key in self._const_ids:
            return self._const_ids[key]
        arr = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        v = Val("const", [Dimx(0, s) for s in arr.shape], index=len(self.consts))
        self.consts.append(arr)
        if key is not None:
            self._const_ids[key] = v
        return v

    def scalar(self, x):
        v = Val("scalar", [], index=len(self.scalars))
        self.scalars.append(float(x))
        return v

    def emit(self, code, uses, defs, temps=(), inplace=()):
        self.stmts.append(_Stmt(code, uses, defs, temps, inplace))

    def operand(self, node_arg):
        """A tensor operand as a Val (Python numbers become scalars; folded constants go to
        the weights file)."""
        from ..fx import Node
        if isinstance(node_arg, Node):
            if node_arg in self.vals:
                v = self.vals[node_arg]
                if isinstance(v, Val):
                    return v
            if node_arg in self.const:
                return self.add_const(self.const[node_arg], key=id(node_arg))
            raise _Unsupported(f"value of node {node_arg.name} is not a tensor")
        if isinstance(node_arg, (bool, int, float)):
            return self.scalar(node_arg)
        raise _Unsupported(f"operand of type {type(node_arg).__name__}")

    def dims_of(self, node):
        return self.shapes[node]


def _ptr(v):
    """C expression of a value's data pointer (resolved after slot assignment)."""
    return f"@{id(v)}@"


# ------------------------------------------------------------------------ lowering rules
_LOWER = {}


def _rule(*names):
    def deco(f):
        for n in names:
            _LOWER[n] = f
        return f
    return deco


_BINOPS = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Maximum": 4, "Minimum": 5, "Pow": 6,
           "Eq": 7, "Ne": 8, "Lt": 9, "Le": 10, "Gt": 11, "Ge": 12, "LogicalAnd": 13,
           "LogicalOr": 14, "LogicalXor": 15}
_UNOPS = {"Neg": 0, "Abs": 1, "Relu": 2, "Exp": 3, "Log": 4, "Sqrt": 5, "Rsqrt": 6,
          "Reciprocal": 7, "Tanh": 8, "Sigmoid": 9, "Silu": 10, "Sin": 17, "Cos": 18,
          "Erf": 19, "Square": 20, "Sign": 21, "LogicalNot": 22, "Isnan": 24}


def _binary(c, node, a, b, *rest):
    if rest or node.kwargs:
        raise _Unsupported(f"{_op_name(node.target)[0]} with extra arguments {rest}")
    name = _op_name(node.target)[0]
    va, vb = c.operand(a), c.operand(b)
    out = c.new_buf(c.dims_of(node))
    if name == "Pow" and va.kind != "scalar" and vb.kind == "scalar":
        e = c.scalars[vb.index]
        op = 20 if e == 2.0 else 23
        c.emit(f"er_unary({op}, {_ptr(va)}, {_ptr(out)}, {out.numel()}, {e!r}f, 0.0f);",
               [va], [out], inplace=[va])
        return out
    c.emit(f"er_binary({_BINOPS[name]}, {_ptr(va)}, {va.shape()}, {va.rank}, {_ptr(vb)}, "
           f"{vb.shape()}, {vb.rank}, {_ptr(out)}, {out.shape()}, {out.rank});",
           [va, vb], [out], inplace=[v for v in (va, vb) if v.dims == out.dims])
    return out


for _n in _BINOPS:
    _LOWER[_n] = _binary


def _unary_call(c, node, x, op, p0=0.0, p1=0.0):
    vx = c.operand(x)
    out = c.new_buf(c.dims_of(node))
    c.emit(f"er_unary({op}, {_ptr(vx)}, {_ptr(out)}, {out.numel()}, {_cf(p0)}, {_cf(p1)});",
           [vx], [out], inplace=[vx])
    return out


def _cf(x):
    x = float(x)
    if x != x:
        return "NAN"
    if x in (float("inf"), float("-inf")):
        return "INFINITY" if x > 0 else "-INFINITY"
    return f"{x!r}f"


@_rule(*_UNOPS)
def _unary(c, node, x, *rest):
    return _unary_call(c, node, x, _UNOPS[_op_name(node.target)[0]])


@_rule("Gelu")
def _gelu(c, node, x, approximate="none"):
    return _unary_call(c, node, x, 12 if approximate == "tanh" else 11)


@_rule("Hardtanh", "Clamp")
def _clamp(c, node, x, lo=None, hi=None):
    from ..fx import Node
    if isinstance(lo, Node) or isinstance(hi, Node):
        raise _Unsupported("clamp with tensor bounds")
    if lo is None:
        return _unary_call(c, node, x, 28, 0.0, hi)
    if hi is None:
        return _unary_call(c, node, x, 27, lo, 0.0)
    return _unary_call(c, node, x, 13, lo, hi)


@_rule("LeakyRelu")
def _leaky(c, node, x, slope=0.01, *rest):
    return _unary_call(c, node, x, 14, slope)


@_rule("Elu")
def _elu(c, node, x, alpha=1.0, scale=1.0, input_scale=1.0):
    if scale != 1.0 or input_scale != 1.0:
        raise _Unsupported("elu with scale/input_scale (selu, celu)")
    return _unary_call(c, node, x, 15, alpha)


@_rule("Softplus")
def _softplus(c, node, x, beta=1.0, threshold=20.0):
    return _unary_call(c, node, x, 16, beta, threshold)


@_rule("ToDtype")
def _to_dtype(c, node, x, dt):
    vx = c.operand(x)
    target = str(getattr(dt, "np", dt))
    if "bool" in target:
        return _unary_call(c, node, x, 25)
    if "int" in target:
        return _unary_call(c, node, x, 26)
    return c.alias(vx, c.dims_of(node))


@_rule("Where")
def _where(c, node, cond, a, b):
    vc, va, vb = c.operand(cond), c.operand(a), c.operand(b)
    out = c.new_buf(c.dims_of(node))
    c.emit(f"er_where({_ptr(vc)}, {vc.shape()}, {vc.rank}, {_ptr(va)}, {va.shape()}, "
           f"{va.rank}, {_ptr(vb)}, {vb.shape()}, {vb.rank}, {_ptr(out)}, {out.shape()}, "
           f"{out.rank});", [vc, va, vb], [out])
    return out


@_rule("Linear")
def _linear(c, node, x, w, b):
    vx = c.operand(x)
    if w not in c.const:
        raise _Unsupported("linear whose weight is computed at run time")
    wt = c.add_const(np.ascontiguousarray(c.const[w].T), key=("T", id(w)))
    vb = c.operand(b) if b is not None else None
    K = int(c.const[w].shape[1])
    N = int(c.const[w].shape[0])
    out = c.new_buf(c.dims_of(node))
    M = f"({vx.numel()})/{K}"
    c.emit(f"er_linear({_ptr(vx)}, {_ptr(wt)}, {_ptr(vb) if vb else 'NULL'}, {_ptr(out)}, "
           f"{M}, {K}, {N});", [vx, wt] + ([vb] if vb else []), [out])
    return out


@_rule("Matmul")
def _matmul(c, node, a, b):
    va, vb = c.operand(a), c.operand(b)
    out = c.new_buf(c.dims_of(node))
    ad, bd = list(va.dims), list(vb.dims)
    if len(ad) == 1:
        ad = [Dimx(0, 1)] + ad
    if len(bd) == 1:
        bd = bd + [Dimx(0, 1)]
    K, N = bd[-2].c_expr(), bd[-1].c_expr()
    M = ad[-2].c_expr()
    if len(bd) == 2:  # one right matrix: a single GEMM over every row of a
        c.emit(f"er_gemm(({va.numel()})/{K}, {N}, {K}, {_ptr(va)}, {K}, {_ptr(vb)}, {N}, "
               f"{_ptr(out)}, {N}, 0);", [va, vb], [out])
        return out
    batch = c.dims_of(node)[:-2] if len(c.dims_of(node)) >= 2 else []
    r = len(batch)
    # both operands' batch dims, left-padded with ones to the output's batch rank
    abatch = [Dimx(0, 1)] * (r - len(ad[:-2])) + ad[:-2]
    bbatch = [Dimx(0, 1)] * (r - len(bd[:-2])) + bd[:-2]
    nb = _prod_expr(batch)
    offs = c.new_buf([Dimx(0, 4)] + batch)  # two int64 offset arrays (2 floats each)
    code = (f"{{ int64_t *ao = (int64_t *)(void *){_ptr(offs)}, *bo = ao + ({nb}); "
            f"er_batch_offsets({_shape_lit(batch)}, {_shape_lit(abatch)}, {r}, "
            f"(int64_t){M}*{K}, ao); "
            f"er_batch_offsets({_shape_lit(batch)}, {_shape_lit(bbatch)}, {r}, "
            f"(int64_t){K}*{N}, bo); "
            f"er_bmm({_ptr(va)}, {_ptr(vb)}, {_ptr(out)}, {nb}, ao, bo, {M}, {K}, {N}); }}")
    c.emit(code, [va, vb], [out], temps=[offs])
    return out


def _spatial2d(dims_in, pads, ks, st, dl):
    """1-D ops as 2-D ones over a height of 1."""
    if len(ks) == 2:
        return dims_in, pads, ks, st, dl
    if len(ks) == 1:
        return (dims_in[:2] + [Dimx(0, 1)] + dims_in[2:], ((0, 0),) + tuple(pads),
                (1,) + tuple(ks), (1,) + tuple(st), (1,) + tuple(dl))
    raise _Unsupported(f"{len(ks)}-d convolution/pooling (the C library has 1-d and 2-d)")


@_rule("ConvNd")
def _conv(c, node, x, w, b, stride, pads, dilation, groups):
    vx = c.operand(x)
    if w not in c.const:
        raise _Unsupported("convolution whose weight is computed at run time")
    warr = c.const[w]
    ks = tuple(warr.shape[2:])
    xd, pads, ks, stride, dilation = _spatial2d(list(vx.dims), pads, ks, stride, dilation)
    folded = getattr(c, "conv_params", {}).get(node)
    if folded is not None:  # batch norm folded in (see _fold_channel_affine)
        vw, vb = c.add_const(folded[0]), c.add_const(folded[1])
    else:
        vw = c.operand(w)
        vb = c.operand(b) if b is not None else None
    od = c.dims_of(node)
    od2 = od[:2] + [Dimx(0, 1)] + od[2:] if len(od) == 3 else od
    out = c.new_buf(od)
    Cin, Co, g = xd[1], int(warr.shape[0]), int(groups)
    cg = int(warr.shape[1])
    temps = []
    col = "NULL"
    direct = (cg == 1 and Co == g) or (ks == (1, 1) and stride == (1, 1) and
                                       all(p == (0, 0) for p in pads) and
                                       od2[2] == xd[2] and od2[3] == xd[3])
    if not direct:
        colv = c.new_buf([Dimx(0, cg * ks[0] * ks[1]), od2[2], od2[3]])
        temps.append(colv)
        col = _ptr(colv)
    H, W = xd[2].c_expr(), xd[3].c_expr()
    c.emit(f"er_conv2d({_ptr(vx)}, {_ptr(vw)}, {_ptr(vb) if vb else 'NULL'}, {_ptr(out)}, "
           f"{col}, {xd[0].c_expr()}, {Cin.c_expr()}, {H}, {W}, {Co}, {ks[0]}, {ks[1]}, "
           f"{stride[0]}, {stride[1]}, {pads[0][0]}, {pads[1][0]}, {dilation[0]}, "
           f"{dilation[1]}, {g}, {od2[2].c_expr()}, {od2[3].c_expr()});",
           [vx, vw] + ([vb] if vb else []), [out], temps)
    return out


@_rule("MaxPoolNd")
def _maxpool(c, node, x, ks, st, dl, pads, osz, return_indices):
    if return_indices:
        raise _Unsupported("max pooling with return_indices=True")
    vx = c.operand(x)
    xd, pads, ks, st, dl = _spatial2d(list(vx.dims), pads, ks, st, dl)
    out = c.new_buf(c.dims_of(node))
    od = out.dims[:2] + [Dimx(0, 1)] + out.dims[2:] if out.rank == 3 else out.dims
    c.emit(f"er_maxpool2d({_ptr(vx)}, {_ptr(out)}, {_prod_expr(xd[:2])}, {xd[2].c_expr()}, "
           f"{xd[3].c_expr()}, {ks[0]}, {ks[1]}, {st[0]}, {st[1]}, {pads[0][0]}, "
           f"{pads[1][0]}, {dl[0]}, {dl[1]}, {od[2].c_expr()}, {od[3].c_expr()});",
           [vx], [out])
    return out


@_rule("AvgPoolNd")
def _avgpool(c, node, x, ks, st, pads, osz, div):
    from ..fx import Node
    vx = c.operand(x)
    if isinstance(div, str) or isinstance(osz, str):  # rules: resolve for static sizes
        if any(not d.static for d in vx.dims[2:]):
            raise _Unsupported("average pooling over a dynamic spatial size")
        from ..ops.conv import _avg_geometry

        class _Shape:
            shape = tuple(d.c for d in vx.dims)
            dtype = np.dtype(np.float64)
        pads, osz, div = _avg_geometry(_Shape, ks, st, pads, osz, div)
        if not np.isscalar(div) and np.asarray(div).size > 1:
            arr = np.asarray(div, dtype=np.float64).reshape(tuple(int(o) for o in osz))
            per = arr.reshape(-1)
            div = float(per[0]) if np.all(per == per[0]) else arr
        else:
            div = float(np.asarray(div).reshape(-1)[0])
    xd, pads, ks, st, _ = _spatial2d(list(vx.dims), pads, ks, st, (1,) * len(ks))
    out = c.new_buf(c.dims_of(node))
    od = out.dims[:2] + [Dimx(0, 1)] + out.dims[2:] if out.rank == 3 else out.dims
    uses = [vx]
    if isinstance(div, Node):
        if div not in c.const:
            raise _Unsupported("average pooling with a run-time divisor")
        arr = np.asarray(c.const[div], dtype=np.float64)
        lead = arr.shape[:max(arr.ndim - len(osz), 0)]
        if any(s != 1 for s in lead):
            raise _Unsupported("average pooling with a per-channel divisor")
        arr = arr.reshape(arr.shape[len(lead):])
        per = np.broadcast_to(arr, tuple(int(s) for s in osz)).reshape(-1)
        if np.all(per == per[0]):
            dv, divs = _cf(per[0]), "NULL"
        else:
            cv = c.add_const(per)
            dv, divs = "1.0f", _ptr(cv)
            uses.append(cv)
    elif isinstance(div, np.ndarray):
        cv = c.add_const(div.reshape(-1))
        dv, divs = "1.0f", _ptr(cv)
        uses.append(cv)
    else:
        dv, divs = _cf(div), "NULL"
    c.emit(f"er_avgpool2d({_ptr(vx)}, {_ptr(out)}, {_prod_expr(xd[:2])}, {xd[2].c_expr()}, "
           f"{xd[3].c_expr()}, {ks[0]}, {ks[1]}, {st[0]}, {st[1]}, {pads[0][0]}, "
           f"{pads[1][0]}, {od[2].c_expr()}, {od[3].c_expr()}, {dv}, {divs});", uses, [out])
    return out


def _split3(dims, start, stop):
    """(outer, n, inner) C expressions of ``dims`` around the axes [start, stop)."""
    return _prod_expr(dims[:start]), _prod_expr(dims[start:stop]), _prod_expr(dims[stop:])


@_rule("Softmax", "LogSoftmax")
def _softmax(c, node, x, dim):
    vx = c.operand(x)
    d = int(dim) % max(vx.rank, 1)
    out = c.new_buf(c.dims_of(node))
    o, n, i = _split3(vx.dims, d, d + 1)
    log_ = int(_op_name(node.target)[0] == "LogSoftmax")
    c.emit(f"er_softmax({_ptr(vx)}, {_ptr(out)}, {o}, {n}, {i}, {log_});", [vx], [out])
    return out


@_rule("Normalize")
def _normalize(c, node, x, w, b, axes, eps):
    vx = c.operand(x)
    r = vx.rank
    axes = sorted(int(a) % r for a in axes)
    if axes != list(range(r - len(axes), r)):
        raise _Unsupported("normalization over non-trailing axes (group/instance norm)")
    norm = vx.dims[r - len(axes):]
    n = _prod_expr(norm)
    uses = [vx]
    ptrs = []
    for p in (w, b):
        if p is None:
            ptrs.append("NULL")
            continue
        vp = c.operand(p)
        if vp.numel() != n:
            raise _Unsupported("normalization whose affine parameters are per channel")
        uses.append(vp)
        ptrs.append(_ptr(vp))
    out = c.new_buf(c.dims_of(node)[0] if isinstance(c.dims_of(node), tuple) else
                    vx.dims)
    c.emit(f"er_layernorm({_ptr(vx)}, {ptrs[0]}, {ptrs[1]}, {_ptr(out)}, "
           f"({vx.numel()})/({n}), {n}, {_cf(eps)});", uses, [out])
    return [out, _NotLowered("the mean output of normalize"),
            _NotLowered("the variance output of normalize")]


class _NotLowered:
    def __init__(self, what):
        self.what = what


def _axes_of(axis, r):
    if axis is None:
        return list(range(r))
    axis = axis if isinstance(axis, (tuple, list)) else (axis,)
    return sorted(int(a) % max(r, 1) for a in axis)


def _reduce_call(c, node, x, axes, op):
    vx = c.operand(x)
    if not axes:
        axes = list(range(vx.rank))
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise _Unsupported("a reduction over non-adjacent axes")
    out = c.new_buf(c.dims_of(node))
    o, n, i = _split3(vx.dims, axes[0], axes[-1] + 1)
    c.emit(f"er_reduce({op}, {_ptr(vx)}, {_ptr(out)}, {o}, {n}, {i});", [vx], [out])
    return out


@_rule("Sum", "Mean")
def _sum(c, node, x, axis=None, keepdim=False, dtype=None):
    r = len(c.shapes[node.args[0]])
    return _reduce_call(c, node, x, _axes_of(axis, r),
                        1 if _op_name(node.target)[0] == "Mean" else 0)


@_rule("Amax", "Amin", "MaxAll", "MinAll")
def _amax(c, node, x, axis=None, keepdim=False):
    r = len(c.shapes[node.args[0]])
    big = _op_name(node.target)[0] in ("Amax", "MaxAll")
    return _reduce_call(c, node, x, _axes_of(axis, r), 2 if big else 3)


@_rule("MaxDim", "MinDim")
def _maxdim(c, node, x, dim, keepdim=False):
    vx = c.operand(x)
    d = int(dim) % max(vx.rank, 1)
    big = _op_name(node.target)[0] == "MaxDim"
    dims = c.dims_of(node)
    vals, idx = c.new_buf(dims[0]), c.new_buf(dims[1], dtype="int64")
    o, n, i = _split3(vx.dims, d, d + 1)
    c.emit(f"er_reduce({2 if big else 3}, {_ptr(vx)}, {_ptr(vals)}, {o}, {n}, {i});",
           [vx], [vals])
    c.emit(f"er_argreduce({0 if big else 1}, {_ptr(vx)}, {_ptr(idx)}, {o}, {n}, {i});",
           [vx], [idx])
    return [vals, idx]


@_rule("Argmax")
def _argmax(c, node, x, dim, keepdim, largest=True):
    vx = c.operand(x)
    out = c.new_buf(c.dims_of(node), dtype="int64")
    if dim is None:
        o, n, i = "1", vx.numel(), "1"
    else:
        d = int(dim) % max(vx.rank, 1)
        o, n, i = _split3(vx.dims, d, d + 1)
    c.emit(f"er_argreduce({0 if largest else 1}, {_ptr(vx)}, {_ptr(out)}, {o}, {n}, {i});",
           [vx], [out])
    return out


@_rule("View", "Reshape", "Contiguous", "Clone")
def _view(c, node, x, *rest, **kw):
    vx = c.operand(x)
    return c.alias(vx, c.dims_of(node))


@_rule("Permute")
def _permute(c, node, x, dims):
    vx = c.operand(x)
    perm = [int(d) % vx.rank for d in dims]
    out = c.new_buf(c.dims_of(node))
    if perm == list(range(vx.rank)):
        return c.alias(vx, out.dims)
    plit = "(const int64_t[]){" + ", ".join(map(str, perm)) + "}"
    c.emit(f"er_permute({_ptr(vx)}, {vx.shape()}, {vx.rank}, {plit}, {_ptr(out)});",
           [vx], [out])
    return out


@_rule("Expand")
def _expand(c, node, x, shape):
    vx = c.operand(x)
    out = c.new_buf(c.dims_of(node))
    c.emit(f"{{ int64_t st[ER_MAXD]; er_strides({out.shape()}, {vx.shape()}, {out.rank}, "
           f"{vx.rank}, st); er_strided_copy({_ptr(vx)}, 0, st, {_ptr(out)}, {out.shape()}, "
           f"{out.rank}); }}", [vx], [out])
    return out


def _concat(c, node, dim, arrays, stack):
    out = c.new_buf(c.dims_of(node))
    d = int(dim) % out.rank
    o, total, i = _split3(out.dims, d, d + 1)
    at = []
    uses = []
    lines = []
    for a in arrays:
        va = c.operand(a)
        uses.append(va)
        n = "1" if stack else va.dims[d].c_expr()
        off = " + ".join(at) or "0"
        lines.append(f"er_place({_ptr(va)}, {_ptr(out)}, {o}, {n}, {i}, {total}, {off});")
        at.append(f"(int64_t){n}")
    c.emit(" ".join(lines), uses, [out])
    return out


@_rule("Cat")
def _cat(c, node, dim, *arrays):
    return _concat(c, node, dim, arrays, False)


@_rule("Stack")
def _stack(c, node, dim, *arrays):
    return _concat(c, node, dim, arrays, True)


def _take(c, vx, d, start_expr, dims_out):
    out = c.new_buf(dims_out)
    o, total, i = _split3(vx.dims, d, d + 1)
    n = dims_out[d].c_expr() if len(dims_out) == vx.rank else "1"
    c.emit(f"er_take({_ptr(vx)}, {_ptr(out)}, {o}, {n}, {i}, {total}, {start_expr});",
           [vx], [out])
    return out


@_rule("Split")
def _split(c, node, x, sizes, dim):
    vx = c.operand(x)
    d = int(dim) % vx.rank
    outs, at = [], []
    for od in c.dims_of(node):
        outs.append(_take(c, vx, d, " + ".join(at) or "0", od))
        at.append(f"(int64_t){od[d].c_expr()}")
    return outs


@_rule("Unbind")
def _unbind(c, node, x, dim):
    vx = c.operand(x)
    d = int(dim) % vx.rank
    return [_take(c, vx, d, str(k), od) for k, od in enumerate(c.dims_of(node))]


@_rule("Narrow")
def _narrow(c, node, x, dim, start, length):
    from ..fx import Node
    if isinstance(start, Node):
        raise _Unsupported("narrow with a start computed from a dynamic size")
    vx = c.operand(x)
    d = int(dim) % vx.rank
    s = int(start)
    if s < 0:
        raise _Unsupported("narrow with a negative start")
    return _take(c, vx, d, str(s), c.dims_of(node))


@_rule("Index")
def _index(c, node, x, idx):
    """Basic indexing (ints, slices with literal bounds, None, Ellipsis) as a strided copy."""
    from ..fx import Node
    vx = c.operand(x)
    idx = idx if isinstance(idx, tuple) else (idx,)
    r = vx.rank
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    strides = []
    s = "1"
    for d in reversed(vx.dims):
        strides.insert(0, s)
        s = f"{s}*{d.c_expr()}"
    offset, out_strides, dim = [], [], 0
    for i in idx:
        if i is Ellipsis:
            for _ in range(r - n_real):
                out_strides.append(strides[dim])
                dim += 1
            continue
        if i is None:
            out_strides.append("0")
            continue
        if isinstance(i, Node) or hasattr(i, "shape"):
            raise _Unsupported("indexing with a tensor index")
        size = vx.dims[dim]
        if isinstance(i, slice):
            if any(isinstance(p, Node) for p in (i.start, i.stop, i.step)):
                raise _Unsupported("a slice whose bounds depend on a dynamic size")
            if i == slice(None):
                out_strides.append(strides[dim])
            else:
                if not size.static:
                    raise _Unsupported("slicing a dynamic dimension")
                start, _, step = i.indices(size.c)
                offset.append(f"{start}*{strides[dim]}")
                out_strides.append(f"{step}*{strides[dim]}")
            dim += 1
            continue
        if isinstance(i, (int, np.integer)):
            if not size.static and int(i) < 0:
                raise _Unsupported("a negative index into a dynamic dimension")
            k = int(i) % size.c if size.static else int(i)
            offset.append(f"{k}*{strides[dim]}")
            dim += 1
            continue
        raise _Unsupported(f"indexing with {type(i).__name__}")
    while dim < r:
        out_strides.append(strides[dim])
        dim += 1
    out = c.new_buf(c.dims_of(node))
    if len(out_strides) != out.rank:
        raise _Unsupported("this indexing pattern")
    st = "(const int64_t[]){" + (", ".join(f"(int64_t){e}" for e in out_strides) or "0") + "}"
    off = " + ".join(f"(int64_t){e}" for e in offset) or "0"
    c.emit(f"er_strided_copy({_ptr(vx)}, {off}, {st}, {_ptr(out)}, {out.shape()}, "
           f"{out.rank});", [vx], [out])
    return out


@_rule("Tril", "Triu")
def _tri(c, node, x, k=0):
    vx = c.operand(x)
    out = c.new_buf(c.dims_of(node))
    R, C = vx.dims[-2].c_expr(), vx.dims[-1].c_expr()
    upper = int(_op_name(node.target)[0] == "Triu")
    c.emit(f"er_tri({_ptr(vx)}, {_ptr(out)}, {_prod_expr(vx.dims[:-2])}, {R}, {C}, {int(k)}, "
           f"{upper});", [vx], [out])
    return out


@_rule("EmbeddingLookup")
def _embedding(c, node, weight, idx, padding_idx=None, scale=False):
    vw, vi = c.operand(weight), c.operand(idx)
    V, D = vw.dims[0].c_expr(), vw.dims[1].c_expr()
    out = c.new_buf(c.dims_of(node))
    c.emit(f"if (er_embedding({_ptr(vw)}, {V}, {D}, {_ptr(vi)}, {vi.numel()}, {_ptr(out)})) "
           f"return er_fail(m, EMBER_ERR_VALUE, \"embedding: an id is not an integer in "
           f"[0, %lld)\", (long long){V});", [vw, vi], [out])
    return out


@_rule("IndexSelect")
def _index_select(c, node, x, dim, index):
    vx, vi = c.operand(x), c.operand(index)
    d = int(dim) % max(vx.rank, 1)
    out = c.new_buf(c.dims_of(node))
    o, total, i = _split3(vx.dims, d, d + 1)
    c.emit(f"if (er_index_select({_ptr(vx)}, {_ptr(vi)}, {_ptr(out)}, {o}, {vi.numel()}, {i}, "
           f"{total})) return er_fail(m, EMBER_ERR_VALUE, \"index_select: an index is not an "
           f"integer in [-%lld, %lld)\", (long long)({total}), (long long)({total}));",
           [vx, vi], [out])
    return out


@_rule("Interpolate")
def _interpolate(c, node, x, size, scales, recompute, mode, align_corners, antialias):
    """Resampling as a gather (nearest modes) or a GEMM with a constant (out, in) matrix per
    spatial dim, each dim in turn; the spatial sizes must be static."""
    from ..ops.conv import Interpolate
    vx = c.operand(x)
    dims = list(vx.dims)
    if any(not d.static for d in dims[2:]):
        raise _Unsupported("interpolate over a dynamic spatial size")

    class _Ctx:
        pass
    ctx = _Ctx()
    Interpolate._steps(ctx, [1, 1] + [d.c for d in dims[2:]], np.dtype(np.float32), size,
                       scales, recompute, mode, align_corners, antialias)
    steps = ctx.steps or [(2, None, np.arange(dims[2].c))]  # unchanged: a copy
    cur = vx
    for axis, _, arr in steps:
        new = list(dims)
        new[axis] = Dimx(0, arr.shape[0])
        out = c.new_buf(new)
        o, total, i = _split3(dims, axis, axis + 1)
        if arr.ndim == 1:
            idx = c.add_const(arr.astype(np.float32))
            c.emit(f"er_index_select({_ptr(cur)}, {_ptr(idx)}, {_ptr(out)}, {o}, "
                   f"{arr.shape[0]}, {i}, {total});", [cur, idx], [out])
        elif axis == len(dims) - 1:
            mt = c.add_const(arr.T)
            c.emit(f"er_gemm({o}, {arr.shape[0]}, {total}, {_ptr(cur)}, {total}, {_ptr(mt)}, "
                   f"{arr.shape[0]}, {_ptr(out)}, {arr.shape[0]}, 0);", [cur, mt], [out])
        else:
            m = c.add_const(arr)
            n_out = arr.shape[0]
            c.emit(f"for (int64_t l = 0; l < {o}; l++) er_gemm({n_out}, {i}, {total}, "
                   f"{_ptr(m)}, {total}, {_ptr(cur)} + l * {total} * {i}, {i}, "
                   f"{_ptr(out)} + l * {n_out} * {i}, {i}, 0);", [cur, m], [out])
        cur, dims = out, new
    return cur


@_rule("LSTMLayer")
def _lstm(c, node, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse):
    if w_hr is not None:
        raise _Unsupported("LSTM with proj_size")
    if lengths is not None:
        raise _Unsupported("LSTM over packed sequences")
    if w_ih not in c.const or w_hh not in c.const:
        raise _Unsupported("LSTM whose weights are computed at run time")
    vx, vh, vc = c.operand(x), c.operand(h0), c.operand(c0)
    wih, whh = c.const[w_ih], c.const[w_hh]
    G, I = wih.shape
    H = whh.shape[1]
    wt_ih = c.add_const(np.ascontiguousarray(wih.T), key=("T", id(w_ih)))
    wt_hh = c.add_const(np.ascontiguousarray(whh.T), key=("T", id(w_hh)))
    bias = None
    for b in (b_ih, b_hh):
        if b is None:
            continue
        if b not in c.const:
            raise _Unsupported("LSTM whose biases are computed at run time")
        bias = c.const[b].astype(np.float32) if bias is None else bias + c.const[b]
    vb = c.add_const(bias) if bias is not None else None
    T, N = vx.dims[0], vx.dims[1]
    outs = c.dims_of(node)
    out, hn, cn = c.new_buf(outs[0]), c.new_buf(outs[1]), c.new_buf(outs[2])
    xw = c.new_buf([T, N, Dimx(0, G)])
    gates = c.new_buf([N, Dimx(0, G)])
    c.emit(f"er_lstm({_ptr(vx)}, {_ptr(vh)}, {_ptr(vc)}, {_ptr(wt_ih)}, {_ptr(wt_hh)}, "
           f"{_ptr(vb) if vb else 'NULL'}, {_ptr(out)}, {_ptr(hn)}, {_ptr(cn)}, {_ptr(xw)}, "
           f"{_ptr(gates)}, {T.c_expr()}, {N.c_expr()}, {I}, {H}, {int(bool(reverse))});",
           [vx, vh, vc, wt_ih, wt_hh] + ([vb] if vb else []), [out, hn, cn], [xw, gates])
    return [out, hn, cn]


# ------------------------------------------------------------------------ analysis
def _np_of(t):
    return t._data if hasattr(t, "_data") else np.asarray(t)


def _is_tensor(x):
    return hasattr(x, "_data") and hasattr(x, "shape")


class _Analysis:
    """The program replayed in ember at one to three sizes of its dynamic dimension."""

    def __init__(self, ep):
        from ..export import InputKind
        self.ep = ep
        self.graph = ep.graph
        sig = ep.graph_signature
        kinds = {getattr(s.arg, "name", None): s for s in sig.input_specs}
        self.lifted = {}
        self.user = []
        for n in self.graph.nodes:
            if n.op != "placeholder":
                continue
            spec = kinds.get(n.name)
            if spec is not None and spec.kind is not InputKind.USER_INPUT:
                t = ep.state_dict.get(spec.target)
                if t is None:
                    t = ep.constants[spec.target]
                self.lifted[n] = t
            else:
                self.user.append(n)
        # the dynamic dimension: (user input number, axis) -> Dim
        dyn = getattr(ep, "_dynamic", {}) or {}
        tensor_leaf = [i for i, g in enumerate(ep._guards.inputs) if g[1] != "const"]
        self.dyn_axes = {}
        names = set()
        for (flat_i, d), dim in dyn.items():
            self.dyn_axes[(tensor_leaf.index(flat_i), d)] = dim
            names.add(dim.name)
        if len(names) > 1:
            raise NotImplementedError(
                f"aot_compile: the program has {len(names)} dynamic dimensions "
                f"({sorted(names)}); the C library supports one (the batch): export the "
                "others with static sizes")
        self.dim = next(iter(dyn.values())) if dyn else None
        if self.dim is not None:
            (k, d) = next(iter(self.dyn_axes))
            self.d0 = int(self.user[k].meta["tensor_meta"][0][d])
        else:
            self.d0 = None

    def _attr(self, target):
        obj = self.ep.constants.get(target) if hasattr(self.ep.constants, "get") else None
        if obj is not None:
            return obj
        gm = self.ep.graph_module
        for part in target.split("."):
            gm = getattr(gm, part)
        return gm

    def fillable(self, arr):
        return self.d0 is not None and arr.size > 1 and self.d0 in arr.shape and \
            bool(np.all(arr.reshape(-1) == arr.reshape(-1)[0]))

    def inputs_at(self, d):
        import ember
        gen = np.random.default_rng(0)
        out = []
        for k, n in enumerate(self.user):
            shape, dt, _ = n.meta["tensor_meta"]
            shape = list(shape)
            for (kk, ax) in self.dyn_axes:
                if kk == k:
                    shape[ax] = d
            npdt = np.dtype(dt.np)
            if npdt.kind == "f":
                arr = gen.standard_normal(shape).astype(npdt)
            else:
                arr = np.zeros(shape, npdt)
            out.append(ember.from_numpy(arr))
        return out

    def replay(self, d, keep_consts=False):
        """{node: value} at dynamic size ``d``; with ``keep_consts``, also the set of nodes
        computable at compile time and their values (copied when computed)."""
        from .._tensor import _make
        from ..autograd.grad_mode import no_grad
        from ..fx import Node, map_arg
        from ._capture import sym_size
        env, shapes = {}, {}
        consts, fills = {}, set()
        user = iter(self.inputs_at(d if d is not None else 0))

        def load(a):
            return env[a]

        def is_const(a):
            return not isinstance(a, Node) or a in consts

        # the synthetic inputs (zero ids, all-false masks) may make NaNs: only shapes matter
        with no_grad(), np.errstate(all="ignore"):
            for n in self.graph.nodes:
                if n.op == "placeholder":
                    if n in self.lifted:
                        env[n] = self.lifted[n]
                        consts[n] = np.array(_np_of(env[n]))
                    else:
                        env[n] = next(user)
                elif n.op == "get_attr":
                    t = self._attr(n.target)
                    arr = _np_of(t)
                    if self.fillable(arr):
                        fills.add(n)
                        shape = [d if s == self.d0 else s for s in arr.shape]
                        t = _make(np.full(shape, arr.reshape(-1)[0], dtype=arr.dtype))
                    else:
                        consts[n] = np.array(arr)
                    env[n] = t
                elif n.op == "call_function":
                    r = n.target(*map_arg(n.args, load), **map_arg(n.kwargs, load))
                    env[n] = r
                    impure = getattr(n.target, "_fx_impure", False) and \
                        getattr(n.target, "op", None) is None
                    args = list(n.args) + list(n.kwargs.values())
                    flat = []
                    map_arg(args, lambda a: flat.append(a) or a)
                    if keep_consts and n.target is not sym_size and not impure and \
                            all(is_const(a) for a in flat) and _is_tensor_like(r):
                        consts[n] = _copy_value(r)
                        if getattr(n.target, "op", None) is not None and n.args and \
                                isinstance(n.args[0], Node):
                            consts[n.args[0]] = consts[n]
                elif n.op == "output":
                    outs = n.args[0]
                for_shape = env.get(n)
                if _is_tensor(for_shape):
                    shapes[n] = ("t", tuple(for_shape.shape), for_shape.dtype)
                elif isinstance(for_shape, (tuple, list)) and for_shape and \
                        all(_is_tensor(x) or x is None for x in for_shape):
                    shapes[n] = ("m", tuple((tuple(x.shape), x.dtype) if x is not None else None
                                            for x in for_shape))
        return shapes, consts, fills, outs


def _is_tensor_like(r):
    if _is_tensor(r):
        return True
    return isinstance(r, (tuple, list)) and all(_is_tensor(x) or x is None for x in r)


def _copy_value(r):
    if _is_tensor(r):
        return np.array(r._data)
    return tuple(np.array(x._data) if x is not None else None for x in r)


def _fit_dims(node, samples):
    """[(d, shape)] for one tensor value -> [Dimx] (each dimension affine in d)."""
    (d0, s0) = samples[0]
    if len(samples) == 1:
        return [Dimx(0, v) for v in s0]
    (d1, s1), (d2, s2) = samples[1], samples[2]
    if not (len(s0) == len(s1) == len(s2)):
        raise NotImplementedError(f"aot_compile: the rank of node {node.name} changes with the "
                                  "dynamic size")
    out = []
    for a0, a1, a2 in zip(s0, s1, s2):
        num = a1 - a0
        if num % (d1 - d0):
            raise NotImplementedError(
                f"aot_compile: a dimension of node {node.name} ({_user_line(node)}) is not "
                f"affine in the dynamic size ({a0}, {a1}, {a2} at {d0}, {d1}, {d2})")
        a = num // (d1 - d0)
        c = a0 - a * d0
        if a * d2 + c != a2:
            raise NotImplementedError(
                f"aot_compile: a dimension of node {node.name} ({_user_line(node)}) is not "
                f"affine in the dynamic size ({a0}, {a1}, {a2} at {d0}, {d1}, {d2})")
        out.append(Dimx(a, c))
    return out


def _other_sizes(dim, d0):
    lo = max(dim.min, 1)
    hi = dim.max if dim.max != float("inf") else d0 + 64
    cands = [d0 + 1, d0 + 2, d0 + 3, d0 - 1, d0 - 2, d0 + 5]
    got = [x for x in cands if lo <= x <= hi and x != d0 and x >= 2]
    got = list(dict.fromkeys(got))
    if len(got) < 2:
        raise NotImplementedError(f"aot_compile: the range [{dim.min}, {dim.max}] of "
                                  f"{dim.name} is too narrow to find the program's shapes")
    return got[:2]


# ------------------------------------------------------------------------ driver
def _lower(ep):
    """The program as a ``_Compiler`` holding its statements, values and constants."""
    import operator

    from ..fx import Node
    from ._capture import set_grad_enabled, sym_size
    an = _Analysis(ep)
    shapes0, consts, fills, outs = an.replay(an.d0, keep_consts=True)
    samples = {n: [(an.d0, s)] for n, s in shapes0.items()}
    if an.dim is not None:
        for d in _other_sizes(an.dim, an.d0):
            sh, _, _, _ = an.replay(d)
            for n, s in sh.items():
                if n in samples:
                    samples[n].append((d, s))
    for n, s in shapes0.items():
        items = [s[1:]] if s[0] == "t" else [x for x in s[1] if x is not None]
        for _, dt in items:
            kind = np.dtype(dt.np).kind
            if kind == "c" or (kind == "f" and np.dtype(dt.np) != np.float32):
                raise NotImplementedError(
                    f"aot_compile: node {n.name} is {dt} ({_user_line(n)}); the C library "
                    "computes in float32: export the model in float32")
        if any(len(x[0]) > 8 for x in items):
            raise NotImplementedError(f"aot_compile: node {n.name} has more than 8 dimensions "
                                      f"({_user_line(n)}); the C kernels handle up to 8")
    c = _Compiler(ep)
    c.analysis = an
    c.shapes = {}
    for n, ss in samples.items():
        first = ss[0][1]
        if first[0] == "t":
            c.shapes[n] = _fit_dims(n, [(d, s[1]) for d, s in ss])
        else:  # a tuple of tensors
            parts = []
            for k, item in enumerate(first[1]):
                if item is None:
                    parts.append(None)
                    continue
                parts.append(_fit_dims(n, [(d, s[1][k][0]) for d, s in ss]))
            c.shapes[n] = tuple(parts)
    c.const = consts
    _fold_channel_affine(c, an.graph)
    for n in an.graph.nodes:
        try:
            _lower_node(c, an, n, fills, (operator, set_grad_enabled, sym_size, Node))
        except _Unsupported as e:
            name = _op_name(n.target)[0] if n.op == "call_function" else n.op
            raise NotImplementedError(
                f"aot_compile: no C lowering for {name} ({e}) at node {n.name}; source: "
                f"{_user_line(n)}") from None
    flat = outs if isinstance(outs, (list, tuple)) else (outs,)
    c.outputs = []
    for o in flat:
        if not isinstance(o, Node):
            raise NotImplementedError("aot_compile: a program returning a Python constant "
                                      f"({o!r}) is not supported")
        v = c.operand(o)
        dt = shapes0[o][2] if o in shapes0 and shapes0[o][0] == "t" else None
        c.outputs.append((v, str(getattr(dt, "np", dt)) if dt is not None else "float32"))
    return c


_AFFINE = {"Add", "Sub", "Mul", "Div"}


def _fold_channel_affine(c, graph):
    """Fold ``conv -> (+ - * /) per-channel constant`` chains (eval-mode batch norm after
    constant folding) into the convolution's weight and bias, as inference compilers do.
    ``c.conv_params[conv] = (weight, bias)``; each folded node reads the conv's value."""
    from ..fx import Node
    c.conv_params, c.folded_into = {}, {}
    for n in graph.nodes:
        if n.op != "call_function" or _op_name(n.target) != ("ConvNd", False) or \
                n.args[1] not in c.const or (n.args[2] is not None and n.args[2] not in c.const):
            continue
        w = np.array(c.const[n.args[1]], dtype=np.float64)
        co = w.shape[0]
        b = np.zeros(co) if n.args[2] is None else np.array(c.const[n.args[2]], np.float64)
        rank = len(c.shapes[n])
        tail, changed = n, False
        while len(tail.users) == 1:
            u = next(iter(tail.users))
            name, inplace = _op_name(u.target) if u.op == "call_function" else (None, False)
            if name not in _AFFINE or inplace or u.kwargs or len(u.args) != 2:
                break
            first = u.args[0] is tail
            other = u.args[1] if first else u.args[0]
            if other is tail or (not first and name in ("Sub", "Div")):
                break
            if isinstance(other, Node):
                if other not in c.const:
                    break
                arr = np.asarray(c.const[other], np.float64)
            elif isinstance(other, (int, float)) and not isinstance(other, bool):
                arr = np.asarray(float(other))
            else:
                break
            try:  # a per-channel vector: broadcasts to (1, C, 1, ...) and not beyond
                full = np.broadcast_shapes(arr.shape, (1, co) + (1,) * (rank - 2))
                vec = np.broadcast_to(arr, full).reshape(co) if \
                    full == (1, co) + (1,) * (rank - 2) else None
            except ValueError:
                vec = None
            if vec is None:
                break
            if name == "Mul":
                w, b = w * vec.reshape((co,) + (1,) * (w.ndim - 1)), b * vec
            elif name == "Div":
                w, b = w / vec.reshape((co,) + (1,) * (w.ndim - 1)), b / vec
            else:
                b = b + vec if name == "Add" else b - vec
            c.folded_into[u] = n
            tail, changed = u, True
        if changed:
            c.conv_params[n] = (w.astype(np.float32), b.astype(np.float32))


def _lower_node(c, an, n, fills, helpers):
    operator, set_grad_enabled, sym_size, Node = helpers
    if n in c.folded_into:
        c.vals[n] = c.vals[c.folded_into[n]]
        return
    if n.op == "placeholder":
        if n in an.lifted:
            return
        k = an.user.index(n)
        v = Val("input", c.shapes[n], index=k)
        c.vals[n] = v
        c.inputs.append((n, v, str(n.meta["tensor_meta"][1].np)))
        return
    if n.op == "get_attr":
        if n in fills:
            arr = _np_of(an._attr(n.target))
            v = c.new_buf(c.shapes[n])
            c.emit(f"{{ float *p = {_ptr(v)}; int64_t k, n = {v.numel()}; for (k = 0; k < n; "
                   f"k++) p[k] = {_cf(arr.reshape(-1)[0])}; }}", [], [v])
            c.vals[n] = v
        return
    if n.op != "call_function":
        return
    t = n.target
    if t is sym_size or t is set_grad_enabled or t in (operator.add, operator.sub,
                                                         operator.mul, operator.floordiv,
                                                         operator.truediv, operator.neg,
                                                         operator.pow):
        return
    if n in c.const:
        return
    if t is operator.getitem:
        seq, i = n.args
        got = c.vals.get(seq)
        if isinstance(got, list):
            c.vals[n] = got[i]   # a _NotLowered part raises only if something reads it
            return
        raise _Unsupported(f"indexing the result of {seq.name}")
    for a in list(n.args) + list(n.kwargs.values()):
        for x in (a if isinstance(a, (list, tuple)) else (a,)):
            if isinstance(x, Node) and isinstance(c.vals.get(x), _NotLowered):
                raise _Unsupported(c.vals[x].what)
    name, inplace = _op_name(t)
    rule = _LOWER.get(name)
    if rule is None:
        raise _Unsupported("the op has no C kernel")
    start = len(c.stmts)
    res = rule(c, n, *n.args, **n.kwargs)
    if len(c.stmts) > start:  # the C reads with the graph: each call names its node
        c.stmts[start].code = f"/* {n.name}: {name}{'_' if inplace else ''} */\n    " + \
            c.stmts[start].code
    c.vals[n] = res
    if inplace:  # later readers of the written tensor read the new value
        src = n.args[0]
        c.vals[src] = res
        c.const.pop(src, None)


def _plan_slots(c):
    """Assign each buffer's root to a workspace slot by liveness: (slot of root id, n slots,
    values per slot)."""
    first, last = {}, {}
    end = len(c.stmts)
    for k, s in enumerate(c.stmts):
        for v in s.defs + s.temps:
            r = v.root()
            if r.kind == "buf":
                first.setdefault(id(r), (k, r))
                last[id(r)] = max(last.get(id(r), k), k)
        for v in s.uses:
            r = v.root()
            if r.kind == "buf":
                last[id(r)] = max(last.get(id(r), k), k)
    for v, _ in c.outputs:
        r = v.root()
        if r.kind == "buf":
            last[id(r)] = end
    d0 = c.analysis.d0 or 0
    est = {}
    for key, (_, r) in first.items():
        est[key] = int(np.prod([d.at(d0) for d in r.dims])) if r.dims else 1
    slot_of, slot_size, free, members = {}, [], [], []
    by_stmt = {}
    for key, (k, _) in first.items():
        by_stmt.setdefault(k, []).append(key)
    dies = {}
    for key, k in last.items():
        dies.setdefault(k, []).append(key)
    taken = set()   # operands whose slot an in-place output took over
    for k in range(end + 1):
        stmt = c.stmts[k] if k < end else None
        for key in by_stmt.get(k, []):
            need = est[key]
            if stmt is not None and len(stmt.defs) == 1 and id(stmt.defs[0].root()) == key:
                cand = [id(v.root()) for v in stmt.inplace if v.root().kind == "buf"]
                cand = [q for q in cand if q in slot_of and last.get(q) == k and
                        q not in taken]
                if cand:  # pointwise: write over an operand read for the last time
                    s = slot_of[cand[0]]
                    taken.add(cand[0])
                    slot_size[s] = max(slot_size[s], need)
                    slot_of[key] = s
                    members[s].append(first[key][1])
                    continue
            fits = [s for s in free if slot_size[s] >= need]
            if fits:
                s = min(fits, key=lambda s: slot_size[s])
            elif free:
                s = max(free, key=lambda s: slot_size[s])
            else:
                s = len(slot_size)
                slot_size.append(0)
                members.append([])
            if s in free:
                free.remove(s)
            slot_size[s] = max(slot_size[s], need)
            slot_of[key] = s
            members[s].append(first[key][1])
        for key in dies.get(k, []):
            if key not in taken:
                free.append(slot_of[key])
    return slot_of, members


def _pointer(v, slot_of):
    r = v.root()
    if r.kind == "input":
        return f"inputs[{r.index}]"
    if r.kind == "const":
        return f"(m->w + er_coff[{r.index}])"
    if r.kind == "scalar":
        return f"(er_scalars + {r.index})"
    return f"(ws + so[{slot_of[id(r)]}])"


def _generate(c, blas):
    slot_of, members = _plan_slots(c)
    def resolve(code):
        return re.sub(r"@(\d+)@", lambda m_: _pointer(by_id[int(m_.group(1))], slot_of), code)
    by_id = {}
    for s in c.stmts:
        for v in s.uses + s.defs + s.temps:
            by_id[id(v)] = v
    an = c.analysis
    dyn = an.dim is not None
    lines = [RUNTIME_C, MODEL_PRELUDE]
    n_in, n_out = len(c.inputs), len(c.outputs)
    # constants: sizes and offsets (float counts), checked against the weights file
    sizes = [int(a.size) for a in c.consts]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) if sizes else [0]
    lines.append(f"#define ER_NCONST {len(sizes)}")
    lines.append("static const uint64_t er_csize[] = {" +
                 (", ".join(f"{s}u" for s in sizes) or "0") + "};")
    lines.append("static const int64_t er_coff[] = {" +
                 (", ".join(str(int(o)) for o in offs[:-1]) or "0") + "};")
    lines.append(f"static const uint64_t er_total = {int(offs[-1])}u;")
    lines.append("static const float er_scalars[] = {" +
                 (", ".join(_cf(x) for x in c.scalars) or "0.0f") + "};")
    lines.append(f"static const int er_n_in = {n_in}, er_n_out = {n_out};")
    in_vals = [v for _, v, _ in c.inputs]
    out_vals = [v for v, _ in c.outputs]
    for kind, vals in (("in", in_vals), ("out", out_vals)):
        ranks = ", ".join(str(v.rank) for v in vals) or "0"
        lines.append(f"static const int er_{kind}_rank[] = {{{ranks}}};")
    lo = max(an.dim.min, 1) if dyn else 0
    hi = (an.dim.max if an.dim.max != float("inf") else 2 ** 62) if dyn else 0
    lines.append(f"static const int64_t er_dyn_min = {lo}, er_dyn_max = {hi};")
    lines.append(f"static const int er_dynamic = {int(dyn)};")
    # shapes of inputs and outputs as functions of D (a dimension that follows D is -1 when
    # D <= 0 is asked for)
    for kind, vals in (("input", in_vals), ("output", out_vals)):
        lines.append(f"static void er_{kind}_dims(int i, int64_t D, int64_t *s) {{")
        lines.append("    switch (i) {")
        for i, v in enumerate(vals):
            body = " ".join(f"s[{k}] = (D <= 0 && {int(not d.static)}) ? -1 : {d.c_expr()};"
                            for k, d in enumerate(v.dims))
            lines.append(f"    case {i}: {body} break;")
        lines.append("    default: break;\n    }\n    (void)D;\n}")
    # the run function
    body = []
    w = body.append
    w("int ember_model_run(ember_model *m, int n_inputs, const float *const *inputs,")
    w("                    const int64_t *const *input_shapes, const int *input_ranks,")
    w("                    int n_outputs, float *const *outputs, const int64_t *output_sizes) {")
    w("    if (!m) return EMBER_ERR_NULL;")
    w("    m->err[0] = 0;")
    w("    if (n_inputs != er_n_in) return er_fail(m, EMBER_ERR_COUNT, \"expected %d inputs, "
      "got %d\", er_n_in, n_inputs);")
    w("    if (n_outputs != er_n_out) return er_fail(m, EMBER_ERR_COUNT, \"expected %d "
      "outputs, got %d\", er_n_out, n_outputs);")
    w("    if (!inputs || !input_shapes || !input_ranks || (er_n_out && (!outputs || "
      "!output_sizes))) return er_fail(m, EMBER_ERR_NULL, \"a NULL array argument\");")
    w("    for (int i = 0; i < er_n_in; i++) {")
    w("        if (!inputs[i] || !input_shapes[i]) return er_fail(m, EMBER_ERR_NULL, "
      "\"input %d: NULL buffer or shape\", i);")
    w("        if (input_ranks[i] != er_in_rank[i]) return er_fail(m, EMBER_ERR_RANK, "
      "\"input %d: expected rank %d, got %d\", i, er_in_rank[i], input_ranks[i]);")
    w("    }")
    if dyn:
        (k, ax) = next(iter(an.dyn_axes))
        w(f"    int64_t D = input_shapes[{k}][{ax}];")
        w(f"    if (D < er_dyn_min || D > er_dyn_max) return er_fail(m, EMBER_ERR_SHAPE, "
          f"\"input {k}: dimension {ax} ({an.dim.name}) is %lld, outside [%lld, %lld]\", "
          f"(long long)D, (long long)er_dyn_min, (long long)er_dyn_max);")
    else:
        w("    int64_t D = 0;")
    w("    for (int i = 0; i < er_n_in; i++) {")
    w("        int64_t want[ER_MAXD];")
    w("        er_input_dims(i, D, want);")
    w("        for (int k = 0; k < er_in_rank[i]; k++)")
    w("            if (input_shapes[i][k] != want[k]) return er_fail(m, EMBER_ERR_SHAPE, "
      "\"input %d: dimension %d is %lld, expected %lld\", i, k, "
      "(long long)input_shapes[i][k], (long long)want[k]);")
    w("    }")
    w("    for (int i = 0; i < er_n_out; i++) {")
    w("        int64_t s[ER_MAXD];")
    w("        er_output_dims(i, D, s);")
    w("        if (!outputs[i]) return er_fail(m, EMBER_ERR_NULL, \"output %d: NULL buffer\", i);")
    w("        if (output_sizes[i] < er_numel(s, er_out_rank[i])) return er_fail(m, "
      "EMBER_ERR_CAPACITY, \"output %d: the buffer holds %lld floats, %lld are needed\", i, "
      "(long long)output_sizes[i], (long long)er_numel(s, er_out_rank[i]));")
    w("    }")
    n_slots = len(members)
    w(f"    int64_t so[{max(n_slots, 1)}], total = 0, need;")
    for s, vals in enumerate(members):
        w(f"    so[{s}] = 0;")
        for v in vals:
            w(f"    need = {v.numel()}; if (need > so[{s}]) so[{s}] = need;")
    for s in range(n_slots):
        w(f"    need = (so[{s}] + {_ALIGN - 1}) / {_ALIGN} * {_ALIGN}; so[{s}] = total; "
          f"total += need;")
    w("    if (total > m->cap) {")
    w("        float *p = (float *)malloc((size_t)(total ? total : 1) * sizeof(float) + 64);")
    w("        if (!p) return er_fail(m, EMBER_ERR_MEMORY, \"cannot allocate %lld floats of "
      "workspace\", (long long)total);")
    w("        free(m->ws_raw); m->ws_raw = p; m->cap = total;")
    w("        m->ws = (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);")
    w("    }")
    w("    float *ws = m->ws;")
    w("    (void)ws; (void)D;")
    for s in c.stmts:
        w("    " + resolve(s.code))
    for i, (v, _) in enumerate(c.outputs):
        w(f"    memcpy(outputs[{i}], {_pointer(v, slot_of)}, (size_t)({v.numel()}) * "
          "sizeof(float));")
    w("    return EMBER_OK;")
    w("}")
    lines.append("\n".join(body))
    lines.append(MODEL_API)
    return "\n".join(lines) + "\n"


def _write_atomic(path, data, mode="wb"):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def weights_bytes(consts):
    """The weights file: magic, version, count, total floats, two checksums, the sizes, then
    the float32 data."""
    data = np.concatenate([a.reshape(-1) for a in consts]).astype("<f4") if consts else \
        np.zeros(0, "<f4")
    u = data.view("<u4").astype(np.uint64)
    with np.errstate(over="ignore"):
        s1 = np.uint64(u.sum(dtype=np.uint64))
        s2 = np.uint64((u * np.arange(1, u.size + 1, dtype=np.uint64)).sum(dtype=np.uint64))
    head = WEIGHTS_MAGIC + np.array([WEIGHTS_VERSION, len(consts)], "<u4").tobytes() + \
        np.array([data.size, s1, s2], "<u8").tobytes() + \
        np.array([a.size for a in consts], "<u8").tobytes()
    return head + data.tobytes()


def build_flags(blas=None, march_native=False):
    flags = ["-O3", "-std=c99", "-shared", "-fPIC", "-fno-math-errno"]
    if march_native:
        flags.append("-march=native")
    libs = ["-lm"]
    if blas:
        flags.append("-DEMBER_USE_CBLAS")
        libs = [f"-l{blas}" if not blas.startswith("-") else blas] + libs
    return flags, libs


def _compile_library(out_dir, flags, libs):
    """Build ``out_dir/ember_model.c`` into ``libember_model.so``. Libraries are cached
    (``ember.compiler``'s cache directory, by a hash of the source, flags and compiler), so
    compiling the same program again copies the cached library."""
    import hashlib
    import shutil

    from .._cc import c_compiler, cache_dir
    cc = c_compiler()
    if cc is None:
        raise RuntimeError("aot_compile: no C compiler found (set $CC, or install cc/gcc)")
    src = os.path.join(out_dir, "ember_model.c")
    final = os.path.join(out_dir, "libember_model.so")
    with open(src, "rb") as f:
        key = hashlib.sha256(f.read() + "\0".join([cc, *flags, *libs]).encode()).hexdigest()
    cached = os.path.join(cache_dir(), "aot", f"{key[:32]}.so")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp_", suffix=".so")
    os.close(fd)
    try:
        if os.path.exists(cached):
            shutil.copyfile(cached, tmp)
            os.replace(tmp, final)
            return final
        r = subprocess.run([cc, *flags, "-I", out_dir, "-o", tmp, src, *libs],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"aot_compile: the C compiler failed:\n{r.stderr[-3000:]}")
        try:  # keep a copy in the cache (best effort: a read-only cache is no error)
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            fd2, tmp2 = tempfile.mkstemp(dir=os.path.dirname(cached), prefix=".tmp_")
            os.close(fd2)
            shutil.copyfile(tmp, tmp2)
            os.replace(tmp2, cached)
        except OSError:
            pass
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def aot_compile(exported_program, out_dir, *, blas=None, march_native=False):
    """Compile ``exported_program`` into a C library in ``out_dir`` (created if needed);
    returns the path of the shared library. See the module docstring for the files.

    ``blas``: a CBLAS library name to link (``"openblas"``) instead of the built-in GEMM.
    ``march_native``: build for this machine's CPU (``-march=native``)."""
    from . import lower_creations  # zeros(B, ...) made in forward, in core ops
    c = _lower(lower_creations(exported_program))
    src = _generate(c, blas)
    os.makedirs(out_dir, exist_ok=True)
    flags, libs = build_flags(blas, march_native)
    meta = {
        "format": "ember-aot", "version": WEIGHTS_VERSION,
        "inputs": [{"name": n.name, "dtype": dt, "rank": v.rank} for n, v, dt in c.inputs],
        "outputs": [{"dtype": dt, "rank": v.rank} for v, dt in c.outputs],
        "out_spec": exported_program._out_spec,
        "dynamic": None if c.analysis.dim is None else c.analysis.dim.name,
        "flags": flags + libs,
    }
    _write_atomic(os.path.join(out_dir, "ember_model.h"), HEADER.encode())
    _write_atomic(os.path.join(out_dir, "ember_model.c"), src.encode())
    _write_atomic(os.path.join(out_dir, "ember_model.weights"), weights_bytes(c.consts))
    _write_atomic(os.path.join(out_dir, "ember_model.json"),
                  json.dumps(meta, indent=1).encode())
    return _compile_library(out_dir, flags, libs)


# ------------------------------------------------------------------------ loading
class AotModel:
    """A compiled model loaded with ctypes: call it with ember tensors (or arrays) as the
    exported program's user inputs; returns ember tensors. ``run_raw`` exposes the C API's
    error code and message instead of raising."""

    def __init__(self, out_dir):
        import ctypes
        self._ct = ctypes
        with open(os.path.join(out_dir, "ember_model.json")) as f:
            self.meta = json.load(f)
        self.lib = ctypes.CDLL(os.path.join(os.path.abspath(out_dir), "libember_model.so"))
        L = self.lib
        vp, i64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
        L.ember_model_create.restype = vp
        L.ember_model_create.argtypes = [ctypes.c_char_p]
        L.ember_last_create_error.restype = ctypes.c_char_p
        L.ember_model_last_error.restype = ctypes.c_char_p
        L.ember_model_last_error.argtypes = [vp]
        L.ember_model_destroy.argtypes = [vp]
        L.ember_model_output_shape.argtypes = [vp, ctypes.c_int, ctypes.c_int64, i64p]
        L.ember_model_input_shape.argtypes = [vp, ctypes.c_int, ctypes.c_int64, i64p]
        L.ember_model_dynamic_range.argtypes = [vp, i64p, i64p]
        L.ember_model_run.argtypes = [vp, ctypes.c_int, vp, vp, vp, ctypes.c_int, vp, vp]
        path = os.path.join(out_dir, "ember_model.weights").encode()
        h = L.ember_model_create(path)
        if not h:
            raise RuntimeError("ember_model_create failed: " +
                               L.ember_last_create_error().decode())
        self.handle = h

    def close(self):
        if getattr(self, "handle", None):
            self.lib.ember_model_destroy(self.handle)
            self.handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def dynamic_size(self, arrays):
        """The dynamic dimension's size for these inputs (from the C library's shapes)."""
        ct = self._ct
        lo, hi = ct.c_int64(), ct.c_int64()
        if self.lib.ember_model_dynamic_range(self.handle, ct.byref(lo), ct.byref(hi)) != 1:
            return 1
        for i, a in enumerate(arrays):
            want = (ct.c_int64 * max(a.ndim, 1))()
            self.lib.ember_model_input_shape(self.handle, i, 0, want)
            for k in range(a.ndim):
                if want[k] == -1:
                    return a.shape[k]
        return 1

    def run_raw(self, arrays, out_sizes=None):
        """Call ``ember_model_run`` on NumPy arrays: (code, message, outputs)."""
        ct = self._ct
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
        n_in = len(arrays)
        d = self.dynamic_size(arrays) if n_in == len(self.meta["inputs"]) else 1
        outs = []
        for i, o in enumerate(self.meta["outputs"]):
            s = (ct.c_int64 * max(o["rank"], 1))()
            self.lib.ember_model_output_shape(self.handle, i, d, s)
            shape = tuple(max(int(s[k]), 0) for k in range(o["rank"]))
            outs.append(np.empty(shape, np.float32))
        ptrs = (ct.c_void_p * max(n_in, 1))(*[a.ctypes.data for a in arrays])
        shape_arrs = [np.asarray(a.shape, np.int64) if a.ndim else np.zeros(1, np.int64)
                      for a in arrays]
        shapes = (ct.c_void_p * max(n_in, 1))(*[s.ctypes.data for s in shape_arrs])
        ranks = (ct.c_int * max(n_in, 1))(*[a.ndim for a in arrays])
        optrs = (ct.c_void_p * max(len(outs), 1))(*[o.ctypes.data for o in outs])
        sizes = np.asarray(out_sizes if out_sizes is not None else [o.size for o in outs],
                           np.int64)
        code = self.lib.ember_model_run(self.handle, n_in, ptrs, shapes, ranks, len(outs),
                                        optrs, sizes.ctypes.data)
        msg = self.lib.ember_model_last_error(self.handle).decode()
        return code, msg, outs

    def __call__(self, *args):
        import ember
        arrays = [a.numpy() if hasattr(a, "numpy") else np.asarray(a) for a in args]
        code, msg, outs = self.run_raw(arrays)
        if code != 0:
            raise RuntimeError(f"ember_model_run failed ({ERRORS.get(code, code)}): {msg}")
        res = []
        for o, m in zip(outs, self.meta["outputs"]):
            dt = m["dtype"]
            res.append(ember.from_numpy(o if dt == "float32" else o.astype(dt)))
        from ._pytree import tree_unflatten
        return tree_unflatten(res, self.meta["out_spec"])


def aot_load(out_dir):
    """The library built by ``aot_compile`` in ``out_dir`` as a Python callable."""
    return AotModel(out_dir)
