"""Lazy modules, the hook-based weight_norm/spectral_norm (+ remove_*), skip_init:
parity with PyTorch."""

import warnings

import numpy as np
import pytest

import ember
from ember import nn

torch = pytest.importorskip("torch")


def T(t):
    return torch.tensor(t.detach().numpy())


def E(t):
    return ember.tensor(t.detach().numpy())


def copy_params(src, dst):
    """Copy torch module ``src``'s parameters and buffers into ember module ``dst``."""
    sd = {k: E(v) for k, v in src.state_dict().items()}
    dst.load_state_dict(sd)


LAZY = [
    ("LazyConv1d", (4, 3), {"padding": 1}, (2, 3, 9)),
    ("LazyConv2d", (4, 3), {"stride": 2}, (2, 3, 8, 8)),
    ("LazyConv3d", (2, 2), {}, (1, 3, 4, 4, 4)),
    ("LazyConv2d", (6, 3), {"groups": 2}, (3, 4, 6, 6)),  # unbatched input
    ("LazyConvTranspose1d", (4, 3), {}, (2, 3, 5)),
    ("LazyConvTranspose2d", (6, 2), {"groups": 2, "stride": 2}, (1, 4, 3, 3)),
    ("LazyConvTranspose3d", (2, 2), {}, (1, 3, 2, 2, 2)),
    ("LazyBatchNorm1d", (), {}, (4, 5)),
    ("LazyBatchNorm2d", (), {"momentum": 0.3}, (4, 3, 2, 2)),
    ("LazyBatchNorm3d", (), {"affine": False}, (2, 3, 2, 2, 2)),
    ("LazyInstanceNorm1d", (), {"affine": True}, (2, 3, 6)),
    ("LazyInstanceNorm2d", (), {"track_running_stats": True}, (2, 3, 4, 4)),
    ("LazyInstanceNorm3d", (), {}, (2, 3, 2, 2, 2)),
    ("LazyLinear", (3,), {}, (2, 5)),
]


@pytest.mark.parametrize("name,args,kw,shape", LAZY, ids=[f"{c[0]}-{i}" for i, c in
                                                          enumerate(LAZY)])
def test_lazy_modules_match_pytorch(name, args, kw, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    if name == "LazyConv2d" and kw.get("groups"):
        x = x[0]  # unbatched (C, H, W)
    tm = getattr(torch.nn, name)(*args, **kw).double()
    em = getattr(nn, name)(*args, **kw, dtype=ember.float64)
    assert em.has_uninitialized_params()
    if getattr(em, "weight", None) is not None:
        with pytest.raises(RuntimeError, match="uninitialized"):
            em.weight.shape
    tout = tm(torch.tensor(x))
    eout = em(ember.tensor(x))  # sizes the parameters (random init)
    assert type(em).__name__ == type(tm).__name__  # became the ordinary layer
    assert list(em.state_dict()) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert tuple(em.state_dict()[k].shape) == tuple(v.shape), k
    assert tuple(eout.shape) == tuple(tout.shape)
    em.load_state_dict({k: E(v) for k, v in tm.state_dict().items()})
    em.train()
    tm.train()
    np.testing.assert_allclose(em(ember.tensor(x)).detach().numpy(),
                               tm(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-10)


def test_lazy_errors():
    with pytest.raises(RuntimeError, match="Expected 3D \\(unbatched\\) or 4D"):
        nn.LazyConv2d(4, 3)(ember.randn(2, 3))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.LazyConv2d(4, 3, groups=2)(ember.randn(1, 3, 5, 5))


@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_matches_pytorch(dim):
    tl = torch.nn.Linear(4, 3).double()
    el = nn.Linear(4, 3, dtype=ember.float64)
    copy_params(tl, el)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.nn.utils.weight_norm(tl, dim=dim)
    with pytest.warns(FutureWarning, match="parametrizations.weight_norm"):
        nn.utils.weight_norm(el, dim=dim)
    assert [n for n, _ in el.named_parameters()] == [n for n, _ in tl.named_parameters()]
    np.testing.assert_allclose(el.weight_g.detach().numpy(), tl.weight_g.detach().numpy())
    x = np.random.default_rng(1).standard_normal((5, 4))
    ty = tl(torch.tensor(x))
    ey = el(ember.tensor(x))
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
    (ty ** 2).sum().backward()
    (ey ** 2).sum().backward()
    for n in ("weight_g", "weight_v", "bias"):
        np.testing.assert_allclose(getattr(el, n).grad.numpy(), getattr(tl, n).grad.numpy(),
                                   rtol=1e-10, atol=1e-12)
    torch.nn.utils.remove_weight_norm(tl)
    nn.utils.remove_weight_norm(el)
    assert sorted(n for n, _ in el.named_parameters()) == ["bias", "weight"]
    np.testing.assert_allclose(el.weight.detach().numpy(), tl.weight.detach().numpy(),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="not found"):
        nn.utils.remove_weight_norm(el)


@pytest.mark.parametrize("kind", ["linear", "conv", "convT"])
def test_spectral_norm_matches_pytorch(kind):
    make = {"linear": lambda L: L.nn.Linear(6, 4), "conv": lambda L: L.nn.Conv2d(2, 3, 3),
            "convT": lambda L: L.nn.ConvTranspose2d(2, 3, 3)}[kind]
    shape = {"linear": (5, 6), "conv": (2, 2, 5, 5), "convT": (2, 2, 3, 3)}[kind]
    tm, em = make(torch).double(), make(ember).to(ember.float64)
    copy_params(tm, em)
    torch.nn.utils.spectral_norm(tm, n_power_iterations=2)
    nn.utils.spectral_norm(em, n_power_iterations=2)
    assert sorted(em.state_dict()) == sorted(tm.state_dict())
    # start the power iteration from PyTorch's random vectors
    em.weight_u.copy_(E(tm.weight_u))
    em.weight_v.copy_(E(tm.weight_v))
    x = np.random.default_rng(2).standard_normal(shape)
    for mode in ("train", "train", "eval"):
        getattr(tm, mode)()
        getattr(em, mode)()
        ty, ey = tm(torch.tensor(x)), em(ember.tensor(x))
        np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(em.weight_u.numpy(), tm.weight_u.numpy(), rtol=1e-9)
    (ty ** 2).sum().backward()
    (ey ** 2).sum().backward()
    np.testing.assert_allclose(em.weight_orig.grad.numpy(), tm.weight_orig.grad.numpy(),
                               rtol=1e-8, atol=1e-12)
    torch.nn.utils.remove_spectral_norm(tm)
    nn.utils.remove_spectral_norm(em)
    np.testing.assert_allclose(em.weight.detach().numpy(), tm.weight.detach().numpy(),
                               rtol=1e-10)
    assert sorted(em.state_dict()) == sorted(tm.state_dict())


def test_spectral_norm_bounds_singular_value():
    lin = nn.utils.spectral_norm(nn.Linear(8, 8, dtype=ember.float64), n_power_iterations=30)
    lin(ember.randn(1, 8, dtype=ember.float64))
    s = np.linalg.svd(lin.weight.detach().numpy(), compute_uv=False)
    assert abs(s[0] - 1) < 1e-6


def test_skip_init():
    state = ember.get_rng_state()
    lin = nn.utils.skip_init(nn.Linear, 5, 3, bias=True)
    assert ember.equal(ember.get_rng_state(), state)  # no random initialisation ran
    assert type(lin) is nn.Linear and tuple(lin.weight.shape) == (3, 5)
    nn.Linear(5, 3)
    assert not ember.equal(ember.get_rng_state(), state)
    with pytest.raises(RuntimeError, match="device"):
        nn.utils.skip_init(lambda n: nn.Linear(n, n), 3)
    # the init functions are restored afterwards
    w = ember.empty(3, 3)
    nn.init.ones_(w)
    assert ember.equal(w, ember.ones(3, 3))
