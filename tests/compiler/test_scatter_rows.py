"""The embedding backward of compiled steps as one C loop (``compiler._scatter``): values
against PyTorch's accumulating ``index_put_`` and eager's ``IndexAddZeros``, bad indices,
and 20 training steps of an embedding model compiled == eager."""

import copy

import numpy as np
import pytest

import ember
from ember.autograd.graph import _ScratchCtx
from ember.compiler import _codegen, _scatter
from ember.ops.indexing import IndexAddZeros

torch = pytest.importorskip("torch")

needs_cc = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")
TOL = {ember.float32: 1e-5, ember.float64: 1e-10}


@needs_cc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("idx_shape,table", [((40,), (9, 5)), ((4, 30), (7, 3, 2)),
                                             ((1,), (1, 4)), ((0,), (3, 2))])
def test_scatter_rows_matches_pytorch_and_eager(dtype, idx_shape, table):
    rng = np.random.default_rng(0)
    idx = rng.integers(-table[0], table[0], idx_shape)  # repeats and negative indices
    g = rng.standard_normal(idx_shape + table[1:]).astype(dtype)
    got = _scatter.scatter_rows(g, table, (idx,))
    want = torch.zeros(table, dtype=getattr(torch, dtype)).index_put_(
        (torch.from_numpy(idx),), torch.from_numpy(g), accumulate=True).numpy()
    tol = 1e-6 if dtype == "float32" else 1e-14
    assert got.shape == table and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    eager = IndexAddZeros.forward(_ScratchCtx(), g, table, (idx,))
    # a row picked once is copied; a repeated row's sum may round differently in the last bit
    np.testing.assert_allclose(got, eager, rtol=tol, atol=tol)
    once = np.unique(idx % table[0], return_counts=True)
    for r in once[0][once[1] == 1]:
        np.testing.assert_array_equal(got[r], eager[r])


@needs_cc
def test_scatter_rows_int32_indices_and_strided_gradient():
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 6, 50).astype(np.int32)
    g = rng.standard_normal((50, 8)).astype(np.float32)[:, ::2]
    got = _scatter.scatter_rows(g, (6, 4), (idx,))
    np.testing.assert_allclose(got, IndexAddZeros.forward(_ScratchCtx(), g, (6, 4), (idx,)),
                               rtol=1e-6, atol=1e-6)


@needs_cc
def test_scatter_rows_declines_and_eager_raises():
    g = np.ones((3, 2), np.float32)
    assert _scatter.scatter_rows(g, (4, 2), (np.array([0, 4, 1]),)) is None  # out of range
    assert _scatter.scatter_rows(g, (4, 2), (np.array([0, -5, 1]),)) is None
    assert _scatter.scatter_rows(g, (4, 2), (slice(0, 3),)) is None          # basic index
    assert _scatter.scatter_rows(g.astype(np.int64), (4, 2), (np.arange(3),)) is None
    assert _scatter.scatter_rows(g, (4, 3), (np.arange(3),)) is None         # shapes differ
    with pytest.raises(IndexError):
        _scatter._IndexAddRows.forward(_ScratchCtx(), g, (4, 2), (np.array([0, 4, 1]),))


class _Emb(ember.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = ember.nn.Embedding(11, 6)
        self.pos = ember.nn.Embedding(5, 6)
        self.out = ember.nn.Linear(6, 11)

    def forward(self, idx):
        return self.out(self.tok(idx) + self.pos(ember.arange(idx.shape[1])))


@needs_cc
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_embedding_training_steps_match_eager(dtype):
    ember.manual_seed(2)
    ref = _Emb().to(dtype)
    model = copy.deepcopy(ref)

    def step_of(m):
        opt = ember.optim.AdamW(m.parameters(), lr=1e-2)

        def step(idx, tgt):
            loss = ember.nn.functional.cross_entropy(m(idx).reshape(-1, 11), tgt.reshape(-1))
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        return step
    eager, compiled = step_of(ref), ember.compile(step_of(model))
    gen = np.random.default_rng(4)
    for _ in range(20):
        idx = ember.tensor(gen.integers(0, 11, (3, 5)))  # tokens repeat within a batch
        tgt = ember.tensor(gen.integers(0, 11, (3, 5)))
        want, got = eager(idx, tgt).item(), compiled(idx, tgt).item()
        assert abs(got - want) <= TOL[dtype] * max(1.0, abs(want))
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=TOL[dtype],
                                   atol=TOL[dtype])
    kinds = [getattr(n.target, "__self__", None) for n in compiled.graphs[0].nodes]
    assert kinds.count(_scatter._IndexAddRows) == 2 and IndexAddZeros not in kinds


def test_numpy_backend_keeps_eager_scatter():
    ember.manual_seed(3)
    model = _Emb()
    opt = ember.optim.SGD(model.parameters(), lr=0.1)

    def step(idx):
        loss = model(idx).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    c = ember.compile(step, backend="numpy")
    idx = ember.tensor([[1, 2, 1, 3, 0]])
    c(idx)
    c(idx)
    kinds = [getattr(n.target, "__self__", None) for n in c.graphs[0].nodes]
    assert IndexAddZeros in kinds and _scatter._IndexAddRows not in kinds
