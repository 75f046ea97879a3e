"""Sparse gradients: ``Embedding(sparse=True)`` / ``EmbeddingBag(sparse=True)`` give sparse COO
weight gradients as PyTorch's, accumulated as PyTorch accumulates them, and the optimizers
that take them (SGD, Adagrad, SparseAdam) follow PyTorch's trajectories."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ember  # noqa: E402


def _embedding(mod, w, **kw):
    emb = mod.nn.Embedding(w.shape[0], w.shape[1], sparse=True, **kw).to(
        getattr(mod, w.dtype.name))
    with mod.no_grad():
        emb.weight.copy_(mod.from_numpy(w.copy()))
    return emb


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("shape", [(2, 3), (7,), (0,), (2, 2, 2)])
def test_embedding_sparse_grad_matches_pytorch(dtype, padding_idx, shape):
    rs = np.random.RandomState(1)
    w = rs.randn(9, 4).astype(dtype)
    idx = rs.randint(0, 9, shape)
    if idx.size:
        idx.reshape(-1)[0] = 8 if padding_idx == -1 else 2  # a padding row taking part
    gout = rs.randn(*shape, 4).astype(dtype)
    grads = []
    for mod in (ember, torch):
        emb = _embedding(mod, w, padding_idx=padding_idx)
        emb(mod.from_numpy(idx)).backward(mod.from_numpy(gout))
        g = emb.weight.grad
        assert g.is_sparse and tuple(g.shape) == w.shape
        assert g.dtype == getattr(mod, np.dtype(dtype).name)
        grads.append((g._indices().numpy(), g._values().numpy(), g.to_dense().numpy(),
                      g.is_coalesced()))
    (ie, ve, de, ce), (it, vt, dt, ct) = grads
    assert ce == ct
    np.testing.assert_array_equal(ie, it)  # the same entries, in the same order
    np.testing.assert_array_equal(ve, vt)
    np.testing.assert_array_equal(de, dt)


def test_accumulation_and_mixed_dense():
    w = np.random.RandomState(0).randn(6, 2).astype(np.float64)
    idx = np.array([[0, 2], [2, 5]])
    out = {}
    for mod in (ember, torch):
        emb = _embedding(mod, w)
        i = mod.from_numpy(idx)
        (emb(i).sum() + emb(i[:, :1]).sum() * 2).backward()  # two lookups in one graph
        g1 = emb.weight.grad
        assert g1.is_sparse
        dense1 = g1.coalesce().to_dense().numpy()
        emb(i).pow(2).sum().backward()  # a second backward adds to it (still sparse)
        g2 = emb.weight.grad
        assert g2.is_sparse
        dense2 = g2.to_dense().numpy()
        emb.weight.grad = None
        (emb(i).sum() + (emb.weight ** 2).sum()).backward()  # dense + sparse: dense
        g3 = emb.weight.grad
        assert not g3.is_sparse
        emb.weight.grad = None
        (gr,) = mod.autograd.grad(emb(i).sum(), emb.weight)
        assert gr.is_sparse
        out[mod.__name__] = (dense1, dense2, g3.numpy(),
                             gr.to_dense().numpy())
    for a, b in zip(out["ember"], out["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_hooks_zero_grad_and_errors():
    w = np.random.RandomState(0).randn(5, 3).astype(np.float32)
    for mod in (ember, torch):
        emb = _embedding(mod, w)
        seen = []
        emb.weight.register_hook(lambda g: seen.append(g.is_sparse))
        emb(mod.tensor([1, 1, 4])).sum().backward()
        assert seen == [True]
        opt = mod.optim.SGD(emb.parameters(), lr=0.1)
        opt.zero_grad(set_to_none=False)
        assert emb.weight.grad.is_sparse and emb.weight.grad._nnz() == 0
        emb.zero_grad(set_to_none=False)
        assert emb.weight.grad._nnz() == 0
        emb(mod.tensor([3])).sum().backward()
        assert emb.weight.grad._nnz() == 1
        with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
            mod.optim.Adam(emb.parameters()).step()
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            mod.optim.RMSprop(emb.parameters()).step()
        with pytest.raises(RuntimeError):
            mod.optim.SGD(emb.parameters(), lr=0.1, weight_decay=0.1).step()
        emb2 = mod.nn.Embedding(5, 3, sparse=True, scale_grad_by_freq=True)
        with pytest.raises(RuntimeError, match="scale_grad_by_freq"):
            emb2(mod.tensor([1, 1])).sum().backward()
        lin = mod.nn.Linear(2, 2)
        lin(mod.ones(1, 2)).sum().backward()
        with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
            mod.optim.SparseAdam(list(lin.parameters())).step()
        with pytest.raises(ValueError):
            mod.optim.SparseAdam(list(lin.parameters()), lr=0.0)


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_embedding_bag_sparse(mode):
    w = np.random.RandomState(0).randn(7, 3).astype(np.float64)
    idx = np.array([[0, 2, 2], [1, 6, 0]])
    dense = []
    for mod in (ember, torch):
        bag = mod.nn.EmbeddingBag(7, 3, mode=mode, sparse=True).double()
        with mod.no_grad():
            bag.weight.copy_(mod.from_numpy(w))
        (bag(mod.from_numpy(idx)) * mod.arange(3.0, dtype=mod.float64)).sum().backward()
        assert bag.weight.grad.is_sparse
        dense.append(bag.weight.grad.to_dense().numpy())
    np.testing.assert_allclose(dense[0], dense[1], rtol=1e-12, atol=1e-12)


_OPTIMIZERS = {
    "sgd": lambda m, ps: m.optim.SGD(ps, lr=0.1),
    "sgd_maximize": lambda m, ps: m.optim.SGD(ps, lr=0.1, maximize=True),
    "sgd_momentum": lambda m, ps: m.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1),
    "sgd_nesterov": lambda m, ps: m.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adagrad": lambda m, ps: m.optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
    "adagrad_maximize": lambda m, ps: m.optim.Adagrad(ps, lr=0.1, maximize=True,
                                                      initial_accumulator_value=0.1),
    "sparse_adam": lambda m, ps: m.optim.SparseAdam(ps, lr=0.05, betas=(0.8, 0.99)),
    "sparse_adam_maximize": lambda m, ps: m.optim.SparseAdam(ps, lr=0.05, maximize=True),
}


def _train(mod, make_opt, dtype, steps=5, padding_idx=None):
    rs = np.random.RandomState(0)
    emb = _embedding(mod, rs.randn(12, 4).astype(dtype), padding_idx=padding_idx)
    head = rs.randn(4, 3).astype(dtype)
    opt = make_opt(mod, [emb.weight])
    losses = []
    for _ in range(steps):
        idx = mod.from_numpy(rs.randint(0, 12, (5, 3)))
        opt.zero_grad()
        loss = ((emb(idx) @ mod.from_numpy(head)) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), emb.weight.detach().numpy().copy(), opt


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding_idx", [None, 3])
def test_optimizer_trajectories_match_pytorch(name, dtype, padding_idx):
    le, we, _ = _train(ember, _OPTIMIZERS[name], dtype, padding_idx=padding_idx)
    lt, wt, _ = _train(torch, _OPTIMIZERS[name], dtype, padding_idx=padding_idx)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(le, lt, rtol=tol, atol=tol)
    np.testing.assert_allclose(we, wt, rtol=tol, atol=tol)


def test_sparse_adam_state_dict_round_trip():
    _, _, opt = _train(ember, _OPTIMIZERS["sparse_adam"], np.float64, steps=3)
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 3
    emb = ember.nn.Embedding(12, 4, sparse=True).double()
    opt2 = ember.optim.SparseAdam([emb.weight], lr=0.05)
    opt2.load_state_dict(sd)
    np.testing.assert_array_equal(opt2.state[emb.weight]["exp_avg"].numpy(),
                                  opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].numpy())


def _sparse_step():
    ember.manual_seed(0)
    emb = ember.nn.Embedding(12, 4, sparse=True)
    head = ember.nn.Linear(4, 3)
    opt = ember.optim.SGD(list(emb.parameters()) + list(head.parameters()), lr=0.1,
                          momentum=0.9)

    def step(idx):
        opt.zero_grad()
        loss = head(emb(idx)).pow(2).mean()
        loss.backward()
        opt.step()
        return loss
    return emb, step


def test_compiled_step_with_sparse_gradients_runs_eagerly_and_equal():
    # the capture refuses sparse gradients (never a graph that drops them): the step runs
    # eagerly, explain() says why, and the results are eager's
    rs = np.random.RandomState(0)
    idxs = [ember.from_numpy(rs.randint(0, 12, (5, 3))) for _ in range(4)]
    e1, s1 = _sparse_step()
    l1 = [float(s1(i)) for i in idxs]
    e2, s2 = _sparse_step()
    cs = ember.compile(s2)
    l2 = [float(cs(i)) for i in idxs]
    assert l1 == l2
    np.testing.assert_array_equal(e1.weight.detach().numpy(), e2.weight.detach().numpy())
    assert e2.weight.grad.is_sparse
    report = str(ember._dynamo.explain(s2)(idxs[0]))
    assert "sparse gradients" in report


def test_sparse_clone_is_independent():
    g = ember.sparse_coo_tensor([[0, 2]], ember.tensor([[1.0], [2.0]]), (3, 1))
    c = g.clone()
    c.zero_()
    assert g._nnz() == 2 and c._nnz() == 0
    np.testing.assert_array_equal(g.to_dense().numpy(), [[1.0], [0.0], [2.0]])


def test_grad_scaler_unscales_sparse_gradients():
    out = []
    for mod in (ember, torch):
        emb = _embedding(mod, np.random.RandomState(0).randn(6, 2).astype(np.float32))
        opt = mod.optim.SGD(emb.parameters(), lr=0.1)
        sc = mod.amp.GradScaler("cpu", init_scale=4.0)
        sc.scale(emb(mod.tensor([1, 1, 3])).sum()).backward()
        sc.unscale_(opt)
        assert emb.weight.grad.is_sparse
        sc.step(opt)
        sc.update()
        out.append(emb.weight.detach().numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6)


def test_sparse_tensor_metadata_matches_pytorch():
    # what code reads off a gradient (device, dtype queries, legacy type names)
    out = []
    for mod in (ember, torch):
        s = mod.sparse_coo_tensor([[0, 2]], mod.tensor([1.0, 2.0]), (3,))
        out.append([str(s.device), s.is_meta, s.is_floating_point(), s.is_complex(),
                    s.element_size(), s.itemsize, s.ndimension(), s.nelement(), s.type(),
                    str(s.type(mod.float64).dtype).split(".")[-1]])
    assert out[0] == out[1]


def test_embedding_bag_max_mode_refuses_sparse():
    for mod in (ember, torch):
        bag = mod.nn.EmbeddingBag(6, 2, mode="max", sparse=True)
        with pytest.raises(ValueError, match="max mode does not support sparse"):
            bag(mod.tensor([[0, 2, 2], [1, 5, 0]]))
