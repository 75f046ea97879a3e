"""In-place ops under forward-mode AD and under vmap, against PyTorch: the target's tangent
follows the write (and is updated in place, as PyTorch's is), a batched target takes the
batched result, and an unbatched target refuses a batched value with PyTorch's error."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def inplace_programs(lib):
    c = lib.tensor([0.5, -1.0, 2.0, 0.25])
    return {
        "mul_": lambda d, o: d.mul_(2.5),
        "mul_dual": lambda d, o: d.mul_(o),
        "add_alpha": lambda d, o: d.add_(o, alpha=3),
        "sub_": lambda d, o: d.sub_(c),
        "div_": lambda d, o: d.div_(o + 3),
        "pow_": lambda d, o: d.pow_(2),
        "sin_": lambda d, o: d.sin_(),
        "exp_": lambda d, o: d.exp_(),
        "tanh_": lambda d, o: d.tanh_(),
        "clamp_": lambda d, o: d.clamp_(-0.5, 1.5),
        "relu_": lambda d, o: d.relu_(),
        "addcmul_": lambda d, o: d.addcmul_(o, c, value=0.5),
        "copy_": lambda d, o: d.copy_(o * 2),
        "fill_": lambda d, o: d.fill_(1.0),
        "zero_": lambda d, o: d.zero_(),
        "chain": lambda d, o: d.mul_(2).add_(d).sin_().mul_(o),
        "nondual_target": lambda d, o: o.clone().mul_(d),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(inplace_programs(ember)))
def test_forward_ad_tangent_through_inplace(name, dtype):
    def run(lib):
        fwAD = lib.autograd.forward_ad
        dt = getattr(lib, dtype)
        x = lib.tensor([0.3, -0.7, 1.1, 0.2], dtype=dt)
        t = lib.tensor([1.0, 0.5, -2.0, 0.1], dtype=dt)
        ox = lib.tensor([0.9, 0.4, -0.3, 1.3], dtype=dt)
        ot = lib.tensor([0.2, -1.0, 0.7, 0.0], dtype=dt)
        with fwAD.dual_level():
            d = fwAD.make_dual(x.clone(), t.clone())
            o = fwAD.make_dual(ox.clone(), ot.clone())
            r = inplace_programs(lib)[name](d, o)
            p, tg = fwAD.unpack_dual(r)
            dp, dtg = fwAD.unpack_dual(d)
            return (p.numpy().copy(), None if tg is None else tg.numpy().copy(),
                    dp.numpy().copy(), None if dtg is None else dtg.numpy().copy())
    got, want = run(ember), run(torch)
    tol = 1e-6 if dtype == "float32" else 1e-12
    for g, w in zip(got, want):
        if w is None or not np.any(w):  # no tangent, or PyTorch's zero tangent
            assert g is None or not np.any(g)
        else:
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_forward_ad_inplace_updates_the_given_tangent_in_place():
    # PyTorch writes the new tangent into the tangent tensor handed to make_dual
    def run(lib):
        fwAD = lib.autograd.forward_ad
        t = lib.tensor([1.0, 2.0])
        with fwAD.dual_level():
            d = fwAD.make_dual(lib.tensor([3.0, 4.0]), t)
            d.mul_(lib.tensor([2.0, 3.0]))
        return t.numpy()
    np.testing.assert_allclose(run(ember), run(torch))
    np.testing.assert_allclose(run(ember), [2.0, 6.0])


def test_jvp_of_a_function_with_inplace_ops_matches_torch_func():
    def f(lib):
        def fn(z):
            y = z.clone()
            y.mul_(z).add_(1).sqrt_()
            return y
        return fn
    x, t = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    got = ember.func.jvp(f(ember), (ember.tensor(x),), (ember.tensor(t),))
    want = torch.func.jvp(f(torch), (torch.tensor(x),), (torch.tensor(t),))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12)


def test_forward_ad_inplace_on_a_view_of_a_dual_tensor_raises():
    fwAD = ember.autograd.forward_ad
    with fwAD.dual_level():
        d = fwAD.make_dual(ember.ones(4), ember.ones(4))
        with pytest.raises(NotImplementedError, match="view of a dual tensor"):
            d[:2].mul_(2)


VMAP_PROGRAMS = {
    "add_": lambda u, v: u.add_(v),
    "mul_": lambda u, v: u.mul_(v),
    "sub_alpha": lambda u, v: u.sub_(v, alpha=2),
    "chain": lambda u, v: u.mul_(2).add_(v).exp_(),
    "copy_": lambda u, v: u.copy_(v * 3),
    "fill_": lambda u, v: u.fill_(7.0),
    "clamp_": lambda u, v: u.clamp_(1.0, 4.0),
    "addcmul_": lambda u, v: u.addcmul_(v, v, value=0.5),
}


@pytest.mark.parametrize("in_dims", [(0, 0), (0, None), (1, 0)], ids=str)
@pytest.mark.parametrize("name", list(VMAP_PROGRAMS))
def test_vmap_inplace_writes_into_the_batched_input(name, in_dims):
    a = np.arange(12.0).reshape(3, 4) / 4
    b = np.linspace(-1, 1, 12).reshape(3, 4)
    v_shape = b if in_dims[1] == 0 else b[0]

    def run(lib):
        u = lib.tensor(a.T.copy() if in_dims[0] == 1 else a.copy())
        v = lib.tensor(v_shape.copy())
        out = lib.func.vmap(VMAP_PROGRAMS[name], in_dims=in_dims)(u, v)
        return out.numpy(), u.numpy()
    (go, gu), (wo, wu) = run(ember), run(torch)
    np.testing.assert_allclose(go, wo, rtol=1e-12)
    np.testing.assert_allclose(gu, wu, rtol=1e-12)  # the input itself was written


def test_vmap_inplace_batched_value_into_unbatched_target_raises():
    def f(u, v):
        return u.add_(v)
    with pytest.raises(RuntimeError) as want:
        torch.func.vmap(f, in_dims=(None, 0))(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(RuntimeError) as got:
        ember.func.vmap(f, in_dims=(None, 0))(ember.ones(3), ember.ones(2, 3))
    assert str(got.value).startswith(str(want.value).split(" (")[0])


def test_grad_of_vmap_with_inplace_matches_torch_func():
    def f(lib):
        def inner(w, x):
            h = x * w
            h.mul_(w).add_(x)
            return h.sum()
        return lambda w, xs: lib.func.vmap(inner, in_dims=(None, 0))(w, xs).sum()
    w, xs = np.array([0.5, -1.5, 2.0]), np.arange(6.0).reshape(2, 3)
    got = ember.func.grad(f(ember))(ember.tensor(w), ember.tensor(xs))
    want = torch.func.grad(f(torch))(torch.tensor(w), torch.tensor(xs))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
