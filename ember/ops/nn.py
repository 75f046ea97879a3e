"""Layer 2: fused neural-network kernels (linear, softmax, losses, normalisation, activations).

Each op has a NumPy forward in one pass and a backward written with ember ops, so double
backward works. When nothing records the backward (no ``create_graph``), the hot ones run
the same formula on arrays through ``ArrayGrad``, one dispatch instead of several.

A fused op is kept only where it beat the composition of existing ops. Measured (float32,
best of 15, a loaded 2-core machine; composed -> fused, forward+backward):
    linear        (4, 8) @ (8, 8)      0.104 -> 0.079 ms   (forward alone 8 -> 3 us)
    linear        (256, 256)^2         0.81  -> 0.66 ms
    softmax       (64, 1000)           0.84  -> 0.36 ms    (8, 10): 0.174 -> 0.062 ms
    log_softmax   (64, 1000)           0.44  -> 0.38 ms    (8, 10): 0.102 -> 0.064 ms
    cross_entropy (64, 1000)           0.54  -> 0.20 ms    (8, 10): 0.177 -> 0.086 ms
    layer_norm    (64, 512)            0.35  -> 0.24 ms
    batch_norm    (16, 32, 16, 16)     1.98  -> 1.48 ms
    silu          (64, 1024)           0.168 -> 0.167 ms   (kept: one dispatch, same speed)

Where backward needs statistics of the input (normalisation, cross-entropy) a recorded
backward recomputes them with differentiable ops, so that second derivatives are right.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _parallel as _par
from .._dtype import _BY_NP
from .._tensor import _make
from ..autograd.grad_mode import GradMode
from ..autograd.graph import Node
from ..autograd import forward_ad as _fad
from . import _conv_c, _nn_c, elementwise as E
from .linalg import _SMALL_GEMM, matmul, matmul_arrays

__all__ = ["softmax", "log_softmax"]

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_K = math.sqrt(2.0 / math.pi)


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _compute_dtype(a):
    """Half and bfloat16 compute in float32 (NumPy's reductions in them are slow or lossy)."""
    if a.dtype.kind == "V" or (a.dtype.kind == "f" and a.dtype.itemsize < 4):
        return np.float32
    return a.dtype


def _float_input(a, op):
    if a.dtype.kind not in "fV":
        raise RuntimeError(f'"{op}" not implemented for \'{_pt_dtype(a.dtype)}\'')
    return a


def _pt_dtype(dt):
    return {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
            "bool": "Bool"}.get(dt.name, dt.name)


class ArrayGrad(Node):
    """A backward formula evaluated on arrays in one pass: ``fn(*arrays)``.

    Backward formulas are written with ember ops so that a recorded backward
    (``create_graph=True``) can be differentiated again. When nothing records the backward
    (the common case), the ops below call this node instead: the same formula in NumPy,
    one dispatch instead of five to ten (measured in the module docstring's benchmark).
    """

    differentiable = False

    @staticmethod
    def forward(ctx, fn, *args):
        return fn(*args)


# ---------------------------------------------------------------------- linear
class Linear(Node):
    """``x @ w.T + b`` in one dispatch (three ops composed cost three)."""

    saves = (0, 1)
    saves_for = {0: (1,), 1: (0,)}  # d/dw reads only w's shape

    @staticmethod
    def forward(ctx, x, w, b):
        dt = x.dtype
        if (dt is _F32 or dt is _F64) and w.dtype is dt and x.ndim and \
                x.shape[-1] == w.shape[-1]:  # the usual case: no checks or casts to make
            if b is not None and x.size * w.shape[0] > _SMALL_GEMM:
                return matmul_arrays(x, w.T, b)  # the bias added by the GEMM's parts
            y = matmul_arrays(x, w.T)
            if b is not None:
                y += b
            return y
        if x.dtype != w.dtype:
            raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got "
                               f"{_pt_name(x.dtype)} and {_pt_name(w.dtype)}")
        if x.ndim == 0 or x.shape[-1] != w.shape[-1]:
            rows = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
            cols = x.shape[-1] if x.ndim else 1
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{cols} and "
                               f"{w.shape[1]}x{w.shape[0]})")
        cd = _compute_dtype(x)
        y = matmul_arrays(x.astype(cd, copy=False), w.T.astype(cd, copy=False))
        if b is not None:
            y += b
        return y.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx = gw = gb = None
        if need[0]:
            gx = matmul(g, w)
        if need[1] or need[2]:
            g2 = g.reshape(-1, w.shape[0])
            if need[1]:
                gw = matmul(g2.t(), x.reshape(-1, w.shape[1]))
            if need[2]:
                gb = g2.sum(0)
        return gx, gw, gb

    @staticmethod
    def jvp(ctx, tx, tw, tb):
        x, w, _ = ctx.inputs
        out = None
        if tx is not None:
            out = Linear.apply(tx, w, None)
        if tw is not None:
            out = _fad.add_tangents(out, Linear.apply(x, tw, None))
        return _fad.add_tangents(out, tb)

    @staticmethod
    def array_backward(ctx, g):
        x, w = ctx.saved_arrays
        need = ctx.needs_input_grad
        cd = _compute_dtype(x)
        g = g.astype(cd, copy=False)
        if need[1] and (need[0] or need[2]) and (cd is _F32 or cd is _F64) and \
                x.dtype is cd and w.dtype is cd and type(g) is np.ndarray and \
                type(x) is np.ndarray and type(w) is np.ndarray and \
                _par.gemms_ok(g.size * w.shape[1]):
            return _linear_grads_side_by_side(g, x, w, need[0], need[2])
        gx = gw = gb = None
        if need[0]:
            gx = matmul_arrays(g, w.astype(cd, copy=False))
        if need[1] or need[2]:
            rows = math.prod(g.shape[:-1])
            g2 = g.reshape(rows, w.shape[0])
            if need[1]:
                gw = matmul_arrays(g2.T, x.reshape(rows, w.shape[1]).astype(cd, copy=False))
            if need[2]:
                gb = _column_sums(g2)
        return gx, gw, gb


def _linear_grads_side_by_side(g, x, w, need_input, need_bias):
    """A Linear's weight gradient with its input gradient and/or bias gradient at several
    threads, in one hand-off (``_parallel.gemms``). The input and weight gradient products
    are independent and of equal work (M*N*K each), so they run side by side, one whole
    BLAS call per core, instead of each cut over the cores in turn: each is the one-thread
    call, so the values are those of one thread, bit for bit. Without the input gradient
    (a first layer) the weight product is cut as ``_parallel.gemm`` cuts it. The bias
    gradient goes to whichever thread is free first."""
    rows = g.size // w.shape[0]
    g2 = g.reshape(rows, w.shape[0])
    sums = tasks = ()
    if need_bias:
        if _colsum_blas(g2) and g2.flags.c_contiguous:
            sums = (g2,)  # ``_column_sums``' product, in the same batch as the GEMMs
        else:
            tasks = (lambda: _column_sums(g2),)
    products = [(g2.T, x.reshape(rows, w.shape[1]))]
    if need_input:
        products.insert(0, (g2, w))
    res = _par.gemms(products, tasks, sums)
    if not need_input:
        res.insert(0, None)
    return (None if res[0] is None else res[0].reshape(x.shape), res[1],
            res[2] if need_bias else None)


def _column_sums(a):
    """``a.sum(0)`` of a 2-d array (a bias gradient): for a large float32/float64 one, as
    the product ``ones @ a`` on one BLAS thread, 3-4x faster than NumPy's column sum, which
    adds whole rows in turn (1024 x 384 float32: 82 -> 24 us, one thread, timeit minimum).
    The sum is in the operand's precision either way; BLAS orders it differently."""
    rows = a.shape[0]
    if not _colsum_blas(a):
        return a.sum(0)
    ones = np.ones(rows, a.dtype)
    if _par.gemm_split_ok():  # OpenBLAS would thread this product (and spin after it)
        return _par.run_split_gemm(lambda s, e: np.dot(ones, a), [(0, 1)])[0]
    return np.dot(ones, a)


_COLSUM_BLAS_MIN = 1 << 14  # elements; below, the column sum costs microseconds either way


def _colsum_blas(a):
    """Whether ``_column_sums`` takes ``a``'s column sums as the product ``ones @ a``."""
    return type(a) is np.ndarray and a.shape[0] * a.shape[1] >= _COLSUM_BLAS_MIN and \
        (a.dtype is _F32 or a.dtype is _F64) and a.strides[1] == a.itemsize


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``."""
    if weight.ndim != 2:
        raise RuntimeError(f"linear(): weight must be 2-D, got {weight.ndim}-D")
    return Linear.apply(input, weight, bias)


def _pt_name(np_dtype):
    from .._dtype import _BY_NP
    from ..autograd.graph import _pt_name as name
    return name(_BY_NP[np_dtype])


# ---------------------------------------------------------------------- softmax family
def _softmax_np(x, dim):
    cd = _compute_dtype(x)
    xf = x.astype(cd, copy=False)
    e = np.exp(xf - xf.max(axis=dim, keepdims=True, initial=-np.inf))  # initial: empty dims
    e /= e.sum(axis=dim, keepdims=True)
    return e.astype(x.dtype, copy=False)


def _log_softmax_np(x, dim):
    cd = _compute_dtype(x)
    xf = x.astype(cd, copy=False)
    s = xf - xf.max(axis=dim, keepdims=True, initial=-np.inf)  # initial: empty dims
    s -= np.log(np.exp(s).sum(axis=dim, keepdims=True))
    return s.astype(x.dtype, copy=False)


def _by_rows(kernel, x, dim):
    """``kernel(x, dim)``; a large contiguous input reduced over its last dim runs as blocks
    of rows over every core (rows are independent: the same result, bit for bit)."""
    if type(x) is np.ndarray and x.size >= _par.MIN_SIZE_HEAVY and x.ndim >= 2 and \
            dim % x.ndim == x.ndim - 1 and x.flags.c_contiguous and x.shape[-1]:
        rows = x.reshape(-1, x.shape[-1])
        probe = kernel(rows[:1], -1)  # the result's dtype
        out = np.empty(rows.shape, probe.dtype)

        def part(s, e):
            out[s:e] = kernel(rows[s:e], -1)

        _par.run_rows(part, rows.shape[0], rows.shape[1])
        return out.reshape(x.shape)
    return kernel(x, dim)


class Softmax(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, x, dim):
        _float_input(x, "softmax_lastdim_kernel_impl")
        ctx.dim = dim
        if x.ndim == 0:
            return np.ones_like(x)
        return _by_rows(_softmax_np, x, dim)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if y.ndim == 0:
            return g * 0, None
        gy = g * y
        return gy - y * gy.sum(ctx.dim, keepdim=True), None

    @staticmethod
    def jvp(ctx, t, _):
        y, dim = ctx.output, ctx.inputs[1]
        return y * (t - (y * t).sum(dim, keepdim=True))


# ---------------------------------------------------------------------- attention
def _attn_blocks(b, work):
    """Bounds over the batch of an attention of ``work`` score elements: one block per
    thread when it is large (the heads are independent), else one block."""
    k = _par.threads_for(work, _par.MIN_SIZE_HEAVY)
    return _par._bounds(b, min(k, b)) if b > 1 else [(0, b)]


def _attn_run(part, b, work):
    """``part(start, stop)`` over ``_attn_blocks``; with several threads, the blocks' GEMMs
    run on one BLAS thread each (OpenBLAS's own threads would wait for each other by
    spinning: see ``_parallel.gemm``)."""
    bounds = _attn_blocks(b, work)
    if _par.gemm_split_ok():
        _par.run_split_gemm(part, bounds)
    else:
        _par.run_split(part, bounds)


def _attn_fwd_np(q, k, v, mask, scale, out=None):
    """``(softmax(q @ k^T * scale + mask) @ v, weights)`` on (B, L, D) stacks (or (B, H, L, D),
    any strides, with a mask over (L, S) only), with the heads split over the cores for large
    inputs (each block is computed as alone: same bits). ``out``: an array to write the
    result into (of the compute dtype)."""
    B, L, S = q.shape[0], q.shape[-2], k.shape[-2]
    inner = math.prod(q.shape[1:-2])  # heads per batch entry of a 4-d stack
    cd = np.dtype(_compute_dtype(q))
    w = np.empty(q.shape[:-1] + (S,), cd)
    if out is None:
        out = np.empty(q.shape[:-1] + (v.shape[-1],), cd)
    mb = mask is not None and mask.ndim == 3 and mask.shape[0] == B
    if w.size >= _nn_c.MIN_SIZE and _nn_c.available(cd):
        # C softmax rows (small ones keep NumPy's formula, bit for bit that of the composed
        # ops a captured graph replays); the mask as one contiguous (L, S) or (B, L, S)
        mc = None if mask is None else np.ascontiguousarray(
            np.broadcast_to(mask, (B, L, S) if mb else (L, S)), cd)
        wf = w.reshape(-1, L, S)

        def part(s, e):
            np.matmul(q[s:e].astype(cd, copy=False),
                      np.swapaxes(k[s:e], -1, -2).astype(cd, copy=False), out=w[s:e])
            _nn_c.attn_softmax(wf, s * inner, e * inner, scale, mc)
            np.matmul(w[s:e], v[s:e].astype(cd, copy=False), out=out[s:e])

        _attn_run(part, B, w.size)
        return out.astype(q.dtype, copy=False), w

    def part(s, e):
        sc = np.matmul(q[s:e].astype(cd, copy=False),
                       np.swapaxes(k[s:e], -1, -2).astype(cd, copy=False), out=w[s:e])
        sc *= cd.type(scale)
        if mask is not None:
            sc += mask[s:e] if mb else mask
        sc -= sc.max(axis=-1, keepdims=True, initial=-np.inf)
        np.exp(sc, out=sc)
        sc /= sc.sum(axis=-1, keepdims=True)
        np.matmul(sc, v[s:e].astype(cd, copy=False), out=out[s:e])

    with np.errstate(invalid="ignore"):  # fully masked rows are nan, as PyTorch's
        _attn_run(part, B, w.size)
    return out.astype(q.dtype, copy=False), w


def _attn_bwd_np(g, q, k, v, w, scale, need, outs=None):
    """(gq, gk, gv) of ``_attn_fwd_np`` on arrays, split over the heads like the forward;
    ``outs``: three arrays (of the compute dtype) to write them into."""
    B = w.shape[0]
    cd = w.dtype
    if outs is None:
        outs = [np.empty(a.shape, cd) if n else None for a, n in zip((q, k, v), need)]
    gq, gk, gv = outs
    sc = cd.type(scale)
    use_c = w.size >= _nn_c.MIN_SIZE and _nn_c.available(cd) and w.flags.c_contiguous

    def part(s, e):
        gb, wb = g[s:e].astype(cd, copy=False), w[s:e]
        if gv is not None:
            np.matmul(np.swapaxes(wb, -1, -2), gb, out=gv[s:e])
        if gq is None and gk is None:
            return
        ds = np.matmul(gb, np.swapaxes(v[s:e], -1, -2).astype(cd, copy=False))
        if use_c:
            _nn_c.attn_softmax_bwd(ds, wb, sc)
        else:
            ds -= (ds * wb).sum(axis=-1, keepdims=True)
            ds *= wb
            ds *= sc
        if gq is not None:
            np.matmul(ds, k[s:e].astype(cd, copy=False), out=gq[s:e])
        if gk is not None:
            np.matmul(np.swapaxes(ds, -1, -2), q[s:e].astype(cd, copy=False), out=gk[s:e])

    with np.errstate(invalid="ignore"):
        _attn_run(part, B, w.size)
    return tuple(None if a is None else a.astype(q.dtype, copy=False) for a in (gq, gk, gv))


class Attention(Node):
    """``softmax(q @ k^T * scale + mask) @ v`` over (B, L, D) stacks in one dispatch: the
    attention of ``multi_head_attention_forward`` and ``scaled_dot_product_attention``
    without dropout or attention weights to return. The forward keeps the weights for the
    backward; both run as blocks of heads on every core for large inputs. ``mask`` is an
    additive float array (broadcast over the batch, or one per batch entry) or None; a mask
    that requires grad, capture and the other modes take the composed ops instead (see
    ``attention``)."""

    saves = (0, 1, 2)

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        out, ctx.w = _attn_fwd_np(q, k, v, mask, scale)
        ctx.scale, ctx.mask = scale, mask
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v = ctx.saved_tensors
        if not GradMode.enabled:
            r = _attn_bwd_np(g._data, q._data, k._data, v._data, ctx.w, ctx.scale,
                             ctx.needs_input_grad)
            return tuple(None if a is None else _make(a) for a in r) + (None, None)
        w = _make(ctx.w.astype(q._data.dtype, copy=False))
        if q.requires_grad or k.requires_grad:  # recorded backward: weights as functions
            sc = matmul(q, k.transpose(-2, -1)) * ctx.scale
            if ctx.mask is not None:
                sc = sc + _make(ctx.mask)
            w = softmax(sc, -1)
        gw = matmul(g, v.transpose(-2, -1))
        ds = w * (gw - (gw * w).sum(-1, keepdim=True)) * ctx.scale
        need = ctx.needs_input_grad
        return (matmul(ds, k) if need[0] else None,
                matmul(ds.transpose(-2, -1), q) if need[1] else None,
                matmul(w.transpose(-2, -1), g) if need[2] else None, None, None)

    @staticmethod
    def array_backward(ctx, g):
        q, k, v = ctx.saved_arrays
        return _attn_bwd_np(g, q, k, v, ctx.w, ctx.scale, ctx.needs_input_grad) + (None, None)


def _heads(a, heads, parts, batch_first=False):
    """(L, N, parts * E), or (N, L, parts * E) with ``batch_first``, -> ``parts`` views
    (N, heads, L, E / heads), no copy."""
    d0, d1, E3 = a.shape
    hd = E3 // parts // heads
    a5 = a.reshape(d0, d1, parts, heads, hd)
    axes = (0, 2, 1, 3) if batch_first else (1, 2, 0, 3)
    return [a5[:, :, i].transpose(axes) for i in range(parts)]


class PackedSelfAttention(Node):
    """Multi-head self-attention from the packed in-projection ``qkv`` (L, N, 3E), or
    (N, L, 3E) with ``batch_first``, to the heads' concatenated outputs (L, N, E) or
    (N, L, E), in one dispatch: the heads are strided views of ``qkv`` and of the result, so
    that neither the head split nor the merge (nor their gradients, written straight into
    one array of ``qkv``'s shape) costs a copy; the attention itself is ``Attention``'s,
    blocks of batch entries over the cores. ``mask`` is None or an additive float (L, S)
    array. A recorded backward (``create_graph``) runs the composed ops."""

    saves = (0,)

    @staticmethod
    def forward(ctx, qkv, mask, heads, scale, batch_first=False):
        q, k, v = _heads(qkv, heads, 3, batch_first)
        out = np.empty(qkv.shape[:2] + (qkv.shape[2] // 3,), qkv.dtype)
        _, ctx.w = _attn_fwd_np(q, k, v, mask, scale,
                                out=_heads(out, heads, 1, batch_first)[0])
        ctx.mask, ctx.heads, ctx.scale, ctx.batch_first = mask, heads, scale, batch_first
        return out

    @staticmethod
    def array_backward(ctx, g):
        (qkv,) = ctx.saved_arrays
        bf = getattr(ctx, "batch_first", False)  # (the compiler's replay state has none)
        gqkv = np.empty(qkv.shape, qkv.dtype)
        _attn_bwd_np(_heads(g, ctx.heads, 1, bf)[0], *_heads(qkv, ctx.heads, 3, bf), ctx.w,
                     ctx.scale, (True, True, True), outs=_heads(gqkv, ctx.heads, 3, bf))
        return gqkv, None, None, None, None

    @staticmethod
    def backward(ctx, g):
        (qkv,) = ctx.saved_tensors
        if not GradMode.enabled:
            return (_make(PackedSelfAttention.array_backward(ctx, g._data)[0]), None, None,
                    None, None)
        d0, d1, E3 = qkv.shape
        H = ctx.heads
        hd = E3 // 3 // H
        # (d0, d1, E) <-> (N, H, L, hd): the heads as 4-d stacks of the composed ops
        axes = (0, 2, 1, 3) if ctx.batch_first else (1, 2, 0, 3)
        back = (0, 2, 1, 3) if ctx.batch_first else (2, 0, 1, 3)
        q, k, v = (t.reshape(d0, d1, H, hd).permute(axes) for t in qkv.chunk(3, -1))
        go = g.reshape(d0, d1, H, hd).permute(axes)
        sc = matmul(q, k.transpose(-2, -1)) * ctx.scale
        if ctx.mask is not None:
            sc = sc + _make(ctx.mask)
        w = softmax(sc, -1)
        gw = matmul(go, v.transpose(-2, -1))
        ds = w * (gw - (gw * w).sum(-1, keepdim=True)) * ctx.scale
        grads = [matmul(ds, k), matmul(ds.transpose(-2, -1), q), matmul(w.transpose(-2, -1), go)]
        from .shape import cat
        return (cat([t.permute(back).reshape(d0, d1, E3 // 3) for t in grads], -1), None, None,
                None, None)


def packed_self_attention_applies(x, mask, heads):
    """Whether ``PackedSelfAttention`` serves a self-attention of ``x`` (whose in-projection
    has ``x``'s type and dtype): a plain 3-d float32/float64 array whose last dim is a
    multiple of ``heads``, a float (L, L) mask that needs no gradient or None, no mode
    active. Checked before the projection, so that a caller never computes it twice."""
    from ..autograd.graph import _MODES
    from .._tensor import Tensor
    if _MODES or type(x) is not Tensor or type(x._data) is not np.ndarray or \
            x.ndim != 3 or x._data.dtype not in (np.float32, np.float64) or \
            x.shape[2] % heads:
        return False
    return mask is None or (
        type(mask) is Tensor and not mask.requires_grad and
        type(mask._data) is np.ndarray and mask._data.dtype.kind == "f" and mask.ndim == 2)


def packed_self_attention(qkv, mask, heads, scale, batch_first=False):
    """``PackedSelfAttention`` when it applies (a plain (L, N, 3E) float array, or
    (N, L, 3E) with ``batch_first``; a float (L, L) mask that needs no gradient or None; no
    mode active), else None."""
    if not packed_self_attention_applies(qkv, mask, 3 * heads):
        return None
    L = qkv.shape[1] if batch_first else qkv.shape[0]
    if mask is not None and tuple(mask.shape) != (L, L):
        return None
    return PackedSelfAttention.apply(qkv, None if mask is None else mask._data, heads, scale,
                                     batch_first)


def attention(q, k, v, mask, scale):
    """The fused ``Attention`` when it applies (3-d float stacks on plain NumPy arrays, a
    float mask that needs no gradient, no mode active), else None: the caller composes."""
    from ..autograd.graph import _MODES
    from .._tensor import Tensor
    if _MODES or q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        return None
    if any(type(t) is not Tensor or type(t._data) is not np.ndarray or
           t._data.dtype.kind != "f" for t in (q, k, v)):
        return None  # subclasses (DTensor) keep their own rules for the composed ops
    if q._data.dtype != k._data.dtype or q._data.dtype != v._data.dtype:
        return None
    m = None
    if mask is not None:
        if type(mask) is not Tensor or mask.requires_grad or \
                type(mask._data) is not np.ndarray or mask._data.dtype.kind != "f" or \
                mask.ndim > 3:
            return None
        m = mask._data
        if m.ndim == 3 and m.shape[0] not in (1, q.shape[0]):
            return None
    B, L, S = q.shape[0], q.shape[1], k.shape[1]
    if k.shape[0] != B or v.shape[0] != B or v.shape[1] != S or k.shape[2] != q.shape[2]:
        return None
    if m is not None:
        try:
            np.broadcast_shapes(m.shape, (B, L, S))
        except ValueError:
            return None
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
    return Attention.apply(q, k, v, m, scale)


class LogSoftmax(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, x, dim):
        _float_input(x, "log_softmax_lastdim_kernel_impl")
        ctx.dim = dim
        if x.ndim == 0:
            return np.zeros_like(x)
        return _by_rows(_log_softmax_np, x, dim)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if y.ndim == 0:
            return g * 0, None
        return g - E.exp(y) * g.sum(ctx.dim, keepdim=True), None

    @staticmethod
    def jvp(ctx, t, _):
        y, dim = ctx.output, ctx.inputs[1]
        return t - (y.exp() * t).sum(dim, keepdim=True)


def _norm_dim(dim, ndim, op):
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


def _cast_for(input, dtype):
    if dtype is None:
        return input
    return input.to(dtype)


def softmax(input, dim, dtype=None, **kwargs):
    """Softmax along ``dim`` (``torch.softmax``)."""
    input = _cast_for(input, dtype)
    return Softmax.apply(input, _norm_dim(dim, input.ndim, "softmax"))


def log_softmax(input, dim, dtype=None, **kwargs):
    """Log of softmax along ``dim``, computed stably in one pass."""
    input = _cast_for(input, dtype)
    return LogSoftmax.apply(input, _norm_dim(dim, input.ndim, "log_softmax"))


# ---------------------------------------------------------------------- nll / cross-entropy
def _class_targets(logits, target, weight, ignore_index, op):
    """Targets with the class axis moved last: (safe target, per-element weight) arrays."""
    cls_axis = 1 if logits.ndim >= 2 else 0
    n_cls = logits.shape[cls_axis]
    if target.dtype.kind not in "iu":
        raise RuntimeError(f"expected scalar type Long but found {target.dtype}")
    exp_shape = logits.shape[:1] + logits.shape[2:] if logits.ndim >= 2 else ()
    if target.shape != exp_shape:
        if logits.ndim >= 2 and target.shape[:1] != logits.shape[:1]:
            raise ValueError(f"Expected input batch_size ({logits.shape[0]}) to match target "
                             f"batch_size ({target.shape[0] if target.ndim else 0}).")
        raise RuntimeError(f"{op}: expected target of shape {list(exp_shape)}, got "
                           f"{list(target.shape)}")
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    oob = (safe < 0) | (safe >= n_cls)
    if oob.any():  # (a meta target has no values to check)
        raise IndexError(f"Target {int(safe[oob].flat[0])} is out of bounds.")
    if weight is not None:
        if weight.shape != (n_cls,):
            raise RuntimeError(f"weight tensor should be defined either for all {n_cls} classes "
                               f"or no classes but got weight tensor of shape: "
                               f"{list(weight.shape)}")
        w = weight[safe] * valid
    else:
        w = valid.astype(logits.dtype if logits.dtype.kind in "fV" else np.float32)
    return cls_axis, safe, w


def _pick(logp, safe, cls_axis):
    return np.take_along_axis(logp, np.expand_dims(safe, cls_axis), cls_axis).squeeze(cls_axis)


def _reduce_loss(loss, w, reduction):
    if reduction == "none":
        return loss, None
    if reduction == "sum":
        return loss.sum(dtype=loss.dtype), None
    denom = w.sum(dtype=loss.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # all targets ignored: nan, as torch
        return (loss.sum(dtype=loss.dtype) / denom).astype(loss.dtype), denom


def _target_grad_coef(ctx, target, weight, n_cls, ndim, dtype):
    """``w`` at each target position (scaled for 'mean') as a one-hot coefficient, and ``w``
    itself, both with a class axis. Built with ops from the saved ``target``/``weight``
    tensors, not from arrays the forward kept, so that a captured training step reads the
    replay's targets (and double backward sees them as graph inputs)."""
    from .creation import ones
    ax = ctx.cls_axis
    valid = target != ctx.ignore_index
    safe = target * valid  # ignored positions point at class 0, with weight 0
    if weight is not None:
        w = weight.to(dtype)[safe] * valid
    else:
        w = valid.to(dtype)
    if ctx.denom is not None:  # 'mean': ignored positions stay 0 even when every target is
        w = E.where(valid, w / w.sum(), 0.0)  # ignored (0/0 elsewhere, as PyTorch's)
    shape = [1] * ndim
    shape[ax] = n_cls
    classes = (ones(n_cls, dtype=target.dtype).cumsum(0) - 1).reshape(shape)
    w = w.unsqueeze(ax) if ndim > 1 else w
    hit = classes == (safe.unsqueeze(ax) if ndim > 1 else safe)
    # a select, not hit * w: where every weight is 0/0 (NaN) only the targets get it
    return E.where(hit, w, 0.0), w


def _upstream(g, ctx):
    return g if ctx.reduction != "none" else g.unsqueeze(ctx.cls_axis)


class NllLoss(Node):
    saves = (1, 2)  # the target and weight: backward builds its one-hot from them

    @staticmethod
    def forward(ctx, logp, target, weight, reduction, ignore_index):
        cls_axis, safe, w = _class_targets(logp, target, weight, ignore_index, "nll_loss")
        loss = -_pick(logp, safe, cls_axis) * w
        out, denom = _reduce_loss(loss, w, reduction)
        ctx.cls_axis, ctx.safe, ctx.w, ctx.denom, ctx.reduction = (cls_axis, safe, w, denom,
                                                                   reduction)
        ctx.in_shape, ctx.in_dtype, ctx.ignore_index = logp.shape, logp.dtype, ignore_index
        return out

    @staticmethod
    def backward(ctx, g):
        target, weight = ctx.saved_tensors
        shape = ctx.in_shape
        onehot_w, _ = _target_grad_coef(ctx, target, weight, shape[ctx.cls_axis], len(shape),
                                        _BY_NP[np.dtype(ctx.in_dtype)])
        return -onehot_w * _upstream(g, ctx), None, None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class CrossEntropy(Node):
    """log_softmax + nll_loss over class indices in one pass (no label smoothing)."""

    saves = (0, 1, 2)  # the input; the target and weight, which backward's one-hot reads

    @staticmethod
    def forward(ctx, x, target, weight, reduction, ignore_index):
        if weight is None and reduction != "none" and _nn_c.cross_entropy_ok(x, target):
            # (N, C) logits against class indices, the usual case: one C pass
            logp, total, count = _nn_c.cross_entropy(x, target, ignore_index)
            dt = x.dtype.type
            denom = None
            if reduction == "mean":
                denom = dt(count)
                with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan
                    out = np.asarray(dt(total) / denom)
            else:
                out = np.asarray(dt(total))
            ctx.cls_axis, ctx.denom, ctx.reduction, ctx.logp = 1, denom, reduction, logp
            ctx.ignore_index, ctx.c_target = ignore_index, target
            return out
        _float_input(x, "log_softmax_lastdim_kernel_impl")
        cls_axis, safe, w = _class_targets(x, target, weight, ignore_index, "cross_entropy")
        logp = _by_rows(_log_softmax_np, x, cls_axis)
        loss = -_pick(logp, safe, cls_axis) * w
        out, denom = _reduce_loss(loss, w, reduction)
        ctx.cls_axis, ctx.safe, ctx.w, ctx.denom, ctx.reduction = (cls_axis, safe, w, denom,
                                                                   reduction)
        ctx.logp, ctx.ignore_index = logp, ignore_index
        return out

    @staticmethod
    def backward(ctx, g):
        x, target, weight = ctx.saved_tensors
        if not GradMode.enabled:
            fn = _ce_grad_c if "c_target" in ctx.__dict__ else _ce_grad_np
            return ArrayGrad.apply(fn, g, ctx), None, None, None, None
        # d(-w_t log p_t)/dx = w_t (p - onehot_t), with p a differentiable function of x
        p = Softmax.apply(x, ctx.cls_axis)
        onehot_w, w = _target_grad_coef(ctx, target, weight, x.shape[ctx.cls_axis], x.ndim,
                                        x.dtype)
        return (p * w - onehot_w) * _upstream(g, ctx), None, None, None, None


def _ce_grad_c(g, ctx):
    """``_ce_grad_np``'s gradient for the C forward's case (2-d logits, no weights, reduced):
    ``(exp(logp) - onehot) * g / count`` ('mean') or ``* g`` ('sum') in one C pass; rows whose
    target is ignored get 0, and with every target ignored, 0 everywhere (PyTorch's)."""
    dt = ctx.logp.dtype.type
    scale = dt(g)
    if ctx.denom is not None and ctx.denom:
        scale = scale / ctx.denom
    return _nn_c.cross_entropy_grad(ctx.logp, ctx.c_target, ctx.ignore_index, scale)


def _ce_grad_np(g, ctx):
    ax = ctx.cls_axis
    w = np.expand_dims(ctx.w, ax).astype(ctx.logp.dtype, copy=False)
    if ctx.denom is not None:
        if ctx.denom == 0:  # no target counts: ignored positions get 0, the others 0/0 (NaN),
            valid = ctx.saved_tensors[1]._data != ctx.ignore_index  # as PyTorch's
            with np.errstate(invalid="ignore", divide="ignore"):
                w = np.where(np.expand_dims(valid, ax), w / ctx.denom, 0).astype(w.dtype)
        else:
            w = w / ctx.denom
    logp = ctx.logp
    if ax == 1 and logp.ndim == 2 and logp.flags.c_contiguous and \
            logp.size >= _par.MIN_SIZE_HEAVY and w.shape == (logp.shape[0], 1):
        # (N, C) logits, the common case: the same passes on blocks of rows over the cores
        # (rows are independent: the same bits as the whole-array passes below)
        grad = np.empty(logp.shape, logp.dtype)
        idx = np.expand_dims(ctx.safe, 1)
        gg = g if ctx.reduction != "none" else np.expand_dims(g, 1)

        def part(s, e):
            blk, wb, ib = grad[s:e], w[s:e], idx[s:e]
            np.exp(logp[s:e], out=blk)
            blk *= wb
            np.put_along_axis(blk, ib, np.take_along_axis(blk, ib, 1) - wb, 1)
            blk *= gg if gg.ndim == 0 else gg[s:e]

        _par.run_rows(part, logp.shape[0], logp.shape[1])
        return grad
    grad = _par.elementwise(np.exp, logp)
    grad *= w
    np.put_along_axis(grad, np.expand_dims(ctx.safe, ax),
                      np.take_along_axis(grad, np.expand_dims(ctx.safe, ax), ax) - w, ax)
    grad *= g if ctx.reduction != "none" else np.expand_dims(g, ax)
    return grad.astype(ctx.logp.dtype, copy=False)


# ---------------------------------------------------------------------- normalisation
class Normalize(Node):
    """``(x - mean) / sqrt(var + eps) * w + b`` with statistics over ``axes``.

    ``w`` and ``b`` (or None) arrive already shaped to broadcast against ``x``. Returns
    ``(y, mean, biased var)``; the statistics serve running averages and get no gradient.
    """

    saves = (0, 1)

    @staticmethod
    def forward(ctx, x, w, b, axes, eps):
        _float_input(x, "normalize")
        if _conv_c.batch_norm_ok(x, axes, w, b):  # batch norm: C, split by channels
            y, mean, var, rstd = _conv_c.batch_norm(x, w, b, eps)
        elif _trailing_c(x, axes, w, b):  # layer norm: C, split by rows
            y, mean, var, rstd = _nn_c.layer_norm(x, math.prod(x.shape[x.ndim - len(axes):]),
                                                  w, b, eps)
            shape = x.shape[:x.ndim - len(axes)] + (1,) * len(axes)
            mean, var, rstd = mean.reshape(shape), var.reshape(shape), rstd.reshape(shape)
        else:
            y, mean, var, rstd = _normalize_rows(x, w, b, axes, eps)
        ctx.axes, ctx.eps, ctx.mean, ctx.rstd = axes, eps, mean, rstd
        return y, mean, var

    @staticmethod
    def backward(ctx, g, g_mean=None, g_var=None):
        x, w = ctx.saved_tensors
        axes = ctx.axes
        need = ctx.needs_input_grad
        if not GradMode.enabled:
            out = iter(ArrayGrad.apply(_normalize_grad_np, g, x, w, ctx))
            return tuple(next(out) if n else None for n in need[:3]) + (None, None)
        if GradMode.enabled:  # recorded backward: statistics as functions of x
            mean = x.mean(axes, keepdim=True)
            xc = x - mean
            rstd = E.rsqrt((xc * xc).mean(axes, keepdim=True) + ctx.eps)
            xhat = xc * rstd
        else:
            rstd = _make(ctx.rstd.astype(x._data.dtype, copy=False))
            xhat = (x - _make(ctx.mean.astype(x._data.dtype, copy=False))) * rstd
        gxhat = g * w if w is not None else g
        gx = gw = gb = None
        if need[0]:
            gx = rstd * (gxhat - gxhat.mean(axes, keepdim=True)
                         - xhat * (gxhat * xhat).mean(axes, keepdim=True))
        if need[1]:
            gw = g * xhat
        if need[2]:
            gb = g
        return gx, gw, gb, None, None


def _trailing_c(x, axes, *params):
    """Whether the C layer norm (``ember/ops/_nn_c.py``) serves ``x`` normalised over
    ``axes``: its trailing dims, from ``_nn_c.MIN_SIZE`` elements, params None or shaped as
    those dims (smaller inputs keep the NumPy formula, the one a compiled step replays)."""
    nd, k = x.ndim, len(axes)
    if type(x) is not np.ndarray or x.size < _nn_c.MIN_SIZE or not 0 < k <= nd or \
            tuple(axes) != tuple(range(nd - k, nd)):
        return False
    tail = x.shape[nd - k:]
    return all(p is None or p.shape == tail for p in params) and \
        _nn_c.layer_norm_ok(x, math.prod(tail), *params)


def _normalize_np(x, w, b, axes, eps):
    """``Normalize``'s forward on arrays: ``(y, mean, biased var, 1/std)``."""
    cd = _compute_dtype(x)
    xf = x.astype(cd, copy=False)
    mean = xf.mean(axis=axes, keepdims=True)
    xc = xf - mean
    var = np.mean(np.square(xc), axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = xc
    y *= rstd
    if w is not None:
        y *= w
    if b is not None:
        y += b
    return y.astype(x.dtype, copy=False), mean, var, rstd


def _row_split(x, axes, *params):
    """Rows to split a normalisation over, or 0: ``x`` large and contiguous, statistics over
    its trailing ``axes`` (layer norm, group norm), each param None or over those dims only."""
    nd, k = x.ndim, len(axes)
    if type(x) is not np.ndarray or x.size < _par.MIN_SIZE_HEAVY or not 0 < k < nd or \
            tuple(axes) != tuple(range(nd - k, nd)) or not x.flags.c_contiguous or \
            any(p is not None and np.ndim(p) > k for p in params):
        return 0
    rows = math.prod(x.shape[:nd - k])
    return rows if rows > 1 else 0


def _normalize_rows(x, w, b, axes, eps):
    """``_normalize_np``, as cache-sized blocks of rows, over every core when the input is
    large (rows are independent: the same result, bit for bit, as one call)."""
    rows = _row_split(x, axes, w, b)
    if not rows:
        return _normalize_np(x, w, b, axes, eps)
    k = len(axes)
    lead, tail = x.shape[:x.ndim - k], x.shape[x.ndim - k:]
    xr = x.reshape((rows,) + tail)
    blk_axes = tuple(range(1, k + 1))
    cd = _compute_dtype(x)
    y = np.empty(xr.shape, x.dtype)
    stats = [np.empty((rows,) + (1,) * k, cd) for _ in range(3)]

    def part(s, e):
        y[s:e], *r = _normalize_np(xr[s:e], w, b, blk_axes, eps)
        for dst, src in zip(stats, r):
            dst[s:e] = src

    _par.run_rows(part, rows, xr[0].size)
    shape = lead + (1,) * k
    return (y.reshape(x.shape),) + tuple(a.reshape(shape) for a in stats)


def _normalize_grad_arrays(g, x, w, mean, rstd, axes, need, gx=None, gw=None):
    """(gx, gw, gb) of ``Normalize`` on arrays (None where not needed); ``gx``/``gw`` may be
    given as output arrays (blocks of rows of a larger result)."""
    cd = _compute_dtype(x)
    gf = g.astype(cd, copy=False)
    xhat = x.astype(cd, copy=False) - mean
    xhat *= rstd
    if need[1]:
        gw = np.multiply(gf, xhat, out=gw)
    if need[0]:
        gxhat = gf * w if w is not None else gf
        t = np.mean(gxhat * xhat, axis=axes, keepdims=True)
        d = gxhat - gxhat.mean(axis=axes, keepdims=True)
        xhat *= t
        d -= xhat
        if gx is None:
            d *= rstd
            gx = d.astype(x.dtype, copy=False)
        else:
            np.multiply(d, rstd, out=gx, casting="unsafe")
    return gx, gw, gf if need[2] else None


def _normalize_grad_np(g, x, w, ctx):
    """The needed ones of (gx, gw, gb) of ``Normalize``, on arrays, as a tuple; large
    layer/group norms as blocks of rows over every core (bit for bit the one-call result:
    rows are independent, and gb is ``g`` itself)."""
    need, axes = ctx.needs_input_grad, ctx.axes
    if g.shape == x.shape and _conv_c.batch_norm_ok(x, axes, w):  # C, split by channels
        out = _conv_c.batch_norm_grad(g, x, w, ctx.mean, ctx.rstd, need[0])
        return tuple(a for a, n in zip(out, need[:3]) if n)
    if g.shape == x.shape and _trailing_c(x, axes, w):  # layer norm: C, split by rows
        k = len(axes)
        tail = x.shape[x.ndim - k:]
        gx, gw, gb = _nn_c.layer_norm_grad(g, x, math.prod(tail), w, ctx.mean, ctx.rstd,
                                           *need[:3])
        return tuple(a if a is None or a.shape == x.shape else a.reshape(tail)
                     for a, n in zip((gx, gw, gb), need[:3]) if n)
    rows = _row_split(x, axes, w) if g.shape == x.shape and (need[0] or need[1]) else 0
    if not rows:
        out = _normalize_grad_arrays(g, x, w, ctx.mean, ctx.rstd, axes, need)
        return tuple(a for a in out if a is not None)
    k = len(axes)
    tail, stat = x.shape[x.ndim - k:], (rows,) + (1,) * k
    gr, xr = g.reshape((rows,) + tail), x.reshape((rows,) + tail)
    mr, rr = ctx.mean.reshape(stat), ctx.rstd.reshape(stat)
    cd = _compute_dtype(x)
    gx = np.empty(xr.shape, x.dtype) if need[0] else None
    gw = np.empty(xr.shape, cd) if need[1] else None
    blk_axes = tuple(range(1, k + 1))

    def part(s, e):
        _normalize_grad_arrays(gr[s:e], xr[s:e], w, mr[s:e], rr[s:e], blk_axes,
                               (need[0], need[1], False),
                               None if gx is None else gx[s:e], None if gw is None else gw[s:e])

    _par.run_rows(part, rows, xr[0].size)
    gb = g.astype(cd, copy=False) if need[2] else None
    return tuple(a.reshape(x.shape) for a in (gx, gw, gb) if a is not None)


# ---------------------------------------------------------------------- activations
def _unary(name, fwd, bwd, saves_out=False, bwd_np=None):
    """An elementwise activation: ``fwd(x, *params)`` on arrays, ``bwd(g, x, y, *params)``
    with ember ops, and optionally ``bwd_np(g, x, *params)``, the same on arrays."""

    def forward(ctx, x, *params):
        _float_input(x, name.lower())
        ctx.params = params
        return fwd(x, *params)

    def backward(ctx, g):
        saved = ctx.saved_tensors
        x = None if saves_out else saved[0]
        y = saved[0] if saves_out else None
        if bwd_np is not None and not GradMode.enabled:
            return (ArrayGrad.apply(bwd_np, g, x, *ctx.params),) + (None,) * len(ctx.params)
        return (bwd(g, x, y, *ctx.params),) + (None,) * len(ctx.params)

    def jvp(ctx, t, *_):
        # elementwise and real: the backward's factor is the derivative itself
        x, *params = ctx.inputs
        return bwd(t, x, ctx.output, *params)

    attrs = {"forward": staticmethod(forward), "backward": staticmethod(backward),
             "jvp": staticmethod(jvp)}
    if saves_out:
        attrs["saves_output"] = True
    else:
        attrs["saves"] = (0,)
    return type(name, (Node,), attrs)


def _erf(a):
    from ._special import erf
    return erf(a)


# Abramowitz & Stegun 7.1.26: erfc(z) ~= t * P(t) * exp(-z*z), t = 1 / (1 + p*z), z >= 0,
# absolute error below 1.5e-7. In float32 this is as exact as float32 GELU needs (PyTorch's
# own float32 GELU is off the exact value by up to ~4e-7) and about 4x faster than SciPy's
# erf, which computes float32 through float64 one element at a time.
_AS_P = 0.3275911
_AS_C = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


# Below this many elements GELU keeps SciPy's correctly rounded erf: there it costs
# microseconds, and small results stay bit for bit those of the composed ops the compiler
# replays (whose erf is SciPy's); the fast float32 path serves large inputs.
_GELU_FAST_MIN = 1 << 14


def _gelu_erf_f32(xf):
    """Exact GELU of a 1-d float32 array: ``(x * Phi(x), Phi(x), exp(-x*x/2))``; the last
    two serve the backward (``Phi + x * exp(-x*x/2) / sqrt(2 pi)``) without a second exp.
    Every step is a whole-array ufunc, in place where it can be (no branches: ``np.where`` on
    random signs costs more than the whole erf)."""
    f = xf.dtype.type
    t = np.abs(xf)
    t *= f(_AS_P * _SQRT_HALF)    # p * |z|, z = x / sqrt(2)
    t += f(1.0)
    np.reciprocal(t, out=t)
    q = np.multiply(t, f(_AS_C[0]))
    for c in _AS_C[1:]:
        q += f(c)
        q *= t
    e = np.square(xf, out=t)
    e *= f(-0.5)
    np.exp(e, out=e)              # exp(-z*z) = exp(-x*x/2)
    q *= e
    q *= f(0.5)                   # h = erfc(|z|) / 2: Phi(x) for x < 0, 1 - Phi(x) for x >= 0
    np.copysign(q, xf, out=q)     # -h where the sign bit is set (x = -0.0 too)
    pos = np.signbit(xf)
    np.logical_not(pos, out=pos)
    cdf = np.subtract(pos, q, dtype=xf.dtype)  # h for x < 0, 1 - h for x >= 0: exact
    return xf * cdf, cdf, e


def _gelu_fwd_np(x, approximate, need_grad=True):
    """GELU's forward on arrays: ``(y, a, b)``, with ``a``/``b`` what the backward reuses:
    the tanh, Phi(x), or (float32, exact) the derivative ``Phi(x) + x phi(x)`` as ``b``."""
    xf = x.astype(_compute_dtype(x), copy=False)
    if approximate == "tanh":
        t = np.tanh(_GELU_K * (xf + 0.044715 * xf * xf * xf))
        y = 0.5 * xf * (1.0 + t)
        return y.astype(x.dtype, copy=False), t, None
    if type(xf) is np.ndarray and xf.dtype == np.float32 and xf.size >= _GELU_FAST_MIN:
        with np.errstate(invalid="ignore"):  # gelu(-inf) is nan, as PyTorch's, unwarned
            y, cdf, e = (a.reshape(xf.shape) for a in _gelu_erf_f32(xf.reshape(-1)))
            if not need_grad:
                return y.astype(x.dtype, copy=False), None, None
            # keep the derivative itself, Phi(x) + x phi(x): one array held for backward
            # (as many as before), and the backward is one multiply
            e *= xf
            e *= xf.dtype.type(_INV_SQRT_2PI)
            e += cdf
        return y.astype(x.dtype, copy=False), None, e
    cdf = 0.5 * (1.0 + _erf(xf * _SQRT_HALF))
    return (xf * cdf).astype(x.dtype, copy=False), cdf, None


def _elementwise_blocks(fn, x, *arrays, n_out=1):
    """``fn(x, *arrays)`` (``n_out`` arrays of ``x``'s shape, or None), computed over blocks
    of a large contiguous ``x`` on every core: elementwise work, so the same result bit for
    bit at any thread count. ``arrays`` have ``x``'s shape too (or are None)."""
    k = _par.threads_for(x.size, _par.MIN_SIZE_HEAVY)
    if k == 1 or type(x) is not np.ndarray or not x.flags.c_contiguous or \
            any(a is not None and (a.shape != x.shape or not a.flags.c_contiguous)
                for a in arrays):
        return fn(x, *arrays)
    flat = x.reshape(-1)
    rest = [None if a is None else a.reshape(-1) for a in arrays]
    parts = _par.run_split(lambda s, e: fn(flat[s:e], *[None if a is None else a[s:e]
                                                         for a in rest]),
                           _par._bounds(flat.size, k, 1024))
    if n_out == 1:
        return np.concatenate(parts).reshape(x.shape)
    return tuple(None if parts[0][i] is None else
                 np.concatenate([p[i] for p in parts]).reshape(x.shape) for i in range(n_out))


class Gelu(Node):
    """x * Phi(x), or its tanh approximation. Forward keeps Phi(x) and exp(-x*x/2) (or the
    tanh) for the array backward, since erf and exp are the costly part."""

    saves = (0,)

    @staticmethod
    def forward(ctx, x, approximate):
        _float_input(x, "gelu")
        need_grad = isinstance(ctx, Node)  # a recorded node: a backward may follow
        ctx.approximate = approximate
        if approximate == "none" and type(x) is np.ndarray and x.size >= _GELU_FAST_MIN and \
                x.flags.c_contiguous and _nn_c.available(x.dtype):
            y, ctx.e = _nn_c.gelu(x, need_grad)  # C: y and the derivative in one pass
            ctx.t = None
            return y
        y, ctx.t, ctx.e = _elementwise_blocks(
            lambda a: _gelu_fwd_np(a, approximate, need_grad), x, n_out=3)
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if not GradMode.enabled:
            return ArrayGrad.apply(_gelu_bwd_np, g, x, ctx), None
        if ctx.approximate == "tanh":
            t = E.tanh(_GELU_K * (x + 0.044715 * x * x * x))
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_K * (1 + 3 * 0.044715 * x * x)
        else:
            cdf = 0.5 * (1 + E.erf(x * _SQRT_HALF))
            d = cdf + x * E.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return g * d, None


def _gelu_bwd_np(g, x, ctx):
    if g.shape != x.shape:
        g = np.broadcast_to(g, x.shape)
    e = ctx.e
    if e is not None and ctx.approximate != "tanh" and type(g) is np.ndarray and \
            g.dtype == e.dtype == x.dtype and g.flags.c_contiguous and e.flags.c_contiguous:
        # the derivative kept by the forward: one multiply, written in place by blocks
        # over the cores (not blocks joined by a serial concatenate)
        out = np.empty(x.shape, x.dtype)
        gf, ef, of = g.reshape(-1), e.reshape(-1), out.reshape(-1)
        _nn_c._split(lambda s, t: np.multiply(gf[s:t], ef[s:t], out=of[s:t]), gf.size,
                     gf.size, 1024)
        return out
    return _elementwise_blocks(
        lambda g, x, t, e: _gelu_bwd_kernel(g, x, t, e, ctx.approximate), g, x, ctx.t, ctx.e)


def _gelu_bwd_kernel(g, x, t, e, approximate):
    xf = x.astype(_compute_dtype(x), copy=False)
    if approximate == "tanh":
        d = 0.5 * (1 + t) + 0.5 * xf * (1 - t * t) * _GELU_K * (1 + 3 * 0.044715 * xf * xf)
    elif e is not None:  # float32: the derivative, kept by the forward
        d = g * e
        return d.astype(x.dtype, copy=False)
    else:
        d = t + xf * np.exp(-0.5 * xf * xf) * _INV_SQRT_2PI
    d *= g
    return d.astype(x.dtype, copy=False)


def _sigmoid_np(x):
    with np.errstate(over="ignore"):
        return 0.5 * np.tanh(0.5 * x) + 0.5


def _silu_np(x):
    xf = x.astype(_compute_dtype(x), copy=False)
    return (xf * _sigmoid_np(xf)).astype(x.dtype, copy=False)


def _silu_bwd(g, x, y):
    s = E.sigmoid(x)
    return g * (s * (1 + x * (1 - s)))


def _silu_bwd_np(g, x):
    xf = x.astype(_compute_dtype(x), copy=False)
    sg = _sigmoid_np(xf)
    return (g * (sg * (1 + xf * (1 - sg)))).astype(x.dtype, copy=False)


Silu = _unary("Silu", _silu_np, _silu_bwd, bwd_np=_silu_bwd_np)


def _softplus_np(x, beta, threshold):
    xf = x.astype(_compute_dtype(x), copy=False)
    bx = xf * beta
    with np.errstate(over="ignore"):
        y = np.where(bx > threshold, xf, np.logaddexp(0, bx) / beta)
    return y.astype(x.dtype, copy=False)


def _softplus_bwd(g, x, y, beta, threshold):
    bx = x * beta
    return g * E.where(bx > threshold, 1.0, E.sigmoid(bx))


Softplus = _unary("Softplus", _softplus_np, _softplus_bwd)


def _elu_np(x, alpha, scale, input_scale):
    xf = x.astype(_compute_dtype(x), copy=False)
    with np.errstate(over="ignore"):
        neg = alpha * np.expm1(np.minimum(xf, 0) * input_scale)
    return (np.where(xf > 0, xf, neg) * scale).astype(x.dtype, copy=False)


def _elu_bwd(g, x, y, alpha, scale, input_scale):
    neg = E.exp(E.clamp(x, max=0) * input_scale) * (alpha * input_scale * scale)
    return g * E.where(x > 0, scale, neg)


Elu = _unary("Elu", _elu_np, _elu_bwd)


def _leaky_np(x, slope):
    return np.where(x > 0, x, x * x.dtype.type(slope) if x.dtype.kind == "f" else x * slope)


def _leaky_bwd(g, x, y, slope):
    return g * E.where(x > 0, 1.0, slope).to(g.dtype)


LeakyRelu = _unary("LeakyRelu", _leaky_np, _leaky_bwd)


def _hardtanh_np(x, lo, hi):
    return np.clip(x, lo, hi).astype(x.dtype, copy=False)


def _hardtanh_bwd(g, x, y, lo, hi):
    return g * ((x > lo) & (x < hi))


Hardtanh = _unary("Hardtanh", _hardtanh_np, _hardtanh_bwd)


def _logsigmoid_np(x):
    xf = x.astype(_compute_dtype(x), copy=False)
    return (np.minimum(xf, 0) - np.log1p(np.exp(-np.abs(xf)))).astype(x.dtype, copy=False)


LogSigmoid = _unary("LogSigmoid", _logsigmoid_np, lambda g, x, y: g * E.sigmoid(-x))


# ---------------------------------------------------------------------- CTC
def _lse(*xs):
    """Elementwise log-sum-exp of arrays that may hold -inf."""
    m = xs[0]
    for x in xs[1:]:
        m = np.maximum(m, x)
    safe = np.where(np.isfinite(m), m, 0.0)
    total = sum(np.exp(x - safe) for x in xs)
    with np.errstate(divide="ignore"):
        return np.log(total) + safe


class CTCLoss(Node):
    """Per-sample CTC negative log-likelihoods ``(N,)`` of ``log_probs`` ``(T, N, C)`` for
    padded ``targets`` ``(N, S)``, by the forward (alpha) and backward (beta) recursions over
    the blank-extended label sequences, in float64. The gradient is PyTorch's:
    ``exp(log_probs) - occupancy`` (the gradient through a log_softmax producing them)."""

    @staticmethod
    def forward(ctx, lp, targets, in_lens, tgt_lens, blank, zero_infinity):
        T, N, C = lp.shape
        x = lp.astype(np.float64)
        S = targets.shape[1] if targets.ndim == 2 else 0
        L = 2 * S + 1
        ext = np.full((N, L), blank, dtype=np.int64)
        ext[:, 1::2] = targets
        lens = 2 * tgt_lens + 1
        valid = np.arange(L)[None, :] < lens[:, None]
        skip = np.zeros((N, L), dtype=bool)
        skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
        rows = np.arange(N)[:, None]
        emit = x[:, rows, ext]  # (T, N, L)
        ninf = -np.inf
        alpha = np.full((T, N, L), ninf)
        a = np.full((N, L), ninf)
        a[:, 0] = emit[0, :, 0]
        if L > 1:
            a[:, 1] = emit[0, :, 1]
        alpha[0] = np.where(valid, a, ninf)
        pad1 = np.full((N, 1), ninf)
        pad2 = np.full((N, 2), ninf)
        for t in range(1, T):
            p = alpha[t - 1]
            s1 = np.concatenate([pad1, p[:, :-1]], 1)
            s2 = np.where(skip, np.concatenate([pad2, p[:, :-2]], 1)[:, :L], ninf)
            alpha[t] = np.where(valid & (t < in_lens)[:, None], _lse(p, s1, s2) + emit[t], ninf)
        last = np.maximum(in_lens - 1, 0)
        end = alpha[last, np.arange(N)]  # (N, L) at each sample's last step
        a_end = end[np.arange(N), lens - 1]
        a_pen = np.where(lens > 1, end[np.arange(N), np.maximum(lens - 2, 0)], ninf)
        nll = -_lse(a_end, a_pen)
        ctx.state = (x, ext, lens, valid, skip, emit, alpha, nll, in_lens, zero_infinity)
        out = np.where(np.isinf(nll), 0.0, nll) if zero_infinity else nll
        return out.astype(lp.dtype)

    @staticmethod
    def backward(ctx, g):
        return ArrayGrad.apply(_ctc_grad_np, g, ctx), None, None, None, None, None


def _ctc_grad_np(g, ctx):
    x, ext, lens, valid, skip, emit, alpha, nll, in_lens, zero_infinity = ctx.state
    T, N, L = emit.shape
    ninf = -np.inf
    beta = np.full((T, N, L), ninf)
    b_all = np.arange(N)
    pad1 = np.full((N, 1), ninf)
    pad2 = np.full((N, 2), ninf)
    skip_next = np.concatenate([skip[:, 2:], np.zeros((N, 2), bool)], 1)  # s -> s + 2 allowed
    init = np.full((N, L), ninf)
    init[b_all, lens - 1] = emit[np.maximum(in_lens - 1, 0), b_all, lens - 1]
    two = lens > 1
    init[b_all[two], lens[two] - 2] = emit[in_lens[two] - 1, b_all[two], lens[two] - 2]
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            n = beta[t + 1]
            n1 = np.concatenate([n[:, 1:], pad1], 1)
            n2 = np.where(skip_next, np.concatenate([n[:, 2:], pad2], 1), ninf)
            rec = _lse(n, n1, n2) + emit[t]
        else:
            rec = np.full((N, L), ninf)
        here = np.where((t == in_lens - 1)[:, None], init,
                        np.where((t < in_lens - 1)[:, None], rec, ninf))
        beta[t] = np.where(valid, here, ninf)
    with np.errstate(invalid="ignore", over="ignore"):
        occ = np.exp(alpha + beta + nll[None, :, None] - emit)  # (T, N, L) posteriors
    occ = np.where(valid[None], occ, 0.0)
    total = np.zeros_like(x)
    for s in range(L):
        total[:, b_all, ext[:, s]] += occ[:, :, s]
    grad = np.exp(x) - total
    grad = np.where((np.arange(T)[:, None] < in_lens[None, :])[:, :, None], grad, 0.0)
    if zero_infinity:
        grad = np.where(np.isinf(nll)[None, :, None], 0.0, grad)
    return (grad * np.asarray(g, np.float64)[None, :, None]).astype(g.dtype)
