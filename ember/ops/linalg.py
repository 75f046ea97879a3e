"""Products: matmul (with batch broadcasting and the 1-d rules), mm, bmm, mv, dot, outer,
addmm, einsum."""

from __future__ import annotations

import math

import numpy as np

from .. import _parallel as _par
from .._meta import MetaArray, asarray as xp_asarray
from .._tensor import Tensor
from ..autograd.graph import Node, apply_binary, named
from ..autograd import forward_ad as _fad
from .reduction import _rt
from .._autocast import autocast_function
from .._dtype import np_finfo as _np_finfo

# named result tuples (``torch.return_types``)
_slogdet_rt = _rt("slogdet", ["sign", "logabsdet"])
_qr_rt = _rt("qr", ["Q", "R"])
_svd_rt = _rt("svd", ["U", "S", "Vh"])
_svd_old_rt = _rt("svd", ["U", "S", "V"])
_eigh_rt = _rt("eigh", ["eigenvalues", "eigenvectors"])
_eig_rt = _rt("eig", ["eigenvalues", "eigenvectors"])
_lstsq_rt = _rt("lstsq", ["solution", "residuals", "rank", "singular_values"])
_inv_ex_rt = _rt("inv_ex", ["inverse", "info"])
_cholesky_ex_rt = _rt("cholesky_ex", ["L", "info"])
_solve_ex_rt = _rt("solve_ex", ["result", "info"])
_triangular_solve_rt = _rt("triangular_solve", ["solution", "cloned_coefficient"])
_lu_rt = _rt("lu", ["P", "L", "U"])
_lu_factor_rt = _rt("lu_factor", ["LU", "pivots"])
_lu_factor_ex_rt = _rt("lu_factor_ex", ["LU", "pivots", "info"])
_lu_unpack_rt = _rt("lu_unpack", ["P", "L", "U"])

__all__ = ["matmul", "mm", "bmm", "mv", "dot", "vdot", "inner", "outer", "ger", "addmm",
           "einsum", "baddbmm", "addbmm", "addmv", "addr", "chain_matmul", "trace", "tensordot",
           "kron", "cross", "cdist", "det", "logdet", "slogdet", "inverse", "pinverse",
           "matrix_power", "matrix_exp", "cholesky", "qr", "svd", "cholesky_solve",
           "cholesky_inverse", "triangular_solve", "lu", "lu_solve", "lu_unpack", "vander"]


def _same_dtype(op, a, b):
    if a.dtype != b.dtype:
        from .._dtype import _BY_NP
        from ..autograd.graph import _pt_name
        raise RuntimeError(f"{op}: expected m1 and m2 to have the same dtype, but got: "
                           f"{_pt_name(_BY_NP[a.dtype]).lower()} != "
                           f"{_pt_name(_BY_NP[b.dtype]).lower()}")


def matmul_arrays(a, b, bias=None):
    """``np.matmul``, except that a stack of matrices times one matrix runs as a single 2-D
    GEMM: NumPy broadcasts that case through a slow loop (measured 119 ms vs 8 ms for
    (32, 64, 64) @ (64, 192)-transposed). Products that OpenBLAS would thread go through
    ``_parallel.gemm`` (see there). ``bias``: a vector of the output's columns added in
    place (``r += bias``), by each part of a product cut over the pool."""
    if bias is not None:
        if b.ndim == 2 and a.ndim >= 2 and type(bias) is np.ndarray and \
                bias.shape == (b.shape[1],) and type(a) is np.ndarray and \
                type(b) is np.ndarray and a.size * b.shape[1] > _SMALL_GEMM:
            rows = math.prod(a.shape[:-1])
            return _par.gemm(a.reshape(rows, a.shape[-1]), b, bias=bias).reshape(
                a.shape[:-1] + (b.shape[1],))
        r = matmul_arrays(a, b)
        r += bias
        return r
    if b.ndim == 2:
        if a.ndim == 2:
            if a.shape[0] * a.shape[1] * b.shape[1] > _SMALL_GEMM and \
                    type(a) is np.ndarray and type(b) is np.ndarray:
                return _par.gemm(a, b)
            return a.dot(b)  # same product; the method skips matmul's ufunc machinery (0.4 us)
        if a.ndim == 1:
            return np.matmul(a, b)
        lead = a.shape[:-1]
        # explicit row count: ``-1`` cannot be inferred when the inner size is 0
        rows = math.prod(lead)
        a2 = a.reshape(rows, a.shape[-1])
        if rows * a.shape[-1] * b.shape[1] > _SMALL_GEMM and type(a) is np.ndarray and \
                type(b) is np.ndarray:
            return _par.gemm(a2, b).reshape(lead + (b.shape[1],))
        return np.matmul(a2, b).reshape(lead + (b.shape[1],))
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] == b.shape[0] and type(a) is np.ndarray \
            and type(b) is np.ndarray:
        return _par.gemm(a, b)
    return np.matmul(a, b)


# 2-D products above this many multiply-adds (OpenBLAS threads them from 2^18) go through
# ``_parallel.gemm``: one BLAS thread, or parts on ember's pool, instead of OpenBLAS's own
# threads, whose workers spin while they wait (and for ~0.1 s after each call) on the core
# that ember's pool, or another process on a busy machine, needs.
_SMALL_GEMM = 1 << 18
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


_MATMUL_NAMES = {(2, 2): "MmBackward0", (1, 1): "DotBackward0", (2, 1): "MvBackward0",
                 (1, 2): "SqueezeBackward4"}


class Matmul(Node):
    saves = (0, 1)
    saves_for = {0: (1,), 1: (0,)}

    @staticmethod
    def forward(ctx, a, b):
        # checks run only when the product fails or the dtypes differ: the common case is
        # one GEMM call
        if a.dtype is not b.dtype and a.dtype != b.dtype:
            _same_dtype("matmul", a, b)
        if a.dtype.kind == "b":
            return (a.astype(np.int64) @ b.astype(np.int64)).astype(bool)
        try:
            r = matmul_arrays(a, b)
        except ValueError:
            if a.ndim == 0 or b.ndim == 0:
                raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they "
                                   f"are {a.ndim}D and {b.ndim}D") from None
            if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
                raise RuntimeError(_mismatch_msg(a, b)) from None
            raise RuntimeError(f"matmul: batch dimensions of {list(a.shape)} and "
                               f"{list(b.shape)} cannot be broadcast") from None
        if r.dtype is not a.dtype and r.dtype != a.dtype:
            r = r.astype(a.dtype)  # NumPy widens bfloat16 matrix-vector products to float32
        return r

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = gb = None
        ad, bd = a.ndim, b.ndim
        if ad == 1 and bd == 1:
            return (g * _c(b) if na else None, g * _c(a) if nb else None)
        if ad == 1:  # (k) @ (..., k, n) -> (..., n)
            if na:
                ga = matmul(b.conj() if _cx(b) else b, g.unsqueeze(-1)).squeeze(-1)
            if nb:
                gb = _c(a).unsqueeze(-1) * g.unsqueeze(-2)
            return ga, gb
        if bd == 1:  # (..., m, k) @ (k) -> (..., m)
            if na:
                ga = g.unsqueeze(-1) * _c(b)
            if nb:
                gb = matmul(_mT(a).conj() if _cx(a) else _mT(a), g.unsqueeze(-1)).squeeze(-1)
            return ga, gb
        if na:
            ga = matmul(g, _mT(_c(b)))
        if nb:
            gb = matmul(_mT(_c(a)), g)
        return ga, gb

    jvp = staticmethod(_fad.multilinear_jvp)

    @staticmethod
    def array_backward(ctx, g):
        a, b = ctx.saved_arrays
        na, nb = ctx.needs_input_grad
        if a.dtype.kind == "c":
            a, b = np.conj(a), np.conj(b)
        ga = gb = None
        ad, bd = a.ndim, b.ndim
        if ad == 1 and bd == 1:
            return (g * b if na else None, g * a if nb else None)
        if ad == 1:
            if na:
                ga = matmul_arrays(b, g[..., None])[..., 0]
            if nb:
                gb = a[:, None] * g[..., None, :]
            return ga, gb
        if bd == 1:
            if na:
                ga = g[..., None] * b
            if nb:
                gb = np.matmul(np.swapaxes(a, -1, -2), g[..., None])[..., 0]
            return ga, gb
        if na and nb and bd == 2 and (a.dtype is _F32 or a.dtype is _F64) and \
                b.dtype is a.dtype and g.dtype is a.dtype and type(a) is np.ndarray and \
                type(b) is np.ndarray and type(g) is np.ndarray and \
                _par.gemms_ok(g.size * b.shape[0]):
            # independent and of equal work: side by side, one whole BLAS call per core
            # (``_parallel.gemms``), each the one-thread call (same bits)
            rows = g.size // g.shape[-1]
            g2 = g.reshape(rows, g.shape[-1])
            ga, gb = _par.gemms([(g2, b.T), (a.reshape(rows, a.shape[-1]).T, g2)])
            return ga.reshape(a.shape), gb
        if na:
            ga = matmul_arrays(g, np.swapaxes(b, -1, -2))
        if nb:
            if bd == 2 and ad > 2:  # one GEMM over all stacked rows, not a batch to sum
                rows = math.prod(a.shape[:-1])
                gb = matmul_arrays(a.reshape(rows, a.shape[-1]).T,
                                   g.reshape(rows, g.shape[-1]))
            elif bd == 2:  # through ``_parallel.gemm`` as the forward, not BLAS's own threads
                gb = matmul_arrays(a.T, g)
            else:
                gb = np.matmul(np.swapaxes(a, -1, -2), g)
        return ga, gb


def _cx(t):
    return t._data.dtype.kind == "c"


def _c(t):
    return t.conj() if _cx(t) else t


def _mT(t):
    return t.transpose(-2, -1)


def _mismatch_msg(a, b):
    if a.ndim <= 2 and b.ndim <= 2:
        sa = "x".join(map(str, a.shape if a.ndim == 2 else (1,) + a.shape))
        sb = "x".join(map(str, b.shape if b.ndim == 2 else b.shape + (1,)))
        return f"mat1 and mat2 shapes cannot be multiplied ({sa} and {sb})"
    return (f"Expected size for first two dimensions of batch2 tensor to be: "
            f"{list(a.shape)} @ {list(b.shape)} (inner dimensions {a.shape[-1]} and "
            f"{b.shape[-2 if b.ndim > 1 else 0]} differ)")


def _matmul_dense(input, other):
    # PyTorch names the node after the product it ran
    return named(apply_binary(Matmul, input, other),
                 _MATMUL_NAMES.get((input._data.ndim, other._data.ndim), "UnsafeViewBackward0"))


def matmul(input, other, *, out=None):
    """Matrix product with NumPy/PyTorch semantics for 1-d and batched operands."""
    if type(input) is Tensor and type(other) is Tensor and out is None:
        # two plain dense Tensors (sparse ones are subclasses): the operator's usual call
        return _matmul_dense(input, other)
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        if hasattr(input, "_block_rows_cols") or hasattr(other, "_block_rows_cols"):
            # BSR/BSC operands (ember/sparse.py) multiply through their dense form
            return matmul(*(a.to_dense() if hasattr(a, "_block_rows_cols") else a
                            for a in (input, other)), out=out)
        raise TypeError("matmul(): argument 'input' and 'other' must be Tensors")
    if input.is_sparse or other.is_sparse:  # sparse COO operands: ember/sparse.py
        from ..sparse import _matmul
        return _matmul(input, other)
    if out is None:
        return _matmul_dense(input, other)
    from .elementwise import _out
    return _out(Matmul.apply(input, other), out)


def mm(input, mat2, *, out=None):
    if input.ndim != 2:
        raise RuntimeError(f"self must be a matrix, got {input.ndim}-D tensor")
    if mat2.ndim != 2:
        raise RuntimeError(f"mat2 must be a matrix, got {mat2.ndim}-D tensor")
    return matmul(input, mat2, out=out)


def bmm(input, mat2, *, out=None):
    if input.ndim != 3:
        raise RuntimeError(f"batch1 must be a 3D tensor, got {input.ndim}-D")
    if mat2.ndim != 3:
        raise RuntimeError(f"batch2 must be a 3D tensor, got {mat2.ndim}-D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"batch1 and batch2 must have same number of batches, got "
                           f"{input.shape[0]} and {mat2.shape[0]}")
    return matmul(input, mat2, out=out)


@autocast_function("none")
def mv(input, vec, *, out=None):
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input.ndim}, {vec.ndim}")
    return matmul(input, vec, out=out)


@autocast_function("none")
def dot(input, other, *, out=None):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D "
                           "tensors")
    if input.shape[0] != other.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{input.shape[0]}] and "
                           f"src [{other.shape[0]}] to have the same number of elements, but got "
                           f"{input.shape[0]} and {other.shape[0]} elements respectively")
    return matmul(input, other, out=out)


@autocast_function("none")
def vdot(input, other):
    return dot(input.conj(), other)


@autocast_function("none")
def inner(input, other):
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    return matmul(input, other.transpose(-1, -2) if other.ndim > 1 else other) \
        if other.ndim <= 2 else einsum("...i,...ji->...j", input, other)


@autocast_function("none")
def outer(input, vec2):
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError("outer: expected 1-D tensors")
    return input.unsqueeze(-1) * vec2.unsqueeze(0)


ger = outer


@autocast_function("lower")
def addmm(input, mat1, mat2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * (mat1 @ mat2)``."""
    low = mat1.dtype.np.itemsize == 2 and mat1.dtype.is_floating_point
    if low:  # bfloat16/float16: one rounding at the end, as PyTorch's fused kernel
        dt = mat1.dtype
        r = addmm(input.float(), mat1.float(), mat2.float(), beta=beta, alpha=alpha).to(dt)
        if out is not None:
            from .elementwise import _out
            return _out(r, out)
        return r
    p = mm(mat1, mat2)
    if alpha != 1:
        p = p * alpha
    if beta == 0:  # ``input`` is ignored (even NaNs in it), as PyTorch does
        r = p
    else:
        r = (input * beta if beta != 1 else input) + p
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


class Einsum(Node):
    saves = "all"

    @staticmethod
    def forward(ctx, eq, *arrays):
        ctx.eq = eq
        if len(arrays) > 1:
            rt = np.result_type(*arrays)
            arrays = [a.astype(rt, copy=False) for a in arrays]
        return np.einsum(eq, *arrays, optimize=len(arrays) > 2)

    @staticmethod
    def backward(ctx, g):
        eq = ctx.eq
        ins, out = eq.split("->")
        terms = ins.split(",")
        saved = ctx.saved_tensors[1:]
        grads = [None]
        for i, term in enumerate(terms):
            if not ctx.needs_input_grad[i + 1]:
                grads.append(None)
                continue
            others = [t for j, t in enumerate(terms) if j != i]
            ops = [saved[j] for j in range(len(terms)) if j != i]
            # letters of this term absent from output and other operands are summed away
            # in forward; their gradient is a broadcast, so expand afterwards
            present = set(out) | set("".join(others))
            kept = "".join(ch for ch in term if ch in present)
            sub = ",".join([out] + others) + "->" + _dedup(kept)
            r = einsum(sub, g, *ops)
            r = _expand_term(r, _dedup(kept), term, saved[i])
            grads.append(r)
        return tuple(grads)


def _dedup(s):
    seen = []
    for ch in s:
        if ch not in seen:
            seen.append(ch)
    return "".join(seen)


def _expand_term(r, have, want, like):
    """Bring gradient ``r`` (letters ``have``) to the operand's letters ``want``."""
    shape = like._data.shape
    sizes = dict(zip(want, shape))
    if have == want:
        return r
    # insert missing letters as broadcast dims, then take repeated-letter diagonals
    letters = _dedup(want)
    cur = have
    for ch in letters:
        if ch not in cur:
            r = r.unsqueeze(-1)
            cur += ch
    perm = [cur.index(ch) for ch in letters]
    r = r.permute(perm).expand([sizes[ch] for ch in letters])
    if letters != want:  # repeated letters (a diagonal): scatter onto the diagonal
        eye_eq = letters + "->" + want
        from .. import zeros
        z = zeros(shape, dtype=r.dtype)
        idx = np.indices(shape)
        mask = np.ones(shape, dtype=bool)
        for k, ch in enumerate(want):
            first = want.index(ch)
            mask &= idx[k] == idx[first]
        del eye_eq
        gathered = r[tuple(idx[want.index(ch)] for ch in letters)]
        from .. import where
        from .._tensor import _make
        return where(_make(mask), gathered, z)
    return r


def einsum(equation, *operands):
    """Einstein summation (``'ij,jk->ik'``); the implicit form and ``...`` are supported."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    nd = [t._data.ndim for t in operands]
    eq = _expand_ellipsis(eq, nd)
    if "->" not in eq:
        ins = eq.split(",")
        letters = "".join(ins)
        eq = eq + "->" + "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    return Einsum.apply(eq, *operands)


def _expand_ellipsis(eq, ndims):
    if "..." not in eq:
        return eq
    ins, arrow, out = eq.partition("->")
    terms = ins.split(",")
    used = set(eq) - set(".,->")
    free = [ch for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if ch not in used]
    nell = 0
    for term, n in zip(terms, ndims):
        if "..." in term:
            nell = max(nell, n - (len(term) - 3))
    ell = "".join(free[:nell])
    new_terms = []
    for term, n in zip(terms, ndims):
        if "..." in term:
            k = n - (len(term) - 3)
            term = term.replace("...", ell[nell - k:])
        new_terms.append(term)
    if arrow:
        out = out.replace("...", ell)
    else:
        letters = "".join(t for t in new_terms)
        out = ell + "".join(sorted(ch for ch in set(letters) - set(ell)
                                   if letters.count(ch) == 1))
    return ",".join(new_terms) + "->" + out




# ====================================================================== more products
@autocast_function("lower")
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * (batch1 @ batch2)`` for batches of matrices."""
    return _scaled_sum(input, bmm(batch1, batch2), beta, alpha, out)


@autocast_function("lower")
def addbmm(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * sum_b(batch1[b] @ batch2[b])``."""
    return _scaled_sum(input, bmm(batch1, batch2).sum(0), beta, alpha, out)


@autocast_function("none")
def addmv(input, mat, vec, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * (mat @ vec)``."""
    return _scaled_sum(input, mv(mat, vec), beta, alpha, out)


@autocast_function("none")
def addr(input, vec1, vec2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * outer(vec1, vec2)``."""
    return _scaled_sum(input, outer(vec1, vec2), beta, alpha, out)


def _scaled_sum(input, p, beta, alpha, out):
    if alpha != 1:
        p = p * alpha
    # beta == 0 ignores ``input`` entirely (NaNs included), as PyTorch does
    r = p if beta == 0 else (input * beta if beta != 1 else input) + p
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


@autocast_function("none")
def chain_matmul(*matrices, out=None):
    """The product of 2-d matrices, left to right (deprecated: ``linalg.multi_dot``)."""
    if len(matrices) == 1 and isinstance(matrices[0], (list, tuple)):
        matrices = tuple(matrices[0])
    for i, m in enumerate(matrices):
        if m.ndim != 2:
            raise RuntimeError(f"Tensor dimension is {m.ndim}, expected 2 instead.")
    r = matrices[0]
    for m in matrices[1:]:
        r = mm(r, m)
    return r if len(matrices) > 1 else r.clone()


@autocast_function("fp32")
def trace(input):
    """The sum of the main diagonal of a 2-d matrix."""
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    return input.diagonal().sum()


@autocast_function("none")
def tensordot(a, b, dims=2, out=None):
    """Contract ``dims`` (a count, or a pair of dim lists) of ``a`` with ``b``."""
    if isinstance(dims, (int, np.integer)):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        da = list(range(a.ndim - dims, a.ndim))
        db = list(range(dims))
    else:
        if isinstance(dims, Tensor):
            dims = dims.tolist()
        da, db = dims
        da = [da] if isinstance(da, int) else list(da)
        db = [db] if isinstance(db, int) else list(db)
    da = [d % a.ndim for d in da]
    db = [d % b.ndim for d in db]
    for x, y in zip(da, db):
        if a.shape[x] != b.shape[y]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a.shape[x]} in dim {x} and second has size {b.shape[y]} in "
                               f"dim {y}")
    ka = [d for d in range(a.ndim) if d not in da]
    kb = [d for d in range(b.ndim) if d not in db]
    n = int(np.prod([a.shape[d] for d in da])) if da else 1
    am = a.permute(ka + da).reshape(-1, n)
    bm = b.permute(db + kb).reshape(n, -1)
    r = mm(am, bm).reshape([a.shape[d] for d in ka] + [b.shape[d] for d in kb])
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


def kron(input, other, *, out=None):
    """The Kronecker product."""
    nd = max(input.ndim, other.ndim)
    a = input.reshape((1,) * (nd - input.ndim) + tuple(input.shape))
    b = other.reshape((1,) * (nd - other.ndim) + tuple(other.shape))
    ash, bsh = a.shape, b.shape
    a = a.reshape([s for d in ash for s in (d, 1)])
    b = b.reshape([s for d in bsh for s in (1, d)])
    r = (a * b).reshape([x * y for x, y in zip(ash, bsh)])
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


def cross(input, other, dim=None, *, out=None):
    """The 3-vector cross product along ``dim`` (the first size-3 dim when None)."""
    from .shape import broadcast_tensors, stack
    a, b = broadcast_tensors(input, other)
    if dim is None:
        dims = [i for i, s in enumerate(a.shape) if s == 3]
        if not dims:
            raise RuntimeError("no dimension of size 3 in input")
        dim = dims[0]
    d = dim % a.ndim if a.ndim else 0
    if a.shape[d] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got "
                           f"{input.shape[d] if input.ndim > d else '?'} and "
                           f"{other.shape[d] if other.ndim > d else '?'}")
    a0, a1, a2 = a.unbind(d)
    b0, b1, b2 = b.unbind(d)
    r = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], d)
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


@autocast_function("fp32")
def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """Pairwise ``p``-norm distances between the rows of ``x1`` and of ``x2`` (batched)."""
    if x1.ndim < 2 or x2.ndim < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X1 got: {x1.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{x1.shape[-1]} X2: {x2.shape[-1]}")
    if p < 0:
        raise RuntimeError(f"cdist only supports non-negative p values, got {p}")
    diff = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    return vector_norm(diff, p, -1)


# ====================================================================== norms
class VectorNorm(Node):
    """``(sum |x|^p)^(1/p)`` over ``dims``, with PyTorch's subgradients (0 where norm is 0)."""

    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, p, dims, keepdim):
        ctx.p, ctx.dims, ctx.keepdim = p, dims, keepdim
        ax = np.abs(a)
        if p == float("inf"):
            r = np.max(ax, axis=dims, keepdims=keepdim, initial=0) if ax.size else \
                np.zeros(np.sum(ax, axis=dims, keepdims=keepdim).shape, ax.dtype)
        elif p == -float("inf"):
            r = np.min(ax, axis=dims, keepdims=keepdim)
        elif p == 0:
            r = np.sum(ax != 0, axis=dims, keepdims=keepdim).astype(ax.dtype)
        elif p == 1:
            r = np.sum(ax, axis=dims, keepdims=keepdim)
        elif p == 2:
            r = np.sqrt(np.sum(ax * ax, axis=dims, keepdims=keepdim))
        else:
            r = np.sum(ax ** p, axis=dims, keepdims=keepdim) ** (1.0 / p)
        return xp_asarray(r, dtype=ax.dtype)

    @staticmethod
    def backward(ctx, g):
        from .elementwise import where
        a, r = ctx.saved_tensors
        p, dims = ctx.p, ctx.dims
        if not ctx.keepdim and dims is not None:
            for d in sorted(dims):
                g, r = g.unsqueeze(d), r.unsqueeze(d)
        elif not ctx.keepdim:
            g, r = g.reshape((1,) * a.ndim), r.reshape((1,) * a.ndim)
        if p == 0:
            return a * 0, None, None, None
        sa = a.sgn() if a.is_complex() else a.sign()
        if p == 1:
            return g * sa, None, None, None
        if p in (float("inf"), -float("inf")):
            hit = (a.abs() == r).to(g.dtype)
            cnt = hit.sum(dims, keepdim=True) if dims is not None else hit.sum()
            return sa * hit * (g / cnt), None, None, None
        if p == 2:
            return a * where(r == 0, 0.0, g / r), None, None, None
        scale = where(r == 0, 0.0, g / r ** (p - 1))
        return sa * a.abs() ** (p - 1) * scale, None, None, None


def _dims(dim, ndim):
    if dim is None:
        return None
    from ._util import norm_dims
    dims = norm_dims(dim, ndim, "linalg.vector_norm")
    return dims if ndim else None  # dim 0 of a 0-d tensor is the whole tensor, as in PyTorch


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):
    """The vector ``ord``-norm of ``x`` over ``dim`` (all elements if None)."""
    if isinstance(ord, str):
        raise RuntimeError(f"linalg.vector_norm: ord must be a number, got {ord}")
    if dtype is not None:
        x = x.to(dtype)
    if not (x.is_floating_point() or x.is_complex()):
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as "
                           f"input. Got {x.dtype}")
    if x._data.size == 0 and ord < 0:
        raise RuntimeError("linalg.vector_norm cannot compute the negative norm of an empty "
                           "tensor")
    r = VectorNorm.apply(x, float(ord), _dims(dim, x.ndim), keepdim)
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None, out=None):
    """The matrix norm: 'fro', 'nuc', +-1, +-2 or +-inf over the two dims ``dim``."""
    if dtype is not None:
        A = A.to(dtype)
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 "
                           "dimensions.")
    d0, d1 = (d % A.ndim for d in dim)
    if ord == "fro":
        r = vector_norm(A, 2, (d0, d1), keepdim)
    elif ord == "nuc" or ord in (2, -2):
        s = svdvals(A.movedim((d0, d1), (-2, -1)))
        # an empty matrix has norm 0 for 'nuc' and 2 (its max over no values), as in PyTorch
        empty = s.shape[-1] == 0
        r = s.sum(-1) if ord == "nuc" or (ord == 2 and empty) else \
            (s.amax(-1) if ord == 2 else s.amin(-1))
        if keepdim:
            for d in sorted((d0, d1)):
                r = r.unsqueeze(d)
    elif ord in (1, -1, float("inf"), -float("inf")):
        inner, outer_ = (d0, d1) if ord in (1, -1) else (d1, d0)
        sums = A.abs().sum(inner, keepdim=True)
        r = sums.amax(outer_, keepdim=True) if ord > 0 else sums.amin(outer_, keepdim=True)
        if not keepdim:
            r = r.squeeze((d0, d1))
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    if out is not None:
        from .elementwise import _out
        return _out(r, out)
    return r


def linalg_norm(A, ord=None, dim=None, keepdim=False, *, dtype=None, out=None):
    """``linalg.norm``: a vector or matrix norm depending on ``ord`` and ``dim``."""
    if dim is not None and isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    if ord is None:
        if dim is not None and len(dim) == 2:
            return matrix_norm(A, "fro", dim, keepdim, dtype=dtype, out=out)
        return vector_norm(A, 2, dim, keepdim, dtype=dtype, out=out)
    if isinstance(ord, str) or (dim is not None and len(dim) == 2) or \
            (dim is None and A.ndim == 2):
        return matrix_norm(A, ord, dim if dim is not None else (-2, -1), keepdim, dtype=dtype,
                           out=out)
    if dim is None and A.ndim != 1:
        raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be "
                           f"1D or 2D. Got {A.ndim}D.")
    return vector_norm(A, ord, dim, keepdim, dtype=dtype, out=out)


# ====================================================================== decompositions
def _sq(A, op):
    if A.ndim < 2:
        raise RuntimeError(f"{op}: The input tensor A must have at least 2 dimensions.")
    if A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"{op}: A must be batches of square matrices, but they are "
                           f"{A.shape[-2]} by {A.shape[-1]} matrices")
    if not (A.is_floating_point() or A.is_complex()):
        raise RuntimeError(f"{op}: Expected a floating point or complex tensor as input. Got "
                           f"{A.dtype}")


def _H(t):
    return t.transpose(-2, -1).conj() if t.is_complex() else t.transpose(-2, -1)


def _np_H(a):
    return np.conj(np.swapaxes(a, -1, -2))


class LinAlgError(RuntimeError):
    """A linear-algebra failure (singular or non-positive-definite input), as PyTorch's
    ``torch.linalg.LinAlgError``: a ``RuntimeError``."""


LinAlgError.__module__ = "ember.linalg"


def _singular(op):
    return LinAlgError(f"{op}: The diagonal element 1 is zero, the inversion could not be "
                        "completed because the input matrix is singular.")


class Inv(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        try:
            return np.linalg.inv(a)
        except np.linalg.LinAlgError:
            raise _singular("linalg.inv") from None

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        yh = _H(y)
        return -matmul(yh, matmul(g, yh))


def inv(A, *, out=None):
    """The inverse of (batches of) square matrices."""
    _sq(A, "linalg.inv")
    from .elementwise import _out
    return _out(Inv.apply(A), out)


class Det(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return xp_asarray(np.linalg.det(a), dtype=a.dtype)

    @staticmethod
    def backward(ctx, g):
        a, d = ctx.saved_tensors
        # d det / dA = det * A^{-H} (conjugated for complex)
        gd = (g * d.conj()).unsqueeze(-1).unsqueeze(-1)
        return gd * _H(inv(a))


def det(A):
    """The determinant of (batches of) square matrices."""
    _sq(A, "linalg.det")
    return Det.apply(A)


class Slogdet(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        sign, logabs = np.linalg.slogdet(a)
        return xp_asarray(sign, dtype=a.dtype), xp_asarray(logabs, dtype=np.abs(a).dtype)

    @staticmethod
    def backward(ctx, gsign, glog):
        a, = ctx.saved_tensors
        return glog.unsqueeze(-1).unsqueeze(-1) * _H(inv(a))




def slogdet(A):
    """``(sign, log|det|)`` of (batches of) square matrices."""
    _sq(A, "linalg.slogdet")
    sign, la = Slogdet.apply(A)
    return _slogdet_rt(sign, la)


def logdet(A):
    """``log(det(A))``: NaN for a negative determinant, -inf for a zero one."""
    from .elementwise import where
    sign, la = slogdet(A)
    return where(sign < 0, float("nan"), where(sign == 0, float("-inf"), la))


def _is_vector_rhs(A, B):
    return B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))


class Solve(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        try:
            return np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            raise _singular("linalg.solve") from None

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        gb = Solve.apply(_H(a), g)
        ga = -matmul(gb, _H(x)) if ctx.needs_input_grad[0] else None
        return ga, gb


def solve(A, B, *, left=True, out=None):
    """The solution ``X`` of ``A @ X = B`` (or ``X @ A = B`` when ``left=False``)."""
    _sq(A, "linalg.solve")
    if not left:
        # X A = B  <=>  A^T X^T = B^T
        return solve(A.transpose(-2, -1), B.transpose(-2, -1)).transpose(-2, -1)
    if B.dtype != A.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found "
                           f"A of type {A.dtype} and B of type {B.dtype} instead")
    vec = _is_vector_rhs(A, B)
    Bm = B.unsqueeze(-1) if vec else B
    if Bm.shape[-2] != A.shape[-1]:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation "
                           f"AX = B ({A.shape[-2]}x{A.shape[-1]} and "
                           f"{Bm.shape[-2]}x{Bm.shape[-1]})")
    batch = np.broadcast_shapes(tuple(A.shape[:-2]), tuple(Bm.shape[:-2]))
    Ab = A.expand(batch + tuple(A.shape[-2:]))
    Bb = Bm.expand(batch + tuple(Bm.shape[-2:]))
    x = Solve.apply(Ab, Bb)
    x = x.squeeze(-1) if vec else x
    from .elementwise import _out
    return _out(x, out)


class Cholesky(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, a, upper):
        ctx.upper = upper
        try:
            L = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            raise RuntimeError("linalg.cholesky: The factorization could not be completed "
                               "because the input is not positive-definite.") from None
        return _np_H(L).copy() if upper else L

    @staticmethod
    def backward(ctx, g):
        L, = ctx.saved_tensors
        if ctx.upper:
            L, g = _H(L), _H(g)
        # gA = L^{-H} Phi(L^H gL) L^{-1}, symmetrised; Phi keeps the lower triangle, half diag
        phi = matmul(_H(L), g).tril()
        phi = phi - 0.5 * phi.diagonal(0, -2, -1).diag_embed()
        Linv = inv(L)
        ga = matmul(_H(Linv), matmul(phi, Linv))
        return 0.5 * (ga + _H(ga)), None


def linalg_cholesky(A, *, upper=False, out=None):
    """The Cholesky factor ``L`` (``A = L L^H``), or ``U = L^H`` when ``upper``."""
    _sq(A, "linalg.cholesky")
    from .elementwise import _out
    return _out(Cholesky.apply(A, upper), out)


class QR(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, a, mode):
        ctx.mode = mode
        q, r = np.linalg.qr(a, mode="complete" if mode == "complete" else "reduced")
        if mode == "r":
            return np.zeros((0,), a.dtype), r
        return q, r

    @staticmethod
    def backward(ctx, gq, gr):
        q, r = ctx.saved_tensors
        if ctx.mode == "r":
            raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed "
                               "when mode='r'. Please use linalg.qr(A, mode='reduced') if you "
                               "are going to differentiate through linalg.qr.")
        m, n = q.shape[-2], r.shape[-1]
        if ctx.mode == "complete" and m > n:
            raise NotImplementedError("The QR decomposition is not differentiable when "
                                      "mode='complete' and nrows > ncols.")
        if m >= n:
            return _qr_square_grad(q, r, gq, gr), None
        # wide A = [X | Y] with X square: X = Q U, Y = Q V
        u, v = r.narrow(-1, 0, m), r.narrow(-1, m, n - m)
        gu, gv = gr.narrow(-1, 0, m), gr.narrow(-1, m, n - m)
        y = matmul(q, v)
        gx = _qr_square_grad(q, u, gq + matmul(y, _H(gv)), gu)
        from .shape import cat
        return cat([gx, matmul(q, gv)], -1), None


def _qr_square_grad(q, r, gq, gr):
    """Gradient of reduced QR with rows >= cols: ``(gQ + Q copyltu(M)) R^{-H}``,
    ``M = R gR^H - gQ^H Q`` (Liao et al. 2019)."""
    m = matmul(r, _H(gr)) - matmul(_H(gq), q)
    low = m.tril(-1)
    copyltu = low + _H(low) + m.diagonal(0, -2, -1).diag_embed()
    b = gq + matmul(q, copyltu)
    # X R^H = B  <=>  R X^H = B^H
    return _H(solve(r, _H(b)))




def linalg_qr(A, mode="reduced", *, out=None):
    """``A = Q R`` with orthonormal ``Q`` and upper-triangular ``R``."""
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of "
                           "'reduced' (default), 'r', or 'complete'")
    if A.ndim < 2:
        raise RuntimeError("linalg.qr: The input tensor A must have at least 2 dimensions.")
    q, r = QR.apply(A, mode)
    return _qr_rt(q, r)


class SVD(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, a, full_matrices):
        ctx.full = full_matrices
        u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
        return u, s.astype(np.abs(a).dtype), vh

    @staticmethod
    def backward(ctx, gu, gs, gvh):
        u, s, vh = ctx.saved_tensors
        m, n = u.shape[-2], vh.shape[-1]
        k = min(m, n)
        if ctx.full and m != n:
            u, vh = u.narrow(-1, 0, k), vh.narrow(-2, 0, k)
            gu, gvh = gu.narrow(-1, 0, k), gvh.narrow(-2, 0, k)
        return _svd_grad(u, s, vh, gu, gs, gvh), None


def _svd_grad(u, s, vh, gu, gs, gvh):
    """The standard SVD gradient (real case), as PyTorch's ``svd_backward``."""
    m, n = u.shape[-2], vh.shape[-1]
    k = s.shape[-1]
    from .elementwise import where
    si, sj = s.unsqueeze(-1), s.unsqueeze(-2)
    e = sj * sj - si * si
    eye = _eye_like(e)
    e = where(eye, 1.0, e)
    v, gv = _H(vh), _H(gvh)
    uhgu = matmul(_H(u), gu)
    vhgv = matmul(vh, gv)
    ret = ((uhgu - _H(uhgu)) * sj + si * (vhgv - _H(vhgv))) / e
    ret = where(eye, 0.0, ret) + gs.diag_embed()
    ga = matmul(u, matmul(ret, vh))
    if m > k:
        ga = ga + matmul((gu - matmul(u, uhgu)) / sj, vh)
    if n > k:
        ga = ga + matmul(u, _H(gv - matmul(v, vhgv)) / si)
    return ga


def _eye_like(t):
    from .._tensor import _make
    n = t.shape[-1]
    return _make(np.eye(n, dtype=bool))




def linalg_svd(A, full_matrices=True, *, driver=None, out=None):
    """``A = U diag(S) Vh`` (``full_matrices=False`` for the reduced factors)."""
    if A.ndim < 2:
        raise RuntimeError("linalg.svd: The input tensor A must have at least 2 dimensions.")
    u, s, vh = SVD.apply(A, full_matrices)
    return _svd_rt(u, s, vh)


class SVDVals(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        ctx.u, ctx.vh = u, vh
        return s.astype(np.abs(a).dtype)

    @staticmethod
    def backward(ctx, gs):
        from .._tensor import _make
        return matmul(_make(ctx.u) * gs.unsqueeze(-2), _make(ctx.vh))


def svdvals(A, *, driver=None, out=None):
    """The singular values of ``A``, in descending order."""
    if A.ndim < 2:
        raise RuntimeError("linalg.svdvals: The input tensor A must have at least 2 "
                           "dimensions.")
    from .elementwise import _out
    return _out(SVDVals.apply(A), out)


class Eigh(Node):
    saves_output = True

    @staticmethod
    def forward(ctx, a, uplo):
        w, v = np.linalg.eigh(a, UPLO=uplo)
        return w.astype(np.abs(a).dtype), v

    @staticmethod
    def backward(ctx, gl, gv):
        from .elementwise import where
        lam, v = ctx.saved_tensors
        vhgv = matmul(_H(v), gv)
        vhgv = 0.5 * (vhgv - _H(vhgv))
        e = lam.unsqueeze(-2) - lam.unsqueeze(-1)
        eye = _eye_like(e)
        ret = where(eye, 0.0, vhgv / where(eye, 1.0, e)) + gl.diag_embed()
        return matmul(v, matmul(ret, _H(v))), None




def eigh(A, UPLO="L", *, out=None):
    """Eigenvalues (ascending) and eigenvectors of (batches of) symmetric matrices."""
    _sq(A, "linalg.eigh")
    if UPLO not in ("L", "U"):
        raise RuntimeError("Expected UPLO argument to be 'L' or 'U', but got " + str(UPLO))
    w, v = Eigh.apply(A, UPLO)
    return _eigh_rt(w, v)


class EigvalsH(Node):
    @staticmethod
    def forward(ctx, a, uplo):
        w, v = np.linalg.eigh(a, UPLO=uplo)
        ctx.v = v
        return w.astype(np.abs(a).dtype)

    @staticmethod
    def backward(ctx, gl):
        from .._tensor import _make
        v = _make(ctx.v)
        return matmul(v * gl.unsqueeze(-2), _H(v)), None


def eigvalsh(A, UPLO="L", *, out=None):
    """The eigenvalues (ascending) of (batches of) symmetric matrices."""
    _sq(A, "linalg.eigvalsh")
    from .elementwise import _out
    return _out(EigvalsH.apply(A, UPLO), out)


class Pinv(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, rtol, hermitian, atol=None):
        if atol is None:
            return np.linalg.pinv(a, rcond=rtol, hermitian=hermitian)
        # singular values at or below max(atol, rtol * largest) count as zero (per matrix:
        # atol/rtol broadcast over the batch dims)
        u, sv, vh = np.linalg.svd(a, full_matrices=False)
        big = sv.max(-1, keepdims=True) if sv.shape[-1] else np.zeros(sv.shape[:-1] + (1,))
        cut = np.maximum(np.asarray(atol)[..., None], np.asarray(rtol)[..., None] * big)
        keep = sv > cut
        inv = np.where(keep, 1.0 / np.where(keep, sv, 1.0), 0.0).astype(sv.dtype)
        vt, ut = np.swapaxes(vh, -1, -2).conj(), np.swapaxes(u, -1, -2).conj()
        return (vt * inv[..., None, :]) @ ut

    @staticmethod
    def backward(ctx, g):
        a, p = ctx.saved_tensors
        # the derivative of the pseudo-inverse at constant rank (Golub & Pereyra 1973)
        ph, gh = _H(p), _H(g)
        m, n = a.shape[-2], a.shape[-1]
        from .. import eye
        i_ap = eye(m, dtype=a.dtype) - matmul(a, p)
        i_pa = eye(n, dtype=a.dtype) - matmul(p, a)
        ga = -matmul(ph, matmul(g, ph)) + matmul(i_ap, matmul(gh, matmul(p, ph))) + \
            matmul(matmul(ph, p), matmul(gh, i_pa))
        return ga, None, None, None


def pinv(A, *, atol=None, rtol=None, hermitian=False, out=None):
    """The Moore-Penrose pseudo-inverse."""
    if A.ndim < 2:
        raise RuntimeError("linalg.pinv: The input tensor A must have at least 2 dimensions.")
    from .elementwise import _out
    default = max(A.shape[-2:]) * _np_finfo(A._data.dtype).eps if A.numel() else 0.0
    if atol is None and not isinstance(rtol, Tensor):
        return _out(Pinv.apply(A, default if rtol is None else float(rtol), hermitian), out)
    # tolerances given as tensors (per batch entry) or an absolute one: the SVD cutoff
    if isinstance(atol, Tensor) or isinstance(rtol, Tensor):
        tol_meta = "meta" in (getattr(atol, "device", None) and atol.device.type,
                              getattr(rtol, "device", None) and rtol.device.type)
        if A.is_meta:  # only the shape: the cutoff's values change no size
            return _out(Pinv.apply(A, default, hermitian), out)
        if tol_meta:
            raise RuntimeError("linalg.pinv: atol/rtol on the meta device with an input on "
                               f"{A.device}: expected all tensors on the same device")
    at = np.asarray(atol._data if isinstance(atol, Tensor) else (0.0 if atol is None else atol),
                    dtype=np.float64)
    rt = rtol._data if isinstance(rtol, Tensor) else rtol
    if rt is None:  # PyTorch: an absolute tolerance above zero alone sets rtol to zero
        rt = np.where(at > 0, 0.0, default)
    return _out(Pinv.apply(A, np.asarray(rt, dtype=np.float64), hermitian, at), out)


@autocast_function("fp32")
def pinverse(input, rcond=1e-15):
    """``linalg.pinv`` with a relative cutoff ``rcond``."""
    return pinv(input, rtol=rcond)


class _Identity(Node):
    """Identity matrices shaped like ``A`` (``A**0``): connected to ``A`` with a zero
    gradient, as PyTorch's result is."""

    @staticmethod
    def meta(ctx, a):
        return MetaArray(a.shape, a.dtype)

    @staticmethod
    def forward(ctx, a):
        return np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape).copy()

    @staticmethod
    def backward(ctx, g):
        return g * 0


def matrix_power(A, n, *, out=None):
    """``A`` multiplied by itself ``n`` times (``n < 0`` uses the inverse; 0 the identity)."""
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"linalg.matrix_power: A must be batches of square matrices, but got "
                           f"shape {list(A.shape)}")
    if n == 0:
        return _Identity.apply(A)
    if n < 0:
        A, n = inv(A), -n
    result = None
    base = A
    while n:  # binary exponentiation
        if n & 1:
            result = base if result is None else matmul(result, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    from .elementwise import _out
    return _out(result, out)


def _expm(a):
    """Matrix exponential by scaling and squaring with a Taylor series (arrays)."""
    norm = np.max(np.sum(np.abs(a), axis=-2), axis=-1) if a.size else np.zeros(a.shape[:-2])
    s = int(max(0, np.ceil(np.log2(max(float(np.max(norm, initial=0)), 1e-300))) + 1))
    x = a / (2.0 ** s)
    eye = np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape)
    term = eye.copy()
    out = eye.copy()
    for k in range(1, 30):
        term = term @ x / k
        out = out + term
        if np.max(np.abs(term), initial=0) <= _np_finfo(a.dtype).eps * \
                np.max(np.abs(out), initial=1):
            break
    for _ in range(s):
        out = out @ out
    return out


class MatrixExp(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a):
        return _expm(a)

    @staticmethod
    def backward(ctx, g):
        # d exp(A)[G] is the upper-right block of exp([[A^H, G], [0, A^H]]) (Mathias 1996)
        a, = ctx.saved_tensors
        from .shape import cat
        ah = _H(a)
        n = a.shape[-1]
        top = cat([ah, g], -1)
        bottom = cat([g * 0, ah], -1)
        big = matrix_exp(cat([top, bottom], -2))
        return big.narrow(-2, 0, n).narrow(-1, n, n)


def matrix_exp(A):
    """The matrix exponential of (batches of) square matrices."""
    _sq(A, "linalg.matrix_exp")
    return MatrixExp.apply(A)


def multi_dot(tensors, *, out=None):
    """The product of a chain of matrices (first/last may be 1-d), left to right."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(tensors)}")
    first_vec, last_vec = tensors[0].ndim == 1, tensors[-1].ndim == 1
    if first_vec:
        tensors[0] = tensors[0].unsqueeze(0)
    if last_vec:
        tensors[-1] = tensors[-1].unsqueeze(-1)
    for i, t in enumerate(tensors):
        if t.ndim != 2:
            raise RuntimeError(f"multi_dot(): tensor {i} must be 2D but got {t.ndim}D")
    r = tensors[0]
    for t in tensors[1:]:
        r = mm(r, t)
    if first_vec:
        r = r.squeeze(0)
    if last_vec:
        r = r.squeeze(-1)
    from .elementwise import _out
    return _out(r, out)


@autocast_function("lower")
def vecdot(x, y, *, dim=-1, out=None):
    """``sum(conj(x) * y)`` over ``dim`` (broadcasting)."""
    r = ((x.conj() if x.is_complex() else x) * y).sum(dim)
    from .elementwise import _out
    return _out(r, out)




@autocast_function("fp32")
def lstsq(A, B, rcond=None, *, driver=None):
    """The least-squares solution of ``A X = B``: (solution, residuals, rank, singular_values).

    Residuals are returned for tall full-rank problems, singular values for the 'gelsd' and
    'gelss' drivers (empty otherwise), as PyTorch does."""
    driver = driver or "gelsy"
    if driver not in ("gels", "gelsy", "gelsd", "gelss"):
        raise RuntimeError(f"torch.linalg.lstsq: parameter `driver` should be one of (gels, "
                           f"gelsy, gelsd, gelss), but got {driver}")
    if type(A._data) is MetaArray or type(B._data) is MetaArray:
        # residuals exist only where every matrix has full rank: the values decide
        from .._meta import data_dependent
        raise data_dependent("linalg_lstsq")
    vec = B.ndim == A.ndim - 1
    Bm = B.unsqueeze(-1) if vec else B
    m, n = A.shape[-2], A.shape[-1]
    eps = _np_finfo(A._data.dtype).eps
    rt = rcond if rcond is not None else eps * max(m, n)
    x = matmul(pinv(A, rtol=rt), Bm)
    s = np.linalg.svd(A._data, compute_uv=False) if A.numel() else np.zeros(
        A.shape[:-2] + (0,), A._data.dtype)
    tol = rt * (s[..., :1] if s.shape[-1] else 0)
    rank = np.sum(s > tol, axis=-1).astype(np.int64)
    from .._tensor import _make
    if m > n and driver != "gelsy" and np.all(rank == n):
        residuals = ((matmul(A, x) - Bm).abs() ** 2).sum(-2)
    else:
        residuals = _make(np.zeros((0,), A._data.dtype))
    if driver in ("gelsd", "gelss"):
        sv = _make(s.astype(np.abs(A._data).dtype))
    else:
        sv = _make(np.zeros((0,), np.abs(A._data).dtype))
    rank_t = _make(rank) if driver != "gels" else _make(np.zeros((0,), np.int64))
    return _lstsq_rt(x.squeeze(-1) if vec else x, residuals, rank_t, sv)


def matrix_rank(A, *, atol=None, rtol=None, hermitian=False, tol=None, out=None):
    """The number of singular values above ``max(atol, rtol * largest)``."""
    from .._tensor import _make
    a = A._data
    s = np.abs(np.linalg.eigvalsh(a)) if hermitian else np.linalg.svd(a, compute_uv=False)
    if tol is not None:
        atol, rtol = tol, 0.0
    smax = np.max(s, axis=-1, keepdims=True, initial=0)
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else max(a.shape[-2:]) * \
            _np_finfo(np.abs(a).dtype).eps
    atol = 0.0 if atol is None else atol
    thresh = np.maximum(atol, rtol * smax)
    return _make(np.sum(s > thresh, axis=-1).astype(np.int64))


# ====================================================================== top-level spellings
def inverse(input, *, out=None):
    """``linalg.inv``."""
    return inv(input, out=out)


def cholesky(input, upper=False, *, out=None):
    """The Cholesky factor (``torch.cholesky``; prefer ``linalg.cholesky``)."""
    return linalg_cholesky(input, upper=upper, out=out)


def qr(input, some=True, *, out=None):
    """``(Q, R)``: reduced when ``some`` (``torch.qr``; prefer ``linalg.qr``)."""
    return linalg_qr(input, "reduced" if some else "complete")




def svd(input, some=True, compute_uv=True, *, out=None):
    """``(U, S, V)`` with ``V`` (not ``Vh``) (``torch.svd``; prefer ``linalg.svd``).

    With ``compute_uv=False``, U and V are zero-filled as in PyTorch."""
    if not compute_uv:
        from .. import zeros
        s = svdvals(input)
        m, n = input.shape[-2], input.shape[-1]
        k = min(m, n)
        u = zeros(input.shape[:-2] + ((m, k) if some else (m, m)), dtype=input.dtype)
        v = zeros(input.shape[:-2] + ((n, k) if some else (n, n)), dtype=input.dtype)
        return _svd_old_rt(u, s, v)
    u, s, vh = linalg_svd(input, full_matrices=not some)
    return _svd_old_rt(u, s, _H(vh))


# ====================================================================== triangular, eig, *_ex
def _tri_mask(a, upper, unit):
    """The triangle of ``a`` that a triangular solve reads (unit diagonal replaced by ones)."""
    t = np.triu(a) if upper else np.tril(a)
    if unit:
        idx = np.arange(a.shape[-1])
        t[..., idx, idx] = 1
    return t


class SolveTriangular(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b, upper, unit):
        ctx.upper, ctx.unit = upper, unit
        t = _tri_mask(a, upper, unit)
        try:
            return np.linalg.solve(t, b)
        except np.linalg.LinAlgError:
            raise _singular("linalg.solve_triangular") from None

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        upper, unit = ctx.upper, ctx.unit
        gb = SolveTriangular.apply(_H(a), g, not upper, unit)
        ga = None
        if ctx.needs_input_grad[0]:
            ga = -matmul(gb, _H(x))
            ga = ga.triu(1 if unit else 0) if upper else ga.tril(-1 if unit else 0)
        return ga, gb, None, None


def solve_triangular(A, B, *, upper, left=True, unitriangular=False, out=None):
    """The solution of ``A X = B`` (``X A = B`` if not ``left``) for triangular ``A``."""
    _sq(A, "linalg.solve_triangular")
    if not left:
        # X A = B  <=>  A^T X^T = B^T, and A^T has the other triangle
        return solve_triangular(A.transpose(-2, -1), B.transpose(-2, -1), upper=not upper,
                                unitriangular=unitriangular).transpose(-2, -1)
    batch = np.broadcast_shapes(tuple(A.shape[:-2]), tuple(B.shape[:-2]))
    x = SolveTriangular.apply(A.expand(batch + tuple(A.shape[-2:])),
                              B.expand(batch + tuple(B.shape[-2:])), upper, unitriangular)
    from .elementwise import _out
    return _out(x, out)


class Eig(Node):
    saves_output = True

    @staticmethod
    def meta(ctx, a):  # always complex, as PyTorch's (NumPy's real case needs the values)
        ctx.real_in = a.dtype.kind != "c"
        ct = np.complex128 if a.dtype in (np.float64, np.complex128) else np.complex64
        return MetaArray(a.shape[:-1], ct), MetaArray(a.shape, ct)

    @staticmethod
    def forward(ctx, a):
        ctx.real_in = a.dtype.kind != "c"
        w, v = np.linalg.eig(a)
        ct = np.complex128 if a.dtype in (np.float64, np.complex128) else np.complex64
        return w.astype(ct), v.astype(ct)

    @staticmethod
    def backward(ctx, gl, gv):
        # PyTorch's linalg_eig_backward: gA = V^{-H} (diag(gL) + normalised(V^H gV) / E*) V^H
        from .elementwise import where
        lam, v = ctx.saved_tensors
        vh = _H(v)
        vhgv = matmul(vh, gv)
        diag_re = vhgv.diagonal(0, -2, -1).real
        vhgv = vhgv - matmul(vh, v * diag_re.unsqueeze(-2))
        lc = lam.conj()
        e = lc.unsqueeze(-2) - lc.unsqueeze(-1)
        eye = _eye_like(e)
        ret = where(eye, 0.0, vhgv / where(eye, 1.0, e)) + gl.diag_embed()
        ga = solve(vh, matmul(ret, vh))
        return ga.real if ctx.real_in else ga




def eig(A, *, out=None):
    """Eigenvalues and eigenvectors (complex) of (batches of) square matrices."""
    _sq(A, "linalg.eig")
    w, v = Eig.apply(A)
    return _eig_rt(w, v)


def eigvals(A, *, out=None):
    """The (complex) eigenvalues of (batches of) square matrices."""
    return eig(A).eigenvalues


def _leading_minor_failures(a, test):
    """Per matrix of the batch ``a``: 0 if ``test`` succeeds, else the order (1-based) of the
    first leading minor on which it fails (LAPACK's ``info``)."""
    n = a.shape[-1]
    flat = a.reshape((-1, n, n))
    info = np.zeros(flat.shape[0], np.int32)
    for i, m in enumerate(flat):
        if test(m):
            continue
        info[i] = next((k for k in range(1, n + 1) if not test(m[:k, :k])), n)
    return info.reshape(a.shape[:-2])


def _try(fn):
    def test(m):
        try:
            fn(m)
            return True
        except np.linalg.LinAlgError:
            return False
    return test


def _ex(result_fn, A, info, check_errors, rt, op):
    from .._tensor import _make
    if type(info) is MetaArray or not info.any():  # meta: no values, no failures to report
        return rt(result_fn(A), _make(info))
    if check_errors:
        raise RuntimeError(f"{op}: The factorization could not be completed (info = "
                           f"{int(info.reshape(-1)[np.argmax(info.reshape(-1) != 0)])}).")
    # failed matrices come back as NaN (LAPACK leaves a partial result there)
    out = np.full(A.shape, np.nan, A._data.dtype)
    ok = info == 0
    if ok.any():
        out[ok] = result_fn(_make(A._data[ok]))._data
    return rt(_make(out), _make(info))


def inv_ex(A, *, check_errors=False, out=None):
    """``(inverse, info)``: ``info`` is 0 where the inverse exists, else the position of the
    first zero pivot; errors only when ``check_errors``."""
    _sq(A, "linalg.inv_ex")
    info = _leading_minor_failures(A._data, _try(np.linalg.inv)) if A.numel() and \
        type(A._data) is not MetaArray else np.zeros(A.shape[:-2], np.int32, like=A._data)
    return _ex(inv, A, info, check_errors, _inv_ex_rt, "linalg.inv_ex")


def cholesky_ex(A, *, upper=False, check_errors=False, out=None):
    """``(L, info)``: ``info`` is 0 where ``A`` is positive-definite, else the order of the
    first leading minor that is not."""
    _sq(A, "linalg.cholesky_ex")
    info = _leading_minor_failures(A._data, _try(np.linalg.cholesky)) if A.numel() and \
        type(A._data) is not MetaArray else np.zeros(A.shape[:-2], np.int32, like=A._data)
    return _ex(lambda a: linalg_cholesky(a, upper=upper), A, info, check_errors,
               _cholesky_ex_rt, "linalg.cholesky_ex")


def solve_ex(A, B, *, left=True, check_errors=False, out=None):
    """``(result, info)`` of ``linalg.solve``; a singular system raises (as with
    ``check_errors=True``)."""
    from .._tensor import _make
    return _solve_ex_rt(solve(A, B, left=left),
                        _make(np.zeros(A.shape[:-2], np.int32, like=A._data)))


@autocast_function("fp32")
def cholesky_solve(B, L, upper=False, *, out=None):
    """The solution of ``A X = B`` given the Cholesky factor of ``A``."""
    # A = L L^H (or U^H U): solve with the lower factor first, then the upper one
    low, up = (_H(L), L) if upper else (L, _H(L))
    return solve_triangular(up, solve_triangular(low, B, upper=False), upper=True)


@autocast_function("fp32")
def cholesky_inverse(L, upper=False, *, out=None):
    """The inverse of ``A`` from its Cholesky factor."""
    from .. import eye
    return cholesky_solve(eye(L.shape[-1], dtype=L.dtype).expand(L.shape), L, upper)


def _inplace_table():
    from .indexing import _inplace_of
    return {f.__name__ + "_": _inplace_of(f) for f in (addmm, addmv, addr, baddbmm, addbmm)}


# in-place variants, bound as Tensor methods
INPLACE = _inplace_table()


@autocast_function("fp32")
def triangular_solve(b, A, upper=True, transpose=False, unitriangular=False, *, out=None):
    """``(solution, A)`` of ``A X = b`` (``A^T X = b`` if ``transpose``) for triangular ``A``
    (deprecated: ``linalg.solve_triangular``)."""
    M = A.transpose(-2, -1) if transpose else A
    x = solve_triangular(M, b, upper=upper != transpose, unitriangular=unitriangular)
    return _triangular_solve_rt(x, A.clone())


# ====================================================================== LU
def _lu_np(a):
    """Batched LU with partial pivoting on arrays: packed LU, LAPACK pivots (1-based), and the
    row order ``perm`` with ``A[perm] = L U``."""
    m, n = a.shape[-2:]
    k = min(m, n)
    batch = a.shape[:-2]
    lu = a.reshape((-1, m, n)).astype(a.dtype, copy=True)
    nb = lu.shape[0]
    rows = np.arange(nb)
    perm = np.tile(np.arange(m), (nb, 1))
    piv = np.zeros((nb, k), np.int32)
    for j in range(k):
        p = np.argmax(np.abs(lu[:, j:, j]), axis=1) + j
        piv[:, j] = p + 1
        lu[rows, j], lu[rows, p] = lu[rows, p].copy(), lu[rows, j].copy()
        perm[rows, j], perm[rows, p] = perm[rows, p].copy(), perm[rows, j].copy()
        pivot = lu[:, j, j]
        ok = pivot != 0  # a zero pivot leaves its column as is (LAPACK reports it in info)
        lu[ok, j + 1:, j] /= pivot[ok, None]
        lu[:, j + 1:, j + 1:] -= lu[:, j + 1:, j:j + 1] * lu[:, j:j + 1, j + 1:]
    return lu.reshape(a.shape), piv.reshape(batch + (k,)), perm.reshape(batch + (m,))


def _perm_matrix(perm, dtype):
    """``P`` with ``A = P L U`` for ``A[perm] = L U``: column ``i`` of ``P`` is ``e_perm[i]``."""
    m = perm.shape[-1]
    eye = np.eye(m, dtype=dtype)
    return np.swapaxes(eye[perm], -1, -2).copy()


def _unpack_np(lu):
    m, n = lu.shape[-2:]
    k = min(m, n)
    low = np.tril(lu[..., :, :k], -1) + np.eye(m, k, dtype=lu.dtype)
    up = np.triu(lu[..., :k, :])
    return low, up


class LU(Node):
    saves_output = True

    @staticmethod
    def meta(ctx, a):
        *batch, m, n = a.shape
        k = min(m, n)
        return tuple(MetaArray(tuple(batch) + s, a.dtype) for s in ((m, m), (m, k), (k, n)))

    @staticmethod
    def forward(ctx, a):
        lu, _, perm = _lu_np(a)
        low, up = _unpack_np(lu)
        return _perm_matrix(perm, a.dtype), low, up

    @staticmethod
    def backward(ctx, gp, gl, gu):
        p, low, up = ctx.saved_tensors
        m, n = low.shape[-2], up.shape[-1]
        k = min(m, n)
        lh, uh = _H(low), _H(up)
        from .shape import cat
        if m == n:
            x = matmul(lh, gl).tril(-1) + matmul(gu, uh).triu()
            x = solve_triangular(uh, x, upper=False, left=False)
            x = solve_triangular(lh, x, upper=True, unitriangular=True)
        elif m < n:  # wide: U = [U1 | U2]
            u1 = up.narrow(-1, 0, k)
            x = matmul(lh, gl) - matmul(gu.triu(), uh)
            x = solve_triangular(_H(u1), x.tril(-1), upper=False, left=False)
            x = cat([x + gu.narrow(-1, 0, k).triu(), gu.narrow(-1, k, n - k)], -1)
            x = solve_triangular(lh, x, upper=True, unitriangular=True)
        else:  # tall: L = [L1; L2]
            l1 = low.narrow(-2, 0, k)
            x = matmul(gu, uh) - matmul(lh, gl.tril(-1))
            x = solve_triangular(_H(l1), x.triu(), upper=True, unitriangular=True)
            x = cat([x + gl.narrow(-2, 0, k).tril(-1), gl.narrow(-2, k, m - k)], -2)
            x = solve_triangular(uh, x, upper=False, left=False)
        return matmul(p, x)


def _check_lu_input(A, op):
    if A.ndim < 2:
        raise RuntimeError(f"{op}: The input tensor A must have at least 2 dimensions.")
    if not (A.is_floating_point() or A.is_complex()):
        raise RuntimeError(f"{op}: Expected a floating point or complex tensor as input. Got "
                           f"{A.dtype}")


def linalg_lu(A, *, pivot=True, out=None):
    """``(P, L, U)`` with ``A = P L U``: unit lower-triangular ``L``, upper-triangular ``U``."""
    _check_lu_input(A, "linalg.lu")
    if not pivot:
        raise NotImplementedError("linalg.lu: pivot=False is only supported on CUDA in "
                                  "PyTorch; ember does not implement it either")
    p, low, up = LU.apply(A)
    return _lu_rt(p, low, up)


def lu_factor(A, *, pivot=True, out=None):
    """``(LU, pivots)``: ``L`` and ``U`` packed in one matrix, and LAPACK's 1-based row swaps."""
    _check_lu_input(A, "linalg.lu_factor")
    m, n = A.shape[-2:]
    k = min(m, n)
    if type(A._data) is MetaArray:  # the pivots' shape needs no data
        piv = MetaArray(tuple(A.shape[:-2]) + (k,), np.int32)
    else:
        _, piv, _ = _lu_np(A._data)
    _, low, up = linalg_lu(A, pivot=pivot)
    from .shape import cat
    from .._tensor import _make
    zeros = lambda shape: _make(np.zeros(shape, A._data.dtype, like=A._data))  # noqa: E731
    low = low.tril(-1)
    if n > k:
        low = cat([low, zeros(tuple(A.shape[:-2]) + (m, n - k))], -1)
    if m > k:
        up = cat([up, zeros(tuple(A.shape[:-2]) + (m - k, n))], -2)
    return _lu_factor_rt(low + up, _make(piv))


def lu_factor_ex(A, *, pivot=True, check_errors=False, out=None):
    """``(LU, pivots, info)``: ``info`` is the first zero pivot (1-based), else 0."""
    lu_, piv = lu_factor(A, pivot=pivot)
    from .._tensor import _make
    if type(lu_._data) is MetaArray:  # no values: no zero pivot to report
        return _lu_factor_ex_rt(lu_, piv, _make(MetaArray(tuple(A.shape[:-2]), np.int32)))
    d = np.diagonal(lu_._data, 0, -2, -1)
    zero = d == 0
    info = np.where(zero.any(-1), np.argmax(zero, -1) + 1, 0).astype(np.int32)
    if check_errors and info.any():
        raise RuntimeError("linalg.lu_factor_ex: U is singular")
    return _lu_factor_ex_rt(lu_, piv, _make(info))


def _pivots_to_perm(piv, m):
    """Row order ``perm`` (``A[perm] = L U``) from LAPACK's sequential 1-based swaps."""
    flat = piv.reshape((-1, piv.shape[-1])).astype(np.int64) - 1
    perm = np.tile(np.arange(m), (flat.shape[0], 1))
    rows = np.arange(flat.shape[0])
    for j in range(flat.shape[1]):
        p = flat[:, j]
        perm[rows, j], perm[rows, p] = perm[rows, p].copy(), perm[rows, j].copy()
    return perm.reshape(piv.shape[:-1] + (m,))


def lu_unpack(LU_data, LU_pivots, unpack_data=True, unpack_pivots=True, *, out=None):
    """``(P, L, U)`` from the packed output of ``lu_factor``."""
    from .._tensor import _make
    m, n = LU_data.shape[-2:]
    k = min(m, n)
    meta = type(LU_data._data) is MetaArray
    L = U = P = _make(np.zeros((0,), LU_data._data.dtype, like=LU_data._data))
    if unpack_data:
        eye = _make(MetaArray((m, k), LU_data._data.dtype) if meta else
                    np.eye(m, k, dtype=LU_data._data.dtype))
        L = LU_data.narrow(-1, 0, k).tril(-1) + eye
        U = LU_data.narrow(-2, 0, k).triu()
    if unpack_pivots and (meta or type(LU_pivots._data) is MetaArray):  # rows need no data
        P = _make(MetaArray(tuple(LU_pivots.shape[:-1]) + (m, m), LU_data._data.dtype))
    elif unpack_pivots:
        perm = _pivots_to_perm(LU_pivots._data, m)
        P = _make(_perm_matrix(perm, LU_data._data.dtype))
    return _lu_unpack_rt(P, L, U)


def linalg_lu_solve(LU, pivots, B, *, left=True, adjoint=False, out=None):
    """The solution of ``A X = B`` from ``lu_factor(A)`` (``A^H X = B`` if ``adjoint``;
    ``X A = B`` if not ``left``)."""
    if not left:
        # X A = B  <=>  A^H X^H = B^H (and X A^H = B <=> A X^H = B^H)
        return _H(linalg_lu_solve(LU, pivots, _H(B), adjoint=not adjoint))
    P, L, U = lu_unpack(LU, pivots)
    if adjoint:
        # A^H = U^H L^H P^T
        y = solve_triangular(_H(U), B, upper=False)
        y = solve_triangular(_H(L), y, upper=True, unitriangular=True)
        return matmul(P, y)
    y = matmul(P.transpose(-2, -1), B)
    y = solve_triangular(L, y, upper=False, unitriangular=True)
    return solve_triangular(U, y, upper=True)


@autocast_function("fp32")
def lu_solve(b, LU_data, LU_pivots, *, out=None):
    """``torch.lu_solve(b, LU_data, LU_pivots)`` (prefer ``linalg.lu_solve``)."""
    return linalg_lu_solve(LU_data, LU_pivots, b)


def lu(A, pivot=True, get_infos=False, out=None):
    """``torch.lu``: ``(LU, pivots)`` (and ``infos`` when ``get_infos``)."""
    r = lu_factor_ex(A, pivot=pivot)
    return (r.LU, r.pivots, r.info) if get_infos else (r.LU, r.pivots)


# ====================================================================== composed helpers
def cond(A, p=None, *, out=None):
    """The condition number of ``A`` in the ``p`` norm (2-norm by default)."""
    if p is None or p in (2, -2):
        s = svdvals(A)
        hi, lo = s.amax(-1), s.amin(-1)
        return lo / hi if p == -2 else hi / lo
    _sq(A, "linalg.cond")
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


def linalg_vander(x, *, N=None):
    """Rows ``[1, x, x^2, ..., x^(N-1)]`` for each element of ``x`` (increasing powers)."""
    if x.ndim == 0:  # PyTorch reads a 0-d x as one element: a (1, N) result
        x = x.reshape(1)
    n = x.shape[-1] if N is None else N
    if n < 1:
        raise RuntimeError("N must be greater than 1.")
    from .shape import cat
    ones = x.new_ones(tuple(x.shape) + (1,))
    if n == 1:
        return ones
    rest = x.unsqueeze(-1).expand(tuple(x.shape) + (n - 1,))
    return cat([ones, rest], -1).cumprod(-1)


def vander(x, N=None, increasing=False):
    """The Vandermonde matrix of the 1-d ``x`` (decreasing powers unless ``increasing``)."""
    if x.ndim != 1:
        raise RuntimeError("x must be a one-dimensional tensor.")
    v = linalg_vander(x, N=N if N is not None else x.shape[0])
    return v if increasing else v.flip(-1)


def tensorinv(A, ind=2, *, out=None):
    """The inverse of ``A`` read as a linear map from its first ``ind`` dims to the rest."""
    if ind <= 0:
        raise RuntimeError(f"Expected a strictly positive integer for 'ind', but got {ind}")
    out_shape, in_shape = tuple(A.shape[:ind]), tuple(A.shape[ind:])
    rows, cols = int(np.prod(out_shape)), int(np.prod(in_shape))
    if rows != cols:
        raise RuntimeError(f"Expected self to satisfy the requirement prod(self.shape[ind:]) == "
                           f"prod(self.shape[:ind]), but got {cols} != {rows}")
    return inv(A.reshape(rows, cols)).reshape(in_shape + out_shape)


def tensorsolve(A, B, dims=None, *, out=None):
    """``X`` with ``tensordot(A, X, X.ndim) = B``."""
    if dims is not None:
        nd = A.ndim
        dims = [d % nd for d in dims]
        A = A.permute([d for d in range(nd) if d not in dims] + dims)
    rows = B.numel()
    x_shape = tuple(A.shape[B.ndim:])
    return solve(A.reshape(rows, -1), B.reshape(rows)).reshape(x_shape)
