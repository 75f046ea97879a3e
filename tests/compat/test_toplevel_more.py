"""Top-level names in PyTorch's native argument order (recurrent cells, native norms, grid
samplers, restriding, sparse accessor copies): values and gradients against PyTorch."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _pair(shape, seed, grad=True):
    a = np.random.default_rng(seed).standard_normal(shape)
    return ember.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _close(e, t, tol=1e-10):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("cell,gates", [("lstm_cell", 4), ("gru_cell", 3),
                                        ("rnn_tanh_cell", 1), ("rnn_relu_cell", 1)])
def test_recurrent_cells_match_pytorch(cell, gates):
    x, tx = _pair((3, 5), 0)
    h, th = _pair((3, 4), 1)
    c, tc = _pair((3, 4), 2)
    wi, twi = _pair((gates * 4, 5), 3)
    wh, twh = _pair((gates * 4, 4), 4)
    bi, tbi = _pair((gates * 4,), 5)
    bh, tbh = _pair((gates * 4,), 6)
    hx, thx = ((h, c), (th, tc)) if cell == "lstm_cell" else (h, th)
    out = getattr(ember, cell)(x, hx, wi, wh, bi, bh)
    tout = getattr(torch, cell)(tx, thx, twi, twh, tbi, tbh)
    outs, touts = (out, tout) if cell == "lstm_cell" else ((out,), (tout,))
    for o, t in zip(outs, touts):
        _close(o, t)
    sum(o.sum() for o in outs).backward()
    sum(t.sum() for t in touts).backward()
    for e, t in ((x, tx), (wi, twi), (wh, twh), (bi, tbi), (h, th)):
        _close(e.grad, t.grad)


@pytest.mark.parametrize("training", [True, False])
def test_native_batch_norm_and_group_norm(training):
    x, tx = _pair((4, 3, 5, 5), 0)
    w, tw = _pair((3,), 1)
    b, tb = _pair((3,), 2)
    rm, rv = ember.zeros(3, dtype=ember.float64), ember.ones(3, dtype=ember.float64)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    got = ember.native_batch_norm(x, w, b, rm, rv, training, 0.1, 1e-5)
    want = torch.native_batch_norm(tx, tw, tb, trm, trv, training, 0.1, 1e-5)
    for g, t in zip(got, want):
        assert tuple(g.shape) == tuple(t.shape)
        _close(g, t)
    _close(rm, trm)
    got = ember.native_group_norm(x, w, b, 4, 3, 25, 3, 1e-5)
    want = torch.native_group_norm(tx, tw, tb, 4, 3, 25, 3, 1e-5)
    for g, t in zip(got, want):
        _close(g, t)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_norm_except_dim(dim):
    v, tv = _pair((3, 4, 5), 0)
    _close(ember.norm_except_dim(v, 2, dim), torch.norm_except_dim(tv, 2, dim))


def test_embedding_renorm_():
    w, tw = _pair((6, 4), 0, grad=False)
    idx = ember.tensor([0, 2, 2, 5])
    ember.embedding_renorm_(w, idx, 1.0, 2.0)
    torch.embedding_renorm_(tw, torch.tensor([0, 2, 2, 5]), 1.0, 2.0)
    _close(w, tw, 1e-7)


@pytest.mark.parametrize("mode,pad", [(0, 0), (1, 1), (0, 2)])
def test_grid_sampler_2d_and_affine_grid_generator(mode, pad):
    x, tx = _pair((2, 3, 5, 6), 0)
    theta, ttheta = _pair((2, 2, 3), 1)
    grid = ember.affine_grid_generator(theta, (2, 3, 4, 4), False)
    tgrid = torch.affine_grid_generator(ttheta, (2, 3, 4, 4), False)
    _close(grid, tgrid)
    out = ember.grid_sampler_2d(x, grid, mode, pad, False)
    tout = torch.grid_sampler_2d(tx, tgrid, mode, pad, False)
    _close(out, tout)


def test_as_strided_forms():
    a = np.arange(12.0)
    e, t = ember.tensor(a), torch.tensor(a)
    _close(ember.as_strided_scatter(e, ember.ones(2, 2), (2, 2), (3, 1), 1),
           torch.as_strided_scatter(t, torch.ones(2, 2), (2, 2), (3, 1), 1))
    ember.as_strided_(e, (3, 3), (4, 1))
    torch.as_strided_(t, (3, 3), (4, 1))
    assert e.stride() == t.stride() and tuple(e.shape) == tuple(t.shape)
    _close(e, t)


def test_sparse_copies_and_smm():
    d = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    e, t = ember.tensor(d), torch.tensor(d)
    es, ts = e.to_sparse().coalesce(), t.to_sparse().coalesce()
    # PyTorch's *_copy kernels have no COO backend; the accessors are the reference there
    v = ember.values_copy(es)
    _close(v, ts.values())
    v.add_(1.0)  # a copy: the sparse tensor keeps its values
    _close(es.values(), ts.values())
    np.testing.assert_array_equal(ember.indices_copy(es).numpy(), ts.indices().numpy())
    ec, tc = e.to_sparse_csr(), t.to_sparse_csr()
    np.testing.assert_array_equal(ember.crow_indices_copy(ec).numpy(),
                                  torch.crow_indices_copy(tc).numpy())
    np.testing.assert_array_equal(ember.col_indices_copy(ec).numpy(),
                                  torch.col_indices_copy(tc).numpy())
    m = np.random.default_rng(0).standard_normal((3, 2))
    got, want = ember.smm(es, ember.tensor(m)), torch.smm(ts, torch.tensor(m))
    assert got.is_sparse and want.is_sparse
    _close(got.to_dense(), want.to_dense())


def test_binomial_statistics_and_future():
    ember.manual_seed(0)
    count = ember.full((20000,), 10.0)
    prob = ember.full((20000,), 0.3)
    draws = ember.binomial(count, prob)
    assert draws.dtype == ember.float32 or draws.dtype == count.dtype
    assert abs(float(draws.mean()) - 3.0) < 0.05 and float(draws.max()) <= 10
    assert abs(float(draws.var()) - 2.1) < 0.1
    assert ember.Future is ember.futures.Future
