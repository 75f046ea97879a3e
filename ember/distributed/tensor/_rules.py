"""Sharding rules (placement propagation) for the ops a transformer block needs.

A rule sees the op's arguments (DTensors, plain tensors, python values), picks one placement
per mesh dimension for every DTensor input and the output, redistributes the inputs (the
collectives are differentiable, see ``_collectives.py``), runs the op on the local tensors and
wraps the result. A plain Tensor mixed with DTensors is taken as replicated (PyTorch raises
instead): every rank must hold the same value, as with a dropout mask drawn from the same seed.
Rules return ``NotImplemented`` for cases they do not cover; the dispatcher then runs the op on
replicated values (``_dispatch.fallback``), which is always correct.
"""

from __future__ import annotations

import numpy as np

from ..._tensor import Tensor
from ...autograd import graph
from ...ops import elementwise as E
from ...ops import linalg as LA
from ...ops import nn as NN
from ...ops import reduction as RD
from ...ops import shape as SH
from . import _collectives as C
from ._api import DTensor, DTensorSpec, _grad_local, _wrap
from ._dispatch import register
from .placement_types import Partial, Replicate, Shard

R = Replicate()
PSUM = Partial("sum")


# ---------------------------------------------------------------------- helpers
def _mesh_of(args):
    for a in args:
        if isinstance(a, DTensor):
            return a._spec.mesh
        if type(a) in (list, tuple):
            for b in a:
                if isinstance(b, DTensor):
                    return b._spec.mesh
    raise AssertionError("no DTensor argument")


def _as_dtensor(a, mesh):
    """A plain tensor mixed with DTensors: taken as the replicated value."""
    if isinstance(a, DTensor):
        if a._spec.mesh != mesh:
            raise RuntimeError(f"DTensor op: arguments live on different meshes "
                               f"({a._spec.mesh} and {mesh})")
        return a
    if isinstance(a, np.ndarray):  # index arrays some functionals pass as raw arrays
        from ..._tensor import _make
        a = _make(a)
    return DTensor.from_local(a, mesh, [R] * mesh.ndim)


def _placements(a, mesh):
    return a._spec.placements if isinstance(a, DTensor) else (R,) * mesh.ndim


def _local(a, mesh, placements):
    """``a``'s local tensor laid out as ``placements``."""
    d = _as_dtensor(a, mesh)
    placements = tuple(placements)
    if d._spec.placements == placements:
        return _grad_local(d)
    return d.redistribute(mesh, placements)._local


def _out(local, mesh, placements, shape):
    return _wrap(local, DTensorSpec(mesh, placements, shape, local.dtype))


def _gshape(a):
    return tuple(a.shape)


def _first_coords(mesh, dims):
    return all(mesh.get_local_rank(i) == 0 for i in dims)


# ---------------------------------------------------------------------- pointwise
# linear in each tensor argument (a Partial value passes through; see _pointwise)
_ADDITIVE = {E.Add, E.Sub}
_SCALING = {E.Mul}                     # Partial times a replicated factor stays Partial
_LINEAR_UNARY = {E.Neg, SH.Clone, SH.Contiguous}
_POINTWISE = [c for c in vars(E).values()
              if isinstance(c, type) and issubclass(c, graph.Node) and
              c.__module__ == E.__name__]
_POINTWISE += [NN.Gelu, NN.Silu, NN.Softplus, NN.Elu, NN.LeakyRelu, NN.Hardtanh,
               NN.LogSigmoid, SH.Clone, SH.Contiguous]
try:  # the dtype conversion op lives with the Tensor methods
    from ..._tensor_methods import ToDtype
    _POINTWISE.append(ToDtype)
    _LINEAR_UNARY.add(ToDtype)
except ImportError:  # pragma: no cover
    pass


def _pointwise_plan(cls, args, mesh, out_shape):
    """Output placement per mesh dim and, per tensor argument, its input placements."""
    nd = len(out_shape)
    tensors = [(k, a) for k, a in enumerate(args) if isinstance(a, Tensor)]
    out_pl = []
    in_pl = {k: [] for k, _ in tensors}
    for i in range(mesh.ndim):
        shard_dim = None
        partials = []
        for k, a in tensors:
            p = _placements(a, mesh)[i]
            off = nd - a.ndim
            if isinstance(p, Shard) and a.shape[p.dim] == out_shape[p.dim + off] and \
                    shard_dim is None:
                shard_dim = p.dim + off
            if isinstance(p, Partial):
                partials.append(p)
        target = R
        if shard_dim is not None:
            target = Shard(shard_dim)
        elif partials and all(p == partials[0] for p in partials) and \
                partials[0].reduce_op in ("sum", "avg"):
            ok = False
            if cls in _LINEAR_UNARY and len(tensors) == 1:
                ok = True
            elif cls in _ADDITIVE:
                ok = True  # replicated terms are added once (masked to coordinate 0)
            elif cls in _SCALING or cls is E.Div:
                n_part = sum(isinstance(_placements(a, mesh)[i], Partial) for _, a in tensors)
                ok = n_part == 1 and (cls is not E.Div or isinstance(
                    _placements(tensors[0][1], mesh)[i], Partial) and tensors[0][0] == 0)
            if ok:
                target = partials[0]
        out_pl.append(target)
        for k, a in tensors:
            off = nd - a.ndim
            if isinstance(target, Shard):
                d = target.dim - off
                if d < 0 or a.shape[d] != out_shape[target.dim]:
                    in_pl[k].append(R)  # broadcast along the sharded dim: whole value
                else:
                    in_pl[k].append(Shard(d))
            elif isinstance(target, Partial):
                p = _placements(a, mesh)[i]
                if isinstance(p, Partial):
                    in_pl[k].append(p)
                elif cls in _ADDITIVE:
                    in_pl[k].append(target)  # R -> Partial keeps it on coordinate 0 only
                else:
                    in_pl[k].append(R)
            else:
                in_pl[k].append(R)
    return out_pl, in_pl


def _pointwise(cls, args, kwargs):
    mesh = _mesh_of(args)
    if any(isinstance(v, Tensor) for v in kwargs.values()):
        return NotImplemented
    shapes = [_gshape(a) for a in args if isinstance(a, Tensor)]
    try:
        out_shape = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return NotImplemented  # let the op report its own shape error on whole values
    out_pl, in_pl = _pointwise_plan(cls, args, mesh, out_shape)
    largs = []
    psum_dims = [i for i, p in enumerate(out_pl) if p == PSUM]
    for k, a in enumerate(args):
        if isinstance(a, Tensor):
            largs.append(_local(a, mesh, in_pl[k]))
        elif cls in _ADDITIVE and psum_dims and isinstance(a, (int, float, complex)) and \
                not isinstance(a, bool) and not _first_coords(mesh, psum_dims):
            largs.append(type(a)(0))  # a python term of a Partial sum is added once
        else:
            largs.append(a)
    out = cls.apply(*largs, **kwargs)
    if isinstance(out, tuple):
        return tuple(o if o is None else _out(o, mesh, out_pl, out_shape) for o in out)
    return _out(out, mesh, out_pl, out_shape)


for _c in _POINTWISE:
    register(_c)(_pointwise)


def inplace_pointwise(cls, target, args, kwargs):
    """``target.op_(*args)``: the other arguments are laid out as ``target`` is."""
    if cls not in _POINTWISE:
        raise NotImplementedError(f"DTensor: in-place op {cls.__name__} has no sharding rule")
    mesh = target._spec.mesh
    tpl = target._spec.placements
    shape = _gshape(target)
    if any(isinstance(p, Partial) for p in tpl) and not (
            cls in _ADDITIVE or cls in _SCALING or cls in _LINEAR_UNARY or cls is E.Div):
        raise NotImplementedError(f"DTensor: in-place {cls.__name__} on a Partial DTensor "
                                  f"(placements {tpl}); redistribute it first")
    largs = []
    for a in args:
        if isinstance(a, Tensor):
            off = len(shape) - a.ndim
            pl = []
            for i, p in enumerate(tpl):
                if isinstance(p, Shard):
                    d = p.dim - off
                    pl.append(R if d < 0 or a.shape[d] != shape[p.dim] else Shard(d))
                elif isinstance(p, Partial):
                    if cls not in _ADDITIVE and not (cls in _SCALING and not isinstance(
                            _placements(a, mesh)[i], Partial)):
                        raise NotImplementedError(
                            f"DTensor: in-place {cls.__name__} on a Partial DTensor")
                    pl.append(p if cls in _ADDITIVE else R)
                else:
                    pl.append(R)
            largs.append(_local(a, mesh, pl))
        else:
            pdims = [i for i, p in enumerate(tpl) if p == PSUM]
            if pdims and cls in _ADDITIVE and isinstance(a, (int, float)) and \
                    not _first_coords(mesh, pdims):
                a = type(a)(0)
            elif pdims and cls not in _ADDITIVE and cls not in _SCALING:
                raise NotImplementedError(f"DTensor: in-place {cls.__name__} on a Partial "
                                          f"DTensor")
            largs.append(a)
    graph.apply_inplace(cls, target._local, *largs, **kwargs)
    return target


# ---------------------------------------------------------------------- matmul / linear
def _role(p, nbatch_offset, ndim, kdim, other):
    """What a Shard means for one matmul operand: ('B', out_dim) for a batch dim, else
    'n'/'m' (the free dim) or 'k' (the contracted dim)."""
    if not isinstance(p, Shard):
        return "P" if isinstance(p, Partial) else "R"
    if p.dim == kdim:
        return "k"
    if p.dim == other:
        return "f"
    return ("B", p.dim + nbatch_offset)


@register(LA.Matmul)
def _matmul(cls, args, kwargs):
    a, b = args
    if kwargs or not isinstance(a, Tensor) or not isinstance(b, Tensor) or \
            a.ndim < 2 or b.ndim < 2:
        return NotImplemented
    mesh = _mesh_of(args)
    sa, sb = _gshape(a), _gshape(b)
    batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    out_shape = batch + (sa[-2], sb[-1])
    nd = len(out_shape)
    oa, ob = nd - a.ndim, nd - b.ndim
    pa_all, pb_all = _placements(a, mesh), _placements(b, mesh)
    out_pl, want_a, want_b = [], [], []
    for i in range(mesh.ndim):
        ra = _role(pa_all[i], oa, a.ndim, a.ndim - 1, a.ndim - 2)
        rb = _role(pb_all[i], ob, b.ndim, b.ndim - 2, b.ndim - 1)

        def batch_of(shape, off, od):
            d = od - off
            return Shard(d) if d >= 0 and shape[d] == out_shape[od] else R
        if isinstance(ra, tuple) and sa[ra[1] - oa] == out_shape[ra[1]]:
            od = ra[1]
            out_pl.append(Shard(od))
            want_a.append(pa_all[i])
            want_b.append(batch_of(sb, ob, od))
        elif isinstance(rb, tuple) and sb[rb[1] - ob] == out_shape[rb[1]]:
            od = rb[1]
            out_pl.append(Shard(od))
            want_a.append(batch_of(sa, oa, od))
            want_b.append(pb_all[i])
        elif ra == "f":
            out_pl.append(Shard(nd - 2))
            want_a.append(pa_all[i])
            want_b.append(R)
        elif rb == "f":
            out_pl.append(Shard(nd - 1))
            want_a.append(R)
            want_b.append(pb_all[i])
        elif ra == "k" or rb == "k":
            out_pl.append(PSUM)
            want_a.append(Shard(a.ndim - 1))
            want_b.append(Shard(b.ndim - 2))
        elif ra == "P" and pa_all[i].reduce_op in ("sum", "avg") and rb == "R":
            out_pl.append(pa_all[i])
            want_a.append(pa_all[i])
            want_b.append(R)
        elif rb == "P" and pb_all[i].reduce_op in ("sum", "avg") and ra == "R":
            out_pl.append(pb_all[i])
            want_a.append(R)
            want_b.append(pb_all[i])
        else:
            out_pl.append(R)
            want_a.append(R)
            want_b.append(R)
    la, lb = _local(a, mesh, want_a), _local(b, mesh, want_b)
    return _out(cls.apply(la, lb), mesh, out_pl, out_shape)


@register(NN.Linear)
def _linear(cls, args, kwargs):
    x, w, b = args
    if kwargs or x.ndim < 1 or w.ndim != 2:
        return NotImplemented
    mesh = _mesh_of(args)
    out_shape = _gshape(x)[:-1] + (_gshape(w)[0],)
    nd = len(out_shape)
    px, pw = _placements(x, mesh), _placements(w, mesh)
    pb = _placements(b, mesh) if b is not None else None
    out_pl, wx, ww, wb = [], [], [], []
    for i in range(mesh.ndim):
        p, q = px[i], pw[i]
        if isinstance(p, Shard) and p.dim < x.ndim - 1:        # rows of x: data parallel
            out_pl.append(Shard(p.dim))
            wx.append(p), ww.append(R), wb.append(R)
        elif q == Shard(0):                                     # colwise: output features
            out_pl.append(Shard(nd - 1))
            wx.append(R), ww.append(q), wb.append(Shard(0))
        elif p == Shard(x.ndim - 1) or q == Shard(1):           # rowwise: contracted dim
            out_pl.append(PSUM)
            wx.append(Shard(x.ndim - 1)), ww.append(Shard(1)), wb.append(PSUM)
        elif isinstance(p, Partial) and p.reduce_op in ("sum", "avg") and \
                not isinstance(q, Partial):
            out_pl.append(p)
            wx.append(p), ww.append(R), wb.append(p)
        else:
            out_pl.append(R)
            wx.append(R), ww.append(R), wb.append(R)
    lx, lw = _local(x, mesh, wx), _local(w, mesh, ww)
    lb = None
    if b is not None:
        # a bias added to a Partial(sum) result must count once: R -> Partial keeps it on
        # coordinate 0 only (and its gradient there)
        lb = _local(b, mesh, [R if isinstance(p, Partial) and p.reduce_op == "avg" else p
                              for p in wb]) if pb is not None else None
    return _out(cls.apply(lx, lw, lb), mesh, out_pl, out_shape)


# ---------------------------------------------------------------------- embedding
def _embedding_rule(cls, args, kwargs):
    weight, idx, padding_idx, scale = args
    if kwargs or scale:
        return NotImplemented
    mesh = _mesh_of(args)
    shape = _gshape(idx) + (_gshape(weight)[1],)
    pw, pi = _placements(weight, mesh), _placements(idx, mesh)
    out_pl, ww, wi = [], [], []
    vocab_dims = []
    for i in range(mesh.ndim):
        if pw[i] == Shard(1):
            out_pl.append(Shard(len(shape) - 1))
            ww.append(pw[i]), wi.append(R)
        elif pw[i] == Shard(0):  # vocabulary parallel: each rank looks up its own rows
            out_pl.append(PSUM)
            ww.append(pw[i]), wi.append(R)
            vocab_dims.append(i)
        elif isinstance(pi[i], Shard):
            out_pl.append(Shard(pi[i].dim))
            ww.append(R), wi.append(pi[i])
        else:
            out_pl.append(R)
            ww.append(R), wi.append(R)
    if len(vocab_dims) > 1:
        return NotImplemented
    lw, li = _local(weight, mesh, ww), _local(idx, mesh, wi)
    if isinstance(idx, np.ndarray):
        li = li._data  # the op takes the index array as it was given
    if not vocab_dims:
        return _out(cls.apply(lw, li, padding_idx, scale), mesh, out_pl, shape)
    i = vocab_dims[0]
    vocab = _gshape(weight)[0]
    spec = DTensorSpec(mesh, ww, _gshape(weight), weight.dtype)
    _, offset = spec.local_shape_and_offset()
    lo, rows = offset[0], lw.shape[0]
    ids = li._data if isinstance(li, Tensor) else li
    if padding_idx is not None and padding_idx < 0:
        padding_idx += vocab
    inside = (ids >= lo) & (ids < lo + rows)
    from ..._tensor import _make
    local_ids = _make(np.where(inside, ids - lo, 0))
    pad = padding_idx - lo if padding_idx is not None and lo <= padding_idx < lo + rows else None
    looked = cls.apply(lw, local_ids, pad, scale)
    keep = _make(inside[..., None].astype(looked._data.dtype))
    return _out(looked * keep, mesh, out_pl, shape)


try:
    from ...nn._functional_seq import EmbeddingLookup
    register(EmbeddingLookup)(_embedding_rule)
except ImportError:  # pragma: no cover
    pass


# ---------------------------------------------------------------------- normalization
@register(NN.Normalize)
def _normalize(cls, args, kwargs):
    x, w, b, axes, eps = args
    if kwargs:
        return NotImplemented
    mesh = _mesh_of(args)
    nd = x.ndim
    axes_n = {a % nd for a in axes}
    px = _placements(x, mesh)
    wx = [p if isinstance(p, Shard) and p.dim not in axes_n else R for p in px]
    lx = _local(x, mesh, wx)
    lw = _local(w, mesh, [R] * mesh.ndim) if w is not None else None
    lb = _local(b, mesh, [R] * mesh.ndim) if b is not None else None
    outs = cls.apply(lx, lw, lb, axes, eps)
    shape = _gshape(x)
    res = []
    for o in (outs if isinstance(outs, tuple) else (outs,)):
        if o is None:
            res.append(None)
            continue
        if o.ndim != nd:
            return NotImplemented
        # y has x's shape; the statistics keep the reduced dims with size 1
        oshape = tuple(1 if d in axes_n else shape[d] for d in range(nd)) \
            if o.shape != lx.shape else shape
        res.append(_out(o, mesh, wx, oshape))
    return tuple(res) if isinstance(outs, tuple) else res[0]


# ---------------------------------------------------------------------- softmax
@register(NN.Softmax, NN.LogSoftmax)
def _softmax(cls, args, kwargs):
    x, dim = args[0], args[1]
    if kwargs:
        return NotImplemented
    mesh = _mesh_of(args)
    d = dim % max(x.ndim, 1)
    want = [p if isinstance(p, Shard) and p.dim != d else R for p in _placements(x, mesh)]
    lx = _local(x, mesh, want)
    return _out(cls.apply(lx, *args[1:]), mesh, want, _gshape(x))


# ---------------------------------------------------------------------- reductions
def _axes(axis, nd):
    if axis is None:
        return list(range(nd))
    if isinstance(axis, int):
        return [axis % nd]
    return sorted({a % nd for a in axis}) if len(axis) else list(range(nd))


@register(RD.Sum, RD.Mean)
def _sum_mean(cls, args, kwargs):
    x = args[0]
    axis = args[1] if len(args) > 1 else kwargs.get("axis")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dtype = args[3] if len(args) > 3 else kwargs.get("dtype")
    mesh = _mesh_of(args)
    nd = x.ndim
    if nd == 0:
        return NotImplemented
    red = _axes(axis, nd)
    shape = _gshape(x)
    px = _placements(x, mesh)
    want, out_pl = [], []
    keep = [d for d in range(nd) if d not in red]
    for p in px:
        if isinstance(p, Shard) and p.dim in red:
            want.append(p)
            out_pl.append(PSUM)
        elif isinstance(p, Shard):
            want.append(p)
            out_pl.append(p if keepdim else Shard(keep.index(p.dim)))
        elif isinstance(p, Partial) and p.reduce_op in ("sum", "avg"):
            want.append(p)
            out_pl.append(p)
        else:
            want.append(R)
            out_pl.append(R)
    lx = _local(x, mesh, want)
    oshape = tuple(1 if d in red else shape[d] for d in range(nd)) if keepdim else \
        tuple(shape[d] for d in keep)
    if cls is RD.Mean and any(p == PSUM for p, q in zip(out_pl, want) if isinstance(q, Shard)):
        # a mean over a sharded dim: local sums over the global count (a Partial sum)
        count = int(np.prod([shape[d] for d in red])) if red else 1
        s = RD.Sum.apply(lx, tuple(red), keepdim, dtype)
        return _out(s / count, mesh, out_pl, oshape)
    return _out(cls.apply(lx, *args[1:], **kwargs), mesh, out_pl, oshape)


# ---------------------------------------------------------------------- losses
@register(NN.CrossEntropy, NN.NllLoss)
def _nll(cls, args, kwargs):
    x, target, weight, reduction, ignore_index = args
    if kwargs:
        return NotImplemented
    mesh = _mesh_of(args)
    cls_axis = 1 if x.ndim > 1 else 0
    px = _placements(x, mesh)
    want_x, want_t, sharded = [], [], []
    for i, p in enumerate(px):
        if isinstance(p, Shard) and p.dim != cls_axis:
            tdim = p.dim if p.dim < cls_axis else p.dim - 1
            want_x.append(p)
            want_t.append(Shard(tdim))
            sharded.append(i)
        else:
            want_x.append(R)
            want_t.append(R)
    class_dims = [i for i, p in enumerate(px) if p == Shard(cls_axis)]
    if cls is NN.CrossEntropy and x.ndim == 2 and len(class_dims) == 1 and \
            all(isinstance(p, Replicate) for i, p in enumerate(px) if i != class_dims[0]):
        return _loss_parallel(x, target, weight, reduction, ignore_index, mesh, class_dims[0])
    lx, lt = _local(x, mesh, want_x), _local(target, mesh, want_t)
    lw = _local(weight, mesh, [R] * mesh.ndim) if weight is not None else None
    if not sharded:
        out = cls.apply(lx, lt, lw, reduction, ignore_index)
        shape = tuple(out.shape)
        return _out(out, mesh, want_x if reduction == "none" else [R] * mesh.ndim, shape)
    if reduction == "none":
        out = cls.apply(lx, lt, lw, reduction, ignore_index)
        tshape = _gshape(target)
        return _out(out, mesh, want_t, tshape)
    total = cls.apply(lx, lt, lw, "sum", ignore_index)
    out_pl = [PSUM if i in sharded else R for i in range(mesh.ndim)]
    if reduction == "sum":
        return _out(total, mesh, out_pl, ())
    # mean: divide the local sums by the global (weighted) count of counted targets
    t = lt._data
    valid = t != ignore_index
    if lw is not None:
        safe = np.where(valid, t, 0)
        count = np.asarray((lw._data[safe] * valid).sum(), dtype=lx._data.dtype)
    else:
        count = np.asarray(valid.sum(), dtype=lx._data.dtype)
    for i in sharded:
        count = C.all_reduce_arr(count, mesh.get_group(i))
    return _out(total / float(count), mesh, out_pl, ())


# ---------------------------------------------------------------------- views and shapes
def _groups(a, b):
    """Pair runs of dims of shapes ``a`` and ``b`` whose products match (reshape groups)."""
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        gi, gj = [], []
        pa = pb = 1
        if i < len(a):
            gi.append(i)
            pa *= a[i]
            i += 1
        if j < len(b):
            gj.append(j)
            pb *= b[j]
            j += 1
        while pa != pb:
            if pa < pb and i < len(a):
                gi.append(i)
                pa *= a[i]
                i += 1
            elif j < len(b):
                gj.append(j)
                pb *= b[j]
                j += 1
            else:
                return None
        # trailing size-1 dims join the group on each side
        out.append((gi, gj))
    return out


def _resolve_shape(shape, numel):
    shape = list(shape)
    if -1 in shape:
        k = shape.index(-1)
        rest = int(np.prod([s for s in shape if s != -1])) if len(shape) > 1 else 1
        shape[k] = numel // rest if rest else 0
    return tuple(int(s) for s in shape)


@register(SH.View, SH.Reshape)
def _view(cls, args, kwargs):
    x, shape = args[0], args[1]
    if kwargs:
        return NotImplemented
    mesh = _mesh_of(args)
    ishape = _gshape(x)
    oshape = _resolve_shape(shape, int(np.prod(ishape)) if ishape else 1)
    if int(np.prod(oshape)) != int(np.prod(ishape)):
        return NotImplemented
    groups = _groups(ishape, oshape)
    px = _placements(x, mesh)
    want, out_pl = [], []
    local_out = list(oshape)
    sharded_dims = [p.dim for p in px if isinstance(p, Shard)]
    moved = []
    for i, p in enumerate(px):
        if not isinstance(p, Shard):
            want.append(p)
            out_pl.append(p)
            continue
        n = mesh.size(i)
        target = None
        if groups is not None and sharded_dims.count(p.dim) == 1:
            for gi, gj in groups:
                first_in = next((d for d in gi if ishape[d] != 1), None)
                first_out = next((d for d in gj if oshape[d] != 1), None)
                same = ishape[p.dim] == oshape[first_out] if first_out is not None else False
                if p.dim == first_in and first_out is not None and (same or (
                        ishape[p.dim] % n == 0 and oshape[first_out] % n == 0)):
                    # a dim kept as it is may be sharded unevenly; a split or merged one
                    # must divide evenly so that shards stay contiguous pieces
                    target = first_out
                    break
        if target is None:
            want.append(R)
            out_pl.append(R)
        else:
            want.append(p)
            out_pl.append(Shard(target))
            moved.append((p.dim, target, ishape[p.dim] == oshape[target], n))
    lx = _local(x, mesh, want)
    for d, target, same, n in moved:
        local_out[target] = lx.shape[d] if same else local_out[target] // n
    return _out(cls.apply(lx, tuple(local_out)), mesh, out_pl, oshape)


@register(SH.Permute)
def _permute(cls, args, kwargs):
    x, dims = args
    mesh = _mesh_of(args)
    nd = x.ndim
    dims = tuple(d % nd for d in dims) if nd else tuple(dims)
    px = _placements(x, mesh)
    out_pl = [Shard(dims.index(p.dim)) if isinstance(p, Shard) else p for p in px]
    shape = _gshape(x)
    lx = _local(x, mesh, px)
    return _out(cls.apply(lx, dims), mesh, out_pl, tuple(shape[d] for d in dims))


@register(SH.Expand)
def _expand(cls, args, kwargs):
    x, shape = args
    mesh = _mesh_of(args)
    ishape = _gshape(x)
    off = len(shape) - len(ishape)
    oshape = tuple(ishape[d - off] if s == -1 else s for d, s in enumerate(shape))
    px = _placements(x, mesh)
    want, out_pl = [], []
    local_shape = list(oshape)
    for p in px:
        if isinstance(p, Shard) and ishape[p.dim] == oshape[p.dim + off]:
            want.append(p)
            out_pl.append(Shard(p.dim + off))
        elif isinstance(p, Partial) and p.reduce_op in ("sum", "avg"):
            want.append(p)
            out_pl.append(p)
        else:
            want.append(R if isinstance(p, Shard) or isinstance(p, Partial) else p)
            out_pl.append(R)
    lx = _local(x, mesh, want)
    for d in range(len(ishape)):
        local_shape[d + off] = lx.shape[d] if ishape[d] == oshape[d + off] else oshape[d + off]
    return _out(cls.apply(lx, tuple(local_shape)), mesh, out_pl, oshape)


@register(SH.Split)
def _split(cls, args, kwargs):
    x, sizes, dim = args
    mesh = _mesh_of(args)
    d = dim % x.ndim
    want = [p if not (isinstance(p, Shard) and p.dim == d) else R
            for p in _placements(x, mesh)]
    lx = _local(x, mesh, want)
    outs = cls.apply(lx, sizes, dim)
    shape = list(_gshape(x))
    res = []
    for o in outs:
        shape[d] = o.shape[d]
        res.append(_out(o, mesh, want, tuple(shape)))
    return tuple(res)




def _loss_parallel(x, target, weight, reduction, ignore_index, mesh, i):
    """Cross-entropy of logits sharded on the class dim without gathering them (PyTorch's
    ``loss_parallel``): the log-sum-exp and the target logit are each one all-reduce of a
    per-row value."""
    from ..._tensor import _make
    from ...ops import indexing as IX  # noqa: F401  (gather is bound as a Tensor method)
    pg = mesh.get_group(i)
    lx = _local(x, mesh, x._spec.placements)
    lt = _local(target, mesh, [R] * mesh.ndim)
    t = lt._data if isinstance(lt, Tensor) else np.asarray(lt)
    spec = DTensorSpec(mesh, x._spec.placements, _gshape(x), x.dtype)
    _, offset = spec.local_shape_and_offset()
    lo, width = offset[1], lx.shape[1]
    a = lx._data
    # the row maxima only steady the exponentials: a constant for autograd
    m = a.max(axis=1) if width else np.full(a.shape[0], -np.inf, a.dtype)
    m = C.all_reduce_arr(m, pg, "max")
    m_t = _make(m[:, None])
    sum_exp = C.AllReduce.apply((lx - m_t).exp().sum(1), pg, "sum")
    lse = sum_exp.log() + _make(m)
    valid = t != ignore_index
    inside = valid & (t >= lo) & (t < lo + width)
    local_t = _make(np.where(inside, t - lo, 0)[:, None])
    if width:
        picked = lx.gather(1, local_t).squeeze(1) * _make(inside.astype(a.dtype))
    else:
        picked = lx.sum(1) * 0
    picked = C.AllReduce.apply(picked, pg, "sum")
    coef = valid.astype(a.dtype)
    if weight is not None:
        w = weight.full_tensor() if isinstance(weight, DTensor) else weight
        coef = coef * w.detach()._data[np.where(valid, t, 0)]
    loss = (lse - picked) * _make(coef)
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() / float(coef.sum())
    return _out(out, mesh, [R] * mesh.ndim, tuple(out.shape))
