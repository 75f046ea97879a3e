"""The modules added at PyTorch's paths: behaviour against PyTorch where it has it."""

import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")


def _t(a, T, dtype=None, grad=False):
    return T.tensor(a, dtype=dtype, requires_grad=grad)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_adaptive_log_softmax_with_loss(dt):
    tol = 1e-5 if dt == "float32" else 1e-10
    te = torch.nn.AdaptiveLogSoftmaxWithLoss(16, 20, [5, 12], div_value=2.0, head_bias=True)
    te = te.to(getattr(torch, dt))
    em = nn.AdaptiveLogSoftmaxWithLoss(16, 20, [5, 12], div_value=2.0, head_bias=True,
                                       dtype=getattr(ember, dt))
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in te.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 16))
    y = np.array([0, 4, 5, 11, 12, 19, 3, 7, 15])
    xe, xt = _t(x, ember, getattr(ember, dt), True), _t(x, torch, getattr(torch, dt), True)
    oe, ot = em(xe, ember.tensor(y)), te(xt, torch.tensor(y))
    np.testing.assert_allclose(oe.output.detach().numpy(), ot.output.detach().numpy(),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(oe.loss.item(), ot.loss.item(), rtol=tol)
    oe.loss.backward()
    ot.loss.backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(em.tail[1][0].weight.grad.numpy(),
                               te.tail[1][0].weight.grad.numpy(), rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(em.log_prob(xe).detach().numpy(),
                               te.log_prob(xt).detach().numpy(), rtol=tol * 10, atol=tol)
    assert em.predict(xe).tolist() == te.predict(xt).tolist()
    # unbatched, and bad targets
    o1 = em(xe[0], ember.tensor(y[0]))
    assert o1.output.shape == te(xt[0], torch.tensor(y[0])).output.shape
    with pytest.raises(RuntimeError, match=r"Target values should be in \[0, 19\]"):
        em(xe, ember.tensor([0, 1, 2, 3, 4, 5, 6, 7, 20]))
    with pytest.raises(ValueError, match="cutoffs"):
        nn.AdaptiveLogSoftmaxWithLoss(16, 20, [12, 5])


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_cross_map_lrn2d(size):
    x = np.random.default_rng(1).standard_normal((2, 6, 3, 3))
    xe, xt = _t(x, ember, ember.float64, True), _t(x, torch, torch.float64, True)
    me, mt = nn.CrossMapLRN2d(size, 1e-2, 0.75, 1.5), torch.nn.CrossMapLRN2d(size, 1e-2, 0.75,
                                                                          1.5)
    ye, yt = me(xe), mt(xt)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-12)
    # PyTorch's hand-written backward of the legacy kernel is not the derivative of its own
    # forward (and fails for size 1), so ember's gradient is checked numerically instead
    assert ember.autograd.gradcheck(lambda t: me(t), (xe.detach().requires_grad_(),))
    with pytest.raises(ValueError, match="4D"):
        me(ember.zeros(2, 3, 4))


def test_nn_grad_matches_pytorch():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 9, 9)), rng.standard_normal((6, 2, 3, 3))
    g = rng.standard_normal((2, 6, 5, 5))
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    gi_e = nn.grad.conv2d_input(x.shape, ember.tensor(w), ember.tensor(g), **kw)
    gi_t = torch.nn.grad.conv2d_input(x.shape, torch.tensor(w), torch.tensor(g), **kw)
    np.testing.assert_allclose(gi_e.numpy(), gi_t.numpy(), rtol=1e-10, atol=1e-12)
    gw_e = nn.grad.conv2d_weight(ember.tensor(x), w.shape, ember.tensor(g), **kw)
    gw_t = torch.nn.grad.conv2d_weight(torch.tensor(x), w.shape, torch.tensor(g), **kw)
    np.testing.assert_allclose(gw_e.numpy(), gw_t.numpy(), rtol=1e-10, atol=1e-12)
    x1, w1, g1 = rng.standard_normal((1, 2, 8)), rng.standard_normal((3, 2, 3)), \
        rng.standard_normal((1, 3, 6))
    np.testing.assert_allclose(
        nn.grad.conv1d_weight(ember.tensor(x1), w1.shape, ember.tensor(g1)).numpy(),
        torch.nn.grad.conv1d_weight(torch.tensor(x1), w1.shape, torch.tensor(g1)).numpy(),
        rtol=1e-10)
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        nn.grad.conv2d_input(x.shape, ember.tensor(w), ember.zeros(2, 6, 4, 4, dtype=ember.float64), **kw)


def test_attention_backends():
    from ember.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention import SDPBackend as TB
    for b in SDPBackend:
        assert int(getattr(TB, b.name)) == b.value, b
    q = ember.randn(1, 2, 4, 8)
    want = ember.nn.functional.scaled_dot_product_attention(q, q, q)
    with sdpa_kernel([SDPBackend.MATH, SDPBackend.FLASH_ATTENTION]):
        got = ember.nn.functional.scaled_dot_product_attention(q, q, q)
    ember.testing.assert_close(got, want)
    with pytest.raises(TypeError):
        with sdpa_kernel(["math"]):
            pass


def test_data_parallel_on_cpu():
    from ember.nn.parallel import DataParallel, DistributedDataParallel, data_parallel
    m = nn.Linear(3, 2)
    dp = nn.DataParallel(m)
    assert DataParallel is nn.DataParallel and dp.module is m
    x = ember.randn(4, 3)
    ember.testing.assert_close(dp(x), m(x))
    assert list(dp.state_dict()) == ["module.weight", "module.bias"]
    ember.testing.assert_close(data_parallel(m, x), m(x))
    # as PyTorch's with no GPU visible: device_ids are ignored and the module runs as it is
    ember.testing.assert_close(DataParallel(m, device_ids=[0])(x), m(x))
    assert DistributedDataParallel is not None  # importable; behaviour is ember.distributed's
    sd = dp.state_dict()
    from ember.nn.modules.utils import consume_prefix_in_state_dict_if_present
    consume_prefix_in_state_dict_if_present(sd, "module.")
    assert list(sd) == ["weight", "bias"]


def test_checkpoint_values_and_gradients():
    from ember.utils.checkpoint import checkpoint, checkpoint_sequential
    lin = nn.Linear(4, 4)
    x = ember.randn(2, 4, requires_grad=True)
    y = checkpoint(lambda t: lin(t).tanh(), x, use_reentrant=False)
    y.sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    lin(x).tanh().sum().backward()
    ember.testing.assert_close(g1, x.grad)
    seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    ember.testing.assert_close(checkpoint_sequential(seq, 2, x, use_reentrant=False), seq(x))
    with pytest.warns(UserWarning, match="use_reentrant"):
        checkpoint(lin, x)


def test_module_paths_resolve():
    import importlib
    pairs = {"ember.nn.modules.activation": "MultiheadAttention",
             "ember.nn.modules.conv": "Conv2d", "ember.nn.modules.loss": "CrossEntropyLoss",
             "ember.nn.modules.module": "Module", "ember.optim.optimizer": "Optimizer",
             "ember.optim.adamw": "AdamW", "ember.utils.data.dataloader": "get_worker_info",
             "ember.serialization": "add_safe_globals", "ember.storage": "TypedStorage",
             "ember.nn.parallel": "DataParallel", "ember.autograd.function": "Function",
             "ember.nn.modules.channelshuffle": "ChannelShuffle",
             "ember.nn.modules.adaptive": "AdaptiveLogSoftmaxWithLoss",
             "ember.vision.ops.misc": "FrozenBatchNorm2d", "ember.functional": "einsum",
             "ember.hub": "get_dir", "ember.types": "Number"}
    for mod, name in pairs.items():
        assert hasattr(importlib.import_module(mod), name), (mod, name)
    with pytest.raises(NotImplementedError, match="does not download"):
        ember.hub.load("owner/repo", "model")


@pytest.mark.parametrize("name,shape", [("LazyConv2d", (2, 5, 6, 6)), ("LazyConv1d", (5, 9)),
                                        ("LazyConvTranspose2d", (1, 3, 5, 5)),
                                        ("LazyBatchNorm1d", (4, 7)),
                                        ("LazyBatchNorm2d", (2, 3, 4, 4)),
                                        ("LazyBatchNorm3d", (2, 3, 2, 2, 2))])
def test_lazy_modules_materialize_like_pytorch(name, shape):
    args = (8, 3) if "Conv" in name else ()
    me, mt = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    params_before = list(me.parameters())
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ye, yt = me(ember.tensor(x)), mt(torch.tensor(x))
    assert tuple(ye.shape) == tuple(yt.shape)
    assert type(me).__name__ == type(mt).__name__  # became the ordinary class
    assert {k: tuple(v.shape) for k, v in me.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in mt.state_dict().items()}
    assert all(a is b for a, b in zip(params_before, me.parameters()))  # same objects
    me.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in mt.state_dict().items()})
    me.train()
    np.testing.assert_allclose(me(ember.tensor(x)).detach().numpy(),
                               mt(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
