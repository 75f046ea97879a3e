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


def _spd(m, a):
    """A symmetric positive-definite matrix built from ``a`` (differentiable)."""
    n = a.shape[-1]
    return a @ a.mT + n * m.eye(n, dtype=a.dtype)


def _sym(m, a):
    return a + a.mT


LINALG = [
    ("vector_norm", lambda m, a: m.linalg.vector_norm(a), [(3, 4)]),
    ("vector_norm_p1", lambda m, a: m.linalg.vector_norm(a, 1, dim=-1), [(3, 4)]),
    ("vector_norm_p3", lambda m, a: m.linalg.vector_norm(a, 3, dim=(0, 1), keepdim=True),
     [(3, 4)]),
    ("vector_norm_inf", lambda m, a: m.linalg.vector_norm(a, float("inf"), dim=0), [(3, 4)]),
    ("vector_norm_ninf", lambda m, a: m.linalg.vector_norm(a, -float("inf")), [(3, 4)]),
    ("vector_norm_0", lambda m, a: m.linalg.vector_norm(a, 0), [(3, 4)]),
    ("matrix_norm_fro", lambda m, a: m.linalg.matrix_norm(a), [(2, 3, 4)]),
    ("matrix_norm_nuc", lambda m, a: m.linalg.matrix_norm(a, "nuc"), [(3, 4)]),
    ("matrix_norm_2", lambda m, a: m.linalg.matrix_norm(a, 2), [(3, 4)]),
    ("matrix_norm_m2", lambda m, a: m.linalg.matrix_norm(a, -2), [(3, 4)]),
    ("matrix_norm_1", lambda m, a: m.linalg.matrix_norm(a, 1, keepdim=True), [(2, 3, 4)]),
    ("matrix_norm_inf", lambda m, a: m.linalg.matrix_norm(a, float("inf")), [(3, 4)]),
    ("matrix_norm_dims", lambda m, a: m.linalg.matrix_norm(a, -1, dim=(0, 2)), [(3, 2, 4)]),
    ("norm_default", lambda m, a: m.linalg.norm(a), [(3, 4)]),
    ("norm_dim", lambda m, a: m.linalg.norm(a, dim=1), [(3, 4)]),
    ("norm_ord_2d", lambda m, a: m.linalg.norm(a, 1), [(3, 4)]),
    ("norm_ord_1d", lambda m, a: m.linalg.norm(a, 3), [(4,)]),
    ("norm_fro", lambda m, a: m.linalg.norm(a, "fro", dim=(1, 2)), [(2, 3, 4)]),
    ("inv", lambda m, a: m.linalg.inv(_spd(m, a)), [(2, 3, 3)]),
    ("inverse", lambda m, a: m.inverse(_spd(m, a)), [(3, 3)]),
    ("det", lambda m, a: m.linalg.det(a), [(2, 3, 3)]),
    ("det_method", lambda m, a: a.det(), [(3, 3)]),
    ("slogdet", lambda m, a: m.linalg.slogdet(a), [(2, 3, 3)]),
    ("logdet", lambda m, a: m.logdet(_spd(m, a)), [(3, 3)]),
    ("solve", lambda m, a, b: m.linalg.solve(_spd(m, a), b), [(3, 3), (3, 2)]),
    ("solve_vec", lambda m, a, b: m.linalg.solve(_spd(m, a), b), [(2, 3, 3), (2, 3)]),
    ("solve_bcast", lambda m, a, b: m.linalg.solve(_spd(m, a), b), [(3, 3), (2, 3, 1)]),
    ("solve_right", lambda m, a, b: m.linalg.solve(_spd(m, a), b, left=False),
     [(3, 3), (2, 3)]),
    ("cholesky", lambda m, a: m.linalg.cholesky(_spd(m, a)), [(2, 3, 3)]),
    ("cholesky_upper", lambda m, a: m.linalg.cholesky(_spd(m, a), upper=True), [(3, 3)]),
    ("cholesky_old", lambda m, a: m.cholesky(_spd(m, a)), [(3, 3)]),
    ("svdvals", lambda m, a: m.linalg.svdvals(a), [(2, 4, 3)]),
    ("eigvalsh", lambda m, a: m.linalg.eigvalsh(_sym(m, a)), [(2, 3, 3)]),
    ("eigvalsh_U", lambda m, a: m.linalg.eigvalsh(a, "U"), [(3, 3)]),
    ("pinv_tall", lambda m, a: m.linalg.pinv(a), [(4, 3)]),
    ("pinv_wide", lambda m, a: m.linalg.pinv(a), [(2, 3, 5)]),
    ("pinverse", lambda m, a: m.pinverse(a), [(3, 3)]),
    ("matrix_power", lambda m, a: m.linalg.matrix_power(a, 3), [(2, 3, 3)]),
    ("matrix_power_0", lambda m, a: m.matrix_power(a, 0), [(3, 3)]),
    ("matrix_power_neg", lambda m, a: m.linalg.matrix_power(_spd(m, a), -2), [(3, 3)]),
    ("matrix_exp", lambda m, a: m.linalg.matrix_exp(a), [(2, 3, 3)]),
    ("matrix_exp_big", lambda m, a: m.matrix_exp(a * 3), [(3, 3)]),
    ("cross", lambda m, a, b: m.linalg.cross(a, b), [(4, 3), (4, 3)]),
    ("cross_bcast_dim", lambda m, a, b: m.linalg.cross(a, b, dim=0), [(3, 2), (3, 1)]),
    ("cross_top", lambda m, a, b: m.cross(a, b, dim=1), [(2, 3), (2, 3)]),
    ("tensordot", lambda m, a, b: m.tensordot(a, b), [(2, 3, 4), (3, 4, 5)]),
    ("tensordot_lists", lambda m, a, b: m.tensordot(a, b, ([0, 2], [1, 0])),
     [(2, 3, 4), (4, 2, 5)]),
    ("tensordot_0", lambda m, a, b: m.tensordot(a, b, 0), [(2,), (3,)]),
    ("kron", lambda m, a, b: m.kron(a, b), [(2, 3), (3, 2)]),
    ("kron_mixed", lambda m, a, b: m.kron(a, b), [(2,), (2, 3)]),
    ("multi_dot", lambda m, a, b, c: m.linalg.multi_dot([a, b, c]), [(3,), (3, 4), (4, 2)]),
    ("multi_dot_vecs", lambda m, a, b, c: m.linalg.multi_dot([a, b, c]), [(3,), (3, 4), (4,)]),
    ("vecdot", lambda m, a, b: m.linalg.vecdot(a, b), [(2, 3), (3,)]),
    ("vecdot_dim", lambda m, a, b: m.linalg.vecdot(a, b, dim=0), [(3, 2), (3, 2)]),
    ("baddbmm", lambda m, c, a, b: m.baddbmm(c, a, b, beta=0.5, alpha=2), [(3, 2), (2, 3, 4),
                                                                           (2, 4, 2)]),
    ("addbmm", lambda m, c, a, b: c.addbmm(a, b), [(3, 2), (2, 3, 4), (2, 4, 2)]),
    ("addmv", lambda m, c, a, b: m.addmv(c, a, b, alpha=-1), [(3,), (3, 4), (4,)]),
    ("addr", lambda m, c, a, b: m.addr(c, a, b, beta=2), [(3, 4), (3,), (4,)]),
    ("chain_matmul", lambda m, a, b, c: m.chain_matmul(a, b, c), [(2, 3), (3, 4), (4, 2)]),
    ("trace", lambda m, a: m.trace(a), [(3, 4)]),
    ("cdist", lambda m, a, b: m.cdist(a, b), [(4, 3), (5, 3)]),
    ("cdist_p1", lambda m, a, b: m.cdist(a, b, p=1), [(2, 4, 3), (2, 5, 3)]),
    ("cdist_inf", lambda m, a, b: m.cdist(a, b, p=float("inf")), [(4, 3), (2, 3)]),
    ("cdist_p3", lambda m, a, b: m.cdist(a, b, p=3.0), [(4, 3), (2, 3)]),
    ("lstsq", lambda m, a, b: m.linalg.lstsq(a, b).solution, [(5, 3), (5, 2)]),
    ("lstsq_batch", lambda m, a, b: m.linalg.lstsq(a, b).solution, [(2, 4, 3), (2, 4, 1)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", LINALG, ids=[c[0] for c in LINALG])
def test_linalg(name, fn, shapes, dtype):
    tol = {} if dtype == np.float64 else {"atol": 1e-4, "rtol": 1e-3}
    check(fn, shapes, dtype, **tol)


# decompositions whose factors are defined up to signs: compare sign-invariant functions
DECOMP = [
    ("qr", lambda m, a: [x.abs() for x in m.linalg.qr(a)], [(4, 3)]),
    ("qr_loss", lambda m, a: _qr_loss(m.linalg.qr(a)), [(2, 4, 3)]),
    ("qr_square", lambda m, a: _qr_loss(m.linalg.qr(a)), [(3, 3)]),
    ("qr_wide", lambda m, a: _qr_loss(m.linalg.qr(a)), [(3, 5)]),
    ("qr_old", lambda m, a: _qr_loss(m.qr(a)), [(4, 3)]),
    ("svd", lambda m, a: _svd_loss(m.linalg.svd(a, full_matrices=False)), [(4, 3)]),
    ("svd_wide", lambda m, a: _svd_loss(m.linalg.svd(a, full_matrices=False)), [(2, 3, 5)]),
    ("svd_square", lambda m, a: _svd_loss(m.linalg.svd(a)), [(3, 3)]),
    ("svd_full_tall", lambda m, a: _svd_loss(m.linalg.svd(a)), [(4, 3)]),
    ("svd_old", lambda m, a: _svd_loss_old(m.svd(a)), [(4, 3)]),
    ("eigh", lambda m, a: _eigh_loss(m.linalg.eigh(_sym(m, a))), [(2, 4, 4)]),
]


def _qr_loss(qr):
    q, r = qr
    return (q * q).sum(-1), (r * r).sum(-2), q[..., 0, :1] * r[..., 0, :]


def _svd_loss(usv):
    u, s, vh = usv
    return (u * u * 1.5).sum(-1), s, (vh * vh).sum(-2), u[..., :1] * vh[..., :1, :]


def _svd_loss_old(usv):
    u, s, v = usv
    return (u * u).sum(-1), s, (v * v).sum(-1)


def _eigh_loss(wv):
    w, v = wv
    return w, (v * v * 2).sum(-1), v[..., :1] * v[..., :1].mT


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", DECOMP, ids=[c[0] for c in DECOMP])
def test_decompositions(name, fn, shapes, dtype):
    tol = {} if dtype == np.float64 else {"atol": 1e-4, "rtol": 1e-3}
    check(fn, shapes, dtype, **tol)


@pytest.mark.parametrize("name", ["qr_loss", "qr_wide", "svd", "svd_wide", "eigh"])
def test_decomposition_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in DECOMP}[name]
    gradcheck(lambda m, a: m.cat([o.reshape(-1) for o in fn(m, a)]), shapes)


@pytest.mark.parametrize("name", ["inv", "det", "slogdet", "solve", "cholesky", "pinv_wide",
                                  "matrix_exp", "vector_norm_p3", "matrix_norm_nuc", "cdist"])
def test_linalg_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in LINALG}[name]
    gradcheck(lambda m, *a: _cat(m, fn(m, *a)), shapes, gradgrad=name in ("inv", "det"))


def _cat(m, out):
    return out if isinstance(out, ember.Tensor) else m.cat([o.reshape(-1) for o in out])


def test_decomposition_values():
    a = np.random.default_rng(0).normal(size=(2, 4, 3))
    t = ember.tensor(a)
    q, r = ember.linalg.qr(t)
    np.testing.assert_allclose((q @ r).numpy(), a, atol=1e-12)
    u, s, vh = ember.linalg.svd(t)
    assert u.shape == (2, 4, 4) and vh.shape == (2, 3, 3)
    np.testing.assert_allclose((u[..., :3] * s.unsqueeze(-2) @ vh).numpy(), a, atol=1e-12)
    q, r = ember.linalg.qr(t, mode="complete")
    assert q.shape == (2, 4, 4)
    assert ember.linalg.qr(t, mode="r").Q.numel() == 0
    w, v = ember.linalg.eigh(ember.tensor(a[0].T @ a[0]))
    np.testing.assert_allclose((v * w @ v.mT).numpy(), a[0].T @ a[0], atol=1e-12)
    u, s, v = ember.svd(t, compute_uv=False)
    assert float(u.abs().sum()) == 0 and s.shape == (2, 3)


def test_lstsq_and_rank():
    def fn(m, a, b):
        r = m.linalg.lstsq(a, b, driver="gelsd")
        return r.solution, r.residuals, r.rank, r.singular_values
    check(fn, [(5, 3), (5, 2)], grad=False)
    check(lambda m, a, b: m.linalg.lstsq(a, b)[2], [(5, 3), (5, 2)], grad=False)
    check(lambda m, a: m.linalg.matrix_rank(a), [(2, 4, 3)], grad=False)
    check(lambda m, a: m.linalg.matrix_rank(a @ a.mT), [(4, 2)], grad=False)
    check(lambda m, a: m.linalg.matrix_rank(a @ a.mT, hermitian=True), [(4, 2)], grad=False)
    check(lambda m, a: m.linalg.matrix_rank(a, atol=1.0, rtol=0.0), [(4, 3)], grad=False)


def test_linalg_errors():
    with pytest.raises(RuntimeError, match="square"):
        ember.linalg.inv(ember.zeros(2, 3))
    with pytest.raises(RuntimeError, match="singular"):
        ember.linalg.inv(ember.zeros(2, 2))
    with pytest.raises(RuntimeError, match="positive-definite"):
        ember.linalg.cholesky(-ember.eye(2))
    with pytest.raises(RuntimeError):
        ember.linalg.cross(ember.zeros(2, 4), ember.zeros(2, 4))
    with pytest.raises(RuntimeError):
        ember.linalg.qr(ember.zeros(3, 2, requires_grad=True), mode="r").R.sum().backward()


@pytest.mark.parametrize("name", ["inv", "det", "solve", "svdvals", "matrix_norm_nuc",
                                  "pinv_tall", "cholesky", "vector_norm_p3"])
def test_linalg_noncontig(name):
    fn, shapes = {c[0]: c[1:] for c in LINALG}[name]
    check(fn, shapes, noncontig=True)


@pytest.mark.parametrize("fn", [
    lambda m, a: m.linalg.vector_norm(a), lambda m, a: m.linalg.norm(a, 2),
    lambda m, a: m.linalg.det(a), lambda m, a: m.linalg.inv(a), lambda m, a: m.trace(a),
])
def test_linalg_edge_shapes(fn):
    """0-d vectors norms, 0x0 matrices (det 1, empty inverse), empty traces."""
    shape = (0, 0)
    if fn.__code__.co_names[-1] in ("vector_norm",):
        shape = ()
    check(fn, [shape])


def test_norm_at_zero_has_zero_grad():
    check(lambda m, a: m.linalg.vector_norm(a * 0), [(3,)])
    check(lambda m, a: m.cdist(a, a), [(3, 2)])


def _tri(m, a, upper):
    n = a.shape[-1]
    t = a.triu() if upper else a.tril()
    return t + 3 * m.eye(n, dtype=a.dtype)


MORE = [
    ("solve_triangular", lambda m, a, b: m.linalg.solve_triangular(_tri(m, a, True), b,
                                                                   upper=True), [(3, 3), (3, 2)]),
    ("solve_triangular_low_unit", lambda m, a, b: m.linalg.solve_triangular(
        a, b, upper=False, unitriangular=True), [(2, 3, 3), (3, 2)]),
    ("solve_triangular_right", lambda m, a, b: m.linalg.solve_triangular(
        _tri(m, a, False), b, upper=False, left=False), [(3, 3), (2, 3)]),
    ("cholesky_solve", lambda m, a, b: m.cholesky_solve(b, m.linalg.cholesky(_spd(m, a))),
     [(3, 3), (3, 2)]),
    ("cholesky_solve_upper", lambda m, a, b: m.cholesky_solve(
        b, m.linalg.cholesky(_spd(m, a), upper=True), upper=True), [(3, 3), (3, 2)]),
    ("cholesky_inverse", lambda m, a: m.cholesky_inverse(m.linalg.cholesky(_spd(m, a))),
     [(3, 3)]),
    ("inv_ex", lambda m, a: m.linalg.inv_ex(_spd(m, a)), [(2, 3, 3)]),
    ("cholesky_ex", lambda m, a: m.linalg.cholesky_ex(_spd(m, a)), [(3, 3)]),
    ("solve_ex", lambda m, a, b: m.linalg.solve_ex(_spd(m, a), b), [(3, 3), (3,)]),
    # eigen-decomposition of a non-symmetric matrix: compare order- and phase-free quantities
    ("eigvals", lambda m, a: _eig_sorted(m, m.linalg.eigvals(a)), [(3, 3)]),
    ("eig", lambda m, a: _eig_loss(m, m.linalg.eig(a)), [(2, 3, 3)]),
]


def _eig_sorted(m, w):
    """Eigenvalues in a fixed order (by real part, then imaginary), as real pairs."""
    key = w.real * 1000 + w.imag
    idx = key.argsort(-1)
    return m.stack([w.real.gather(-1, idx), w.imag.gather(-1, idx)], -1)


def _eig_loss(m, wv):
    w, v = wv
    # |v|^2 is phase-free; pair each eigenvector with its eigenvalue before sorting
    vabs = (v * v.conj()).real
    key = w.real * 1000 + w.imag
    idx = key.argsort(-1)
    return (_eig_sorted(m, w), vabs.gather(-1, idx.unsqueeze(-2).expand(vabs.shape)))


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", MORE, ids=[c[0] for c in MORE])
def test_linalg_more(name, fn, shapes, dtype):
    tol = {} if dtype == np.float64 else {"atol": 1e-4, "rtol": 1e-3}
    check(fn, shapes, dtype, **tol)


@pytest.mark.parametrize("name", ["solve_triangular_low_unit", "cholesky_solve", "eig"])
def test_linalg_more_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in MORE}[name]
    gradcheck(lambda m, *a: _cat(m, fn(m, *a)), shapes)


def test_ex_info_and_errors():
    a = np.stack([np.eye(3) * 2, -np.eye(3), np.diag([1.0, 0.0, 1.0])])
    check(lambda m, a: m.linalg.cholesky_ex(a).info, None, arrays=[a], grad=False)
    check(lambda m, a: m.linalg.inv_ex(a).info, None, arrays=[a], grad=False)
    check(lambda m, a: m.linalg.inv_ex(a).inverse[:2], None, arrays=[a], grad=False)
    with pytest.raises(RuntimeError):
        ember.linalg.cholesky_ex(ember.tensor(a), check_errors=True)


LU = [
    ("lu_square", lambda m, a: m.linalg.lu(a), [(3, 3)]),
    ("lu_tall", lambda m, a: m.linalg.lu(a), [(2, 5, 3)]),
    ("lu_wide", lambda m, a: m.linalg.lu(a), [(3, 5)]),
    ("lu_factor", lambda m, a: m.linalg.lu_factor(a), [(2, 3, 3)]),
    ("lu_factor_wide", lambda m, a: m.linalg.lu_factor(a), [(3, 4)]),
    ("lu_factor_ex", lambda m, a: m.linalg.lu_factor_ex(a), [(4, 3)]),
    ("lu_unpack", lambda m, a: m.lu_unpack(*m.linalg.lu_factor(a)), [(2, 4, 3)]),
    ("lu_solve", lambda m, a, b: m.linalg.lu_solve(*m.linalg.lu_factor(a), b), [(3, 3), (3, 2)]),
    ("lu_solve_adj", lambda m, a, b: m.linalg.lu_solve(*m.linalg.lu_factor(a), b, adjoint=True),
     [(2, 3, 3), (2, 3, 1)]),
    ("lu_solve_right", lambda m, a, b: m.linalg.lu_solve(*m.linalg.lu_factor(a), b, left=False),
     [(3, 3), (2, 3)]),
    ("lu_old", lambda m, a: m.lu(a, get_infos=True), [(3, 3)]),
    ("lu_solve_old", lambda m, a, b: m.lu_solve(b, *m.lu(a)), [(3, 3), (3, 2)]),
    ("triangular_solve", lambda m, a, b: m.triangular_solve(b, _tri(m, a, True)), [(3, 3),
                                                                                   (3, 2)]),
    ("triangular_solve_t", lambda m, a, b: m.triangular_solve(b, _tri(m, a, False), False,
                                                              transpose=True), [(3, 3), (3, 2)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", LU, ids=[c[0] for c in LU])
def test_lu(name, fn, shapes, dtype):
    tol = {} if dtype == np.float64 else {"atol": 1e-4, "rtol": 1e-3}
    check(fn, shapes, dtype, **tol)


@pytest.mark.parametrize("name", ["lu_square", "lu_tall", "lu_wide", "lu_solve"])
def test_lu_gradcheck(name):
    fn, shapes = {c[0]: c[1:] for c in LU}[name]
    gradcheck(lambda m, *a: _cat(m, fn(m, *a)[1:] if name.startswith("lu_") and
                                 name != "lu_solve" else fn(m, *a)), shapes)


INPLACE_PRODUCTS = [
    ("addmm_", lambda m, c, a, b: c.addmm_(a, b, beta=0.5), [(3, 2), (3, 4), (4, 2)]),
    ("addmv_", lambda m, c, a, b: c.addmv_(a, b, alpha=2), [(3,), (3, 4), (4,)]),
    ("addr_", lambda m, c, a, b: c.addr_(a, b), [(3, 4), (3,), (4,)]),
    ("baddbmm_", lambda m, c, a, b: c.baddbmm_(a, b), [(2, 3, 2), (2, 3, 4), (2, 4, 2)]),
    ("addbmm_", lambda m, c, a, b: c.addbmm_(a, b), [(3, 2), (2, 3, 4), (2, 4, 2)]),
]


@pytest.mark.parametrize("name,fn,shapes", INPLACE_PRODUCTS, ids=[c[0] for c in INPLACE_PRODUCTS])
def test_inplace_products(name, fn, shapes):
    def run(m, c, *rest):
        out = c * 1
        assert fn(m, out, *rest) is out
        return out
    check(run, shapes)


@pytest.mark.parametrize("shapes", [[(2, 3, 0), (0, 2)], [(2, 0, 3), (3, 4)], [(5, 3), (3, 0)]])
def test_matmul_empty_batches(shapes):
    check(lambda m, a, b: a @ b, shapes)


EXTRA = [
    ("cond", lambda m, a: m.linalg.cond(a), [(2, 3, 3)]),
    ("cond_m2", lambda m, a: m.linalg.cond(a, -2), [(4, 3)]),
    ("cond_fro", lambda m, a: m.linalg.cond(_spd(m, a), "fro"), [(3, 3)]),
    ("cond_inf", lambda m, a: m.linalg.cond(_spd(m, a), float("inf")), [(3, 3)]),
    ("linalg_vander", lambda m, a: m.linalg.vander(a), [(2, 4)]),
    ("linalg_vander_N", lambda m, a: m.linalg.vander(a, N=2), [(3,)]),
    ("vander", lambda m, a: m.vander(a), [(3,)]),
    ("vander_inc", lambda m, a: m.vander(a, 5, increasing=True), [(3,)]),
    ("tensorinv", lambda m, a: m.linalg.tensorinv(a.reshape(4, 2, 2) + 3 * m.eye(4).to(
        a.dtype).reshape(4, 2, 2), ind=1), [(4, 4)]),
    ("tensorsolve", lambda m, a, b: m.linalg.tensorsolve(
        a.reshape(2, 3, 6) + 4 * m.eye(6).to(a.dtype).reshape(2, 3, 6), b), [(6, 6), (2, 3)]),
    ("tensorsolve_dims", lambda m, a, b: m.linalg.tensorsolve(
        a.reshape(6, 2, 3) + 4 * m.eye(6).to(a.dtype).reshape(6, 2, 3), b, dims=(0,)),
     [(6, 6), (2, 3)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", EXTRA, ids=[c[0] for c in EXTRA])
def test_linalg_extra(name, fn, shapes, dtype):
    tol = {} if dtype == np.float64 else {"atol": 1e-4, "rtol": 1e-3}
    # PyTorch's own backward raises for these (an in-place op on a saved tensor): values only
    grad = name not in ("cond_fro", "cond_inf", "vander", "vander_inc")
    check(fn, shapes, dtype, low=0.5, grad=grad, **tol)
    if not grad:
        gradcheck(fn, shapes, low=0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(atol=0.1), dict(atol=1e-2, rtol=0.5), dict(atol=0.0),
                                dict(rtol=0.3)])
def test_pinv_tolerances_match_torch(dtype, kw):
    """An absolute cutoff (alone it sets rtol to zero) and a relative one, values and
    gradients; one batch entry has a singular value below the cutoff."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5, 4)).astype(dtype)
    a[1, :, 3] = a[1, :, 0] * 1e-3
    ta, ea = torch.tensor(a, requires_grad=True), ember.tensor(a, requires_grad=True)
    tp, ep = torch.linalg.pinv(ta, **kw), ember.linalg.pinv(ea, **kw)
    tp.sum().backward()
    ep.sum().backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ep.detach().numpy(), tp.detach().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(ea.grad.numpy(), ta.grad.numpy(), atol=10 * tol, rtol=10 * tol)


def test_pinv_tensor_tolerances_per_batch_entry():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4, 4))
    at, rt = np.array([0.1, 5.0, 0.0]), np.array([0.0, 0.0, 0.2])
    want = torch.linalg.pinv(torch.tensor(a), atol=torch.tensor(at), rtol=torch.tensor(rt))
    got = ember.linalg.pinv(ember.tensor(a), atol=ember.tensor(at), rtol=ember.tensor(rt))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12)
    # on meta only the shape (the cutoff's values change no size), as PyTorch's
    m = ember.linalg.pinv(ember.empty(3, 4, 5, device="meta"), atol=ember.empty(3, device="meta"))
    assert m.is_meta and tuple(m.shape) == (3, 5, 4)
