"""vmap's batching rules (each checked against a loop of per-example calls and against
torch.func.vmap), its arguments, nesting, composition with grad/jvp, and its errors."""

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as EF
from ember import func as efunc

torch = pytest.importorskip("torch")
tfunc = torch.func

# (name, function of the framework module and the inputs, input shapes, in_dims)
OPS = [
    ("add_bcast", lambda m, x, y: x + y * 2, [(5, 3, 4), (4,)], (0, None)),
    ("mul_both", lambda m, x, y: x * y - x / (y.abs() + 1), [(5, 3, 4), (5, 4)], (0, 0)),
    ("unary", lambda m, x: m.exp(x).tanh() + m.sigmoid(x) - m.relu(x) ** 2, [(5, 2, 3)], 0),
    ("where", lambda m, x, y: m.where(x > 0, x, y), [(5, 3), (3,)], (0, None)),
    ("sum_dims", lambda m, x: x.sum(0) + x.sum(-1, keepdim=True).sum() + x.mean(), [(5, 3, 4)],
     0),
    ("amax_var", lambda m, x: x.amax(1) + x.var(0).sum() + x.max(1).values, [(5, 3, 3)], 0),
    ("softmax", lambda m, x: m.softmax(x, -1) + m.log_softmax(x, 0), [(5, 3, 4)], 0),
    ("cumsum_logsumexp", lambda m, x: m.cumsum(x, 1) + m.logsumexp(x, 1, keepdim=True),
     [(5, 3, 4)], 0),
    ("views", lambda m, x: x.reshape(4, 3).t().unsqueeze(0).expand(2, 3, 4).flatten()
     .view(6, 4).permute(1, 0).contiguous(), [(5, 3, 4)], 0),
    ("squeeze_transpose", lambda m, x: x.unsqueeze(1).squeeze(1).transpose(0, 1).flip(0),
     [(5, 3, 4)], 0),
    ("cat_stack", lambda m, x, y: m.cat([x, y], 0).sum(0) + m.stack([x, y], 0).sum((0, 1)),
     [(5, 3, 4), (3, 4)], (0, None)),
    ("split_unbind", lambda m, x: x.split([1, 2], 0)[1].sum(0) + x.unbind(1)[2].sum(),
     [(5, 3, 4)], 0),
    ("index_basic", lambda m, x: x[1:, ::2] + x[None, 0, :2].sum() + x[..., -1:].sum(),
     [(5, 3, 4)], 0),
    ("index_tensor", lambda m, x: x[m.tensor([2, 0])], [(5, 3, 4)], 0),
    ("gather_select", lambda m, x: x.index_select(1, m.tensor([3, 0])) +
     x.gather(1, m.tensor([[1, 0], [0, 2], [3, 3]])), [(5, 3, 4)], 0),
    ("matmul_mv", lambda m, x, w: x @ w, [(5, 4), (4, 3)], (0, None)),
    ("matmul_mm", lambda m, x, w: x @ w, [(5, 2, 4), (4, 3)], (0, None)),
    ("matmul_wb", lambda m, x, w: x @ w, [(2, 4), (5, 4, 3)], (None, 0)),
    ("matmul_vb", lambda m, x, w: x @ w, [(4,), (5, 4)], (None, 0)),
    ("matmul_both", lambda m, x, w: x @ w, [(5, 2, 4), (5, 4)], (0, 0)),
    ("matmul_3d", lambda m, x, w: m.matmul(x, w), [(5, 2, 3, 4), (4, 2)], (0, None)),
    ("dot", lambda m, x, w: m.dot(x, w), [(5, 4), (5, 4)], (0, 0)),
    ("linear", lambda m, x, w, b: m.nn.functional.linear(x, w, b), [(5, 2, 4), (3, 4), (3,)],
     (0, None, None)),
    ("linear_wb", lambda m, x, w, b: m.nn.functional.linear(x, w, b), [(2, 4), (5, 3, 4),
                                                                       (5, 3)], (None, 0, 0)),
    ("conv2d", lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(5, 2, 3, 6, 6),
                                                                         (4, 3, 3, 3)],
     (0, None)),
    ("conv2d_unbatched_input", lambda m, x, w: m.nn.functional.conv2d(x, w), [(5, 3, 6, 6),
                                                                             (4, 3, 3, 3)],
     (0, None)),
    ("conv2d_wb", lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, stride=2),
     [(2, 3, 6, 6), (5, 4, 3, 3, 3), (5, 4)], (None, 0, 0)),
    ("conv1d_groups", lambda m, x, w: m.nn.functional.conv1d(x, w, groups=2),
     [(5, 1, 4, 7), (6, 2, 3)], (0, None)),
    ("pooling", lambda m, x: m.nn.functional.max_pool2d(x, 2) +
     m.nn.functional.avg_pool2d(x, 2), [(5, 2, 3, 6, 6)], 0),
    ("pool_unbatched", lambda m, x: m.nn.functional.max_pool2d(x, 2), [(5, 3, 6, 6)], 0),
    ("layer_norm", lambda m, x, w: m.nn.functional.layer_norm(x, (4,), w), [(5, 3, 4), (4,)],
     (0, None)),
    ("cross_entropy", lambda m, x, y: m.nn.functional.cross_entropy(x, y),
     [(5, 3, 4), "target"], (0, 0)),
    ("nll_sum", lambda m, x, y: m.nn.functional.nll_loss(x, y, reduction="sum"),
     [(5, 3, 4), "target"], (0, 0)),
    ("mse", lambda m, x, y: m.nn.functional.mse_loss(x, y), [(5, 3, 4), (3, 4)], (0, None)),
    ("pad", lambda m, x: m.nn.functional.pad(x, (1, 2)), [(5, 3, 4)], 0),
    ("activations", lambda m, x: m.nn.functional.silu(x) + m.nn.functional.softplus(x) +
     m.nn.functional.elu(x) + m.nn.functional.leaky_relu(x, 0.2) +
     m.nn.functional.hardtanh(x) + m.nn.functional.logsigmoid(x) + x.max(), [(5, 3, 4)], 0),
    ("linalg", lambda m, x: m.linalg.inv(x @ x.mT + m.eye(3, dtype=x.dtype)) + m.linalg.det(x)
     [..., None, None] + x.diagonal(0, 0, 1).sum(), [(5, 3, 3)], 0),
    ("in_dim_1", lambda m, x: x.sum(0), [(3, 5, 4)], 1),
    ("in_dim_neg", lambda m, x: x * 2, [(3, 4, 5)], -1),
]


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        if s == "target":
            out.append(rng.integers(0, 4, (5, 3)))
        else:
            out.append(rng.standard_normal(s))
    return out


def _per_example(fn, m, arrays, dims):
    dims = dims if isinstance(dims, tuple) else (dims,) * len(arrays)
    size = next(a.shape[d] for a, d in zip(arrays, dims) if d is not None)
    outs = []
    for i in range(size):
        args = [m.tensor(np.take(a, i, axis=d)) if d is not None else m.tensor(a)
                for a, d in zip(arrays, dims)]
        outs.append(fn(m, *args).numpy())
    return np.stack(outs)


@pytest.mark.parametrize("name,fn,shapes,dims", OPS, ids=[o[0] for o in OPS])
def test_batching_rule_matches_loop_and_torch(name, fn, shapes, dims):
    arrays = _arrays(shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a rule, not the loop
        if name == "index_tensor":
            warnings.simplefilter("ignore", UserWarning)  # advanced indexing loops
        out = efunc.vmap(lambda *a: fn(ember, *a), in_dims=dims)(
            *[ember.tensor(a) for a in arrays])
    ref = _per_example(fn, ember, arrays, dims)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)
    tout = tfunc.vmap(lambda *a: fn(torch, *a), in_dims=dims)(*[torch.tensor(a) for a in arrays])
    np.testing.assert_allclose(out.numpy(), tout.numpy(), rtol=1e-10, atol=1e-12)


def test_float32_results_keep_dtype():
    x = ember.randn(4, 3)
    w = ember.randn(3, 2)
    out = efunc.vmap(lambda a: (a @ w).softmax(0))(x)
    assert out.dtype == ember.float32 and tuple(out.shape) == (4, 2)


def test_loop_fallback_warns_and_is_correct():
    x = np.random.default_rng(0).standard_normal((4, 3, 3))
    with pytest.warns(UserWarning, match="performance drop.*batching rule for Roll"):
        out = efunc.vmap(lambda a: ember.roll(a, 1))(ember.tensor(x))
    np.testing.assert_allclose(out.numpy(), np.stack([np.roll(a, 1) for a in x]))


def test_in_dims_out_dims_and_pytrees():
    x, y = np.random.default_rng(1).standard_normal((2, 3, 4))
    f = efunc.vmap(lambda d, s: {"a": d["x"] * s, "b": (d["y"].sum(),)}, in_dims=({"x": 1,
                                                                                    "y": 1},
                                                                                   None),
                   out_dims={"a": 0, "b": 0})
    res = f({"x": ember.tensor(x), "y": ember.tensor(y)}, 2.0)
    np.testing.assert_allclose(res["a"].numpy(), (x * 2).T)
    np.testing.assert_allclose(res["b"][0].numpy(), y.sum(0))
    res2 = efunc.vmap(lambda v: {"a": v, "b": (v.sum(),)}, out_dims={"a": 1, "b": 0})(
        ember.tensor(x))
    np.testing.assert_allclose(res2["a"].numpy(), x.T)
    np.testing.assert_allclose(res2["b"][0].numpy(), x.sum(1))
    with pytest.raises(ValueError, match="out_dims"):
        efunc.vmap(lambda v: (v, v), out_dims=(0, 0, 0))(ember.tensor(x))
    out = efunc.vmap(lambda a: a * 2, out_dims=1)(ember.tensor(x))
    np.testing.assert_allclose(out.numpy(), (x * 2).T)
    # an unbatched output is expanded; out_dims=None returns it as is
    a, b = efunc.vmap(lambda v: (v.sum(), ember.ones(2)), out_dims=(0, None))(ember.tensor(x))
    assert tuple(b.shape) == (2,)
    c = efunc.vmap(lambda v: ember.ones(2))(ember.tensor(x))
    assert tuple(c.shape) == (3, 2)


def test_nested_vmap_matches_torch():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))

    def dist(m):
        return lambda a, b: ((a - b) ** 2).sum().sqrt()
    e = efunc.vmap(efunc.vmap(dist(ember), (None, 0)), (0, None))(ember.tensor(x),
                                                                   ember.tensor(y))
    t = tfunc.vmap(tfunc.vmap(dist(torch), (None, 0)), (0, None))(torch.tensor(x),
                                                                  torch.tensor(y))
    assert tuple(e.shape) == (3, 5)
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)
    # both levels batched on one tensor
    z = rng.standard_normal((2, 3, 4))
    e2 = efunc.vmap(efunc.vmap(lambda v: v.softmax(0) @ ember.ones(4, dtype=ember.float64)))(
        ember.tensor(z))
    np.testing.assert_allclose(e2.numpy(), np.ones((2, 3)), rtol=1e-12)


def test_chunk_size_gives_the_same_result():
    x = ember.randn(7, 3)
    full = efunc.vmap(lambda a: a.exp().sum())(x)
    for c in (1, 2, 3, 7, 100):
        np.testing.assert_allclose(efunc.vmap(lambda a: a.exp().sum(), chunk_size=c)(x).numpy(),
                                   full.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="chunk_size"):
        efunc.vmap(lambda a: a, chunk_size=0)


def test_vmap_of_grad_and_grad_of_vmap():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((6, 3)), rng.standard_normal(3)

    def loss(m):
        return lambda w, x: m.tanh(x @ w) ** 2
    e = efunc.vmap(efunc.grad(loss(ember)), (None, 0))(ember.tensor(w), ember.tensor(x))
    t = tfunc.vmap(tfunc.grad(loss(torch)), (None, 0))(torch.tensor(w), torch.tensor(x))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)
    e = efunc.grad(lambda w: efunc.vmap(loss(ember), (None, 0))(w, ember.tensor(x)).sum())(
        ember.tensor(w))
    t = tfunc.grad(lambda w: tfunc.vmap(loss(torch), (None, 0))(w, torch.tensor(x)).sum())(
        torch.tensor(w))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)
    # a batched tensor reached through a closure still gives per-example gradients
    xb = ember.tensor(x)
    e = efunc.vmap(lambda i: efunc.grad(lambda w: loss(ember)(w, i))(ember.tensor(w)))(xb)
    np.testing.assert_allclose(e.numpy(), t.numpy() * 0 + tfunc.vmap(
        tfunc.grad(loss(torch)), (None, 0))(torch.tensor(w), torch.tensor(x)).numpy(),
        rtol=1e-12)


def test_vmap_of_jvp_and_vjp():
    rng = np.random.default_rng(4)
    x, ts = rng.standard_normal(3), rng.standard_normal((5, 3))

    def f(m):
        return lambda a: m.sin(a) * a.sum()
    e = efunc.vmap(lambda t: efunc.jvp(f(ember), (ember.tensor(x),), (t,))[1])(ember.tensor(ts))
    t = tfunc.vmap(lambda t: tfunc.jvp(f(torch), (torch.tensor(x),), (t,))[1])(torch.tensor(ts))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)
    _, vjp_fn = efunc.vjp(f(ember), ember.tensor(x))
    _, tvjp_fn = tfunc.vjp(f(torch), torch.tensor(x))
    e = efunc.vmap(vjp_fn)(ember.tensor(ts))[0]
    t = tfunc.vmap(tvjp_fn)(torch.tensor(ts))[0]
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)


def test_errors():
    x = ember.randn(3, 2)
    with pytest.raises(ValueError, match="same size in the mapped dimension"):
        efunc.vmap(lambda a, b: a + b)(x, ember.randn(4, 2))
    with pytest.raises(ValueError, match="in_dim"):
        efunc.vmap(lambda a: a, in_dims=2)(x)
    with pytest.raises(ValueError, match="non-Tensor"):
        efunc.vmap(lambda a, b: a, in_dims=(0, 0))(x, 3.0)
    with pytest.raises(RuntimeError, match=r"\.item\(\)"):
        efunc.vmap(lambda a: a.sum().item())(x)
    with pytest.raises(RuntimeError, match="data-dependent control flow"):
        efunc.vmap(lambda a: a if a.sum() > 0 else -a)(x)
    with pytest.raises(RuntimeError, match="randomness"):
        efunc.vmap(lambda a: a, randomness="bogus")
    from ember.autograd.graph import _MODES
    assert not _MODES  # every level was closed, even after errors


def test_batched_tensor_metadata():
    seen = {}

    def f(a):
        seen["shape"], seen["dim"], seen["numel"] = tuple(a.shape), a.dim(), a.numel()
        seen["size1"], seen["len"] = a.size(1), len(a)
        return a
    efunc.vmap(f, in_dims=1)(ember.randn(2, 7, 3))
    assert seen == {"shape": (2, 3), "dim": 2, "numel": 6, "size1": 3, "len": 2}


def test_randomness_flags():
    x = ember.ones(4, 3)
    with pytest.raises(RuntimeError, match="randomness error mode"):
        efunc.vmap(lambda a: EF.dropout(a, 0.5))(x)
    with pytest.raises(RuntimeError, match="randomness error mode"):
        efunc.vmap(lambda a: a + ember.randn(3))(x)
    out = efunc.vmap(lambda a: a * ember.rand(3), randomness="same")(x)
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(out.numpy()[0], (4, 3)))
    out = efunc.vmap(lambda a: a + ember.randn(3), randomness="different")(x)
    assert len({tuple(r) for r in out.tolist()}) == 4  # per example (test_vmap_randomness.py)
    ember.randn(2)  # the generator is back after the errors


def test_functional_call_tie_weights_and_strict():
    lin = ember.nn.Linear(3, 3)
    model = ember.nn.Sequential(lin, ember.nn.Tanh(), lin)  # one module used twice
    tlin = torch.nn.Linear(3, 3)
    tmodel = torch.nn.Sequential(tlin, torch.nn.Tanh(), tlin)
    w, b = np.eye(3, dtype=np.float32) * 2, np.ones(3, dtype=np.float32)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    e = efunc.functional_call(model, {"0.weight": ember.tensor(w), "0.bias": ember.tensor(b)},
                              (ember.tensor(x),))
    t = tfunc.functional_call(tmodel, {"0.weight": torch.tensor(w), "0.bias": torch.tensor(b)},
                              (torch.tensor(x),))
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-6)
    with pytest.raises(RuntimeError, match="(?i)missing"):
        efunc.functional_call(model, {"0.weight": ember.tensor(w)}, (ember.tensor(x),),
                              strict=True)


def test_replace_all_batch_norm_modules_lets_batch_norm_run_under_vmap():
    model = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.BatchNorm1d(4))
    efunc.replace_all_batch_norm_modules_(model)
    bn = model[1]
    assert bn.running_mean is None and not bn.track_running_stats
    x = np.random.default_rng(5).standard_normal((2, 6, 3)).astype(np.float32)
    out = efunc.vmap(model)(ember.tensor(x))
    ref = ember.stack([model(ember.tensor(x[i])) for i in range(2)])
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_jvp_linearize_and_has_aux_match_torch():
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal(4), rng.standard_normal(4)

    def f(m):
        return lambda a: (m.sin(a) * a.exp(), a.sum())
    eo, et, eaux = efunc.jvp(lambda a: f(ember)(a), (ember.tensor(x),), (ember.tensor(t),),
                             has_aux=True)
    to, tt, taux = tfunc.jvp(lambda a: f(torch)(a), (torch.tensor(x),), (torch.tensor(t),),
                             has_aux=True)
    np.testing.assert_allclose(et.numpy(), tt.numpy(), rtol=1e-12)
    np.testing.assert_allclose(eo.numpy(), to.numpy(), rtol=1e-12)
    out, jvp_fn = efunc.linearize(lambda a: f(ember)(a)[0], ember.tensor(x))
    np.testing.assert_allclose(jvp_fn(ember.tensor(t)).numpy(), tt.numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError, match="same shape"):
        efunc.jvp(ember.sin, (ember.tensor(x),), (ember.ones(3),))
    # grad_and_value with argnums and has_aux
    (ga, gb), (val, aux) = efunc.grad_and_value(lambda a, b: ((a * b).sum(), "aux"),
                                                argnums=(0, 1), has_aux=True)(
        ember.tensor(x), ember.tensor(t))
    np.testing.assert_allclose(ga.numpy(), t)
    np.testing.assert_allclose(gb.numpy(), x)
    assert aux == "aux" and abs(float(val) - float((x * t).sum())) < 1e-12
    with pytest.raises(RuntimeError, match="scalar"):
        efunc.grad(lambda a: a * 2)(ember.tensor(x))


def test_jacrev_through_basic_indexing_uses_rules():
    x = np.random.default_rng(7).standard_normal((4, 3))

    def f(m):
        return lambda a: m.tanh(a[1:, ::2]).sum(0) * a[0, None, :2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        e = efunc.jacrev(f(ember))(ember.tensor(x))
    t = tfunc.jacrev(f(torch))(torch.tensor(x))
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12)
