"""CSC and BSR layouts against PyTorch: conversions from dense, COO and CSR, the compressed
index views, constructors, ``to_dense`` with gradients through ``values``, products."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _mat(dtype=np.float32):
    a = np.zeros((4, 6), dtype)
    a[0, 1], a[0, 4], a[2, 0], a[2, 5], a[3, 1], a[3, 3] = 1, 2, 3, 4, 5, 6
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_sparse_csc_matches_torch(dtype):
    a = _mat(dtype)
    for e, t in ((ember.tensor(a).to_sparse_csc(), torch.tensor(a).to_sparse_csc()),
                 (ember.tensor(a).to_sparse().to_sparse_csc(),
                  torch.tensor(a).to_sparse().to_sparse_csc()),
                 (ember.tensor(a).to_sparse_csr().to_sparse_csc(),
                  torch.tensor(a).to_sparse_csr().to_sparse_csc())):
        assert e.layout is ember.sparse_csc
        np.testing.assert_array_equal(e.ccol_indices().numpy(), t.ccol_indices().numpy())
        np.testing.assert_array_equal(e.row_indices().numpy(), t.row_indices().numpy())
        np.testing.assert_array_equal(e.values().numpy(), t.values().numpy())
        np.testing.assert_array_equal(e.to_dense().numpy(), a)
        np.testing.assert_array_equal(e.to_sparse_csr().crow_indices().numpy(),
                                      t.to_sparse_csr().crow_indices().numpy())
    x = np.arange(12, dtype=dtype).reshape(6, 2)
    np.testing.assert_allclose((e @ ember.tensor(x)).numpy(), a @ x)
    with pytest.raises(RuntimeError):
        e.crow_indices()


def test_sparse_csc_tensor_constructor_and_grad():
    t = torch.tensor(_mat()).to_sparse_csc()
    vals = ember.tensor(t.values().numpy(), requires_grad=True)
    e = ember.sparse_csc_tensor(ember.tensor(t.ccol_indices().numpy()),
                                ember.tensor(t.row_indices().numpy()), vals, (4, 6))
    np.testing.assert_array_equal(e.to_dense().detach().numpy(), _mat())
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    (e.to_dense() * ember.tensor(w)).sum().backward()
    tv = t.values().clone().requires_grad_(True)
    tt = torch.sparse_csc_tensor(t.ccol_indices(), t.row_indices(), tv, (4, 6))
    (tt.to_dense() * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(vals.grad.numpy(), tv.grad.numpy())
    with pytest.raises(RuntimeError):
        ember.sparse_csc_tensor([0, 2, 1], [0, 1], [1.0, 2.0])


@pytest.mark.parametrize("blocksize", [(2, 2), (2, 3), (1, 2)])
def test_to_sparse_bsr_matches_torch(blocksize):
    a = _mat()
    e, t = ember.tensor(a).to_sparse_bsr(blocksize), torch.tensor(a).to_sparse_bsr(blocksize)
    assert e.layout is ember.sparse_bsr and e._nnz() == t._nnz()
    np.testing.assert_array_equal(e.crow_indices().numpy(), t.crow_indices().numpy())
    np.testing.assert_array_equal(e.col_indices().numpy(), t.col_indices().numpy())
    np.testing.assert_array_equal(e.values().numpy(), t.values().numpy())
    np.testing.assert_array_equal(e.to_dense().numpy(), a)
    np.testing.assert_array_equal(ember.tensor(a).to_sparse().to_sparse_bsr(blocksize)
                                  .values().numpy(), t.values().numpy())
    with pytest.raises(RuntimeError):
        ember.tensor(a).to_sparse_bsr((3, 4))


def test_sparse_bsr_tensor_constructor_grad_and_matmul():
    t = torch.tensor(_mat()).to_sparse_bsr((2, 3))
    vals = ember.tensor(t.values().numpy(), requires_grad=True)
    e = ember.sparse_bsr_tensor(t.crow_indices().numpy(), t.col_indices().numpy(), vals,
                                (4, 6))
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = e @ ember.tensor(x)
    np.testing.assert_allclose(out.detach().numpy(), _mat() @ x)
    out.sum().backward()
    tv = t.values().clone().requires_grad_(True)
    tt = torch.sparse_bsr_tensor(t.crow_indices(), t.col_indices(), tv, (4, 6))
    (tt.to_dense() @ torch.tensor(x)).sum().backward()
    np.testing.assert_allclose(vals.grad.numpy(), tv.grad.numpy())
    with pytest.raises(RuntimeError):
        ember.sparse_bsr_tensor([0, 1], [0], ember.zeros(2, 2))
