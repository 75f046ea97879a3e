"""gradcheck/gradgradcheck and ember.autograd.functional against torch.autograd.functional."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
F = ember.autograd.functional
TF = torch.autograd.functional

rng = np.random.default_rng(0)
X0, Y0, V0 = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)


def _t(mod, a):
    return mod.tensor(a, dtype=mod.float64)


def _cmp(e, t):
    if isinstance(t, (tuple, list)):
        assert isinstance(e, (tuple, list)) and len(e) == len(t)
        for a, b in zip(e, t):
            _cmp(a, b)
        return
    assert tuple(e.shape) == tuple(t.shape)
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)


def f_vec(x):
    return x.sin() * x.exp()


def f_scalar(x):
    return (x ** 3).sum() + (x[0] * x[1])


def f_two(x, y):
    return (x * y.tanh()).sum()


def f_two_out(x, y):
    return x * y, (x + y).exp()


def test_gradcheck_passes_and_detects_wrong_backward():
    x = ember.tensor(X0, requires_grad=True)
    assert ember.autograd.gradcheck(f_vec, (x,))
    assert ember.autograd.gradgradcheck(f_vec, (x,))

    class Wrong(ember.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, g):
            return g * 3

    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        ember.autograd.gradcheck(Wrong.apply, (x,))
    assert ember.autograd.gradcheck(Wrong.apply, (x,), raise_exception=False) is False


def test_jacobian():
    _cmp(F.jacobian(f_vec, _t(ember, X0)), TF.jacobian(f_vec, _t(torch, X0)))
    e = F.jacobian(f_two_out, (_t(ember, X0), _t(ember, Y0)))
    t = TF.jacobian(f_two_out, (_t(torch, X0), _t(torch, Y0)))
    _cmp(e, t)


def test_hessian():
    _cmp(F.hessian(f_scalar, _t(ember, X0)), TF.hessian(f_scalar, _t(torch, X0)))
    e = F.hessian(f_two, (_t(ember, X0), _t(ember, Y0)))
    t = TF.hessian(f_two, (_t(torch, X0), _t(torch, Y0)))
    _cmp(e, t)


def test_vjp_jvp():
    _cmp(F.vjp(f_vec, _t(ember, X0), _t(ember, V0)), TF.vjp(f_vec, _t(torch, X0), _t(torch, V0)))
    _cmp(F.jvp(f_vec, _t(ember, X0), _t(ember, V0)), TF.jvp(f_vec, _t(torch, X0), _t(torch, V0)))
    _cmp(F.vjp(f_scalar, _t(ember, X0)), TF.vjp(f_scalar, _t(torch, X0)))
    e = F.jvp(f_two_out, (_t(ember, X0), _t(ember, Y0)), (_t(ember, V0), _t(ember, V0)))
    t = TF.jvp(f_two_out, (_t(torch, X0), _t(torch, Y0)), (_t(torch, V0), _t(torch, V0)))
    _cmp(e, t)


def test_hvp_vhp():
    _cmp(F.hvp(f_scalar, _t(ember, X0), _t(ember, V0)),
         TF.hvp(f_scalar, _t(torch, X0), _t(torch, V0)))
    _cmp(F.vhp(f_scalar, _t(ember, X0), _t(ember, V0)),
         TF.vhp(f_scalar, _t(torch, X0), _t(torch, V0)))
    e = F.hvp(f_two, (_t(ember, X0), _t(ember, Y0)), (_t(ember, V0), _t(ember, V0)))
    t = TF.hvp(f_two, (_t(torch, X0), _t(torch, Y0)), (_t(torch, V0), _t(torch, V0)))
    _cmp(e, t)


def test_functional_create_graph():
    x = _t(ember, X0).requires_grad_()
    H = F.hessian(f_scalar, x, create_graph=True)
    assert H.requires_grad
    xt = _t(torch, X0).requires_grad_()
    Ht = TF.hessian(f_scalar, xt, create_graph=True)
    H.sum().backward()
    Ht.sum().backward()
    _cmp(x.grad, xt.grad)


def test_jacobian_input_unused_gives_zeros():
    e = F.jacobian(lambda x, y: x * 2, (_t(ember, X0), _t(ember, Y0)))
    t = TF.jacobian(lambda x, y: x * 2, (_t(torch, X0), _t(torch, Y0)))
    _cmp(e, t)


@pytest.mark.parametrize("name", ["hess_lin", "jac_const", "jac_strict", "vjp_strict",
                                  "vjp_const", "jvp_const", "vhp_lin", "vhp_strict",
                                  "hess_strict", "vhp_unused_strict"])
def test_degenerate_functions_match_torch(name):
    def call(mod):
        f = mod.autograd.functional
        x = _t(mod, X0)
        v = _t(mod, V0)
        return {
            "hess_lin": lambda: f.hessian(lambda a: (a * 3).sum(), x),
            "jac_const": lambda: f.jacobian(lambda a: mod.ones(3, dtype=mod.float64), x),
            "jac_strict": lambda: f.jacobian(lambda a, b: a * 2, (x, x), strict=True),
            "vjp_strict": lambda: f.vjp(lambda a, b: (a * 2).sum(), (x, x), strict=True),
            "vjp_const": lambda: f.vjp(lambda a: mod.ones(3, dtype=mod.float64), x, v),
            "jvp_const": lambda: f.jvp(lambda a: mod.ones(3, dtype=mod.float64), x, v),
            "vhp_lin": lambda: f.vhp(lambda a: (a * 3).sum(), x, v),
            "vhp_strict": lambda: f.vhp(lambda a: (a * 3).sum(), x, v, strict=True),
            "hess_strict": lambda: f.hessian(lambda a: (a * 3).sum(), x, strict=True),
            "vhp_unused_strict": lambda: f.vhp(lambda a, b: (a ** 3).sum(), (x, x), (v, v),
                                               strict=True),
        }[name]()
    try:
        t = call(torch)
    except RuntimeError as err:
        with pytest.raises(RuntimeError, match=str(err).split(" is ")[1][:20]):
            call(ember)
        return
    _cmp(call(ember), t)
