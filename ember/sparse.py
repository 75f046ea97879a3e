"""``ember.sparse``: sparse COO tensors and the ops on them.

A ``SparseTensor`` is a ``Tensor`` subclass holding PyTorch's COO parts: ``_idx``, an int64
array of shape ``(sparse_dim, nnz)``, and ``_vals``, an ember Tensor of shape
``(nnz, *dense_shape)``. Autograd runs through the values tensor: every op on a sparse tensor
is an op on its values (coalesce, to_dense, sparse @ dense ...), so gradients reach the values
and, through ``sparse_coo_tensor``, whatever made them. A sparse tensor has no dense array:
reading ``_data`` (which every dense op does) raises ``NotImplementedError`` naming the layout.

CSR and CSC are served by ``SparseCsrTensor``/``SparseCscTensor`` (sorted COO underneath),
BSR and BSC by ``SparseBsrTensor``/``SparseBscTensor`` (blocks; dense and COO conversions;
``@`` through the dense form). Unsupported: elementwise ops on sparse tensors other than the
few methods below (scaling, + and - with sparse or dense tensors, * with a dense tensor).
"""

from __future__ import annotations

import numpy as np

from . import _dtype as D
from ._tensor import Size, Tensor, _make
from .autograd.graph import Node
from .ops.indexing import IndexAddZeros, IndexSelect

__all__ = ["SparseTensor", "SparseCsrTensor", "sparse_csr_tensor", "sparse_coo_tensor", "mm",
           "spmm", "addmm", "sum", "softmax", "log_softmax", "to_dense"]
__all__ += ["SparseCscTensor", "SparseBsrTensor", "sparse_csc_tensor", "sparse_bsr_tensor"]
__all__ += ["SparseBscTensor", "sparse_bsc_tensor", "sparse_compressed_tensor"]


def _as_array(x, dtype=None):
    if isinstance(x, Tensor):
        return x._data if dtype is None else x._data.astype(dtype, copy=False)
    return np.asarray(x, dtype=dtype)


# ---------------------------------------------------------------------- value ops
class Coalesce(Node):
    """Sum the values that share an index (``inverse`` maps each entry to its unique slot)."""

    @staticmethod
    def forward(ctx, vals, inverse, n):
        ctx.inverse = inverse
        out = np.zeros((n,) + vals.shape[1:], dtype=vals.dtype)
        np.add.at(out, inverse, vals)
        return out

    @staticmethod
    def backward(ctx, g):
        return IndexSelect.apply(g, 0, ctx.inverse), None, None


class ToDense(Node):
    """Scatter-add the values into a dense array (duplicates add up)."""

    @staticmethod
    def forward(ctx, vals, flat_index, size):
        ctx.flat_index, ctx.size, ctx.dense = flat_index, size, vals.shape[1:]
        nsparse = int(np.prod(size[:len(size) - (vals.ndim - 1)], dtype=np.int64))
        out = np.zeros((nsparse,) + vals.shape[1:], dtype=vals.dtype)
        np.add.at(out, flat_index, vals)
        return out.reshape(size)

    @staticmethod
    def backward(ctx, g):
        nd = len(ctx.size) - len(ctx.dense)
        flat = g.reshape((-1,) + tuple(ctx.size[nd:]))
        return IndexSelect.apply(flat, 0, ctx.flat_index), None, None


class ToSparse(Node):
    """The values of a dense array at the given (flattened sparse) positions."""

    @staticmethod
    def forward(ctx, a, flat_index, sparse_dim):
        ctx.shape, ctx.flat_index, ctx.sparse_dim = a.shape, flat_index, sparse_dim
        flat = a.reshape((-1,) + a.shape[sparse_dim:])
        return flat[flat_index]

    @staticmethod
    def backward(ctx, g):
        nflat = int(np.prod(ctx.shape[:ctx.sparse_dim], dtype=np.int64))
        flat = IndexAddZeros.apply(g, (nflat,) + tuple(ctx.shape[ctx.sparse_dim:]),
                                   (ctx.flat_index,))
        return flat.reshape(ctx.shape), None, None


class SparseAddmm(Node):
    """``S @ B`` for a 2-d sparse ``S`` given by (rows, cols, values) and a dense 2-d ``B``."""

    saves = (0, 1)

    @staticmethod
    def forward(ctx, vals, b, rows, cols, m):
        ctx.rows, ctx.cols, ctx.k = rows, cols, b.shape[0]
        out = np.zeros((m, b.shape[1]), dtype=np.result_type(vals.dtype, b.dtype))
        np.add.at(out, rows, vals[:, None] * b[cols])
        return out

    @staticmethod
    def backward(ctx, g):
        vals, b = ctx.saved_tensors
        gv = gb = None
        if ctx.needs_input_grad[0]:
            gv = (IndexSelect.apply(g, 0, ctx.rows) * IndexSelect.apply(b, 0, ctx.cols)).sum(-1)
        if ctx.needs_input_grad[1]:
            gb = SparseAddmm.apply(vals, g, ctx.cols, ctx.rows, ctx.k)  # S^T @ g
        return gv, gb, None, None, None


# ---------------------------------------------------------------------- the tensor
def _dense_only(name):
    raise NotImplementedError(
        f"{name} is not supported for sparse tensors (layout=ember.sparse_coo); "
        "call .to_dense() first")


class SparseTensor(Tensor):
    """A sparse COO tensor (``layout == ember.sparse_coo``): indices, values and a size."""

    is_sparse = True

    @property
    def _data(self):
        _dense_only("this dense operation")

    @property
    def layout(self):
        from ._namespaces import sparse_coo
        return sparse_coo

    @property
    def dtype(self):
        return self._vals.dtype

    @property
    def shape(self):
        return Size(self._size)

    def size(self, dim=None):
        """The size (or the extent of one dimension)."""
        if dim is None:
            return Size(self._size)
        return self._size[dim]

    @property
    def ndim(self):
        return len(self._size)

    # what a dense tensor reads off its array, read off the values
    @property
    def device(self):
        return self._vals.device

    @property
    def is_meta(self):
        return self._vals.is_meta

    @property
    def itemsize(self):
        return self._vals.itemsize

    def element_size(self):
        return self._vals.element_size()

    def is_floating_point(self):
        return self._vals.is_floating_point()

    def is_complex(self):
        return self._vals.is_complex()

    def ndimension(self):
        return len(self._size)

    def nelement(self):
        return self.numel()

    def type(self, dtype=None, non_blocking=False, **kwargs):
        if dtype is None:  # PyTorch's legacy name: torch.sparse.FloatTensor
            return self._vals.type().replace("torch.", "torch.sparse.", 1)
        return self.to(dtype) if isinstance(dtype, D.dtype) else _dense_only(f"type({dtype!r})")

    def dim(self):
        return len(self._size)

    def numel(self):
        return int(np.prod(self._size, dtype=np.int64))

    def __len__(self):
        if not self._size:
            raise TypeError("len() of a 0-d tensor")
        return self._size[0]

    # autograd goes through the values tensor
    @property
    def requires_grad(self):
        return self._vals.requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        self._vals.requires_grad_(requires_grad)
        return self

    @property
    def grad_fn(self):
        return self._vals.grad_fn

    @property
    def is_leaf(self):
        return self._vals.grad_fn is None

    @property
    def grad(self):
        """The gradient of a leaf, as a coalesced sparse tensor on this tensor's pattern.

        Entries that share an index get one gradient (the mean of theirs; they are equal for
        every function of the represented dense tensor, which is what PyTorch reports)."""
        g = self._vals.grad
        if g is None:
            return None
        uniq, inverse = _unique_columns(self._idx)
        counts = np.bincount(inverse, minlength=uniq.shape[1]).astype(g._data.dtype)
        summed = Coalesce.apply(g.detach(), inverse, uniq.shape[1])
        vals = summed / _make(counts.reshape((-1,) + (1,) * (g.ndim - 1)))
        return _new_sparse(uniq, vals, self._size, True)

    @grad.setter
    def grad(self, value):
        if value is not None:
            raise NotImplementedError("assigning .grad of a sparse tensor is not supported")
        self._vals.grad = None

    def detach(self):
        return _new_sparse(self._idx, self._vals.detach(), self._size, self._coalesced)

    def clone(self, *, memory_format=None):
        """A copy with its own indices and values (differentiable through the values)."""
        return _new_sparse(self._idx.copy(), self._vals.clone(), self._size, self._coalesced)

    def zero_(self):
        """In place: no entries left (nnz 0), as PyTorch's sparse ``zero_``."""
        from .ops.creation import zeros
        self._idx = np.zeros((self._idx.shape[0], 0), np.int64)
        self._vals = zeros((0,) + tuple(self._vals.shape[1:]), dtype=self._vals.dtype)
        self._coalesced = True
        return self

    # COO accessors
    def sparse_dim(self):
        return self._idx.shape[0]

    def dense_dim(self):
        return self._vals.ndim - 1

    def _nnz(self):
        return self._idx.shape[1]

    def _indices(self):
        return _make(self._idx)

    def _values(self):
        return self._vals

    def indices(self):
        if not self._coalesced:
            raise RuntimeError("Cannot get indices on an uncoalesced tensor, please call "
                               ".coalesce() first")
        return _make(self._idx)

    def values(self):
        if not self._coalesced:
            raise RuntimeError("Cannot get values on an uncoalesced tensor, please call "
                               ".coalesce() first")
        return self._vals

    def is_coalesced(self):
        return self._coalesced

    def coalesce(self):
        """Sorted unique indices, with the values of duplicates summed (differentiable)."""
        if self._coalesced:
            return self
        uniq, inverse = _unique_columns(self._idx)
        vals = Coalesce.apply(self._vals, inverse, uniq.shape[1])
        return _new_sparse(uniq, vals, self._size, True)

    def to_dense(self, dtype=None, *, masked_grad=None):
        """The dense tensor this represents (duplicates summed)."""
        vals = self._vals if dtype is None else self._vals.to(dtype)
        return ToDense.apply(vals, _flat_index(self._idx, self._size), self._size)

    def to_sparse(self, *args, layout=None, **kwargs):
        _reject_layout(layout, "to_sparse")
        if args and args[0] is not None and args[0] != self.sparse_dim():
            raise RuntimeError(f"to_sparse: conversion from Sparse to Sparse with sparse_dim "
                               f"argument !=self.sparse_dim() is not supported (got "
                               f"{args[0]} and {self.sparse_dim()})")
        return self

    to_sparse_coo = to_sparse

    def to_sparse_csr(self, dense_dim=None):
        _check_2d_sparse(self, "to_sparse_csr")
        c = self.coalesce()  # coalesced COO is sorted row-major: CSR's order
        return _new_csr(c._idx, c._vals, c._size)

    def to_sparse_csc(self, dense_dim=None):
        _check_2d_sparse(self, "to_sparse_csc")
        c = self.coalesce()
        return _new_csc(c._idx, c._vals, c._size)

    def to_sparse_bsr(self, blocksize, dense_dim=None):
        _check_2d_sparse(self, "to_sparse_bsr")
        return _dense_to_bsr(self.to_dense(), blocksize, dense_dim)

    def to_sparse_bsc(self, blocksize, dense_dim=None):
        _check_2d_sparse(self, "to_sparse_bsc")
        return _dense_to_bsc(self.to_dense(), blocksize, dense_dim)

    # compressed-index accessors: CSR/CSC override those of their layout
    def crow_indices(self):
        _wrong_layout(self, "crow_indices", "row")

    def col_indices(self):
        _wrong_layout(self, "col_indices", "row")

    def ccol_indices(self):
        _wrong_layout(self, "ccol_indices", "column")

    def row_indices(self):
        _wrong_layout(self, "row_indices", "column")

    # the few ops sparse tensors support
    def t(self):
        """Transpose of a 2-d sparse tensor (swaps the index rows)."""
        if self.sparse_dim() != 2 or self.dense_dim() != 0:
            raise RuntimeError(f"t() expects a 2-D sparse tensor with no dense dims, got size "
                               f"{tuple(self._size)} with sparse_dim={self.sparse_dim()}")
        return _new_sparse(self._idx[::-1].copy(), self._vals, self._size[::-1], False)

    def transpose(self, dim0, dim1):
        from .ops._util import norm_dim
        d0, d1 = norm_dim(dim0, self.ndim), norm_dim(dim1, self.ndim)
        nsp = self.sparse_dim()
        if d0 >= nsp or d1 >= nsp:
            raise NotImplementedError("transpose of the dense dims of a hybrid sparse tensor is "
                                      "not supported")
        idx = self._idx.copy()
        idx[[d0, d1]] = idx[[d1, d0]]
        size = list(self._size)
        size[d0], size[d1] = size[d1], size[d0]
        return _new_sparse(idx, self._vals, tuple(size), False)

    def to(self, *args, **kwargs):
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, D.dtype):
                dtype = a
        return self if dtype is None else _new_sparse(self._idx, self._vals.to(dtype),
                                                      self._size, self._coalesced)

    def double(self):
        return self.to(D.float64)

    def float(self):
        return self.to(D.float32)

    def mul(self, other):
        """``self * other``: a scalar scales the values; a dense tensor of this shape (or a
        sparse one) multiplies elementwise, and the result stays sparse, as in PyTorch."""
        if isinstance(other, SparseTensor):
            return self.mul(other.to_dense())
        if isinstance(other, Tensor) and other.ndim != 0:
            if tuple(other.shape) != self._size or self.dense_dim() != 0:
                raise NotImplementedError(
                    f"sparse * dense: only a dense tensor of the sparse tensor's shape "
                    f"{list(self._size)} is supported (and no dense dims), got "
                    f"{list(other.shape)}")
            c = self.coalesce()
            picked = other.reshape(-1)[_make(_flat_index(c._idx, c._size))]
            return _new_sparse(c._idx, c._vals * picked, c._size, True)
        return _new_sparse(self._idx, self._vals * other, self._size, self._coalesced)

    __mul__ = __rmul__ = mul

    def add(self, other, *, alpha=1):
        """``self + alpha * other``: sparse + sparse stays sparse; sparse + dense is dense."""
        import ember
        if isinstance(other, SparseTensor):
            if other._size != self._size:
                raise RuntimeError(f"add: expected sizes to match, got {list(self._size)} and "
                                   f"{list(other._size)}")
            if other.sparse_dim() != self.sparse_dim():
                raise RuntimeError("add: sparse tensors need the same number of sparse dims")
            vals = ember.cat([self._vals, other._vals * alpha if alpha != 1 else other._vals])
            idx = np.concatenate([self._idx, other._idx], axis=1)
            return _new_sparse(idx, vals, self._size, False).coalesce()
        if isinstance(other, Tensor):
            return self.to_dense() + (other * alpha if alpha != 1 else other)
        raise TypeError(f"add(sparse, {type(other).__name__}): expected a tensor; adding a "
                        f"scalar to every element would make the tensor dense")

    __add__ = add

    def __radd__(self, other):
        # dense + sparse reaches here first (SparseTensor subclasses Tensor): a dense result
        return self.add(other)

    def sub(self, other, *, alpha=1):
        return self.add(other, alpha=-alpha)

    __sub__ = sub

    def __rsub__(self, other):
        return (-self).add(other)

    def __neg__(self):
        return self.mul(-1)

    def matmul(self, other):
        return _matmul(self, other)

    mm = __matmul__ = matmul

    def __rmatmul__(self, other):
        return _matmul(other, self)

    def sum(self, dim=None, keepdim=False, dtype=None):
        if keepdim:
            raise NotImplementedError("sum(keepdim=True) of a sparse tensor is not supported")
        return sum(self, dim, dtype)

    def __repr__(self):
        # indices and values print without their dtypes, as in PyTorch
        itext = _plain_repr(self._idx).replace("\n", "\n" + " " * 15)
        vtext = _plain_repr(self._vals._data).replace("\n", "\n" + " " * 14)
        tail = [f"size={tuple(self._size)}", f"nnz={self._nnz()}"]
        if self.dtype is not D.get_default_dtype():
            tail.append(f"dtype={self.dtype!r}")
        tail.append("layout=ember.sparse_coo")
        if self.grad_fn is not None:
            tail.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            tail.append("requires_grad=True")
        lines, line = [], "       "
        for item in tail:
            if len(line) + len(item) + 2 > 80 and line.strip():
                lines.append(line.rstrip())
                line = "       "
            line += item + ", "
        lines.append(line[:-2])
        return (f"tensor(indices={itext},\n       values={vtext},\n"
                + ",\n".join(lines) + ")")

    __str__ = __repr__

    def __reduce_ex__(self, proto):
        return (_new_sparse, (self._idx, self._vals, self._size, self._coalesced))

    def __deepcopy__(self, memo):
        import copy
        return _new_sparse(self._idx.copy(), copy.deepcopy(self._vals, memo), self._size,
                           self._coalesced)


def _plain_repr(arr):
    from ._printing import _body
    if arr.size == 0:
        return f"tensor([], size={tuple(arr.shape)})"
    return "tensor(" + _body(arr, 7) + ")"


def _new_sparse(idx, vals, size, coalesced):
    t = object.__new__(SparseTensor)
    t.__dict__.update(_idx=idx, _vals=vals, _size=tuple(int(s) for s in size),
                      _coalesced=bool(coalesced))
    return t


def _flat_index(idx, size):
    if idx.shape[1] == 0 or idx.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    return np.ravel_multi_index(tuple(idx), tuple(size[:idx.shape[0]])).astype(np.int64)


def _unique_columns(idx):
    """Sorted unique index columns and, per column, its slot among them."""
    if idx.shape[1] == 0:
        return idx.copy(), np.zeros((0,), dtype=np.int64)
    uniq, inverse = np.unique(idx, axis=1, return_inverse=True)
    return uniq.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def _reject_layout(layout, op):
    from ._namespaces import sparse_coo
    if layout is not None and layout is not sparse_coo:
        _no_compressed(f"{op}(layout={layout!r})")


def _no_compressed(op):
    raise NotImplementedError(f"{op}: not implemented for this layout (ember has sparse COO, "
                              "and CSR/CSC/BSR/BSC through to_sparse_csr/_csc/_bsr/_bsc)")


def _wrong_layout(t, name, want):
    """PyTorch's error for a compressed-index accessor on a tensor of another layout."""
    from . import _namespaces as N
    got = {N.sparse_coo: "Sparse", N.sparse_csr: "SparseCsr", N.sparse_csc: "SparseCsc",
           N.sparse_bsr: "SparseBsr", N.sparse_bsc: "SparseBsc"}.get(t.layout, "Strided")
    raise RuntimeError(f"{name} expected sparse {want} compressed tensor layout but got {got}")


# ---------------------------------------------------------------------- constructors
def sparse_coo_tensor(indices, values, size=None, *, dtype=None, device=None,
                      pin_memory=False, requires_grad=False, check_invariants=None,
                      is_coalesced=None):
    """A sparse COO tensor from ``indices`` (sparse_dim, nnz) and ``values`` (nnz, ...)."""
    from ._device import cpu_only
    cpu_only(device, "sparse_coo_tensor")
    idx = _as_array(indices)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"indices must be an int64 tensor, got {idx.dtype}")
    if idx.ndim != 2:
        raise RuntimeError(f"indices must be sparse_dim x nnz, but got: {list(idx.shape)}")
    idx = idx.astype(np.int64)
    if isinstance(values, Tensor):
        vals = values if dtype is None else values.to(dtype)
        if vals.requires_grad:
            vals = vals.view(vals.shape)  # a non-leaf alias, so the sparse tensor is no leaf
    else:
        from .ops.creation import tensor
        vals = tensor(values, dtype=dtype)
    if vals.ndim == 0:
        raise RuntimeError("values must have at least one dimension (nnz)")
    nnz = idx.shape[1]
    if vals.shape[0] != nnz:
        raise RuntimeError(f"indices and values must have same nnz, but got nnz from indices: "
                           f"{nnz}, nnz from values: {vals.shape[0]}")
    if size is None:
        size = tuple(int(m) + 1 for m in (idx.max(1) if nnz else np.zeros(idx.shape[0])))
        size = size + tuple(vals.shape[1:])
    size = tuple(int(s) for s in size)
    sd = idx.shape[0]
    if len(size) != sd + vals.ndim - 1:
        raise RuntimeError(f"number of dimensions must be sparse_dim ({sd}) + dense_dim "
                           f"({vals.ndim - 1}), but got {len(size)}")
    if tuple(vals.shape[1:]) != size[sd:]:
        raise RuntimeError(f"values has incorrect size, expected {[nnz] + list(size[sd:])}, "
                           f"got {list(vals.shape)}")
    if nnz:
        if idx.min() < 0:
            raise RuntimeError(f"found negative index {int(idx.min())} for dim "
                               f"{int(np.argmin(idx.min(1)))}")
        big = idx.max(1)
        for d in range(sd):
            if big[d] >= size[d]:
                raise RuntimeError(f"size is inconsistent with indices: for dim {d}, size is "
                                   f"{size[d]} but found index {int(big[d])}")
    if is_coalesced is None:
        # like PyTorch: only trivially coalesced inputs are marked as such
        is_coalesced = nnz <= 1
    out = _new_sparse(idx, vals, size, is_coalesced)
    if requires_grad:
        out.requires_grad_(True)
    return out


def _dense_to_sparse(self, *args, layout=None, blocksize=None, dense_dim=None):
    """``Tensor.to_sparse([sparse_dim])``: the nonzero entries of a dense tensor, coalesced."""
    _reject_layout(layout, "to_sparse")
    sd = args[0] if args else None
    sd = self.ndim if sd is None else int(sd)
    if not 0 <= sd <= self.ndim:
        raise RuntimeError(f"sparse_dim ({sd}) must be in [0, {self.ndim}]")
    a = self._data
    mask = a != 0
    if sd < a.ndim:
        mask = mask.reshape(a.shape[:sd] + (-1,)).any(-1)
    if sd == 0:  # one entry holding the whole tensor as its dense part
        return _new_sparse(np.zeros((0, 1), np.int64), self.unsqueeze(0), a.shape, True)
    idx = np.stack(np.nonzero(mask)).astype(np.int64)
    vals = ToSparse.apply(self, _flat_index(idx, a.shape), sd)
    return _new_sparse(idx, vals, a.shape, True)


def _dense_to_dense(self, dtype=None, *, masked_grad=None):
    return self if dtype is None else self.to(dtype)


def _dense_coalesce(self):
    raise RuntimeError("coalesce expected sparse coordinate tensor layout but got Strided")


def _dense_is_coalesced(self):
    raise RuntimeError("is_coalesced expected sparse coordinate tensor layout but got Strided")


def _dense_no_coo(name):
    def method(self, *args, **kwargs):
        raise RuntimeError(f"{name} expected sparse coordinate tensor layout but got Strided")
    method.__name__ = name
    return method


# Methods of dense tensors that belong to the sparse layout; ``_tensor_methods`` binds them.
DENSE_METHODS = {
    "to_sparse": _dense_to_sparse, "to_sparse_coo": _dense_to_sparse,
    "to_dense": _dense_to_dense, "coalesce": _dense_coalesce,
    "is_coalesced": _dense_is_coalesced,
    "_nnz": _dense_no_coo("_nnz"), "_values": _dense_no_coo("_values"),
    "_indices": _dense_no_coo("_indices"), "values": _dense_no_coo("values"),
    "indices": _dense_no_coo("indices"),
    "sparse_dim": lambda self: 0, "dense_dim": lambda self: self.ndim,
    "to_sparse_bsc": lambda self, blocksize, dense_dim=None: _dense_to_bsc(self, blocksize,
                                                                          dense_dim),
    **{n: (lambda n, want: lambda self: _wrong_layout(self, n, want))(n, w)
       for n, w in (("crow_indices", "row"), ("col_indices", "row"),
                    ("ccol_indices", "column"), ("row_indices", "column"))},
    "to_sparse_csr": lambda self, dense_dim=None: _dense_to_csr(self, dense_dim),
    "to_sparse_csc": lambda self, dense_dim=None: _dense_to_csc(self, dense_dim),
    "to_sparse_bsr": lambda self, blocksize, dense_dim=None: _dense_to_bsr(self, blocksize,
                                                                          dense_dim),
}


# ---------------------------------------------------------------------- CSR
class SparseCsrTensor(SparseTensor):
    """A 2-D sparse CSR tensor (``layout == ember.sparse_csr``): ``crow_indices``,
    ``col_indices`` and ``values``. It keeps its entries as sorted COO underneath, so every
    COO op (``to_dense``, ``@`` with gradients through the values...) serves it too."""

    @property
    def layout(self):
        from ._namespaces import sparse_csr
        return sparse_csr

    is_sparse = False
    is_sparse_csr = True

    def crow_indices(self):
        """Row pointers: row ``i``'s entries are ``crow[i]:crow[i + 1]``."""
        counts = np.bincount(self._idx[0], minlength=self._size[0])
        return _make(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def col_indices(self):
        return _make(self._idx[1].copy())

    def values(self):
        return self._vals

    def to_sparse(self, *args, layout=None, **kwargs):
        return _new_sparse(self._idx, self._vals, self._size, True)

    def to_sparse_csr(self, dense_dim=None):
        return self

    def to_sparse_csc(self, dense_dim=None):
        return _new_csc(self._idx, self._vals, self._size)

    def __repr__(self):
        return (f"tensor(crow_indices={_plain_repr(self.crow_indices()._data)},\n"
                f"       col_indices={_plain_repr(self._idx[1])},\n"
                f"       values={_plain_repr(self._vals._data)}, size={self._size}, "
                f"nnz={self._vals.shape[0]}, layout=ember.sparse_csr)")


def _new_csr(idx, vals, size):
    t = object.__new__(SparseCsrTensor)
    t.__dict__.update(_idx=idx, _vals=vals, _size=tuple(int(n) for n in size), _coalesced=True)
    return t


def _dense_to_csr(self, dense_dim=None):
    if self.ndim != 2 or dense_dim:
        raise NotImplementedError(f"to_sparse_csr: only 2-D tensors with no dense dims are "
                                  f"supported, got {self.ndim}-D")
    return _dense_to_sparse(self).to_sparse_csr()


def sparse_csr_tensor(crow_indices, col_indices, values, size=None, *, dtype=None,
                      device=None, pin_memory=False, requires_grad=False,
                      check_invariants=None):
    """A 2-D CSR tensor from row pointers, column indices and values (gradients reach
    ``values``)."""
    crow = _as_array(crow_indices).astype(np.int64)
    col = _as_array(col_indices).astype(np.int64)
    if crow.ndim != 1 or col.ndim != 1 or crow.size == 0 or crow[0] != 0 or \
            (np.diff(crow) < 0).any() or crow[-1] != col.size:
        raise RuntimeError(f"sparse_csr_tensor: crow_indices must start at 0, not decrease and "
                           f"end at nnz ({col.size}); got {crow.tolist()}")
    vals = values if isinstance(values, Tensor) else _make(np.asarray(values))
    if dtype is not None:
        vals = vals.to(dtype)
    if vals.shape[0] != col.size:
        raise RuntimeError(f"sparse_csr_tensor: {col.size} column indices but "
                           f"{vals.shape[0]} values")
    rows = np.repeat(np.arange(crow.size - 1), np.diff(crow))
    if size is None:
        size = (crow.size - 1, int(col.max()) + 1 if col.size else 0)
    if col.size and (col.min() < 0 or col.max() >= size[1]):
        raise RuntimeError(f"sparse_csr_tensor: column indices must be in [0, {size[1]})")
    if requires_grad:
        vals.requires_grad_(True)
    idx = np.stack([rows, col])
    order = np.lexsort((col, rows))  # sorted row-major, as coalesced COO
    return _new_csr(idx[:, order], vals[_make(order)] if order.size else vals, size)


# ---------------------------------------------------------------------- CSC
class SparseCscTensor(SparseTensor):
    """A 2-D sparse CSC tensor (``layout == ember.sparse_csc``): ``ccol_indices``,
    ``row_indices`` and ``values`` in column-major order. Like CSR it keeps its entries as
    row-major sorted COO underneath (so COO ops serve it); the CSC views are permutations of
    that, and ``values()`` is a differentiable gather."""

    @property
    def layout(self):
        from ._namespaces import sparse_csc
        return sparse_csc

    is_sparse = False
    is_sparse_csr = False

    def _col_order(self):
        return np.lexsort((self._idx[0], self._idx[1]))  # by column, then row

    def ccol_indices(self):
        """Column pointers: column ``j``'s entries are ``ccol[j]:ccol[j + 1]``."""
        counts = np.bincount(self._idx[1], minlength=self._size[1])
        return _make(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def row_indices(self):
        return _make(self._idx[0][self._col_order()].copy())

    def values(self):
        return self._vals.index_select(0, _make(self._col_order().astype(np.int64)))

    def crow_indices(self):
        raise RuntimeError("crow_indices expected sparse row compressed tensor layout but got "
                           "SparseCsc")

    def col_indices(self):
        raise RuntimeError("col_indices expected sparse row compressed tensor layout but got "
                           "SparseCsc")

    def to_sparse(self, *args, layout=None, **kwargs):
        return _new_sparse(self._idx, self._vals, self._size, True)

    def to_sparse_csr(self, dense_dim=None):
        return _new_csr(self._idx, self._vals, self._size)

    def to_sparse_csc(self, dense_dim=None):
        return self

    def __repr__(self):
        return (f"tensor(ccol_indices={_plain_repr(self.ccol_indices()._data)},\n"
                f"       row_indices={_plain_repr(self.row_indices()._data)},\n"
                f"       values={_plain_repr(self.values().detach()._data)}, "
                f"size={self._size}, nnz={self._vals.shape[0]}, layout=ember.sparse_csc)")


def _new_csc(idx, vals, size):
    t = object.__new__(SparseCscTensor)
    t.__dict__.update(_idx=idx, _vals=vals, _size=tuple(int(n) for n in size), _coalesced=True)
    return t


def _dense_to_csc(self, dense_dim=None):
    if self.ndim != 2 or dense_dim:
        raise NotImplementedError(f"to_sparse_csc: only 2-D tensors with no dense dims are "
                                  f"supported, got {self.ndim}-D")
    return _dense_to_sparse(self).to_sparse_csc()


def sparse_csc_tensor(ccol_indices, row_indices, values, size=None, *, dtype=None,
                      device=None, pin_memory=False, requires_grad=False,
                      check_invariants=None):
    """A 2-D CSC tensor from column pointers, row indices and values (in column-major order;
    gradients reach ``values``)."""
    ccol = _as_array(ccol_indices).astype(np.int64)
    row = _as_array(row_indices).astype(np.int64)
    if ccol.ndim != 1 or row.ndim != 1 or ccol.size == 0 or ccol[0] != 0 or \
            (np.diff(ccol) < 0).any() or ccol[-1] != row.size:
        raise RuntimeError(f"sparse_csc_tensor: ccol_indices must start at 0, not decrease and "
                           f"end at nnz ({row.size}); got {ccol.tolist()}")
    vals = values if isinstance(values, Tensor) else _make(np.asarray(values))
    if dtype is not None:
        vals = vals.to(dtype)
    if vals.shape[0] != row.size:
        raise RuntimeError(f"sparse_csc_tensor: {row.size} row indices but {vals.shape[0]} "
                           f"values")
    cols = np.repeat(np.arange(ccol.size - 1), np.diff(ccol))
    if size is None:
        size = (int(row.max()) + 1 if row.size else 0, ccol.size - 1)
    if row.size and (row.min() < 0 or row.max() >= size[0]):
        raise RuntimeError(f"sparse_csc_tensor: row indices must be in [0, {size[0]})")
    if requires_grad:
        vals.requires_grad_(True)
    idx = np.stack([row, cols])
    order = np.lexsort((cols, row))  # row-major underneath
    return _new_csc(idx[:, order], vals[_make(order)] if order.size else vals, size)


# ---------------------------------------------------------------------- BSR and BSC
class _BlockCompressed:
    """What BSR and BSC share: a 2-D tensor of ``(bh, bw)`` blocks, ``values`` of shape
    ``(nnz_blocks, bh, bw)`` placed by compressed and plain block indices. ``to_dense()`` is
    differentiable in ``values``; products go through ``to_dense()``."""

    is_sparse = False
    is_sparse_csr = False

    def __init__(self, compressed, plain, values, size):
        self._cidx, self._pidx, self._vals = compressed, plain, values
        self._size = tuple(int(n) for n in size)

    @property
    def shape(self):
        return Size(self._size)

    def size(self, dim=None):
        return self.shape if dim is None else self._size[dim]

    @property
    def dtype(self):
        return self._vals.dtype

    @property
    def device(self):
        return self._vals.device

    @property
    def requires_grad(self):
        return self._vals.requires_grad

    def dim(self):
        return 2

    ndim = property(dim)

    def sparse_dim(self):
        return 2

    def dense_dim(self):
        return 0

    def values(self):
        return self._vals

    def _nnz(self):
        return int(self._pidx.size)

    def _wrong(self, name, want):
        _wrong_layout(self, name, want)

    def _block_rows_cols(self):
        """(block row, block column) of every stored block, in storage order."""
        raise NotImplementedError

    def to_dense(self, dtype=None, *, masked_grad=None):
        """The dense matrix: each block placed at its (block row, block column)."""
        from . import zeros
        if dtype is not None and dtype != self.dtype:
            raise RuntimeError("dtype argument is not supported by sparse_csr_to_dense")
        bh, bw = self._vals.shape[1:3]
        nbr, nbc = self._size[0] // bh, self._size[1] // bw
        brow, bcol = self._block_rows_cols()
        flat = _make((brow * nbc + bcol).astype(np.int64))
        grid = zeros(nbr * nbc, bh, bw, dtype=self._vals.dtype).index_add(0, flat, self._vals)
        return grid.reshape(nbr, nbc, bh, bw).permute(0, 2, 1, 3).reshape(self._size)

    def to_sparse(self, *args, **kwargs):
        return _dense_to_sparse(self.to_dense(), *args, **kwargs)

    to_sparse_coo = to_sparse

    def to_sparse_csr(self, dense_dim=None):
        self._wrong("sparse_compressed_to_sparse_csr: to_sparse_csr", "row or column")

    def to_sparse_csc(self, dense_dim=None):
        self._wrong("sparse_compressed_to_sparse_csc: to_sparse_csc", "row or column")

    def _same_blocks(self, layout, blocksize):
        bs = (blocksize, blocksize) if isinstance(blocksize, int) else tuple(blocksize)
        if self.layout is layout and bs != tuple(self._vals.shape[1:3]):
            name = "bsr" if layout is self._bsr() else "bsc"
            raise RuntimeError(f"to_sparse_{name}: conversion from {self.layout} to {layout} "
                               f"with blocksize changed from {list(self._vals.shape[1:3])} to "
                               f"{list(bs)} is not supported")
        return self.layout is layout

    @staticmethod
    def _bsr():
        from ._namespaces import sparse_bsr
        return sparse_bsr

    def to_sparse_bsr(self, blocksize, dense_dim=None):
        if self._same_blocks(self._bsr(), blocksize):
            return self
        return _dense_to_bsr(self.to_dense(), blocksize, dense_dim)

    def to_sparse_bsc(self, blocksize, dense_dim=None):
        from ._namespaces import sparse_bsc
        if self._same_blocks(sparse_bsc, blocksize):
            return self
        return _dense_to_bsc(self.to_dense(), blocksize, dense_dim)

    def double(self):
        return type(self)(self._cidx, self._pidx, self._vals.double(), self._size)

    def float(self):
        return type(self)(self._cidx, self._pidx, self._vals.float(), self._size)

    def matmul(self, other):
        return self.to_dense() @ other

    __matmul__ = matmul

    def __rmatmul__(self, other):
        return other @ self.to_dense()

    def __repr__(self):
        c, p = self._index_names
        return (f"tensor({c}={_plain_repr(self._cidx)},\n"
                f"       {p}={_plain_repr(self._pidx)},\n"
                f"       values={_plain_repr(self._vals.detach()._data)}, size={self._size}, "
                f"nnz={self._pidx.size}, layout={self.layout})")


class SparseBsrTensor(_BlockCompressed):
    """A 2-D block-sparse-row tensor (``layout == ember.sparse_bsr``): ``crow_indices`` and
    ``col_indices`` over block rows/columns, ``values`` of shape ``(nnz_blocks, bh, bw)``.
    ``to_dense()`` is differentiable in ``values``; products go through ``to_dense()`` or
    ``to_sparse()`` (COO)."""

    _index_names = ("crow_indices", "col_indices")

    @property
    def layout(self):
        from ._namespaces import sparse_bsr
        return sparse_bsr

    def crow_indices(self):
        return _make(self._cidx.copy())

    def col_indices(self):
        return _make(self._pidx.copy())

    def ccol_indices(self):
        self._wrong("ccol_indices", "column")

    def row_indices(self):
        self._wrong("row_indices", "column")

    def _block_rows_cols(self):
        return np.repeat(np.arange(self._cidx.size - 1), np.diff(self._cidx)), self._pidx

    def t(self):
        """The transpose: a BSC tensor with the same index arrays and transposed blocks."""
        return SparseBscTensor(self._cidx, self._pidx, self._vals.transpose(1, 2),
                               self._size[::-1])


class SparseBscTensor(_BlockCompressed):
    """A 2-D block-sparse-column tensor (``layout == ember.sparse_bsc``): ``ccol_indices`` over
    block columns, ``row_indices`` the block row of each stored block, ``values`` of shape
    ``(nnz_blocks, bh, bw)``; blocks are stored column by column, rows ascending within a
    column. ``to_dense()`` is differentiable in ``values``; ``@`` goes through it (PyTorch's
    CPU build refuses BSC products; ember computes them)."""

    _index_names = ("ccol_indices", "row_indices")

    @property
    def layout(self):
        from ._namespaces import sparse_bsc
        return sparse_bsc

    def ccol_indices(self):
        return _make(self._cidx.copy())

    def row_indices(self):
        return _make(self._pidx.copy())

    def crow_indices(self):
        self._wrong("crow_indices", "row")

    def col_indices(self):
        self._wrong("col_indices", "row")

    def _block_rows_cols(self):
        return self._pidx, np.repeat(np.arange(self._cidx.size - 1), np.diff(self._cidx))

    def t(self):
        """The transpose: a BSR tensor with the same index arrays and transposed blocks."""
        return SparseBsrTensor(self._cidx, self._pidx, self._vals.transpose(1, 2),
                               self._size[::-1])


def _blocks_of(self, blocksize, dense_dim, op):
    """The ``(nbr, nbc, bh, bw)`` block view of a dense 2-D tensor and its nonzero-block
    mask, with PyTorch's checks."""
    if self.ndim != 2 or dense_dim:
        raise NotImplementedError(f"{op}: only 2-D tensors with no dense dims are "
                                  f"supported, got {self.ndim}-D")
    bh, bw = (blocksize, blocksize) if isinstance(blocksize, int) else tuple(blocksize)
    m, n = self.shape
    if bh <= 0 or bw <= 0 or m % bh or n % bw:
        raise RuntimeError(f"{op}: tensor size {(m, n)} must be divisible by "
                           f"blocksize {(bh, bw)}")
    blocks = self.reshape(m // bh, bh, n // bw, bw).permute(0, 2, 1, 3)
    return blocks, (blocks._data != 0).any(axis=(2, 3))


def _dense_to_bsc(self, blocksize, dense_dim=None):
    """``Tensor.to_sparse_bsc(blocksize)``: the blocks holding a nonzero, column by column."""
    if not isinstance(self, Tensor) or isinstance(self, SparseTensor):
        self = self.to_dense()  # COO, CSR, CSC: through the dense form (differentiable)
    blocks, keep = _blocks_of(self, blocksize, dense_dim, "to_sparse_bsc")
    bcol, brow = np.nonzero(keep.T)
    ccol = np.concatenate([[0], np.cumsum(keep.sum(0))]).astype(np.int64)
    bh, bw = blocks.shape[2:]
    flat = _make((brow * keep.shape[1] + bcol).astype(np.int64))
    vals = blocks.reshape(-1, bh, bw).index_select(0, flat)
    return SparseBscTensor(ccol, brow.astype(np.int64), vals, tuple(self.shape))


def _dense_to_bsr(self, blocksize, dense_dim=None):
    """``Tensor.to_sparse_bsr(blocksize)``: the blocks holding a nonzero, row-major."""
    if not isinstance(self, Tensor) or isinstance(self, SparseTensor):
        self = self.to_dense()  # COO, CSR, CSC: through the dense form (differentiable)
    blocks, keep = _blocks_of(self, blocksize, dense_dim, "to_sparse_bsr")
    brow, bcol = np.nonzero(keep)
    crow = np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int64)
    bh, bw = blocks.shape[2:]
    flat = _make((brow * keep.shape[1] + bcol).astype(np.int64))
    vals = blocks.reshape(-1, bh, bw).index_select(0, flat)
    return SparseBsrTensor(crow, bcol.astype(np.int64), vals, tuple(self.shape))


def _block_tensor(cls, op, compressed, plain, values, size, dtype, requires_grad):
    """Check and build a BSR (``compressed`` over block rows) or BSC (over block columns)."""
    cidx = _as_array(compressed).astype(np.int64)
    pidx = _as_array(plain).astype(np.int64)
    vals = values if isinstance(values, Tensor) else _make(np.asarray(values))
    if dtype is not None:
        vals = vals.to(dtype)
    cname, pname = cls._index_names
    if vals.ndim != 3 or vals.shape[0] != pidx.size:
        raise RuntimeError(f"{op}: values must be (nnz_blocks={pidx.size}, bh, bw), got "
                           f"{tuple(vals.shape)}")
    if cidx.ndim != 1 or cidx.size == 0 or cidx[0] != 0 or (np.diff(cidx) < 0).any() or \
            cidx[-1] != pidx.size:
        raise RuntimeError(f"{op}: {cname} must start at 0, not decrease and end at nnz "
                           f"({pidx.size}); got {cidx.tolist()}")
    bh, bw = vals.shape[1:3]
    by_row = cls is SparseBsrTensor  # compressed over block rows, plain over block columns
    nplain = int(pidx.max()) + 1 if pidx.size else 0
    if size is None:
        size = ((cidx.size - 1) * bh, nplain * bw) if by_row else \
            (nplain * bh, (cidx.size - 1) * bw)
    size = tuple(int(n) for n in size)
    if len(size) != 2 or size[0] % bh or size[1] % bw:
        raise RuntimeError(f"{op}: size {size} must be 2-D and divisible by the blocksize "
                           f"{(bh, bw)}")
    ncomp, lim = (size[0] // bh, size[1] // bw) if by_row else (size[1] // bw, size[0] // bh)
    if cidx.size != ncomp + 1:
        raise RuntimeError(f"{op}: {cname} must have {ncomp + 1} entries for size {size} "
                           f"and blocksize {(bh, bw)}, got {cidx.size}")
    if pidx.size and (pidx.min() < 0 or pidx.max() >= lim):
        raise RuntimeError(f"{op}: {pname} must be in [0, {lim})")
    if requires_grad:
        vals.requires_grad_(True)
    return cls(cidx, pidx, vals, size)


def sparse_bsr_tensor(crow_indices, col_indices, values, size=None, *, dtype=None,
                      device=None, pin_memory=False, requires_grad=False,
                      check_invariants=None):
    """A 2-D BSR tensor from block-row pointers, block-column indices and ``values`` of
    shape ``(nnz_blocks, bh, bw)``."""
    return _block_tensor(SparseBsrTensor, "sparse_bsr_tensor", crow_indices, col_indices,
                         values, size, dtype, requires_grad)


def sparse_bsc_tensor(ccol_indices, row_indices, values, size=None, *, dtype=None,
                      device=None, pin_memory=False, requires_grad=False,
                      check_invariants=None):
    """A 2-D BSC tensor from block-column pointers, block-row indices and ``values`` of
    shape ``(nnz_blocks, bh, bw)`` (blocks column by column)."""
    return _block_tensor(SparseBscTensor, "sparse_bsc_tensor", ccol_indices, row_indices,
                         values, size, dtype, requires_grad)


def sparse_compressed_tensor(compressed_indices, plain_indices, values, size=None, *,
                             dtype=None, layout=None, device=None, pin_memory=False,
                             requires_grad=False, check_invariants=None):
    """A CSR, CSC, BSR or BSC tensor, chosen by ``layout`` (required, as in PyTorch)."""
    from . import _namespaces as N
    make = {N.sparse_csr: sparse_csr_tensor, N.sparse_csc: sparse_csc_tensor,
            N.sparse_bsr: sparse_bsr_tensor, N.sparse_bsc: sparse_bsc_tensor}.get(layout)
    if make is None:
        raise RuntimeError(f"sparse_compressed_tensor expected sparse compressed tensor layout "
                           f"but got {layout}")
    return make(compressed_indices, plain_indices, values, size, dtype=dtype, device=device,
                requires_grad=requires_grad)


# ---------------------------------------------------------------------- products
def _check_2d_sparse(s, op):
    if s.sparse_dim() != 2 or s.dense_dim() != 0:
        raise NotImplementedError(f"{op}: only 2-D sparse tensors with no dense dims are "
                                  f"supported (got size {tuple(s._size)}, sparse_dim="
                                  f"{s.sparse_dim()})")


def _matmul(a, b):
    """``a @ b`` where one side is sparse COO (2-d) and the other dense (1-d or 2-d)."""
    a_sp, b_sp = isinstance(a, SparseTensor), isinstance(b, SparseTensor)
    if a_sp and b_sp:
        # sparse @ sparse -> sparse, as PyTorch: the product against b's dense form (the
        # graph-sized operands GNN code multiplies), turned back into COO
        _check_2d_sparse(b, "matmul")
        return _matmul(a, b.to_dense()).to_sparse()
    if b_sp:  # dense @ sparse = (sparse^T @ dense^T)^T
        if a.ndim == 1:
            return _matmul(b.t(), a)
        return _matmul(b.t(), a.t()).t()
    _check_2d_sparse(a, "matmul")
    if b.ndim not in (1, 2):
        raise NotImplementedError(f"sparse @ dense: the dense operand must be 1-D or 2-D, got "
                                  f"{b.ndim}-D")
    m, k = a._size
    if b.shape[0] != k:
        n = b.shape[1] if b.ndim == 2 else 1
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({m}x{k} and "
                           f"{b.shape[0]}x{n})")
    if a.dtype != b.dtype:
        raise RuntimeError(f"expected mat1 and mat2 to have the same dtype, but got: "
                           f"{a.dtype} != {b.dtype}")
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    out = SparseAddmm.apply(a._vals, b2, a._idx[0], a._idx[1], m)
    return out.squeeze(-1) if b.ndim == 1 else out


def mm(mat1, mat2, reduce="sum"):
    """``mat1 @ mat2`` with a sparse COO ``mat1`` (gradients for both operands)."""
    if reduce != "sum":
        raise NotImplementedError(f"sparse.mm: reduce={reduce!r} is not supported (only 'sum')")
    if mat2.ndim != 2:
        raise RuntimeError(f"mat2 must be a matrix, got {mat2.ndim}-D tensor")
    return _matmul(mat1, mat2)


def spmm(input, mat2):
    """Sparse @ dense (``ember.spmm``)."""
    return mm(input, mat2)


def addmm(mat, mat1, mat2, *, beta=1.0, alpha=1.0):
    """``beta * mat + alpha * (mat1 @ mat2)`` with a sparse ``mat1``."""
    return beta * mat + alpha * _matmul(mat1, mat2)


def to_dense(input):
    return input.to_dense()


# ---------------------------------------------------------------------- reductions
def sum(input, dim=None, dtype=None):
    """Sum of a sparse tensor: over all entries (dense 0-d result) or over ``dim``; the result
    stays sparse while sparse dims remain, as in ``torch.sparse.sum``."""
    vals = input._vals if dtype is None else input._vals.to(dtype)
    if dim is None:
        return vals.sum()
    from .ops._util import norm_dim
    dims = [dim] if isinstance(dim, int) else list(dim)
    dims = sorted({norm_dim(d, input.ndim) for d in dims})
    nsp = input.sparse_dim()
    sp = [d for d in dims if d < nsp]
    dn = [d - nsp + 1 for d in dims if d >= nsp]
    if dn:
        vals = vals.sum(dn)
    keep = [d for d in range(nsp) if d not in sp]
    size = [s for d, s in enumerate(input._size) if d not in dims]
    if not keep:
        return vals.sum(0)
    if not sp:
        return _new_sparse(input._idx, vals, size, input._coalesced)
    idx = input._idx[keep]
    return _new_sparse(idx, vals, size, False).coalesce()


# ---------------------------------------------------------------------- softmax
def _group_softmax(input, dim, log):
    from .ops._util import norm_dim
    d = norm_dim(dim, input.ndim)
    if input.dense_dim() != 0:
        raise NotImplementedError("sparse softmax of a hybrid sparse tensor is not supported")
    s = input.coalesce()
    vals = s._vals
    others = np.delete(s._idx, d, axis=0)
    if others.shape[1] == 0:
        return s
    _, group = _unique_columns(others)
    ngroups = int(group.max()) + 1
    vmax = np.full((ngroups,), -np.inf, dtype=vals._data.dtype)
    np.maximum.at(vmax, group, vals._data)
    shifted = vals - _make(vmax[group])
    e = shifted.exp()
    denom = IndexAddZeros.apply(e, (ngroups,), (group,))
    denom_e = IndexSelect.apply(denom, 0, group)
    out = shifted - denom_e.log() if log else e / denom_e
    return _new_sparse(s._idx, out, s._size, True)


def softmax(input, dim, dtype=None):
    """Softmax along ``dim`` over the specified entries only (unspecified ones count as -inf,
    and stay unspecified), as ``torch.sparse.softmax``."""
    return _group_softmax(input if dtype is None else input.to(dtype), dim, False)


def log_softmax(input, dim, dtype=None):
    """Log-softmax along ``dim`` over the specified entries only."""
    return _group_softmax(input if dtype is None else input.to(dtype), dim, True)
