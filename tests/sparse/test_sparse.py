"""Sparse COO tensors: construction, coalesce/to_dense/to_sparse, products and gradients
against PyTorch, sparse sum/softmax, and a small graph convolution network that trains."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _random_coo(m, k, nnz, seed, dup=True):
    """Indices with duplicates and at least one empty row (row 0), plus float64 values."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, m, nnz)
    cols = rng.integers(0, k, nnz)
    if dup:
        rows[-1], cols[-1] = rows[0], cols[0]
    return np.stack([rows, cols]), rng.standard_normal(nnz)


def _pair(idx, vals, size, requires_grad=False):
    e = ember.sparse_coo_tensor(ember.tensor(idx), ember.tensor(vals), size,
                                requires_grad=requires_grad)
    t = torch.sparse_coo_tensor(torch.tensor(idx), torch.tensor(vals), size,
                                requires_grad=requires_grad)
    return e, t


def test_metadata_and_repr():
    e, t = _pair(np.array([[0, 1, 1], [2, 0, 2]]), np.array([3.0, 4.0, 5.0]), (2, 3))
    assert e.is_sparse and e.layout is ember.sparse_coo
    assert tuple(e.shape) == tuple(t.shape) and e._nnz() == t._nnz() == 3
    assert e.sparse_dim() == 2 and e.dense_dim() == 0 and not e.is_coalesced()
    assert repr(e) == repr(t).replace("torch.", "ember.")
    f = ember.sparse_coo_tensor(ember.tensor([[0, 1]]), ember.ones(2, 2), (3, 2))
    g = torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.ones(2, 2), (3, 2))
    assert repr(f) == repr(g).replace("torch.", "ember.")
    assert f.dense_dim() == 1 and f.sparse_dim() == 1


def test_errors():
    e = ember.sparse_coo_tensor(ember.tensor([[0, 1, 1], [2, 0, 2]]), ember.ones(3), (2, 3))
    with pytest.raises(RuntimeError, match="uncoalesced"):
        e.values()
    with pytest.raises(NotImplementedError, match="sparse"):
        e.exp()
    assert e.to_sparse_csr().layout == ember.sparse_csr  # CSR: tests/sparse/test_compat_*
    assert e.to_sparse_bsc((1, 1)).layout == ember.sparse_bsc  # BSC: tests/sparse/test_csc_bsr
    with pytest.raises(RuntimeError, match="divisible"):
        ember.ones(2, 2).to_sparse_bsc((3, 1))
    with pytest.raises(RuntimeError, match="inconsistent"):
        ember.sparse_coo_tensor(ember.tensor([[0, 5]]), ember.ones(2), (3,))
    with pytest.raises(RuntimeError, match="same nnz"):
        ember.sparse_coo_tensor(ember.tensor([[0, 1]]), ember.ones(3), (3,))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        e @ ember.ones(4, 2)


def test_coalesce_to_dense_round_trips():
    idx, vals = _random_coo(5, 4, 9, 0)
    e, t = _pair(idx, vals, (5, 4))
    ec, tc = e.coalesce(), t.coalesce()
    assert ec.is_coalesced()
    np.testing.assert_array_equal(ec.indices().numpy(), tc.indices().numpy())
    np.testing.assert_allclose(ec.values().numpy(), tc.values().numpy())
    np.testing.assert_allclose(e.to_dense().numpy(), t.to_dense().numpy())
    back = e.to_dense().to_sparse()
    np.testing.assert_array_equal(back.indices().numpy(), tc.indices().numpy())
    np.testing.assert_allclose(back.to_dense().numpy(), t.to_dense().numpy())
    d = torch.tensor([[[0.0, 1.0], [0.0, 0.0]], [[2.0, 0.0], [3.0, 4.0]]])
    hy_t, hy_e = d.to_sparse(2), ember.tensor(d.numpy()).to_sparse(2)
    np.testing.assert_array_equal(hy_e.indices().numpy(), hy_t.indices().numpy())
    np.testing.assert_allclose(hy_e.values().numpy(), hy_t.values().numpy())
    np.testing.assert_allclose(hy_e.to_dense().numpy(), d.numpy())


@pytest.mark.parametrize("op", ["mm", "sparse.mm", "spmm", "matmul"])
def test_spmm_values_and_grads(op):
    idx, vals = _random_coo(6, 5, 12, 1)
    rng = np.random.default_rng(2)
    dense = rng.standard_normal((5, 3))
    out = {}
    for lib in (ember, torch):
        v = lib.tensor(vals, requires_grad=True)
        b = lib.tensor(dense, requires_grad=True)
        s = lib.sparse_coo_tensor(lib.tensor(idx), v, (6, 5))
        f = {"mm": lambda: lib.mm(s, b), "sparse.mm": lambda: lib.sparse.mm(s, b),
             "spmm": lambda: lib.spmm(s, b), "matmul": lambda: s @ b}[op]
        y = f()
        (y * y).sum().backward()
        out[lib] = (y.detach().numpy(), v.grad.numpy(), b.grad.numpy())
    for a, b in zip(out[ember], out[torch]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_sparse_leaf_grad_and_vector_product():
    idx, vals = _random_coo(4, 4, 7, 3)
    e, t = _pair(idx, vals, (4, 4), requires_grad=True)
    x = np.arange(4.0)
    (ember.sparse.mm(e, ember.tensor(x).reshape(4, 1)) ** 2).sum().backward()
    (torch.sparse.mm(t, torch.tensor(x).reshape(4, 1)) ** 2).sum().backward()
    np.testing.assert_allclose(e.grad.to_dense().numpy(), t.grad.to_dense().numpy())
    np.testing.assert_allclose((e @ ember.tensor(x)).detach().numpy(),
                               (t @ torch.tensor(x)).detach().numpy())
    np.testing.assert_allclose((ember.tensor(x) @ e).detach().numpy(),
                               (torch.tensor(x) @ t).detach().numpy())


def test_to_dense_and_to_sparse_grads():
    idx, vals = _random_coo(3, 3, 5, 4)
    w = np.random.default_rng(5).standard_normal((3, 3))
    grads = {}
    for lib in (ember, torch):
        v = lib.tensor(vals, requires_grad=True)
        d = lib.tensor(w, requires_grad=True)
        s = lib.sparse_coo_tensor(lib.tensor(idx), v, (3, 3))
        (s.to_dense() * d).sum().backward()
        (d.to_sparse().to_dense() ** 2).sum().backward()
        grads[lib] = (v.grad.numpy(), d.grad.numpy())
    for a, b in zip(grads[ember], grads[torch]):
        np.testing.assert_allclose(a, b)


def test_sparse_sum_and_softmax():
    idx, vals = _random_coo(4, 5, 8, 6)
    e, t = _pair(idx, vals, (4, 5))
    np.testing.assert_allclose(ember.sparse.sum(e).numpy(), torch.sparse.sum(t).numpy())
    for dim in (0, 1, (0, 1)):
        a, b = ember.sparse.sum(e, dim), torch.sparse.sum(t, dim)
        a = a.to_dense() if a.is_sparse else a
        b = b.to_dense() if b.is_sparse else b
        np.testing.assert_allclose(a.numpy(), b.numpy())
    for dim in (0, 1):
        a = ember.sparse.softmax(e, dim).to_dense().numpy()
        b = torch.sparse.softmax(t, dim).to_dense().numpy()
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_gcn_trains_on_synthetic_graph():
    """Two communities, features weakly informative; a 2-layer GCN over the normalised
    adjacency D^-1/2 (A + I) D^-1/2 learns the labels."""
    ember.manual_seed(0)
    rng = np.random.default_rng(0)
    n, per = 40, 20
    labels = np.repeat([0, 1], per)
    edges = set()
    for i in range(n):
        for j in range(i + 1, n):
            p = 0.3 if labels[i] == labels[j] else 0.02
            if rng.random() < p:
                edges.add((i, j))
                edges.add((j, i))
    edges |= {(i, i) for i in range(n)}
    src, dst = np.array(sorted(edges)).T
    deg = np.bincount(src, minlength=n).astype(np.float32)
    norm = (deg[src] ** -0.5 * deg[dst] ** -0.5).astype(np.float32)
    adj = ember.sparse_coo_tensor(ember.tensor(np.stack([src, dst])), ember.tensor(norm), (n, n))
    feats = ember.tensor((rng.standard_normal((n, 8)) + 0.3 * labels[:, None]).astype(np.float32))
    y = ember.tensor(labels)
    train = np.zeros(n, bool)
    train[[0, 1, 2, per, per + 1, per + 2]] = True
    train_idx = ember.tensor(np.nonzero(train)[0])

    lin1, lin2 = ember.nn.Linear(8, 16), ember.nn.Linear(16, 2)
    opt = ember.optim.Adam(list(lin1.parameters()) + list(lin2.parameters()), lr=0.05)
    losses = []
    for _ in range(60):
        h = ember.relu(adj @ lin1(feats))
        logits = adj @ lin2(h)
        loss = ember.nn.functional.cross_entropy(logits[train_idx], y[train_idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    acc = (logits.argmax(1) == y).float().mean().item()
    assert losses[-1] < 0.5 * losses[0]
    assert acc > 0.75
