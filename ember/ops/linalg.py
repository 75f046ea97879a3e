"""Products: matmul (with batch broadcasting and the 1-d rules), mm, bmm, mv, dot, outer,
addmm, einsum."""

from __future__ import annotations

import numpy as np

from .._tensor import Tensor
from ..autograd.graph import Node
from ._util import promote

__all__ = ["matmul", "mm", "bmm", "mv", "dot", "vdot", "inner", "outer", "ger", "addmm",
           "einsum"]


def _same_dtype(op, a, b):
    if a.dtype != b.dtype:
        from .._dtype import _BY_NP
        from ..autograd.graph import _pt_name
        raise RuntimeError(f"{op}: expected m1 and m2 to have the same dtype, but got: "
                           f"{_pt_name(_BY_NP[a.dtype]).lower()} != "
                           f"{_pt_name(_BY_NP[b.dtype]).lower()}")


class Matmul(Node):
    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                               f"{a.ndim}D and {b.ndim}D")
        _same_dtype("matmul", a, b)
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise RuntimeError(_mismatch_msg(a, b))
        if a.dtype == np.bool_:
            return (a.astype(np.int64) @ b.astype(np.int64)).astype(bool)
        return np.matmul(a, b)

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


def matmul(input, other, *, out=None):
    """Matrix product with NumPy/PyTorch semantics for 1-d and batched operands."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError("matmul(): argument 'input' and 'other' must be Tensors")
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


def mv(input, vec, *, out=None):
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input.ndim}, {vec.ndim}")
    return matmul(input, vec, out=out)


def dot(input, other, *, out=None):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D "
                           "tensors")
    if input.shape[0] != other.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{input.shape[0]}] and "
                           f"src [{other.shape[0]}] to have the same number of elements, but got "
                           f"{input.shape[0]} and {other.shape[0]} elements respectively")
    return matmul(input, other, out=out)


def vdot(input, other):
    return dot(input.conj(), other)


def inner(input, other):
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    return matmul(input, other.transpose(-1, -2) if other.ndim > 1 else other) \
        if other.ndim <= 2 else einsum("...i,...ji->...j", input, other)


def outer(input, vec2):
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError("outer: expected 1-D tensors")
    return input.unsqueeze(-1) * vec2.unsqueeze(0)


ger = outer


def addmm(input, mat1, mat2, *, beta=1, alpha=1, out=None):
    """``beta * input + alpha * (mat1 @ mat2)``."""
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


_ = promote
