"""Sparse arithmetic as graph-neural-network code uses it, against PyTorch: dense +/- sparse,
sparse +/- sparse, sparse * dense, sparse @ sparse; values, and gradients on the sparse
operand's pattern (where PyTorch defines them)."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

OPS = {
    "dense+sparse": lambda T, s1, s2, d: d + s1,
    "sparse+sparse": lambda T, s1, s2, d: s1 + s2,
    "sparse-sparse": lambda T, s1, s2, d: s1 - s2,
    "dense-sparse": lambda T, s1, s2, d: d - s1,
    "sparse*dense": lambda T, s1, s2, d: s1 * d,
    "sparse*scalar": lambda T, s1, s2, d: s1 * 2.5,
    "sparse@sparse": lambda T, s1, s2, d: s1 @ s2,
    "sparse.mm": lambda T, s1, s2, d: T.sparse.mm(s1, s2),
    "dense@sparse": lambda T, s1, s2, d: d @ s1,
}


def _mats(dtype):
    rng = np.random.default_rng(0)
    a, b, d = (rng.standard_normal((5, 5)) for _ in range(3))
    a[np.abs(a) < 0.6] = 0
    b[np.abs(b) < 0.6] = 0
    return a.astype(dtype), b.astype(dtype), d.astype(dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("name", list(OPS))
def test_sparse_ops_match_pytorch(name, dtype, tol):
    a, b, d = _mats(dtype)
    out = {}
    for T in (ember, torch):
        vals = T.tensor(a[a != 0], requires_grad=True)
        idx = T.tensor(np.stack(np.nonzero(a)))
        s1 = T.sparse_coo_tensor(idx, vals, (5, 5))
        s2 = T.tensor(b).to_sparse()
        r = OPS[name](T, s1, s2, T.tensor(d))
        sparse_out = r.layout != T.strided
        dense = r.to_dense() if sparse_out else r
        (dense * T.tensor(d)).sum().backward()
        out[T] = (sparse_out, dense.detach().numpy(), vals.grad.numpy())
    assert out[ember][0] == out[torch][0], "layout of the result"
    np.testing.assert_allclose(out[ember][1], out[torch][1], rtol=tol, atol=tol)
    np.testing.assert_allclose(out[ember][2], out[torch][2], rtol=tol * 10, atol=tol)


def test_sparse_add_errors():
    s = ember.eye(3).to_sparse()
    with pytest.raises(RuntimeError, match="sizes to match"):
        s + ember.eye(4).to_sparse()
    with pytest.raises(NotImplementedError, match="shape"):
        s * ember.ones(3)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_csr_basics_and_matmul_gradients(dtype, tol):
    a, _, d = _mats(dtype)
    out = {}
    for T in (ember, torch):
        x = T.tensor(a)
        csr = x.to_sparse_csr()
        assert csr.layout == T.sparse_csr and csr.is_sparse_csr and not x.is_sparse_csr
        crow, col = csr.crow_indices(), csr.col_indices()
        vals = T.tensor(csr.values().detach().numpy(), requires_grad=True)
        m = T.sparse_csr_tensor(crow, col, vals, (5, 5))
        y = m @ T.tensor(d)
        (y * y).sum().backward()
        out[T] = (crow.tolist(), col.tolist(), m.to_dense().detach().numpy(),
                  y.detach().numpy(), vals.grad.numpy())
    e, t = out[ember], out[torch]
    assert e[0] == t[0] and e[1] == t[1]
    for i in (2, 3, 4):
        np.testing.assert_allclose(e[i], t[i], rtol=tol * 10, atol=tol * 10)
    with pytest.raises(RuntimeError, match="crow_indices"):
        ember.sparse_csr_tensor(ember.tensor([1, 2]), ember.tensor([0]), ember.tensor([1.0]))
