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


# ---------------------------------------------------------------------- BSC
def _pair_bsc(a, blocksize, via):
    """The same BSC tensor made by ember and PyTorch from ``a`` through ``via``."""
    e, t = ember.tensor(a), torch.tensor(a)
    if via == "coo":
        e, t = e.to_sparse(), t.to_sparse()
    elif via == "csr":
        e, t = e.to_sparse_csr(), t.to_sparse_csr()
    elif via == "bsr":
        e, t = e.to_sparse_bsr(blocksize), t.to_sparse_bsr(blocksize)
    return e.to_sparse_bsc(blocksize), t.to_sparse_bsc(blocksize)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocksize", [(2, 2), (2, 3), (1, 2), 2, (4, 6)])
@pytest.mark.parametrize("via", ["dense", "coo", "csr", "bsr"])
def test_to_sparse_bsc_matches_torch(dtype, blocksize, via):
    a = _mat(dtype)
    e, t = _pair_bsc(a, blocksize, via)
    assert e.layout is ember.sparse_bsc and e._nnz() == t._nnz()
    assert e.shape == tuple(t.shape) and e.dtype == getattr(ember, str(t.dtype)[6:])
    np.testing.assert_array_equal(e.ccol_indices().numpy(), t.ccol_indices().numpy())
    np.testing.assert_array_equal(e.row_indices().numpy(), t.row_indices().numpy())
    np.testing.assert_array_equal(e.values().numpy(), t.values().numpy())
    np.testing.assert_array_equal(e.to_dense().numpy(), a)
    # BSC -> BSR, COO, and the transpose (a BSR with the same indices, as PyTorch)
    r, tr = e.to_sparse_bsr(blocksize), t.to_sparse_bsr(blocksize)
    np.testing.assert_array_equal(r.crow_indices().numpy(), tr.crow_indices().numpy())
    np.testing.assert_array_equal(r.values().numpy(), tr.values().numpy())
    np.testing.assert_array_equal(e.to_sparse().to_dense().numpy(), a)
    et, tt = e.t(), t.t()
    assert et.layout is ember.sparse_bsr and tt.layout is torch.sparse_bsr
    np.testing.assert_array_equal(et.crow_indices().numpy(), tt.crow_indices().numpy())
    np.testing.assert_array_equal(et.values().numpy(), tt.values().numpy())
    np.testing.assert_array_equal(et.to_dense().numpy(), a.T)
    assert et.t().layout is ember.sparse_bsc
    assert e.to_sparse_bsc(blocksize) is e


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bsc_errors_match_torch():
    a = _mat()
    e, t = _pair_bsc(a, (2, 3), "dense")
    for name in ("crow_indices", "col_indices"):
        with pytest.raises(RuntimeError) as te:
            getattr(t, name)()
        with pytest.raises(RuntimeError) as ee:
            getattr(e, name)()
        assert str(ee.value) == str(te.value)
    for x in (ember.tensor(a), ember.tensor(a).to_sparse(), ember.tensor(a).to_sparse_bsr(2)):
        for name in ("ccol_indices", "row_indices"):
            tx = {ember.strided: torch.tensor(a), ember.sparse_coo: torch.tensor(a).to_sparse(),
                  ember.sparse_bsr: torch.tensor(a).to_sparse_bsr(2)}[x.layout]
            with pytest.raises(RuntimeError) as te:
                getattr(tx, name)()
            with pytest.raises(RuntimeError) as ee:
                getattr(x, name)()
            assert str(ee.value) == str(te.value)
    for bad in ((3, 3), (4, 4)):
        with pytest.raises(RuntimeError, match="divisible"):
            torch.tensor(a).to_sparse_bsc(bad)
        with pytest.raises(RuntimeError, match="divisible"):
            ember.tensor(a).to_sparse_bsc(bad)
    with pytest.raises(RuntimeError, match="blocksize changed"):
        t.to_sparse_bsc((1, 3))
    with pytest.raises(RuntimeError, match="blocksize changed"):
        e.to_sparse_bsc((1, 3))
    with pytest.raises(RuntimeError, match="SparseBsc"):
        e.to_sparse_csr()
    with pytest.raises(NotImplementedError, match="2-D"):
        ember.zeros(2, 4, 6).to_sparse_bsc((2, 3))
    # ember checks what PyTorch leaves unchecked by default (check_invariants=False)
    with pytest.raises(RuntimeError, match="ccol_indices"):
        ember.sparse_bsc_tensor([0, 2, 1], [0, 1], ember.ones(2, 2, 2))
    with pytest.raises(RuntimeError, match="row_indices"):
        ember.sparse_bsc_tensor([0, 1, 2], [0, 5], ember.ones(2, 2, 2), (4, 4))
    with pytest.raises(RuntimeError, match="values"):
        ember.sparse_bsc_tensor([0, 1, 2], [0, 1], ember.ones(3, 2, 2), (4, 4))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_bsc_tensor_constructor_grad_and_matmul(dtype):
    a = _mat(dtype)
    t = torch.tensor(a).to_sparse_bsc((2, 3))
    vals = ember.tensor(t.values().numpy(), requires_grad=True)
    e = ember.sparse_bsc_tensor(t.ccol_indices().numpy(), t.row_indices().numpy(), vals,
                                (4, 6))
    assert e.requires_grad and e.shape == (4, 6) and e.dtype == vals.dtype
    # size inferred from the indices (PyTorch 2.13's own inference fails for BSC)
    assert ember.sparse_bsc_tensor(t.ccol_indices().numpy(), t.row_indices().numpy(),
                                   vals).shape == (4, 6)
    x = np.arange(12, dtype=dtype).reshape(6, 2)
    y = np.arange(8, dtype=dtype).reshape(2, 4)
    w = np.linspace(-1, 1, 24).astype(dtype).reshape(4, 6)
    # PyTorch's CPU build has no BSC kernels for products: its dense form is the reference
    out = (e @ ember.tensor(x)).sum() + (ember.tensor(y) @ e).sum() + \
        (e.to_dense() * ember.tensor(w)).sum()
    # nor a BSC to_dense backward: the same matrix as the transpose of a BSR with the same
    # indices and transposed blocks gives the reference gradient
    tv = t.values().clone().requires_grad_(True)
    td = torch.sparse_bsr_tensor(t.ccol_indices(), t.row_indices(), tv.transpose(1, 2),
                                 (6, 4)).to_dense().t()
    np.testing.assert_array_equal(td.detach().numpy(), a)
    ref = (td @ torch.tensor(x)).sum() + (torch.tensor(y) @ td).sum() + (td * torch.tensor(w)).sum()
    np.testing.assert_allclose(out.item(), ref.item(), rtol=1e-6)
    out.backward()
    ref.backward()
    np.testing.assert_allclose(vals.grad.numpy(), tv.grad.numpy(), rtol=1e-6)
    assert vals.grad.dtype == vals.dtype
    np.testing.assert_allclose((e @ ember.tensor(x)).detach().numpy(), a @ x, rtol=1e-6)
    assert e.double().dtype == ember.float64 and e.double().layout is ember.sparse_bsc


def test_bsc_to_dense_grad_through_dense_source():
    # dense -> BSC -> dense keeps the graph back to the dense input, as PyTorch's
    a = _mat(np.float64)
    xe = ember.tensor(a, requires_grad=True)
    xt = torch.tensor(a, requires_grad=True)
    w = np.linspace(0.5, 2, 24).reshape(4, 6)
    (xe.to_sparse_bsc((2, 3)).to_dense() * ember.tensor(w)).sum().backward()
    (xt.to_sparse_bsc((2, 3)).to_dense() * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy())


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("layout", ["sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc"])
def test_sparse_compressed_tensor_matches_torch(layout):
    a = _mat()
    conv = {"sparse_csr": lambda x: x.to_sparse_csr(), "sparse_csc": lambda x: x.to_sparse_csc(),
            "sparse_bsr": lambda x: x.to_sparse_bsr((2, 3)),
            "sparse_bsc": lambda x: x.to_sparse_bsc((2, 3))}[layout]
    t = conv(torch.tensor(a))
    ci, pi = ((t.crow_indices(), t.col_indices()) if layout in ("sparse_csr", "sparse_bsr")
              else (t.ccol_indices(), t.row_indices()))
    e = ember.sparse_compressed_tensor(ci.numpy(), pi.numpy(), t.values().numpy(), (4, 6),
                                       layout=getattr(ember, layout))
    assert e.layout is getattr(ember, layout)
    np.testing.assert_array_equal(e.to_dense().numpy(), a)
    with pytest.raises(RuntimeError, match="layout"):
        torch.sparse_compressed_tensor(ci, pi, t.values(), (4, 6))
    with pytest.raises(RuntimeError, match="layout"):
        ember.sparse_compressed_tensor(ci.numpy(), pi.numpy(), t.values().numpy(), (4, 6))
