"""Parity of products (matmul family, einsum) and ember.linalg with PyTorch."""

import numpy as np
import pytest

from .helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

F = [np.float32, np.float64]

PRODUCTS = [
    ("mm", lambda m, a, b: a @ b, [(3, 4), (4, 5)]),
    ("vec_vec", lambda m, a, b: m.matmul(a, b), [(4,), (4,)]),
    ("vec_mat", lambda m, a, b: m.matmul(a, b), [(4,), (4, 5)]),
    ("mat_vec", lambda m, a, b: m.matmul(a, b), [(3, 4), (4,)]),
    ("vec_batch", lambda m, a, b: m.matmul(a, b), [(4,), (2, 4, 5)]),
    ("batch_vec", lambda m, a, b: m.matmul(a, b), [(2, 3, 4), (4,)]),
    ("batch_bcast", lambda m, a, b: m.matmul(a, b), [(2, 1, 3, 4), (3, 4, 2)]),
    ("batch_mat", lambda m, a, b: m.matmul(a, b), [(2, 3, 4), (4, 2)]),
    ("empty_k", lambda m, a, b: a @ b, [(3, 0), (0, 2)]),
    ("mm_fn", lambda m, a, b: m.mm(a, b), [(3, 4), (4, 2)]),
    ("bmm", lambda m, a, b: m.bmm(a, b), [(2, 3, 4), (2, 4, 2)]),
    ("mv", lambda m, a, b: m.mv(a, b), [(3, 4), (4,)]),
    ("dot", lambda m, a, b: m.dot(a, b), [(4,), (4,)]),
    ("outer", lambda m, a, b: m.outer(a, b), [(3,), (4,)]),
    ("inner", lambda m, a, b: m.inner(a, b), [(2, 4), (3, 4)]),
    ("addmm", lambda m, c, a, b: m.addmm(c, a, b), [(3, 2), (3, 4), (4, 2)]),
    ("addmm_scaled", lambda m, c, a, b: m.addmm(c, a, b, beta=0.5, alpha=2.0),
     [(2,), (3, 4), (4, 2)]),
    ("einsum_mm", lambda m, a, b: m.einsum("ij,jk->ik", a, b), [(3, 4), (4, 2)]),
    ("einsum_batch", lambda m, a, b: m.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 2)]),
    ("einsum_trace", lambda m, a: m.einsum("ii", a), [(3, 3)]),
    ("einsum_diag", lambda m, a: m.einsum("ii->i", a), [(3, 3)]),
    ("einsum_implicit", lambda m, a, b: m.einsum("ij,jk", a, b), [(3, 4), (4, 2)]),
    ("einsum_ellipsis", lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
     [(2, 3, 4), (4, 2)]),
    ("einsum_sum", lambda m, a: m.einsum("ijk->j", a), [(2, 3, 4)]),
    ("einsum_outer", lambda m, a, b: m.einsum("i,j->ij", a, b), [(3,), (4,)]),
    ("einsum_three", lambda m, a, b, c: m.einsum("ij,jk,kl->il", a, b, c),
     [(2, 3), (3, 4), (4, 2)]),
    ("einsum_list", lambda m, a, b: m.einsum("i,i->", [a, b]), [(3,), (3,)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", PRODUCTS, ids=[c[0] for c in PRODUCTS])
def test_products(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


@pytest.mark.parametrize("name", ["mm", "batch_bcast", "bmm", "einsum_batch", "addmm"])
def test_products_noncontig(name):
    fn, shapes = {c[0]: c[1:] for c in PRODUCTS}[name]
    check(fn, shapes, noncontig=True)


@pytest.mark.parametrize("name", ["vec_batch", "batch_bcast", "einsum_diag", "einsum_three"])
def test_products_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in PRODUCTS}[name]
    gradcheck(fn, shapes, gradgrad=name == "batch_bcast")


def test_matmul_errors():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        ember.zeros(2, 3) @ ember.zeros(2, 3)
    with pytest.raises(RuntimeError, match="at least 1D"):
        ember.matmul(ember.zeros(()), ember.zeros(3))
    with pytest.raises(RuntimeError, match="same dtype"):
        ember.zeros(2, 3) @ ember.zeros(3, 2, dtype=ember.float64)


def test_int_matmul():
    check(lambda m, a, b: a @ b, [(2, 3), (3, 2)], dtype=np.int64, grad=False)
