"""nn.utils: gradient clipping, parameter vectors, parametrizations, fusion, functional_call."""

import math

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.nn.utils import parametrize

torch = pytest.importorskip("torch")


def _pair(seed=0):
    """The same small model in torch and ember with gradients filled in."""
    out = []
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3))
    for m in (torch, ember):
        net = m.nn.Sequential(m.nn.Linear(3, 5), m.nn.Tanh(), m.nn.Linear(5, 2)).double()
        out.append(net)
    out[1].load_state_dict({k: ember.tensor(v.numpy()) for k, v in out[0].state_dict().items()})
    for net, m in zip(out, (torch, ember)):
        (net(m.tensor(x)) ** 3).sum().backward()
    return out


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    tn, en = _pair()
    t_total = torch.nn.utils.clip_grad_norm_(tn.parameters(), 0.5, norm_type)
    e_total = nn.utils.clip_grad_norm_(en.parameters(), 0.5, norm_type)
    np.testing.assert_allclose(float(e_total), float(t_total), rtol=1e-10)
    for p, q in zip(en.parameters(), tn.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10)


def test_clip_grad_value_total_norm_and_errors():
    tn, en = _pair(1)
    torch.nn.utils.clip_grad_value_(tn.parameters(), 0.1)
    nn.utils.clip_grad_value_(en.parameters(), 0.1)
    for p, q in zip(en.parameters(), tn.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy())
    grads = [p.grad for p in en.parameters()]
    total = nn.utils.get_total_norm(grads, 2.0)
    ref = torch.nn.utils.get_total_norm([p.grad for p in tn.parameters()], 2.0)
    np.testing.assert_allclose(float(total), float(ref), rtol=1e-10)
    p = nn.Parameter(ember.ones(2))
    p.grad = ember.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert float(nn.utils.clip_grad_norm_([nn.Parameter(ember.ones(1))], 1.0)) == 0.0


def test_parameters_vector_roundtrip():
    net = nn.Linear(3, 2)
    vec = nn.utils.parameters_to_vector(net.parameters())
    assert vec.shape == (8,)
    nn.utils.vector_to_parameters(vec * 2, net.parameters())
    np.testing.assert_allclose(nn.utils.parameters_to_vector(net.parameters()).detach().numpy(),
                               vec.detach().numpy() * 2, rtol=1e-6)
    with pytest.raises(TypeError, match="expected torch.Tensor"):
        nn.utils.vector_to_parameters([1, 2], net.parameters())


class Symmetric(nn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).transpose(-1, -2)

    def right_inverse(self, a):
        return a.triu()


def test_register_parametrization():
    m = nn.Linear(3, 3)
    parametrize.register_parametrization(m, "weight", Symmetric())
    w = m.weight.detach().numpy()
    np.testing.assert_allclose(w, w.T)
    assert type(m).__name__ == "ParametrizedLinear" and isinstance(m, nn.Linear)
    assert parametrize.is_parametrized(m, "weight") and not parametrize.is_parametrized(m, "bias")
    assert list(m.state_dict()) == ["bias", "parametrizations.weight.original"]
    assert "(parametrizations): ModuleDict(" in repr(m)
    m(ember.randn(2, 3)).sum().backward()
    assert m.parametrizations.weight.original.grad is not None
    sym = np.array([[1.0, 2, 3], [2, 4, 5], [3, 5, 6]], dtype=np.float32)
    m.weight = ember.tensor(sym)  # goes through right_inverse
    np.testing.assert_allclose(m.weight.detach().numpy(), sym)
    with parametrize.cached():
        assert m.weight is m.weight
    parametrize.remove_parametrizations(m, "weight")
    assert type(m) is nn.Linear and isinstance(m.weight, nn.Parameter)
    np.testing.assert_allclose(m.weight.detach().numpy(), sym)


def _torch_copy(tm, em):
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


def test_weight_norm_matches_torch():
    tm = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 3).double())
    em = nn.utils.parametrizations.weight_norm(nn.Linear(4, 3).double())
    assert list(tm.state_dict()) == list(em.state_dict())
    assert repr(tm) == repr(em)
    _torch_copy(tm, em)
    x = np.random.default_rng(0).standard_normal((2, 4))
    to, eo = tm(torch.tensor(x)), em(ember.tensor(x))
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=1e-10)
    to.sum().backward()
    eo.sum().backward()
    for name in ("original0", "original1"):
        np.testing.assert_allclose(
            getattr(em.parametrizations.weight, name).grad.numpy(),
            getattr(tm.parametrizations.weight, name).grad.numpy(), rtol=1e-9)


def test_spectral_norm_matches_torch():
    torch.manual_seed(0)
    tm = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(5, 4).double())
    em = nn.utils.parametrizations.spectral_norm(nn.Linear(5, 4).double())
    assert list(tm.state_dict()) == list(em.state_dict())
    _torch_copy(tm, em)
    x = np.random.default_rng(0).standard_normal((2, 5))
    for mode in (True, False):
        tm.train(mode)
        em.train(mode)
        to, eo = tm(torch.tensor(x)), em(ember.tensor(x))
        np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=1e-9)
    em.train()
    for _ in range(50):  # more power iterations: sigma converges to the top singular value
        em(ember.tensor(x))
    s = np.linalg.svd(em.weight.detach().numpy(), compute_uv=False)
    assert abs(s[0] - 1) < 1e-6


@pytest.mark.parametrize("shape,orth_map", [((4, 4), "matrix_exp"), ((5, 3), "householder"),
                                            ((3, 5), "matrix_exp"), ((3, 5), "householder")])
def test_orthogonal(shape, orth_map):
    m = nn.Linear(shape[1], shape[0]).double()
    nn.utils.parametrizations.orthogonal(m, orthogonal_map=orth_map)
    w = m.weight.detach().numpy()
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(min(shape)), atol=1e-10)
    m(ember.randn(2, shape[1], dtype=ember.float64)).sum().backward()
    assert m.parametrizations.weight.original.grad is not None
    # the parametrization matches PyTorch's on the same original and base
    tm = torch.nn.Linear(shape[1], shape[0]).double()
    torch.nn.utils.parametrizations.orthogonal(tm, orthogonal_map=orth_map)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    np.testing.assert_allclose(w, tm.weight.detach().numpy(), atol=1e-10)


def test_fuse_linear_bn_eval():
    lin, bn = nn.Linear(3, 4), nn.BatchNorm1d(4)
    bn.train()
    bn(lin(ember.randn(8, 3)))
    lin.eval()
    bn.eval()
    fused = nn.utils.fuse_linear_bn_eval(lin, bn)
    x = ember.randn(5, 3)
    np.testing.assert_allclose(fused(x).detach().numpy(), bn(lin(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        nn.utils.fuse_linear_bn_eval(lin.train(), bn)


def test_fuse_conv_bn_eval():
    if not hasattr(nn, "Conv2d"):
        pytest.skip("ember.nn.Conv2d is not built yet")
    conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
    bn(conv(ember.randn(4, 2, 5, 5)))
    conv.eval()
    bn.eval()
    fused = nn.utils.fuse_conv_bn_eval(conv, bn)
    x = ember.randn(2, 2, 5, 5)
    np.testing.assert_allclose(fused(x).detach().numpy(), bn(conv(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_functional_call():
    m = nn.Linear(2, 2)
    w0 = m.weight
    zeros = {"weight": ember.zeros(2, 2), "bias": ember.ones(2)}
    out = ember.func.functional_call(m, zeros, (ember.randn(3, 2),))
    np.testing.assert_array_equal(out.numpy(), np.ones((3, 2)))
    assert m.weight is w0
    out = nn.utils.stateless.functional_call(m, ({"weight": ember.zeros(2, 2)},
                                                 {"bias": ember.zeros(2)}), ember.ones(1, 2))
    assert float(out.abs().sum()) == 0
    with pytest.raises(RuntimeError, match="Missing key"):
        ember.func.functional_call(m, {"weight": ember.zeros(2, 2)}, ember.ones(1, 2),
                                   strict=True)
    # tied weights follow the given value
    a = nn.Linear(2, 2, bias=False)
    tied = nn.Sequential(a, a)
    out = ember.func.functional_call(tied, {"0.weight": ember.eye(2) * 2}, ember.ones(1, 2))
    np.testing.assert_array_equal(out.numpy(), [[4.0, 4.0]])
    # gradients flow to the given tensors
    w = ember.ones(2, 2, requires_grad=True)
    ember.func.functional_call(m, {"weight": w}, ember.ones(1, 2)).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones((2, 2)))
