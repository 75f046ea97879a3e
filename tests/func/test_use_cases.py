"""torch.func's own use cases written with ember.func, checked against torch.func on the
oracle: per-sample gradients of a CNN, model ensembling, Jacobians and Hessians, a neural
tangent kernel and a MAML-style inner loop."""

import warnings

import numpy as np
import pytest

import ember
import ember.nn.functional as EF
from ember import func as efunc

torch = pytest.importorskip("torch")
tfunc = torch.func


def _copy_weights(emod, tmod):
    """Give the torch module the ember module's parameters."""
    with torch.no_grad():
        for (n, p), (tn, tp) in zip(emod.named_parameters(), tmod.named_parameters()):
            assert n == tn
            tp.copy_(torch.from_numpy(p.detach().numpy().copy()))


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


def _cnn(m):
    class CNN(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = m.nn.Conv2d(1, 4, 3)
            self.conv2 = m.nn.Conv2d(4, 6, 3)
            self.fc = m.nn.Linear(6 * 3 * 3, 10)

        def forward(self, x):
            F = m.nn.functional
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.relu(self.conv2(x))
            return self.fc(x.flatten(1))
    return CNN()


def _per_sample_grads(m, model, data, targets):
    fn = m.func if hasattr(m, "func") else m.func

    def loss(params, buffers, x, y):
        out = fn.functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return m.nn.functional.cross_entropy(out, y.unsqueeze(0))
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    return fn.vmap(fn.grad(loss), in_dims=(None, None, 0, 0))(params, buffers, data, targets)


def test_per_sample_gradients_of_a_cnn():
    ember.manual_seed(0)
    emodel, tmodel = _cnn(ember), _cnn(torch)
    _copy_weights(emodel, tmodel)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, 1, 12, 12)).astype(np.float32)
    targets = rng.integers(0, 10, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every op has a batching rule
        eg = _per_sample_grads(ember, emodel, ember.tensor(data), ember.tensor(targets))
    tg = _per_sample_grads(torch, tmodel, torch.tensor(data), torch.tensor(targets))
    for k in tg:
        assert tuple(eg[k].shape) == (8,) + tuple(dict(emodel.named_parameters())[k].shape)
        _close(eg[k], tg[k], 1e-4)
    # equal to a loop of single-sample backward passes
    for i in range(8):
        emodel.zero_grad()
        out = emodel(ember.tensor(data[i:i + 1]))
        EF.cross_entropy(out, ember.tensor(targets[i:i + 1])).backward()
        for k, p in emodel.named_parameters():
            _close(eg[k][i], p.grad, 1e-5)


def _mlp(m, din=5, dh=8, dout=3):
    return m.nn.Sequential(m.nn.Linear(din, dh), m.nn.Tanh(), m.nn.Linear(dh, dout))


def test_model_ensembling_with_stack_module_state():
    ember.manual_seed(1)
    emodels = [_mlp(ember) for _ in range(4)]
    tmodels = [_mlp(torch) for _ in range(4)]
    for e, t in zip(emodels, tmodels):
        _copy_weights(e, t)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    xs = rng.standard_normal((4, 6, 5)).astype(np.float32)
    for m, models, fn in ((ember, emodels, efunc), (torch, tmodels, tfunc)):
        params, buffers = fn.stack_module_state(models)
        assert tuple(params["0.weight"].shape) == (4, 8, 5)
    ep, eb = efunc.stack_module_state(emodels)
    tp, tb = tfunc.stack_module_state(tmodels)
    import copy
    ebase, tbase = copy.deepcopy(emodels[0]).to("meta") if False else emodels[0], tmodels[0]

    def ecall(p, b, x):
        return efunc.functional_call(ebase, (p, b), (x,))

    def tcall(p, b, x):
        return tfunc.functional_call(tbase, (p, b), (x,))
    # the same minibatch for every model, then one minibatch per model
    same = efunc.vmap(ecall, in_dims=(0, 0, None))(ep, eb, ember.tensor(x))
    _close(same, tfunc.vmap(tcall, in_dims=(0, 0, None))(tp, tb, torch.tensor(x)))
    for i, m in enumerate(emodels):
        _close(same[i], m(ember.tensor(x)))
    diff = efunc.vmap(ecall)(ep, eb, ember.tensor(xs))
    _close(diff, tfunc.vmap(tcall)(tp, tb, torch.tensor(xs)))


def _f_mlp(m, w1, w2):
    def f(x):
        return m.tanh(x @ w1) @ w2
    return f


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jacobians_and_hessians_of_a_small_network(dtype):
    rng = np.random.default_rng(2)
    w1, w2 = rng.standard_normal((4, 6)).astype(dtype), rng.standard_normal((6, 3)).astype(dtype)
    x = rng.standard_normal(4).astype(dtype)
    ef = _f_mlp(ember, ember.tensor(w1), ember.tensor(w2))
    tf = _f_mlp(torch, torch.tensor(w1), torch.tensor(w2))
    tol = 1e-5 if dtype == "float32" else 1e-12
    jr = efunc.jacrev(ef)(ember.tensor(x))
    jf = efunc.jacfwd(ef)(ember.tensor(x))
    ja = ember.autograd.functional.jacobian(ef, ember.tensor(x))
    tj = tfunc.jacrev(tf)(torch.tensor(x))
    assert tuple(jr.shape) == (3, 4) and jr.dtype == getattr(ember, dtype)
    for j in (jr, jf, ja):
        _close(j, tj, tol)
    # Hessians of a scalar network: jacfwd(jacrev), jacrev(jacrev), autograd.functional

    def es(x):
        return ef(x).pow(2).sum()

    def ts(x):
        return tf(x).pow(2).sum()
    th = tfunc.hessian(ts)(torch.tensor(x))
    _close(efunc.hessian(es)(ember.tensor(x)), th, tol * 10)
    _close(efunc.jacrev(efunc.jacrev(es))(ember.tensor(x)), th, tol * 10)
    _close(ember.autograd.functional.hessian(es, ember.tensor(x)), th, tol * 10)
    # argnums over two inputs, has_aux
    ej = efunc.jacrev(lambda a, b: (ember.tanh(a @ b), a.sum()), argnums=(0, 1), has_aux=True)
    tjf = tfunc.jacrev(lambda a, b: (torch.tanh(a @ b), a.sum()), argnums=(0, 1), has_aux=True)
    (ja_, jb_), aux = ej(ember.tensor(x), ember.tensor(w1))
    (tja, tjb), taux = tjf(torch.tensor(x), torch.tensor(w1))
    _close(ja_, tja, tol)
    _close(jb_, tjb, tol)
    _close(aux, taux, tol)
    ejf = efunc.jacfwd(lambda a, b: ember.tanh(a @ b), argnums=1)(ember.tensor(x),
                                                                 ember.tensor(w1))
    _close(ejf, tjb, tol)


def test_neural_tangent_kernel():
    ember.manual_seed(3)
    emodel, tmodel = _mlp(ember, 3, 5, 2), _mlp(torch, 3, 5, 2)
    _copy_weights(emodel, tmodel)
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((4, 3)).astype(np.float32), \
        rng.standard_normal((5, 3)).astype(np.float32)

    def ntk(m, fn, model, x1, x2):
        params = {k: v.detach() for k, v in model.named_parameters()}

        def fnet_single(params, x):
            return fn.functional_call(model, params, (x.unsqueeze(0),)).squeeze(0)
        j1 = fn.vmap(fn.jacrev(fnet_single), (None, 0))(params, x1)
        j1 = [j.flatten(2) for j in j1.values()]
        j2 = fn.vmap(fn.jacrev(fnet_single), (None, 0))(params, x2)
        j2 = [j.flatten(2) for j in j2.values()]
        return m.stack([m.einsum("Naf,Mbf->NMab", a, b) for a, b in zip(j1, j2)]).sum(0)
    e = ntk(ember, efunc, emodel, ember.tensor(x1), ember.tensor(x2))
    t = ntk(torch, tfunc, tmodel, torch.tensor(x1), torch.tensor(x2))
    assert tuple(e.shape) == (4, 5, 2, 2)
    _close(e, t, 1e-4)


def test_maml_inner_loop_with_grad():
    ember.manual_seed(4)
    emodel, tmodel = _mlp(ember, 1, 16, 1), _mlp(torch, 1, 16, 1)
    _copy_weights(emodel, tmodel)
    rng = np.random.default_rng(4)
    xs = rng.uniform(-3, 3, (3, 6, 1)).astype(np.float32)  # 3 tasks of 6 points
    ys = np.sin(xs * rng.uniform(0.5, 2, (3, 1, 1))).astype(np.float32)

    def maml(m, fn, model, xs, ys):
        params = {k: v for k, v in model.named_parameters()}

        def loss(p, x, y):
            return m.nn.functional.mse_loss(fn.functional_call(model, p, (x,)), y)

        def inner(p, x, y):
            for _ in range(2):
                g = fn.grad(loss)(p, x, y)
                p = {k: p[k] - 0.1 * g[k] for k in p}
            return loss(p, x, y)

        def outer(p):
            return sum(inner(p, xs[i], ys[i]) for i in range(xs.shape[0]))
        return fn.grad_and_value(outer)(params)
    (eg, ev), (tg, tv) = maml(ember, efunc, emodel, ember.tensor(xs), ember.tensor(ys)), \
        maml(torch, tfunc, tmodel, torch.tensor(xs), torch.tensor(ys))
    _close(ev, tv, 1e-5)
    for k in tg:
        _close(eg[k], tg[k], 1e-4)
    # vmap over tasks of the inner loop gives the same per-task losses
    params = {k: v.detach() for k, v in emodel.named_parameters()}

    def task_loss(x, y):
        g = efunc.grad(lambda p: EF.mse_loss(efunc.functional_call(emodel, p, (x,)), y))(params)
        p2 = {k: params[k] - 0.1 * g[k] for k in params}
        return EF.mse_loss(efunc.functional_call(emodel, p2, (x,)), y)
    per_task = efunc.vmap(task_loss)(ember.tensor(xs), ember.tensor(ys))
    ref = [task_loss(ember.tensor(xs[i]), ember.tensor(ys[i])) for i in range(3)]
    _close(per_task, ember.stack(ref), 1e-5)


def test_jacfwd_and_hessian_through_ops_on_the_generic_forward_rule():
    # max_pool2d, cross_entropy, gelu and layer_norm use the double-vjp forward rule, here
    # with batched tangents (jacfwd is vmap of jvp) and under forward over reverse
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 4, 4))

    def f(m):
        F = m.nn.functional

        def g(a):
            h = F.max_pool2d(a, 2).flatten(1)
            return (F.cross_entropy(h * 1.5, m.tensor([0])) + F.gelu(a).sum() +
                    F.layer_norm(a, a.shape[-1:]).pow(2).sum())
        return g
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # backward ops that loop under vmap
        _close(efunc.jacfwd(f(ember))(ember.tensor(x)),
               tfunc.jacfwd(f(torch))(torch.tensor(x)), 1e-10)
        small = x[:, :1, :2, :2]
        _close(efunc.hessian(f(ember))(ember.tensor(small)),
               tfunc.hessian(f(torch))(torch.tensor(small)), 1e-10)
