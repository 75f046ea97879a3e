"""Shape ops: views (view, reshape, transpose, permute, expand, ...), joins and splits,
flips and rolls, triangles and diagonals. View ops return backend views of their input and
share its version counter."""

from __future__ import annotations

import builtins

import numpy as np

from .. import _dtype as D
from .._meta import MetaArray
from .. import _memory_format as _mf
from .._tensor import Tensor, _make
from ..autograd.graph import Node, apply_with as _apply_with, named
from ..autograd import forward_ad as _fad
from ._util import norm_dim, result_dtype, shape_arg
from .._autocast import autocast_function

_ndarray = np.ndarray

__all__ = ["reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose",
           "swapaxes", "swapdims", "movedim", "moveaxis", "t", "broadcast_to",
           "broadcast_tensors", "broadcast_shapes", "tile", "cat", "concat", "concatenate",
           "stack", "hstack", "vstack", "split", "chunk", "unbind", "narrow", "flip", "roll",
           "tril", "triu", "diag", "diagonal", "clone", "detach", "adjoint", "diag_embed",
           "meshgrid", "cartesian_prod", "block_diag", "diff", "atleast_1d", "atleast_2d",
           "atleast_3d", "column_stack", "row_stack", "dstack", "tensor_split",
           "split_with_sizes", "hsplit", "vsplit", "dsplit", "flipud", "fliplr", "rot90",
           "as_strided", "diagflat", "narrow_copy", "ravel", "view_as_real", "view_as_complex",
           "unsafe_chunk", "unsafe_split", "diagonal_copy", "expand_copy", "permute_copy",
           "t_copy", "unbind_copy", "view_copy", "squeeze_copy", "unsqueeze_copy",
           "transpose_copy", "split_copy", "detach_copy"]


def _infer_shape(shape, numel, op="view"):
    shape = list(shape)
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise RuntimeError("only one dimension can be inferred")
    for s in shape:
        if s < -1:
            raise RuntimeError(f"invalid shape dimension {s}")
    if neg:
        rest = 1
        for i, s in enumerate(shape):
            if i != neg[0]:
                rest *= s
        if rest == 0 or numel % rest:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape[neg[0]] = numel // rest
    n = 1
    for s in shape:
        n *= s
    if n != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return tuple(shape)


def _plain_reshape(a, shape):
    """``a.reshape(shape)`` where NumPy's rules give PyTorch's answer: an ndarray and sizes
    of at least -1 (NumPy infers one -1 as PyTorch does; the ambiguous -1 among zero
    elements is PyTorch's error); None where the general path must decide or raise."""
    if type(a) is _ndarray and shape and builtins.min(shape) >= -1 and \
            (a.size or -1 not in shape):
        try:
            return a.reshape(shape)
        except ValueError:  # sizes that do not fit, two -1: the general path's errors
            return None
    return None


class View(Node):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        if type(a) is _ndarray and shape and builtins.min(shape) >= -1 and a.size:
            # _plain_reshape, inlined (views are the hot path); then whether ``r`` is a view
            # of ``a``: NumPy collapses a view's base to the array owning the memory, while
            # a copy's base is the fresh copy
            try:
                r = a.reshape(shape)
            except ValueError:
                r = None
            if r is not None:
                b = r.base
                if b is not None and (b is a or b is a.base):
                    return r
        shape = _infer_shape(shape, a.size)
        try:
            return np.reshape(a, shape, copy=False)
        except ValueError:
            raise RuntimeError(
                "view size is not compatible with input tensor's size and stride (at least one "
                "dimension spans across two contiguous subspaces). Use .reshape(...) instead."
            ) from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)

    array_backward = backward


class Reshape(Node):
    view = "maybe"

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        r = _plain_reshape(a, shape)
        if r is not None:
            return r
        return np.reshape(a, _infer_shape(shape, a.size))

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)

    array_backward = backward


class Permute(Node):
    view = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        # the method, not np.transpose's Python wrapper (1 us)
        return a.transpose(dims) if type(a) is _ndarray else np.transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        return g.permute(tuple(np.argsort(ctx.dims))), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)

    @staticmethod
    def array_backward(ctx, g):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return g.transpose(inverse), None


class Expand(Node):
    view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        out = np.broadcast_to(a, shape)
        if out.size == a.size and a.flags.writeable:
            # no element repeated (only size-1 dims added): a writable view, as PyTorch lets
            # one write through x.expand(1, -1) (Hugging Face's position_ids buffers)
            return a.reshape(out.shape)
        return out

    @staticmethod
    def backward(ctx, g):
        from ._util import sum_to_shape
        return sum_to_shape(g, ctx.shape), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)

    @staticmethod
    def array_backward(ctx, g):
        from ._util import sum_array_to_shape
        return sum_array_to_shape(g, ctx.shape), None


class Cat(Node):
    @staticmethod
    def forward(ctx, dim, *arrays):
        rt = result_dtype(*arrays).np
        out = np.concatenate([a for a in arrays if not _skippable(a)] or [arrays[0]],
                             axis=dim, dtype=rt)
        # a skipped 1-d empty input (joined to an n-d result) gets an empty gradient: size None
        ctx.sizes = [None if _skippable(a) and out.ndim > 1 else a.shape[dim] for a in arrays]
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        out = [None]
        start = 0
        for n in ctx.sizes:
            if n is None:
                out.append(g.new_zeros(0))
                continue
            out.append(g.narrow(ctx.dim, start, n))
            start += n
        return tuple(out)

    jvp = staticmethod(_fad.linear_jvp)


def _skippable(a):
    # PyTorch lets 1-d empty tensors join anything
    return a.ndim == 1 and a.shape[0] == 0


class Stack(Node):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        rt = result_dtype(*arrays).np
        return np.stack(arrays, axis=dim, dtype=rt)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(g.unbind(ctx.dim))

    jvp = staticmethod(_fad.linear_jvp)


class Split(Node):
    """Split along ``dim`` into views of the given sizes."""

    view = True

    @staticmethod
    def forward(ctx, a, sizes, dim):
        ctx.shape, ctx.dim = a.shape, dim
        idx = np.cumsum(sizes)[:-1]
        return tuple(np.split(a, idx, axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return cat(grads, ctx.dim), None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Unbind(Node):
    view = True

    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = dim
        idx = [slice(None)] * a.ndim
        out = []
        for i in range(a.shape[dim]):
            idx[dim] = i
            out.append(a[tuple(idx)])
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        return stack(grads, ctx.dim), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Narrow(Node):
    view = True

    @staticmethod
    def forward(ctx, a, dim, start, length):
        ctx.shape, ctx.dim, ctx.start = a.shape, dim, start
        idx = [slice(None)] * a.ndim
        idx[dim] = slice(start, start + length)
        return a[tuple(idx)]

    @staticmethod
    def backward(ctx, g):
        from .indexing import pad_into
        return pad_into(g, ctx.shape, ctx.dim, ctx.start), None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Flip(Node):
    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return np.flip(a, dims).copy() if dims else a.copy()

    @staticmethod
    def backward(ctx, g):
        return g.flip(ctx.dims), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Roll(Node):
    @staticmethod
    def forward(ctx, a, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        if dims is None:
            return np.roll(a.reshape(-1), shifts).reshape(a.shape)
        return np.roll(a, shifts, dims)

    @staticmethod
    def backward(ctx, g):
        s = ctx.shifts
        s = tuple(-x for x in s) if isinstance(s, tuple) else -s
        return g.roll(s, ctx.dims), None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Tril(Node):
    @staticmethod
    def forward(ctx, a, k):
        ctx.k = k
        return np.tril(a, k)

    @staticmethod
    def backward(ctx, g):
        return g.tril(ctx.k), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Triu(Node):
    @staticmethod
    def forward(ctx, a, k):
        ctx.k = k
        return np.triu(a, k)

    @staticmethod
    def backward(ctx, g):
        return g.triu(ctx.k), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Diagonal(Node):
    view = True

    @staticmethod
    def forward(ctx, a, offset, d1, d2):
        ctx.shape, ctx.args = a.shape, (offset, d1, d2)
        d = np.diagonal(a, offset, d1, d2)
        if type(d) is _ndarray and a.flags.writeable:  # NumPy's view is read-only;
            d.flags.writeable = True                       # PyTorch's is writable
        return d

    @staticmethod
    def backward(ctx, g):
        offset, d1, d2 = ctx.args
        z = _make(np.zeros(ctx.shape, dtype=g._data.dtype))
        return _DiagonalScatter.apply(z, g, offset, d1, d2), None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class _DiagonalScatter(Node):
    @staticmethod
    def meta(ctx, a, src, offset, d1, d2):
        ctx.args = (offset, d1, d2)
        return MetaArray(a.shape, a.dtype)

    @staticmethod
    def forward(ctx, a, src, offset, d1, d2):
        ctx.args = (offset, d1, d2)
        out = a.copy()
        view = np.diagonal(out, offset, d1, d2)
        view.setflags(write=True) if view.flags.writeable else None
        _diag_view(out, offset, d1, d2)[...] = src
        return out

    @staticmethod
    def backward(ctx, g):
        offset, d1, d2 = ctx.args
        ga = _DiagonalScatter.apply(g, _make(np.zeros(_diag_view(g._data, offset, d1, d2).shape,
                                                      g._data.dtype)), offset, d1, d2)
        return ga, g.diagonal(offset, d1, d2), None, None, None


def _diag_view(a, offset, d1, d2):
    """A writable strided view of the diagonal of ``a`` (NumPy's ``diagonal`` is read-only)."""
    from numpy.lib.stride_tricks import as_strided
    n1, n2 = a.shape[d1], a.shape[d2]
    if offset >= 0:
        length = builtins.max(builtins.min(n1, n2 - offset), 0)
        start = offset * a.strides[d2] if length else 0
    else:
        length = builtins.max(builtins.min(n1 + offset, n2), 0)
        start = -offset * a.strides[d1] if length else 0
    rest = [i for i in range(a.ndim) if i not in (d1, d2)]
    shape = [a.shape[i] for i in rest] + [length]
    strides = [a.strides[i] for i in rest] + [a.strides[d1] + a.strides[d2]]
    base = a.reshape(-1)[start // a.itemsize:] if a.size and length else a
    return as_strided(base, shape, strides, writeable=True)


class DiagEmbed1d(Node):
    """``diag(v, k)`` for a 1-d input: a 2-d matrix with ``v`` on diagonal ``k``."""

    @staticmethod
    def forward(ctx, a, k):
        ctx.k = k
        return np.diag(a, k)

    @staticmethod
    def backward(ctx, g):
        return g.diagonal(ctx.k), None


class Repeat(Node):
    @staticmethod
    def forward(ctx, a, reps):
        ctx.shape, ctx.reps = a.shape, reps
        return np.tile(a.reshape((1,) * (len(reps) - a.ndim) + a.shape), reps)

    @staticmethod
    def backward(ctx, g):
        reps, shape = ctx.reps, ctx.shape
        full = (1,) * (len(reps) - len(shape)) + tuple(shape)
        # (r0, s0, r1, s1, ...) then sum the repeat axes
        split = []
        for r, s in zip(reps, full):
            split += [r, s]
        gg = g.reshape(split).sum(dim=tuple(range(0, 2 * len(reps), 2)))
        return gg.reshape(shape), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Clone(Node):
    @staticmethod
    def forward(ctx, a, memory_format=None):
        return _mf.copy_as(a, memory_format)

    @staticmethod
    def backward(ctx, g):
        return g, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Contiguous(Node):
    view = "maybe"

    @staticmethod
    def meta(ctx, a, memory_format=None):
        return a if a.flags.c_contiguous else MetaArray(a.shape, a.dtype)

    @staticmethod
    def forward(ctx, a, memory_format=None):
        if memory_format is None:
            return np.ascontiguousarray(a)
        return _mf.as_format(a, memory_format)

    @staticmethod
    def backward(ctx, g):
        return g, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


# ====================================================================== public functions
def reshape(input, *shape, **kwargs):
    """The same data in a new shape: a view when the strides allow, else a copy."""
    r = _apply_with(Reshape, input, shape_arg(_kwarg(shape, kwargs, "shape", "reshape")))
    return named(r, "ViewBackward0" if r._base is not None else "UnsafeViewBackward0")


def _kwarg(args, kwargs, name, op):
    """Varargs sizes, or the same given as the keyword ``name`` (``reshape(x, shape=...)``)."""
    if kwargs:
        if args or set(kwargs) != {name}:
            raise TypeError(f"{op}() got unexpected arguments {list(kwargs)}")
        return (kwargs[name],)
    return args


def view(input, *shape):
    """A view with a new shape (error if the strides do not allow one); or a dtype view."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
        from .. import _dtype as D
        if isinstance(shape[0], (D.dtype, str)) or shape[0] in (float, int, bool):
            return _view_dtype(input, D.to_dtype(shape[0]))
    return _apply_with(View, input, shape_arg(shape))


def _view_dtype(input, dt):
    if dt.itemsize != input._data.dtype.itemsize and input.ndim == 0:
        raise RuntimeError("self.dim() cannot be 0 to view a different dtype size")
    t = _make(input._data.view(dt.np))
    t._base = input._base if input._base is not None else input
    return t



def _shape_of(t):
    # A Tensor subclass may hold a part of its value (a DTensor's shard): its shape
    # property is the one these functions must read. Plain tensors keep the direct read.
    return t._data.shape if type(t) is Tensor else tuple(t.shape)

def flatten(input, start_dim=0, end_dim=-1):
    if input.is_quantized:  # a view that keeps the quantizer (issue 20)
        return input.flatten(start_dim, end_dim)
    nd = input._data.ndim
    if nd == 0:
        return input.reshape(1)
    s = norm_dim(start_dim, nd)
    e = norm_dim(end_dim, nd)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if s == e:
        return input
    shp = _shape_of(input)
    n = 1
    for d in shp[s:e + 1]:
        n *= d
    return input.reshape(shp[:s] + (n,) + shp[e + 1:])


def unflatten(input, dim, sizes):
    d = norm_dim(dim, input._data.ndim)
    shp = _shape_of(input)
    sizes = list(sizes)
    if -1 in sizes:
        rest = 1
        for s in sizes:
            if s != -1:
                rest *= s
        sizes[sizes.index(-1)] = shp[d] // rest if rest else 0
    n = 1
    for s in sizes:
        n *= s
    if n != shp[d]:
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the "
                           f"size of dim {dim} ({shp[d]}) in the input tensor")
    return input.reshape(shp[:d] + tuple(sizes) + shp[d + 1:])


def squeeze(input, dim=None):
    shp = _shape_of(input)
    if dim is None:
        new = tuple(s for s in shp if s != 1)
    else:
        dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
        dims = {norm_dim(d, len(shp)) for d in dims}
        new = tuple(s for i, s in enumerate(shp) if not (i in dims and s == 1))
    return named(View.apply(input, new), "SqueezeBackward0" if dim is None else
                 "SqueezeBackward1")


def unsqueeze(input, dim):
    shp = _shape_of(input)
    d = norm_dim(dim, len(shp) + 1)
    return named(View.apply(input, shp[:d] + (1,) + shp[d:]), "UnsqueezeBackward0")


def permute(input, *dims, **kwargs):
    """A view with the dims reordered."""
    dims = shape_arg(_kwarg(dims, kwargs, "dims", "permute"))
    nd = input._data.ndim
    if len(dims) != nd:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {nd} is not equal to len(dims) = {len(dims)}")
    dims = tuple(norm_dim(d, nd) for d in dims)
    if len(set(dims)) != nd:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return _apply_with(Permute, input, dims)


_SWAP_LAST = {2: (1, 0), 3: (0, 2, 1), 4: (0, 1, 3, 2)}  # transpose(-2, -1) by rank


def transpose(input, dim0, dim1):
    nd = input._data.ndim
    if nd == 0:
        return _apply_with(View, input, ())
    if (dim0 == -2 or dim0 == nd - 2) and (dim1 == -1 or dim1 == nd - 1) and \
            nd in _SWAP_LAST and type(dim0) is int and type(dim1) is int:
        perm = _SWAP_LAST[nd]  # the usual call (t(), mT, x.transpose(-2, -1))
    else:
        d0, d1 = norm_dim(dim0, nd), norm_dim(dim1, nd)
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
        perm = tuple(perm)
    return named(_apply_with(Permute, input, perm), "TransposeBackward0")


swapaxes = swapdims = transpose


def t(input):
    nd = input._data.ndim
    if nd > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {nd}D")
    return named(transpose(input, 0, 1) if nd == 2 else
                 _apply_with(View, input, _shape_of(input)), "TBackward0")


def adjoint(input):
    return transpose(input, -2, -1).conj()


def movedim(input, source, destination):
    nd = input._data.ndim
    src = [source] if isinstance(source, (int, np.integer)) else list(source)
    dst = [destination] if isinstance(destination, (int, np.integer)) else list(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({src} dims) "
                           f"should contain the same number of dims as destination ({dst} dims)")
    src = [norm_dim(s, nd) for s in src]
    dst = [norm_dim(d, nd) for d in dst]
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return Permute.apply(input, tuple(order))


moveaxis = movedim


def expand(input, *sizes):
    sizes = shape_arg(sizes)
    shp = _shape_of(input)
    if len(sizes) < len(shp):
        raise RuntimeError(f"expand(torch.FloatTensor{{{list(shp)}}}, size={list(sizes)}): the "
                           f"number of sizes provided ({len(sizes)}) must be greater or equal to "
                           f"the number of dimensions in the tensor ({len(shp)})")
    lead = len(sizes) - len(shp)
    new = []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise RuntimeError(f"The expanded size of the tensor ({s}) isn't allowed in a "
                                   f"leading, non-existing dimension {i}")
            new.append(s)
        else:
            cur = shp[i - lead]
            if s == -1:
                new.append(cur)
            elif cur == 1 or cur == s:
                new.append(s)
            else:
                raise RuntimeError(f"The expanded size of the tensor ({s}) must match the "
                                   f"existing size ({cur}) at non-singleton dimension {i}.  "
                                   f"Target sizes: {list(sizes)}.  Tensor sizes: {list(shp)}")
    return Expand.apply(input, tuple(new))


def expand_as(input, other):
    return expand(input, other._data.shape)


def broadcast_to(input, size):
    return expand(input, tuple(size))


def broadcast_shapes(*shapes):
    try:
        return _size(np.broadcast_shapes(*[(s,) if isinstance(s, int) else tuple(s)
                                           for s in shapes]))
    except ValueError:
        raise RuntimeError(f"shape mismatch: objects cannot be broadcast to a single shape "
                           f"{[list(s) for s in shapes]}") from None


def _size(s):
    from .._tensor import Size
    return Size(s)


def broadcast_tensors(*tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tensors[0]
    shape = broadcast_shapes(*[t._data.shape for t in tensors])
    return tuple(expand(t, shape) for t in tensors)


def repeat(input, *sizes):
    reps = shape_arg(sizes)
    if len(reps) < input._data.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    return Repeat.apply(input, reps)


def tile(input, dims):
    dims = tuple(dims)
    nd = input._data.ndim
    if len(dims) < nd:
        dims = (1,) * (nd - len(dims)) + dims
    return Repeat.apply(input, dims)


def _tensors_arg(tensors, op):
    if isinstance(tensors, Tensor):
        raise TypeError(f"{op}(): argument 'tensors' (position 1) must be tuple of Tensors, not "
                        "Tensor")
    tensors = tuple(tensors)
    for x in tensors:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected Tensor as element in argument 0, but got "
                            f"{type(x).__name__}")
    return tensors


def cat(tensors, dim=0, *, out=None):
    """Join tensors along an existing dim."""
    tensors = _tensors_arg(tensors, "cat")
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    ref = next((x for x in tensors if not _skippable(x._data)), tensors[0])
    nd = ref._data.ndim
    if nd == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = norm_dim(dim, nd)
    for i, x in enumerate(tensors):
        if _skippable(x._data) and nd != 1:
            continue
        if x._data.ndim != nd:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {nd} and "
                               f"{x._data.ndim}")
        for k in range(nd):
            if k != d and x._data.shape[k] != ref._data.shape[k]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. "
                                   f"Expected size {ref._data.shape[k]} but got size "
                                   f"{x._data.shape[k]} for tensor number {i} in the list.")
    from .elementwise import _out
    return _out(Cat.apply(d, *tensors), out)


concat = concatenate = cat


def stack(tensors, dim=0, *, out=None):
    """Join tensors along a new dim."""
    tensors = _tensors_arg(tensors, "stack")
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shp = tensors[0]._data.shape
    for i, x in enumerate(tensors):
        if x._data.shape != shp:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shp)} "
                               f"at entry 0 and {list(x._data.shape)} at entry {i}")
    d = norm_dim(dim, len(shp) + 1)
    from .elementwise import _out
    return _out(Stack.apply(d, *tensors), out)


def hstack(tensors):
    tensors = [x if x.ndim else x.reshape(1) for x in _tensors_arg(tensors, "hstack")]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    tensors = [x.reshape(1, -1) if x.ndim < 2 else x for x in _tensors_arg(tensors, "vstack")]
    return cat(tensors, 0)


def split(tensor, split_size_or_sections, dim=0):
    """Split into chunks of one size (the last may be smaller) or of the given sizes."""
    d = norm_dim(dim, tensor._data.ndim)
    n = _shape_of(tensor)[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        s = int(split_size_or_sections)
        if s < 0 or (s == 0 and n != 0):
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got "
                               f"dimension size of {n}")
        sizes = [s] * (n // s) + ([n % s] if n % s else []) if s else [0]
    else:
        sizes = [int(x) for x in split_size_or_sections]
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got split_sizes="
                               f"{sizes}")
    return Split.apply(tensor, sizes, d)


def chunk(input, chunks, dim=0):
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0, got: " + str(chunks))
    d = norm_dim(dim, input._data.ndim)
    n = _shape_of(input)[d]
    size = -(-n // chunks) if n else 0
    return split(input, size if size else 1, d) if n else split(input, [0], d)


def unbind(input, dim=0):
    d = norm_dim(dim, input._data.ndim)
    return Unbind.apply(input, d)


def narrow(input, dim, start, length):
    d = norm_dim(dim, input._data.ndim)
    n = _shape_of(input)[d]
    if isinstance(start, Tensor):
        start = int(start.item())
    if not -n <= start <= n:
        raise IndexError(f"start out of range (expected to be in range of [{-n}, {n}], but got "
                         f"{start})")
    if start < 0:
        start += n
    if length < 0 or start + length > n:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return named(Narrow.apply(input, d, start, length), "SliceBackward0")


def flip(input, *dims, **kwargs):
    """Reverse the order of elements along ``dims``."""
    dims = shape_arg(_kwarg(dims, kwargs, "dims", "flip"))
    nd = input._data.ndim
    return Flip.apply(input, tuple(norm_dim(d, nd) for d in dims))


def roll(input, shifts, dims=None):
    if isinstance(shifts, (list, tuple)) and dims is None and len(shifts) != 1:
        raise RuntimeError("roll: `shifts` and `dims` must have the same length")
    if isinstance(shifts, list):
        shifts = tuple(shifts)
    if isinstance(dims, list):
        dims = tuple(dims)
    if isinstance(shifts, tuple) and dims is None:
        shifts = shifts[0]
    return Roll.apply(input, shifts, dims)


def tril(input, diagonal=0):
    if input._data.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return Tril.apply(input, diagonal)


def triu(input, diagonal=0):
    if input._data.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return Triu.apply(input, diagonal)


def diagonal(input, offset=0, dim1=0, dim2=1):
    nd = input._data.ndim
    d1, d2 = norm_dim(dim1, nd), norm_dim(dim2, nd)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return Diagonal.apply(input, offset, d1, d2)


def diag(input, diagonal=0):
    nd = input._data.ndim
    if nd == 1:
        return DiagEmbed1d.apply(input, diagonal)
    if nd == 2:
        return Diagonal.apply(input, diagonal, 0, 1).clone()
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {nd}D")


def clone(input, *, memory_format=None):
    if memory_format is None:
        return Clone.apply(input)
    return Clone.apply(input, memory_format)


def contiguous(input, memory_format=None):
    """``input`` itself when it is laid out as ``memory_format`` asks (C order by default;
    ``channels_last``/``channels_last_3d``: NHWC/NDHWC in memory), else a copy that is."""
    if memory_format is None or memory_format is _mf.contiguous_format:
        if input._data.flags.c_contiguous:
            return input
        return Contiguous.apply(input)
    if memory_format is _mf.preserve_format:
        raise RuntimeError("preserve memory format is unsupported by the contiguous operator")
    if _mf.is_contiguous_as(input._data, memory_format):
        return input
    return Contiguous.apply(input, memory_format)


def detach(input):
    """A tensor sharing ``input``'s memory and version counter, cut from the graph."""
    t = _make(input._data)
    t._base = input._base if input._base is not None else input
    t._nondiff_view = True  # in-place ops on it do not write into the base's graph
    return t



# ====================================================================== more joins and views
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Matrices (in dims ``dim1``, ``dim2`` of the result) with the last dim of ``input`` on
    their ``offset`` diagonal."""
    nd = input._data.ndim + 1
    d1, d2 = norm_dim(dim1, nd), norm_dim(dim2, nd)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    n = input._data.shape[-1] + builtins.abs(offset)
    rest = list(input._data.shape[:-1])
    shape = []
    for k in range(nd):
        shape.append(n if k in (d1, d2) else rest.pop(0))
    z = _make(np.zeros(shape, dtype=input._data.dtype, like=input._data))
    return _DiagonalScatter.apply(z, input, offset, d1, d2)


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids (expanded views) from 1-d tensors; ``indexing`` is 'ij' or 'xy'."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but "
                           f"received: {indexing}")
    for x in tensors:
        if x._data.ndim > 1:
            raise RuntimeError("torch.meshgrid: Expected 0D or 1D tensor in the tensor list but "
                               f"got: {x}")
    flat = [x.reshape(-1) for x in tensors]
    swap = indexing == "xy" and len(flat) >= 2
    if swap:
        flat[0], flat[1] = flat[1], flat[0]
    shape = tuple(x._data.shape[0] for x in flat)
    n = len(flat)
    out = [x.reshape((1,) * i + (-1,) + (1,) * (n - i - 1)).expand(shape)
           for i, x in enumerate(flat)]
    if swap:
        out[0], out[1] = out[1], out[0]
    return tuple(out)


def cartesian_prod(*tensors):
    """All tuples of one element from each 1-d tensor, one per row."""
    if len(tensors) == 1:
        return tensors[0]
    grids = meshgrid(*tensors, indexing="ij")
    return stack([g.reshape(-1) for g in grids], 1)


def block_diag(*tensors):
    """A block-diagonal matrix of the given 0-d, 1-d or 2-d tensors."""
    mats = []
    for i, x in enumerate(tensors):
        if x._data.ndim > 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer dimensions."
                               f" Input {i} has {x._data.ndim} dimensions")
        mats.append(x.reshape(1, -1) if x._data.ndim < 2 else x)
    rt = result_dtype(*[m._data for m in mats]).np if mats else np.float32
    rows = builtins.sum(m._data.shape[0] for m in mats)
    cols = builtins.sum(m._data.shape[1] for m in mats)
    like = mats[0]._data if mats else None  # a meta input makes a meta result
    out = _make(np.zeros((rows, cols), dtype=rt, like=like))
    r = c = 0
    from .indexing import IndexPut
    for m in mats:
        h, w = m._data.shape
        out = IndexPut.apply(out, m.to(out.dtype), (slice(r, r + h), slice(c, c + w)))
        r, c = r + h, c + w
    return out


def diff(input, n=1, dim=-1, prepend=None, append=None):
    """The ``n``-th forward difference along ``dim`` (with optional ``prepend``/``append``)."""
    d = norm_dim(dim, input._data.ndim)
    if input._data.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    parts = [x for x in (prepend, input, append) if x is not None]
    x = cat(parts, d) if len(parts) > 1 else input
    for _ in range(n):
        m = x._data.shape[d]
        if m == 0:
            break
        hi, lo = x.narrow(d, 1, m - 1), x.narrow(d, 0, m - 1)
        x = hi ^ lo if x._data.dtype == np.bool_ else hi - lo
    return x


def atleast_1d(*tensors):
    """Tensors with at least one dimension (0-d becomes shape (1,))."""
    return _atleast(tensors, lambda x: x.reshape(1) if x._data.ndim == 0 else x)


def atleast_2d(*tensors):
    """Tensors with at least two dimensions (new dims lead)."""
    return _atleast(tensors, lambda x: x.reshape((1,) * (2 - x._data.ndim) + x._data.shape)
                    if x._data.ndim < 2 else x)


def _to3d(x):
    nd = x._data.ndim
    if nd == 0:
        return x.reshape(1, 1, 1)
    if nd == 1:
        return x.reshape(1, -1, 1)
    if nd == 2:
        return x.unsqueeze(-1)
    return x


def atleast_3d(*tensors):
    """Tensors with at least three dimensions ((n,) -> (1, n, 1), (m, n) -> (m, n, 1))."""
    return _atleast(tensors, _to3d)


def _atleast(tensors, fn):
    if len(tensors) == 1:
        if isinstance(tensors[0], (list, tuple)):
            return tuple(fn(x) for x in tensors[0])
        return fn(tensors[0])
    return tuple(fn(x) for x in tensors)


def column_stack(tensors):
    """Join tensors as columns: 0-d and 1-d inputs become columns, then ``hstack``."""
    return hstack([x.reshape(-1, 1) if x._data.ndim < 2 else x
                   for x in _tensors_arg(tensors, "column_stack")])


row_stack = vstack


def dstack(tensors):
    """Join tensors along the third dim (after ``atleast_3d``)."""
    return cat([_to3d(x) for x in _tensors_arg(tensors, "dstack")], 2)


def tensor_split(input, indices_or_sections, dim=0):
    """Views split at the given indices, or into ``n`` nearly equal parts (first ones larger)."""
    d = norm_dim(dim, input._data.ndim)
    n = input._data.shape[d]
    ios = indices_or_sections
    if isinstance(ios, Tensor):
        ios = ios.item() if ios._data.ndim == 0 else ios.tolist()
    if isinstance(ios, (int, np.integer)):
        k = int(ios)
        if k <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {k}")
        q, r = divmod(n, k)
        sizes = [q + 1] * r + [q] * (k - r)
    else:
        bounds = [0] + [builtins.min(builtins.max(int(i) if i >= 0 else n + int(i), 0), n)
                        for i in ios] + [n]
        sizes = [builtins.max(b - a, 0) for a, b in zip(bounds[:-1], bounds[1:])]
        starts = bounds[:-1]
        return tuple(Narrow.apply(input, d, s, z) for s, z in zip(starts, sizes))
    return Split.apply(input, sizes, d)


def split_with_sizes(input, split_sizes, dim=0):
    """Views of the given sizes along ``dim`` (they must sum to its size)."""
    return split(input, list(split_sizes), dim)


def _xsplit(input, ios, dim, name, min_nd):
    if input._data.ndim < min_nd:
        raise RuntimeError(f"torch.{name} requires a tensor with at least {min_nd} dimension, "
                           f"but got a tensor with {input._data.ndim} dimensions!")
    if isinstance(ios, (int, np.integer)) and input._data.shape[dim] % ios:
        raise RuntimeError(f"torch.{name} attempted to split along dimension {dim}, but the "
                           f"size of the dimension {input._data.shape[dim]} is not divisible "
                           f"by the split_size {ios}!")
    return tensor_split(input, ios, dim)


def hsplit(input, indices_or_sections):
    """Split along dim 1 (dim 0 for 1-d tensors)."""
    return _xsplit(input, indices_or_sections, 1 if input._data.ndim > 1 else 0, "hsplit", 1)


def vsplit(input, indices_or_sections):
    """Split along dim 0 (needs at least 2 dims)."""
    return _xsplit(input, indices_or_sections, 0, "vsplit", 2)


def dsplit(input, indices_or_sections):
    """Split along dim 2 (needs at least 3 dims)."""
    return _xsplit(input, indices_or_sections, 2, "dsplit", 3)


def flipud(input):
    """Reverse along dim 0."""
    if input._data.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, 0)


def fliplr(input):
    """Reverse along dim 1."""
    if input._data.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, 1)


def rot90(input, k=1, dims=(0, 1)):
    """Rotate by 90 degrees ``k`` times in the plane of ``dims`` (from the first toward the
    second)."""
    nd = input._data.ndim
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if nd < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {nd}")
    d0, d1 = norm_dim(dims[0], nd), norm_dim(dims[1], nd)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and "
                           f"dim1 = {d1}")
    k %= 4
    if k == 1:
        return flip(input, d1).transpose(d0, d1)
    if k == 2:
        return flip(input, d0, d1)
    if k == 3:
        return flip(input, d0).transpose(d0, d1)
    return input.clone()


class Unfold(Node):
    """``Tensor.unfold``: windows of ``size`` every ``step`` along ``dim``, as a view."""

    view = True

    @staticmethod
    def meta(ctx, a, dim, size, step):
        ctx.shape, ctx.dim, ctx.size, ctx.step = a.shape, dim, size, step
        shp, st = (a.shape, a.strides) if a.ndim else ((1,), (a.itemsize,))
        n = (shp[dim] - size) // step + 1
        out = MetaArray(shp[:dim] + (n,) + shp[dim + 1:] + (size,),
                        a.dtype, st[:dim] + (st[dim] * step,) + st[dim + 1:] + (st[dim],),
                        a.offset)
        return out.reshape(size) if a.ndim == 0 else out

    @staticmethod
    def forward(ctx, a, dim, size, step):
        from numpy.lib.stride_tricks import as_strided
        ctx.shape, ctx.dim, ctx.size, ctx.step = a.shape, dim, size, step
        shp = a.shape if a.ndim else (1,)
        st = a.strides if a.ndim else (a.itemsize,)
        n = (shp[dim] - size) // step + 1
        shape = shp[:dim] + (n,) + shp[dim + 1:] + (size,)
        strides = st[:dim] + (st[dim] * step,) + st[dim + 1:] + (st[dim],)
        out = as_strided(a, shape, strides, writeable=a.flags.writeable)
        return out.reshape(size) if a.ndim == 0 else out

    @staticmethod
    def backward(ctx, g):
        from .indexing import IndexAddZeros
        dim, size, step, shape = ctx.dim, ctx.size, ctx.step, ctx.shape
        if not shape:
            return g.reshape(()), None, None, None
        n = g._data.shape[dim]
        win = np.arange(n)[:, None] * step + np.arange(size)[None, :]
        idx = (slice(None),) * dim + (win,)
        return IndexAddZeros.apply(g.movedim(-1, dim + 1), tuple(shape), idx), None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


def unfold(input, dimension, size, step):
    """Windows of length ``size`` taken every ``step`` along ``dimension`` (a new last dim)."""
    d = norm_dim(dimension, input._data.ndim)
    n = input._data.shape[d] if input._data.ndim else 1
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    return Unfold.apply(input, d, size, step)


def _storage(t):
    """The root array that holds ``t``'s memory, and ``t``'s element offset into it."""
    root = t._base._data if t._base is not None else t._data
    while isinstance(root.base, np.ndarray) and root.base.dtype == root.dtype and \
            root.base.flags.c_contiguous and root.base.size >= root.size:
        root = root.base
    if not root.flags.c_contiguous:
        raise NotImplementedError("as_strided needs a tensor whose storage is contiguous")
    ptr = t._data.__array_interface__["data"][0]
    start = root.__array_interface__["data"][0]
    return root.reshape(-1), (ptr - start) // t._data.itemsize


class AsStrided(Node):
    view = True

    @staticmethod
    def meta(ctx, a, flat, size, stride, offset, in_offset):
        ctx.args = (a.shape, a.strides, flat.size, size, stride, offset, in_offset, a.itemsize)
        return MetaArray(size, a.dtype, [s * a.itemsize for s in stride], offset * a.itemsize)

    @staticmethod
    def forward(ctx, a, flat, size, stride, offset, in_offset):
        from numpy.lib.stride_tricks import as_strided
        ctx.args = (a.shape, a.strides, flat.size, size, stride, offset, in_offset, a.itemsize)
        need = offset + builtins.sum((s - 1) * st for s, st in zip(size, stride)) + 1
        if builtins.all(size) and need > flat.size:
            raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
                               f"offset {offset}, and itemsize {a.itemsize} requiring a storage "
                               f"size of {need * a.itemsize} are out of bounds for storage of "
                               f"size {flat.size * a.itemsize}")
        return as_strided(flat[offset:], size, [s * a.itemsize for s in stride])

    @staticmethod
    def backward(ctx, g):
        from .indexing import Index, IndexAddZeros
        shape, strides, n, size, stride, offset, in_off, isz = ctx.args
        # storage positions of every output and input element; gradient flows output ->
        # storage (summing overlaps) -> input
        out_pos = offset + _positions(size, stride)
        in_pos = in_off + _positions(shape, [s // isz for s in strides])
        buf = IndexAddZeros.apply(g, (n,), out_pos)
        return Index.apply(buf, in_pos), None, None, None, None, None


def _extent(shape, stride):
    return builtins.sum((s - 1) * st for s, st in zip(shape, stride)) + 1 if builtins.all(shape) \
        else 0


def _positions(shape, stride):
    pos = np.zeros(tuple(shape), dtype=np.int64)
    for k, (s, st) in enumerate(zip(shape, stride)):
        pos = pos + (np.arange(s) * st).reshape((-1,) + (1,) * (len(shape) - k - 1))
    return pos


def as_strided(input, size, stride, storage_offset=None):
    """A view of ``input``'s storage with the given sizes and (element) strides."""
    if input.is_meta:  # no storage to check against: one as large as the view needs
        off = input.storage_offset()
        offset = off if storage_offset is None else int(storage_offset)
        n = builtins.max(off + _extent(input.shape, input.stride()),
                         offset + _extent(size, stride))
        flat = MetaArray((n,), input._data.dtype)
        return AsStrided.apply(input, flat, tuple(size), tuple(stride), offset, off)
    flat, off = _storage(input)
    offset = off if storage_offset is None else int(storage_offset)
    return AsStrided.apply(input, flat, tuple(size), tuple(stride), offset, off)


def diagflat(input, offset=0):
    """A 2-d matrix with the flattened ``input`` on diagonal ``offset``."""
    return DiagEmbed1d.apply(input.reshape(-1), offset)


def narrow_copy(input, dim, start, length):
    """``narrow`` as a new tensor rather than a view."""
    return narrow(input, dim, start, length).clone()


def ravel(input):
    """The elements as a 1-d tensor (a view when possible)."""
    return input.reshape(-1)


class ViewAsReal(Node):
    view = True

    @staticmethod
    def forward(ctx, a):
        if a.dtype.kind != "c":
            raise RuntimeError("view_as_real is only supported for complex tensors")
        if a.ndim == 0 or a.strides[-1] == a.itemsize:
            return a.view(a.real.dtype).reshape(a.shape + (2,))
        # any strides: (real, imag) pairs sit itemsize/2 apart inside each element
        from numpy.lib.stride_tricks import as_strided
        r = a.real
        return as_strided(r, a.shape + (2,), a.strides + (r.itemsize,),
                          writeable=a.flags.writeable)

    @staticmethod
    def backward(ctx, g):
        return ViewAsComplex.apply(g.contiguous())


class ViewAsComplex(Node):
    view = True

    @staticmethod
    def forward(ctx, a):
        if a.dtype not in (np.float32, np.float64):
            raise RuntimeError(f"view_as_complex is only supported for float and double "
                               f"tensors, but got a tensor of scalar type: {a.dtype}")
        if a.ndim == 0 or a.shape[-1] != 2:
            raise RuntimeError("Tensor must have a last dimension of size 2")
        if a.strides[-1] != a.itemsize:
            raise RuntimeError("Tensor must have a last dimension with stride 1")
        ct = np.complex64 if a.dtype == np.float32 else np.complex128
        return a.view(ct)[..., 0]  # NumPy needs only the last axis contiguous

    @staticmethod
    def backward(ctx, g):
        return ViewAsReal.apply(g)


def view_as_real(input):
    """A real view of a complex tensor, with a last dim of (real, imag)."""
    return ViewAsReal.apply(input)


def view_as_complex(input):
    """A complex view of a real tensor whose last dim (size 2, stride 1) holds (real, imag)."""
    return ViewAsComplex.apply(input)


unsafe_chunk = chunk
unsafe_split = split


def _copy_variant(fn):
    def copy_fn(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.clone() for o in out)
        return out.clone()
    copy_fn.__name__ = fn.__name__ + "_copy"
    copy_fn.__doc__ = f"``{fn.__name__}`` returning new memory instead of a view."
    return copy_fn


# ``*_copy`` variants of the view ops (PyTorch's functionalisation spellings)
diagonal_copy = _copy_variant(diagonal)
expand_copy = _copy_variant(expand)
permute_copy = _copy_variant(permute)
t_copy = _copy_variant(t)
unbind_copy = _copy_variant(unbind)
view_copy = _copy_variant(view)
squeeze_copy = _copy_variant(squeeze)
unsqueeze_copy = _copy_variant(unsqueeze)
transpose_copy = _copy_variant(transpose)
split_copy = _copy_variant(split)
detach_copy = _copy_variant(detach)


def fill_diagonal_(input, fill_value, wrap=False):
    """Fill the main diagonal in place (all dims equal, or 2-d; ``wrap`` restarts it below a
    tall matrix's square part)."""
    from .indexing import _inplace, masked_fill
    shp = input._data.shape
    if len(shp) < 2:
        raise RuntimeError("dimensions must larger than 1")
    if len(shp) > 2 and len(set(shp)) != 1:
        raise RuntimeError("all dimensions of input must be of equal length")
    mask = np.zeros(shp, dtype=bool)
    np.fill_diagonal(mask, True, wrap=wrap)
    return _inplace(input, masked_fill, _make(mask), fill_value)


def tril_(input, diagonal=0):
    """In-place ``tril``."""
    from ..autograd.graph import apply_inplace
    return apply_inplace(Tril, input, diagonal)


def triu_(input, diagonal=0):
    """In-place ``triu``."""
    from ..autograd.graph import apply_inplace
    return apply_inplace(Triu, input, diagonal)


def rebind_inplace_view(self, result):
    """Make ``self`` become ``result`` (a view of it: ``t_``, ``squeeze_`` ...), graph
    included, so that gradients flow through the in-place metadata change."""
    from ..autograd.graph import GradMode, _check_inplace_allowed
    if self._rg and GradMode.enabled:
        _check_inplace_allowed(self)
        self.grad_fn, self._output_nr = result.grad_fn, result._output_nr
    self._data = result._data
    return self


# ---------------------------------------------------------------------- composites
_I64 = D.int64


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Repeat each element ``repeats`` times along ``dim`` (flattened when ``dim`` is None).

    ``repeat_interleave(repeats)`` with a 1-d integer tensor alone returns the indices
    ``0..len-1`` each repeated by its count (PyTorch's tensor-only form)."""
    from .creation import tensor as _tensor
    from .indexing import index_select
    if repeats is None:  # the tensor-only form
        counts = input._data
        if counts.ndim > 1 or counts.dtype.kind not in "iu":
            raise RuntimeError(f"repeats must be a 0-dim or 1-dim integer tensor, got shape "
                               f"{list(counts.shape)} and dtype {input.dtype}")
        return _tensor(np.repeat(np.arange(counts.shape[0] if counts.ndim else 1),
                                 counts.reshape(-1)), dtype=_I64)
    if dim is None:
        input = input.reshape(-1)
        dim = 0
    dim = norm_dim(dim, input._data.ndim, "repeat_interleave")
    size = input._data.shape[dim] if input._data.ndim else 1
    if isinstance(repeats, Tensor):
        r = repeats._data
        if r.ndim > 1 or r.dtype.kind not in "iu":
            raise RuntimeError(f"repeats must be a 0-dim or 1-dim integer tensor, got shape "
                               f"{list(r.shape)} and dtype {repeats.dtype}")
        r = r.reshape(-1)
    else:
        r = np.asarray([int(repeats)])
    if (r < 0).any():
        raise RuntimeError("repeats can not be negative")
    if r.size == 1:
        r = np.broadcast_to(r, (size,))
    elif r.size != size:
        raise RuntimeError(f"repeats must have the same size as input along dim, but got "
                           f"repeats.size(0) = {r.size} and input.size({dim}) = {size}")
    idx = np.repeat(np.arange(size), r)
    if output_size is not None and idx.size != output_size:
        raise RuntimeError(f"allocated size does not match required size: output_size="
                           f"{output_size}, required {idx.size}")
    if input._data.ndim == 0:
        input = input.reshape(1)
    return index_select(input, dim, _tensor(idx, dtype=_I64))


def unravel_index(indices, shape):
    """The coordinates (a tuple of int64 tensors) of flat ``indices`` into ``shape``."""
    from .creation import tensor as _tensor
    shape = tuple(int(s) for s in ((shape,) if isinstance(shape, (int, np.integer))
                                   else shape))
    d = indices._data if isinstance(indices, Tensor) else np.asarray(indices)
    if d.dtype.kind not in "iu":
        raise TypeError("expected 'indices' to be integer dtype, but got "
                        f"{indices.dtype if isinstance(indices, Tensor) else d.dtype}")
    if any(s < 0 for s in shape):
        raise ValueError("'shape' cannot have negative values, but got "
                         f"{tuple(shape)}")
    total = int(np.prod(shape)) if shape else 1
    if d.size and (d.min() < -total or d.max() >= total):
        raise RuntimeError("index out of bounds for the given shape")
    d = d.astype(np.int64)
    d = np.where(d < 0, d + total, d)
    return tuple(_tensor(c.astype(np.int64), dtype=_I64)
                 for c in np.unravel_index(d, shape)) if shape else ()


def constant_pad_nd(input, pad, value=0):
    """Pad the last dims by ``pad`` (PyTorch's order: last dim first) with ``value``."""
    from .conv import pad as _pad
    return _pad(input, pad, "constant", value)


def sum_to_size(input, *size):
    """Sum ``input`` down to ``size`` (which it must be expandable to), undoing broadcasting."""
    from ._util import sum_to_shape
    shape = tuple(shape_arg(size))
    try:
        ok = np.broadcast_shapes(shape, input._data.shape) == input._data.shape
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"size {{{list(shape)}}} is not expandable to size "
                           f"{{{list(input._data.shape)}}}.")
    return sum_to_shape(input, shape)


__all__ += ["repeat_interleave", "unravel_index", "constant_pad_nd"]


def complex(real, imag):
    """``real + i imag``: float32 parts make complex64, float64 parts complex128.
    (This module uses no builtin ``complex``; the name is PyTorch's.)"""
    if real._data.dtype != imag._data.dtype:
        raise RuntimeError(f"Expected object of scalar type {real.dtype} but got scalar type "
                           f"{imag.dtype} for second argument")
    if real._data.dtype not in (np.float32, np.float64):
        raise RuntimeError(f"Expected both inputs to be Half, Float or Double tensors but got "
                           f"{real.dtype} and {imag.dtype}")
    ct = D.complex64 if real._data.dtype == np.float32 else D.complex128
    return real.to(ct) + imag.to(ct) * 1j


@autocast_function("fp32")
def polar(abs, angle):
    """The complex numbers with modulus ``abs`` and argument ``angle``."""
    return complex(abs * angle.cos(), abs * angle.sin())


__all__ += ["complex", "polar"]


def gradient(input, *, spacing=1, dim=None, edge_order=1):
    """Estimate the derivative of ``input`` along each of ``dim`` (all dims by default) by
    central differences inside and one-sided differences of order ``edge_order`` (1 or 2) at
    the edges, as NumPy's ``gradient``. ``spacing``: a scalar, one scalar per dim, or one
    1-d tensor of coordinates per dim. Returns one tensor per dim."""
    nd = input._data.ndim
    if dim is None:
        dims = list(range(nd))
    elif isinstance(dim, (int, np.integer)):
        dims = [norm_dim(dim, nd, "gradient")]
    else:
        dims = [norm_dim(d, nd, "gradient") for d in dim]
    if edge_order not in (1, 2):
        raise RuntimeError("torch.gradient only supports edge_order=1 and edge_order=2.")
    if spacing is None:
        spacing = 1
    if isinstance(spacing, (list, tuple)):
        if len(spacing) != len(dims):
            raise RuntimeError(f"torch.gradient expected spacing to be unspecified, a scalar or "
                               f"it's spacing and dim arguments to have the same length, but "
                               f"got a spacing argument of length {len(spacing)} and a dim "
                               f"argument of length {len(dims)}.")
        steps = list(spacing)
    else:
        steps = [spacing] * len(dims)
    if not (input.is_floating_point() or input.is_complex()):
        input = input.to(D.get_default_dtype())
    out = []
    for d, h in zip(dims, steps):
        n = input._data.shape[d]
        if n < edge_order + 1:
            raise RuntimeError(f"torch.gradient expected each dimension size to be at least "
                               f"edge_order+1, but dim {d} of shape {list(input.shape)} has "
                               f"size {n} (edge_order={edge_order})")
        out.append(_gradient_1d(input, d, h, edge_order, n))
    return tuple(out)


def _gradient_1d(f, d, h, edge_order, n):
    def at(start, length):
        return f.narrow(d, start, length)
    if isinstance(h, Tensor):  # coordinates along d
        if h._data.ndim != 1 or h._data.shape[0] != n:
            raise RuntimeError("torch.gradient expected each tensor to be on the same device "
                               "and of size 1-D with length equal to the dimension size")
        shape = [1] * f._data.ndim
        shape[d] = n - 1
        dx = (h[1:] - h[:-1]).to(f.dtype).reshape(shape)
        hd, hs = dx.narrow(d, 0, n - 2), dx.narrow(d, 1, n - 2)
        inner = (at(2, n - 2) * (hd / (hs * (hd + hs))) - at(0, n - 2) * (hs / (hd * (hd + hs)))
                 + at(1, n - 2) * ((hs - hd) / (hd * hs))) if n > 2 else None
        h0, h1 = dx.narrow(d, 0, 1), dx.narrow(d, n - 2, 1)
        if edge_order == 1:
            first = (at(1, 1) - at(0, 1)) / h0
            last = (at(n - 1, 1) - at(n - 2, 1)) / h1
        else:
            a0, a1 = h0, dx.narrow(d, 1, 1)
            first = (-(2 * a0 + a1) / (a0 * (a0 + a1)) * at(0, 1) + (a0 + a1) / (a0 * a1)
                     * at(1, 1) - a0 / (a1 * (a0 + a1)) * at(2, 1))
            b1, b0 = h1, dx.narrow(d, n - 3, 1)
            last = (b1 / (b0 * (b0 + b1)) * at(n - 3, 1) - (b0 + b1) / (b0 * b1) * at(n - 2, 1)
                    + (2 * b1 + b0) / (b1 * (b0 + b1)) * at(n - 1, 1))
    else:
        inner = (at(2, n - 2) - at(0, n - 2)) / (2 * h) if n > 2 else None
        if edge_order == 1:
            first = (at(1, 1) - at(0, 1)) / h
            last = (at(n - 1, 1) - at(n - 2, 1)) / h
        else:
            first = (-1.5 * at(0, 1) + 2 * at(1, 1) - 0.5 * at(2, 1)) / h
            last = (0.5 * at(n - 3, 1) - 2 * at(n - 2, 1) + 1.5 * at(n - 1, 1)) / h
    parts = [first] + ([inner] if inner is not None else []) + [last]
    return cat(parts, d)


__all__ += ["gradient"]


# ---------------------------------------------------------------------- *_copy and friends
def alias(input):
    """``input`` itself: the view whose copy form is ``alias_copy`` (not exported)."""
    return input


# more ``*_copy`` spellings, from the same helper as the ones above
alias_copy = _copy_variant(alias)
split_with_sizes_copy = _copy_variant(split_with_sizes)
unfold_copy = _copy_variant(unfold)
as_strided_copy = _copy_variant(as_strided)


def empty_permuted(size, physical_layout, *, dtype=None, layout=None, device=None,
                   requires_grad=False, pin_memory=False):
    """An uninitialised tensor of ``size`` (``physical_layout`` orders memory in PyTorch;
    ember's tensors are laid out row-major whatever it says)."""
    from .creation import empty
    size = tuple(shape_arg((size,)))
    if sorted(physical_layout) != list(range(len(size))):
        raise RuntimeError(f"Number of dimensions in size does not match the length of the "
                           f"physical_layout; or physical_layout is not a permutation of "
                           f"0..{len(size) - 1}")
    return empty(size, dtype=dtype, device=device, requires_grad=requires_grad)


__all__ += ["alias_copy", "split_with_sizes_copy", "unfold_copy", "as_strided_copy",
            "empty_permuted"]
