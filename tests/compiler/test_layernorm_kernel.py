"""``ember.compiler._layernorm``: the layer-norm kernels of compiled steps (the residual adds
folded in) bit for bit eager's kernels, and against PyTorch, float32 and float64, with and
without weight and bias, odd sizes, the same bits at 1 and 2 threads, and what they
decline."""

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
@pytest.mark.parametrize("shape", [(16, 64, 128), (3, 1100, 5), (16400, 1), (500, 33)])
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
    for a, e in ((y, ey), (mean, emean), (var, evar), (rstd, erstd)):
        np.testing.assert_array_equal(a.reshape(-1), e.reshape(-1))
    assert mean.shape == x.shape[:-1] + (1,)
    need = (True, w is not None, b is not None)
    gx, gw, gb = _layernorm.backward(g, x, w, mean, rstd, (-1,), need)
    egx, egw, egb = _nn_c.layer_norm_grad(g, x, n, w, emean, erstd, *need)
    np.testing.assert_array_equal(gx, egx)
    for a, e in ((gw, egw), (gb, egb)):
        assert (a is None) == (e is None)
        if a is not None:
            np.testing.assert_array_equal(a, e)
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
    x = np.ones((4000, 6), np.float32)
    w = np.ones(6, np.float32)
    # below eager's C size its NumPy formula runs: so must the compiled step
    assert _layernorm.forward(x[:100], None, None, (1,), 1e-5) is None
    assert _layernorm.forward(x.T, None, None, (1,), 1e-5) is None  # not contiguous
    assert _layernorm.forward(x, None, None, (0,), 1e-5) is None     # not the last dim
    assert _layernorm.forward(x, None, None, (0, 1), 1e-5) is None   # two dims
    assert _layernorm.forward(x, w.astype(np.float64), None, (1,), 1e-5) is None
    assert _layernorm.forward(x.astype(np.float16), None, None, (1,), 1e-5) is None
    y, mean, var, rstd = _layernorm.forward(x, w, None, (1,), 1e-5)
    assert _layernorm.backward(x[:, :3], x, w, mean, rstd, (1,), (True, True, False)) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("view", ["contiguous", "permuted", "rows"])
def test_add_forward_and_residual_backward(dtype, view):
    """``add_forward``: h = a + b (b a permuted or row-sliced view too) then the norm, the
    same bits as the Add and the norm apart; ``backward(res=)`` adds the residual gradient
    as an Add after it would."""
    r = np.random.default_rng(2)
    a = r.standard_normal((16, 70, 16)).astype(dtype)
    if view == "permuted":
        b = r.standard_normal((70, 16, 16)).astype(dtype).transpose(1, 0, 2)
    elif view == "rows":
        b = r.standard_normal((16, 70, 20)).astype(dtype)[:, :, 2:18]
    else:
        b = r.standard_normal((16, 70, 16)).astype(dtype)
    w, bias = r.standard_normal(16).astype(dtype), r.standard_normal(16).astype(dtype)
    y, mean, var, rstd, h = _layernorm.add_forward(a, b, w, bias, (2,), 1e-5)
    np.testing.assert_array_equal(h, a + b)
    for x, e in zip((y, mean, var, rstd), _layernorm.forward(a + b, w, bias, (2,), 1e-5)):
        np.testing.assert_array_equal(x, e)
    g, res = r.standard_normal(a.shape).astype(dtype), r.standard_normal(a.shape).astype(dtype)
    need = (True, True, True)
    gx, gw, gb = _layernorm.backward(g, h, w, mean, rstd, (2,), need, res=res)
    gx0, gw0, gb0 = _layernorm.backward(g, h, w, mean, rstd, (2,), need)
    np.testing.assert_array_equal(gx, gx0 + res)
    np.testing.assert_array_equal(gw, gw0)
    np.testing.assert_array_equal(gb, gb0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_pre_norm_block_folds_the_residual_adds(dtype):
    """A compiled pre-norm transformer training step folds its residual adds into the layer
    norms (forward and backward) and trains as eager does (losses and parameters, 5 steps
    of SGD with momentum; Adam's sign-like update would turn last-bit gradient differences
    of near-zero coordinates into whole steps)."""
    from benchmarks.run import gpt_model
    dt = getattr(ember, dtype)

    def make():  # 4 x 64 x 64 activations: eager's C layer norm, so these kernels
        ember.manual_seed(0)
        m = gpt_model(ember, 32, 64, 4, 64).to(dt)
        return m, ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    (me, oe), (mc, oc) = make(), make()
    idx = ember.randint(0, 32, (4, 64))
    tgt = ember.randint(0, 32, (4, 64))

    def step_of(m, opt):
        def step():
            opt.zero_grad()
            loss = ember.nn.functional.cross_entropy(m(idx).reshape(-1, 32), tgt.reshape(-1))
            loss.backward()
            opt.step()
            return loss
        return step
    eager, compiled = step_of(me, oe), ember.compile(step_of(mc, oc))
    tol = 1e-5 if dtype == "float32" else 1e-10
    for _ in range(5):
        le, lc = float(eager()), float(compiled())
        assert abs(le - lc) <= tol * max(1.0, abs(le)), (le, lc)
    for pe, pc in zip(me.parameters(), mc.parameters()):
        _close(pc.detach().numpy(), pe.detach().numpy(), tol * 10, "parameter")
    assert compiled.pass_stats["residual_adds"] >= 4, compiled.pass_stats
