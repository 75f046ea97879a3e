"""Forward-mode AD: tangents against finite-difference directional derivatives and against
PyTorch's forward mode; custom Function.jvp; forward over reverse; functional and gradcheck."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import forward_ad as fwAD

torch = pytest.importorskip("torch")
tfwAD = torch.autograd.forward_ad

# (name, function of the framework module, input shapes, positive inputs?)
CASES = [
    ("exp_mul", lambda m, x, y: (m.exp(x) * y).sum(1), [(3, 4), (3, 4)], False),
    ("div_sub", lambda m, x, y: x / (y + 3.0) - x * 2, [(3, 4), (3, 4)], True),
    ("tanh_sigmoid", lambda m, x: m.tanh(x) + m.sigmoid(x) * m.sin(x), [(5,)], False),
    ("log_sqrt", lambda m, x: m.log(x) + m.sqrt(x) + x ** 3, [(4, 2)], True),
    ("pow_tensor", lambda m, x, y: x ** y, [(3,), (3,)], True),
    ("matmul", lambda m, x, y: x @ y, [(3, 4), (4, 2)], False),
    ("bmm_bcast", lambda m, x, y: m.matmul(x, y), [(2, 3, 4), (4,)], False),
    ("linear", lambda m, x, w, b: m.nn.functional.linear(x, w, b), [(5, 3), (4, 3), (4,)],
     False),
    ("softmax", lambda m, x: m.softmax(x, 1), [(3, 5)], False),
    ("log_softmax", lambda m, x: m.log_softmax(x, 0), [(3, 5)], False),
    ("reductions", lambda m, x: x.mean(0) + x.sum(1).sum() + x.amax(1).sum(), [(4, 3)], False),
    ("var_std", lambda m, x: x.var(1) + x.std(0).sum(), [(4, 3)], False),
    ("logsumexp", lambda m, x: m.logsumexp(x, 1), [(4, 3)], False),
    ("views", lambda m, x: x.reshape(2, 6).t().flip(0)[1:, ::2].permute(1, 0).expand(3, 2, 5)
     .cumsum(1), [(3, 4)], False),
    ("cat_stack", lambda m, x, y: m.cat([x, y], 0) * m.stack([x, y]).sum(0).repeat(2, 1),
     [(2, 3), (2, 3)], False),
    ("index", lambda m, x: x[m.tensor([2, 0, 2, 1])] + x.gather(1, m.tensor([[0], [1], [2], [0]]))
     .sum() + x.index_select(1, m.tensor([1])), [(4, 3)], False),
    ("where_clamp", lambda m, x: m.where(x > 0, x * x, -x).clamp(-0.5, 0.7), [(6,)], False),
    ("activations", lambda m, x: F.relu(x) if m is ember else
     torch.nn.functional.relu(x), [(7,)], False),
    ("gelu_silu_elu", lambda m, x: m.nn.functional.gelu(x) + m.nn.functional.silu(x) +
     m.nn.functional.elu(x) + m.nn.functional.softplus(x), [(7,)], False),
    ("conv2d", lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1, stride=2),
     [(2, 3, 6, 6), (4, 3, 3, 3), (4,)], False),
    ("pooling", lambda m, x: m.nn.functional.max_pool2d(x, 2) +
     m.nn.functional.avg_pool2d(x, 2), [(1, 2, 4, 4)], False),
    ("layer_norm", lambda m, x, w, b: m.nn.functional.layer_norm(x, (4,), w, b),
     [(3, 4), (4,), (4,)], False),
    ("batch_norm", lambda m, x: m.nn.functional.batch_norm(x, None, None, training=True),
     [(5, 3)], False),
    ("mse_ce", lambda m, x, y: m.nn.functional.mse_loss(x, y) +
     m.nn.functional.cross_entropy(x, m.tensor([0, 2, 1])), [(3, 4), (3, 4)], False),
    ("nll", lambda m, x: m.nn.functional.nll_loss(m.log_softmax(x, 1), m.tensor([1, 0, 3])),
     [(3, 4)], False),
    ("pad", lambda m, x: m.nn.functional.pad(x, (1, 2), value=3.0), [(2, 3)], False),
    ("norm_det", lambda m, x: m.linalg.vector_norm(x) + m.linalg.det(x), [(3, 3)], False),
]


def _inputs(shapes, positive, dtype, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0.5, 2.0, s) if positive else rng.standard_normal(s) for s in shapes]
    ts = [rng.standard_normal(s) for s in shapes]
    return [x.astype(dtype) for x in xs], [t.astype(dtype) for t in ts]


def _ember_jvp(fn, xs, ts):
    with fwAD.dual_level():
        duals = [fwAD.make_dual(ember.tensor(x), ember.tensor(t)) for x, t in zip(xs, ts)]
        out = fn(ember, *duals)
        p, t = fwAD.unpack_dual(out)
        assert t is not None, "no tangent"
        return p.numpy(), t.numpy()


def _torch_jvp(fn, xs, ts):
    with tfwAD.dual_level():
        duals = [tfwAD.make_dual(torch.tensor(x), torch.tensor(t)) for x, t in zip(xs, ts)]
        out = fn(torch, *duals)
        p, t = tfwAD.unpack_dual(out)
        return p.detach().numpy(), t.detach().numpy()


@pytest.mark.parametrize("name,fn,shapes,positive", CASES, ids=[c[0] for c in CASES])
def test_tangent_matches_finite_differences_and_torch(name, fn, shapes, positive):
    xs, ts = _inputs(shapes, positive, np.float64)
    p, t = _ember_jvp(fn, xs, ts)
    # central difference along the tangent direction
    eps = 1e-6
    plus = fn(ember, *[ember.tensor(x + eps * d) for x, d in zip(xs, ts)]).numpy()
    minus = fn(ember, *[ember.tensor(x - eps * d) for x, d in zip(xs, ts)]).numpy()
    np.testing.assert_allclose(t, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)
    tp, tt = _torch_jvp(fn, xs, ts)
    np.testing.assert_allclose(p, tp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t, tt, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name,fn,shapes,positive", CASES[:10], ids=[c[0] for c in CASES[:10]])
def test_tangent_float32(name, fn, shapes, positive):
    xs, ts = _inputs(shapes, positive, np.float32)
    p, t = _ember_jvp(fn, xs, ts)
    tp, tt = _torch_jvp(fn, xs, ts)
    assert t.dtype == np.float32
    np.testing.assert_allclose(t, tt, rtol=1e-4, atol=1e-5)


def test_api_shapes_and_errors():
    x = ember.randn(3)
    with pytest.raises(RuntimeError, match="dual_level"):
        fwAD.make_dual(x, ember.randn(3))
    with fwAD.dual_level():
        d = fwAD.make_dual(x, ember.ones(3))
        u = fwAD.unpack_dual(d)
        assert isinstance(u, tuple) and u._fields == ("primal", "tangent")
        assert fwAD.unpack_dual(x).tangent is None  # the original has no tangent
        assert fwAD.unpack_dual(x * 2).tangent is None
        with pytest.raises(RuntimeError, match="different size"):
            fwAD.make_dual(x, ember.ones(4))
        with pytest.raises(RuntimeError, match="Nested forward mode"):
            fwAD.enter_dual_level()
        # comparisons and integer results carry no tangent
        assert fwAD.unpack_dual(d > 0).tangent is None
    # after the level closes, the tangent is gone and dispatch is back to the plain path
    assert fwAD.unpack_dual(d).tangent is None
    from ember.autograd.graph import _MODES
    assert not _MODES


def test_level_index_and_exit():
    lvl = fwAD.enter_dual_level()
    try:
        d = fwAD.make_dual(ember.tensor([1.0, 2.0]), ember.tensor([1.0, 0.0]))
        np.testing.assert_allclose(fwAD.unpack_dual(d * d).tangent.numpy(), [2.0, 0.0])
    finally:
        fwAD.exit_dual_level(level=lvl)
    with pytest.raises(RuntimeError):
        fwAD.exit_dual_level()


def test_op_without_forward_formula_raises_naming_it():
    class NoDouble(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2
    with fwAD.dual_level():
        d = fwAD.make_dual(ember.randn(2), ember.randn(2))
        with pytest.raises(NotImplementedError, match="jvp"):
            NoDouble.apply(d)


def test_custom_function_jvp_matches_torch():
    def make(m):
        class Cube(m.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_forward(x)
                ctx.save_for_backward(x)
                return x ** 3

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 3 * x * x * g

            @staticmethod
            def jvp(ctx, t):
                (x,) = ctx.saved_tensors
                return 3 * x * x * t
        return Cube
    x, t = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.0, -1.0])
    with fwAD.dual_level():
        out = make(ember).apply(fwAD.make_dual(ember.tensor(x), ember.tensor(t)))
        et = fwAD.unpack_dual(out.sin()).tangent.numpy()
    with tfwAD.dual_level():
        out = make(torch).apply(tfwAD.make_dual(torch.tensor(x), torch.tensor(t)))
        tt = tfwAD.unpack_dual(out.sin()).tangent.numpy()
    np.testing.assert_allclose(et, tt, rtol=1e-12)


def test_forward_over_reverse_hvp():
    rng = np.random.default_rng(1)
    x, v = rng.standard_normal(5), rng.standard_normal(5)

    def f(m, x):
        return (m.tanh(x) * x.exp()).sum() + (x @ x) ** 2

    with fwAD.dual_level():
        d = fwAD.make_dual(ember.tensor(x).requires_grad_(), ember.tensor(v))
        (g,) = ember.autograd.grad(f(ember, d), d, create_graph=True)
        hv = fwAD.unpack_dual(g).tangent.detach().numpy()
    xt = torch.tensor(x, requires_grad=True)
    _, thv = torch.autograd.functional.hvp(lambda a: f(torch, a), xt, torch.tensor(v))
    np.testing.assert_allclose(hv, thv.numpy(), rtol=1e-10)


def test_reverse_over_forward():
    # the tangent of an op is differentiable with respect to the primal
    x = ember.tensor([0.3, -1.2], dtype=ember.float64, requires_grad=True)
    xt = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    with fwAD.dual_level():
        t = fwAD.unpack_dual(ember.sin(fwAD.make_dual(x, ember.ones(2, dtype=ember.float64))) *
                             2).tangent
        (g,) = ember.autograd.grad(t.sum(), x)
    with tfwAD.dual_level():
        tt = tfwAD.unpack_dual(torch.sin(tfwAD.make_dual(xt, torch.ones(2, dtype=torch.float64)))
                               * 2).tangent
        (gt,) = torch.autograd.grad(tt.sum(), xt)
    np.testing.assert_allclose(g.numpy(), gt.numpy(), rtol=1e-12)


def test_functional_jacobian_forward_mode_matches_reverse_and_torch():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3))

    def f(m, x, y):
        return m.tanh(x @ m.tensor(w).T) * y.sum(), x.exp()

    x, y = rng.standard_normal((2, 3)), rng.standard_normal(2)
    ej = ember.autograd.functional.jacobian(lambda a, b: f(ember, a, b),
                                            (ember.tensor(x), ember.tensor(y)),
                                            vectorize=True, strategy="forward-mode")
    rj = ember.autograd.functional.jacobian(lambda a, b: f(ember, a, b),
                                            (ember.tensor(x), ember.tensor(y)))
    tj = torch.autograd.functional.jacobian(lambda a, b: f(torch, a, b),
                                            (torch.tensor(x), torch.tensor(y)),
                                            vectorize=True, strategy="forward-mode")
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(ej[i][j].numpy(), tj[i][j].numpy(), rtol=1e-10)
            np.testing.assert_allclose(ej[i][j].numpy(), rj[i][j].numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="vectorize"):
        ember.autograd.functional.jacobian(lambda a: a, ember.randn(2), strategy="forward-mode")


def test_gradcheck_forward_ad():
    x = ember.randn(3, 2, dtype=ember.float64, requires_grad=True)
    assert ember.autograd.gradcheck(lambda a: (a.sin() * a).softmax(1), (x,),
                                    check_forward_ad=True)

    class WrongJvp(ember.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

        @staticmethod
        def jvp(ctx, t):
            return t * 3
    with pytest.raises(ember.autograd.gradcheck.__module__ and RuntimeError,
                       match="forward mode"):
        ember.autograd.gradcheck(WrongJvp.apply, (x,), check_forward_ad=True)
    assert ember.autograd.gradgradcheck(lambda a: (a ** 3).sum(1), (x,),
                                        check_fwd_over_rev=True)


def test_no_cost_when_inactive():
    from ember.autograd.graph import _MODES
    assert not _MODES
    with fwAD.dual_level():
        assert _MODES
    assert not _MODES


def test_functional_jvp_and_hvp_run_forward_mode_and_match_torch():
    rng = np.random.default_rng(5)
    x, v = rng.standard_normal(4), rng.standard_normal(4)

    def f(m):
        return lambda a: (m.tanh(a) * a.exp()).sum() * a

    def s(m):
        return lambda a: (m.sin(a) * a.exp()).sum() + (a @ a) ** 2
    calls = []
    from ember.autograd import forward_ad as fa
    orig = fa._double_vjp
    fa._double_vjp = lambda *a: calls.append(1) or orig(*a)
    try:
        eo, ej = ember.autograd.functional.jvp(f(ember), ember.tensor(x), ember.tensor(v))
    finally:
        fa._double_vjp = orig
    assert not calls  # every op here has an explicit formula: one forward pass, no backward
    to, tj = torch.autograd.functional.jvp(f(torch), torch.tensor(x), torch.tensor(v))
    np.testing.assert_allclose(ej.numpy(), tj.numpy(), rtol=1e-12)
    np.testing.assert_allclose(eo.numpy(), to.numpy(), rtol=1e-12)
    eo, eh = ember.autograd.functional.hvp(s(ember), ember.tensor(x), ember.tensor(v))
    to, th = torch.autograd.functional.hvp(s(torch), torch.tensor(x), torch.tensor(v))
    np.testing.assert_allclose(eh.numpy(), th.numpy(), rtol=1e-10)
    assert not eh.requires_grad and float(eo) == pytest.approx(float(to))
