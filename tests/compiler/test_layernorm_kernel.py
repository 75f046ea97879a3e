"""``ember.compiler._layernorm``: the layer-norm kernels of compiled steps (sums in the
input's dtype, weight/bias gradients by fixed row blocks) against eager's kernels and
PyTorch, float32 and float64, with and without weight and bias, odd sizes, the same bits at
1 and 2 threads, and what they decline."""

import numpy as np
import pytest

import ember
from ember.compiler import _codegen, _layernorm
from ember.ops import _nn_c

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")

TOL = {np.float32: 3e-6, np.float64: 1e-13}


def _close(a, b, tol, what):
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    err = float(np.abs(a - b).max()) if a.size else 0.0
    assert err <= tol * scale, f"{what}: {err:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 64, 128), (3, 70, 5), (130, 1), (2, 33)])
@pytest.mark.parametrize("affine", ["wb", "w", "b", "none"])
def test_against_eager_and_pytorch(dtype, shape, affine):
    r = np.random.default_rng(0)
    n = shape[-1]
    x = (r.standard_normal(shape) * 3 + 1).astype(dtype)
    g = r.standard_normal(shape).astype(dtype)
    w = r.standard_normal(n).astype(dtype) if "w" in affine else None
    b = r.standard_normal(n).astype(dtype) if "b" in affine else None
    y, mean, var, rstd = _layernorm.forward(x, w, b, (x.ndim - 1,), 1e-5)
    ey, emean, evar, erstd = _nn_c.layer_norm(x, n, w, b, 1e-5)
    tol = TOL[dtype]
    for a, e, what in ((y, ey, "y"), (mean, emean, "mean"), (var, evar, "var"),
                       (rstd, erstd, "rstd")):
        _close(a.reshape(-1), e.reshape(-1), tol, what)
    assert mean.shape == x.shape[:-1] + (1,)
    need = (True, w is not None, b is not None)
    gx, gw, gb = _layernorm.backward(g, x, w, mean, rstd, (-1,), need)
    egx, egw, egb = _nn_c.layer_norm_grad(g, x, n, w, emean, erstd, *need)
    _close(gx, egx, tol, "gx")
    for a, e, what in ((gw, egw, "gw"), (gb, egb, "gb")):
        assert (a is None) == (e is None)
        if a is not None:
            _close(a, e, tol * 10, what)
    if n == 1:  # var 0, rstd = 1/sqrt(eps): PyTorch's roundings are amplified 316x there
        return
    xt = torch.tensor(x, requires_grad=True)
    wt = None if w is None else torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.layer_norm(xt, (n,), wt, bt, 1e-5)
    yt.backward(torch.tensor(g))
    _close(y, yt.detach().numpy(), tol * 10, "y vs PyTorch")
    _close(gx, xt.grad.numpy(), tol * 10, "gx vs PyTorch")
    if w is not None:
        _close(gw, wt.grad.numpy(), tol * 100, "gw vs PyTorch")
    if b is not None:
        _close(gb, bt.grad.numpy(), tol * 100, "gb vs PyTorch")


def test_same_bits_at_one_and_two_threads():
    r = np.random.default_rng(1)
    x = r.standard_normal((16, 64, 128)).astype(np.float32)
    g = r.standard_normal((16, 64, 128)).astype(np.float32)
    w, b = r.standard_normal(128).astype(np.float32), r.standard_normal(128).astype(np.float32)
    old = ember.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            ember.set_num_threads(t)
            y, mean, var, rstd = _layernorm.forward(x, w, b, (2,), 1e-5)
            outs.append((y, mean, rstd) + _layernorm.backward(g, x, w, mean, rstd, (2,),
                                                              (True, True, True)))
    finally:
        ember.set_num_threads(old)
    for a, c in zip(*outs):
        np.testing.assert_array_equal(a, c)


def test_declines_what_it_does_not_serve():
    x = np.ones((4, 6), np.float32)
    w = np.ones(6, np.float32)
    assert _layernorm.forward(x.T, None, None, (1,), 1e-5) is None  # not contiguous
    assert _layernorm.forward(x, None, None, (0,), 1e-5) is None     # not the last dim
    assert _layernorm.forward(x, None, None, (0, 1), 1e-5) is None   # two dims
    assert _layernorm.forward(x, w.astype(np.float64), None, (1,), 1e-5) is None
    assert _layernorm.forward(x.astype(np.float16), None, None, (1,), 1e-5) is None
    y, mean, var, rstd = _layernorm.forward(x, w, None, (1,), 1e-5)
    assert _layernorm.backward(x[:, :3], x, w, mean, rstd, (1,), (True, True, False)) is None
