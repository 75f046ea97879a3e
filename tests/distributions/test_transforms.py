"""Transforms against PyTorch: forward, inverse, log|det J|, shapes, caching and signs."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

TRANSFORMS = {
    "exp": lambda T, L: T.ExpTransform(),
    "affine": lambda T, L: T.AffineTransform(L.tensor([0.5, -1.0, 2.0], dtype=L.float64), -1.5),
    "affine_event": lambda T, L: T.AffineTransform(0.0, L.tensor([1.0, 2.0, 3.0],
                                                                  dtype=L.float64), 1),
    "sigmoid": lambda T, L: T.SigmoidTransform(),
    "tanh": lambda T, L: T.TanhTransform(),
    "softplus": lambda T, L: T.SoftplusTransform(),
    "power": lambda T, L: T.PowerTransform(L.tensor(2.5, dtype=L.float64)),
    "stick_breaking": lambda T, L: T.StickBreakingTransform(),
    "compose": lambda T, L: T.ComposeTransform([T.AffineTransform(1.0, 2.0),
                                                T.SigmoidTransform()]),
    "exp_inv": lambda T, L: T.ExpTransform().inv,
    "independent": lambda T, L: T.IndependentTransform(T.SoftplusTransform(), 1),
    "reshape": lambda T, L: T.ReshapeTransform((3,), (3, 1)),
}
POSITIVE_DOMAIN = {"power", "exp_inv"}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_parity(name):
    x = np.random.default_rng(0).standard_normal((2, 3)) * 0.8
    if name in POSITIVE_DOMAIN:
        x = np.abs(x) + 0.1
    out = {}
    for lib in (torch, ember):
        t = TRANSFORMS[name](lib.distributions.transforms, lib)
        xt = lib.tensor(x, requires_grad=True)
        y = t(xt)
        back = t.inv(y)
        ladj = t.log_abs_det_jacobian(xt, y)
        (y.sum() + ladj.sum()).backward()
        out[lib] = (y.detach().numpy(), back.detach().numpy(), ladj.detach().numpy(),
                    xt.grad.numpy(), tuple(t.forward_shape((2, 3))),
                    tuple(t.inverse_shape(tuple(y.shape))), t.domain.event_dim,
                    t.codomain.event_dim, t.bijective)
    for a, b in zip(out[ember], out[torch]):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            assert a == b, name


def test_cache_returns_the_same_tensor():
    t = ember.distributions.transforms.ExpTransform(cache_size=1)
    x = ember.randn(3)
    y = t(x)
    assert t.inv(y) is x
    assert t.inv.inv is t
    with pytest.raises(ValueError):
        ember.distributions.transforms.ExpTransform(cache_size=2)


def test_signs_and_cdf_through_decreasing_transform():
    T = ember.distributions.transforms
    assert T.ExpTransform().sign == 1
    assert T.AffineTransform(0.0, -2.0).sign == -1
    assert T.ComposeTransform([T.ExpTransform(), T.AffineTransform(0.0, -2.0)]).sign == -1
    for lib in (ember, torch):
        Dl = lib.distributions
        d = Dl.TransformedDistribution(Dl.Normal(lib.tensor(0.3), lib.tensor(1.2)),
                                       [Dl.transforms.AffineTransform(1.0, -2.0)])
        v = lib.tensor([-1.0, 0.5, 2.0])
        if lib is ember:
            mine = (d.cdf(v).numpy(), d.icdf(lib.tensor([0.2, 0.7])).numpy())
        else:
            ref = (d.cdf(v).numpy(), d.icdf(lib.tensor([0.2, 0.7])).numpy())
    np.testing.assert_allclose(mine[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(mine[1], ref[1], rtol=1e-6)
