"""The meta device: tensors with shape, dtype and strides and no data (PyTorch's ``meta``)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import ember
from ember import nn

torch = pytest.importorskip("torch")


def meta(*shape, dtype=ember.float32):
    return ember.empty(*shape, dtype=dtype, device="meta")


def assert_like_torch(e, t):
    """Same metadata as PyTorch's meta result: shape, dtype, strides, offset, device.
    (Strides of size-1 dims are left out: they address nothing, and PyTorch's own vary.)"""
    assert e.is_meta and t.is_meta
    assert tuple(e.shape) == tuple(t.shape)
    assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    es = [s for s, n in zip(e.stride(), e.shape) if n != 1]
    ts = [s for s, n in zip(t.stride(), t.shape) if n != 1]
    assert es == ts, (e.stride(), t.stride())
    assert e.storage_offset() == t.storage_offset()


# ---------------------------------------------------------------- creation and properties
@pytest.mark.parametrize("name,args,kwargs", [
    ("empty", (2, 3), {}), ("zeros", ((4,),), {"dtype": "int64"}), ("ones", (2, 0, 3), {}),
    ("full", ((2, 2), 1.5), {}), ("full", ((3,), 7), {}), ("arange", (10,), {}),
    ("arange", (0.0, 1.0, 0.25), {}), ("eye", (3, 4), {}), ("linspace", (0, 1, 5), {}),
    ("rand", (2, 3), {}), ("randn", (4,), {"dtype": "float64"}), ("randint", (0, 5, (3, 2)), {}),
    ("randperm", (6,), {}), ("tensor", ([[1, 2], [3, 4]],), {}),
    ("empty_strided", ((2, 3), (1, 2)), {}),
])
def test_factories_on_meta(name, args, kwargs):
    t_kwargs = {k: getattr(torch, v) if k == "dtype" else v for k, v in kwargs.items()}
    e_kwargs = {k: getattr(ember, v) if k == "dtype" else v for k, v in kwargs.items()}
    t = getattr(torch, name)(*args, device="meta", **t_kwargs)
    e = getattr(ember, name)(*args, device="meta", **e_kwargs)
    assert e.device == ember.device("meta") and e.device.type == "meta"
    assert_like_torch(e, t)


def test_like_and_new_factories_follow_the_input():
    m = meta(2, 3, dtype=ember.float64)
    for e in (ember.empty_like(m), ember.zeros_like(m), ember.ones_like(m),
              ember.full_like(m, 2.0), ember.rand_like(m), ember.randn_like(m),
              m.new_empty(4), m.new_zeros((1, 2)), m.new_ones(3), m.new_full((2,), 1.0)):
        assert e.is_meta and e.dtype == ember.float64
    assert not ember.zeros_like(m, device="cpu").is_meta
    assert ember.zeros_like(ember.ones(2), device="meta").is_meta


def test_to_meta_keeps_metadata_and_drops_data():
    x = ember.randn(3, 4, dtype=ember.float64)[:, 1:]
    m = x.to("meta")
    assert m.is_meta and tuple(m.shape) == (3, 3) and m.dtype == ember.float64
    assert m.to("meta") is m
    assert m.to(ember.float32).is_meta and m.to(ember.float32).dtype == ember.float32
    assert m.to(device=ember.device("meta"), dtype=ember.int32).dtype == ember.int32
    assert ember.as_tensor(x, device="meta").is_meta
    assert ember.tensor(np.ones((2, 2)), device="meta").is_meta
    assert m.nbytes == 9 * 8 and m.element_size() == 8 and m.numel() == 9
    assert m.data_ptr() == 0 and m.is_contiguous()


def test_repr_as_pytorch():
    cases = [
        (meta(2, 3), torch.empty(2, 3, device="meta")),
        (ember.tensor(3.0, device="meta"), torch.tensor(3.0, device="meta")),
        (meta(0), torch.empty(0, device="meta")),
        (ember.ones(2, dtype=ember.int64, device="meta"),
         torch.ones(2, dtype=torch.int64, device="meta")),
        (ember.ones(2, requires_grad=True, device="meta") * 2,
         torch.ones(2, requires_grad=True, device="meta") * 2),
        (ember.ones(2, 2, requires_grad=True, device="meta"),
         torch.ones(2, 2, requires_grad=True, device="meta")),
    ]
    for e, t in cases:
        assert repr(e) == repr(t).replace("torch.", "ember.")
    p = nn.Parameter(meta(2))
    assert repr(p) == repr(torch.nn.Parameter(torch.empty(2, device="meta")))


@pytest.mark.parametrize("what", ["item", "numpy", "tolist", "bool", "float", "cpu", "to_cpu"])
def test_data_access_raises_as_pytorch(what):
    def run(lib, x):
        return {"item": lambda: x.item(), "numpy": lambda: x.numpy(),
                "tolist": lambda: x.tolist(), "bool": lambda: bool(x),
                "float": lambda: float(x), "cpu": lambda: x.cpu(),
                "to_cpu": lambda: x.to("cpu")}[what]()
    with pytest.raises(Exception) as t_exc:
        run(torch, torch.empty((), device="meta"))
    with pytest.raises(type(t_exc.value)):
        run(ember, meta())


@pytest.mark.parametrize("op", [
    lambda lib, x: lib.nonzero(x), lambda lib, x: lib.unique(x),
    lambda lib, x: lib.masked_select(x, x > 0), lambda lib, x: x[x > 0],
])
def test_data_dependent_ops_raise(op):
    with pytest.raises(NotImplementedError):
        op(torch, torch.empty(4, device="meta"))
    with pytest.raises(NotImplementedError):
        op(ember, meta(4))


def test_device_mixing_raises():
    m, c = meta(2, 3), ember.ones(2, 3)
    for f in (lambda: m + c, lambda: c + m, lambda: ember.matmul(m, ember.ones(3, 2)),
              lambda: ember.cat([m, c]), lambda: ember.where(m > 0, m, c),
              lambda: ember.ones(2, 3, requires_grad=True) * m):
        with pytest.raises(RuntimeError, match="same device"):
            f()
    # 0-d CPU tensors mix with any device, as in PyTorch
    assert (m + ember.tensor(1.0)).is_meta
    assert (torch.empty(2, 3, device="meta") + torch.tensor(1.0)).is_meta


# ---------------------------------------------------------------- views and indexing
@pytest.mark.parametrize("fn", [
    lambda x: x.t(), lambda x: x[1:, ::2], lambda x: x[0], lambda x: x[:, None, 1],
    lambda x: x[..., -1], lambda x: x.transpose(0, 1)[1:], lambda x: x.reshape(6, 4),
    lambda x: x.view(2, 12), lambda x: x.unsqueeze(1).expand(4, 5, 6),
    lambda x: x.narrow(1, 2, 3), lambda x: x.permute(1, 0).contiguous(),
    lambda x: x.unfold(1, 2, 2), lambda x: x.diagonal(), lambda x: x.as_strided((2, 2), (1, 2), 3),
    lambda x: x[[0, 2, 3]], lambda x: x[[0, 1], [2, 3]], lambda x: x[1:, [0, 0, 1]],
    lambda x: x[:, [[0], [1]]], lambda x: x.T.flatten(), lambda x: x.split(2, 1)[1],
    lambda x: x.chunk(3, 1)[2], lambda x: x.unbind(0)[1],
])
def test_views_and_indexing_match_torch_meta(fn):
    assert_like_torch(fn(meta(4, 6)), fn(torch.empty(4, 6, device="meta")))


def test_indexing_with_tensors():
    idx = ember.tensor([0, 2])
    m = meta(4, 5)
    assert tuple(m[idx].shape) == (2, 5) and m[idx].is_meta
    assert tuple(m[:, ember.tensor([True, False, True, True, False])].shape) == (4, 3)
    assert tuple(m[idx.to("meta")].shape) == (2, 5)
    with pytest.raises(IndexError):
        m[5]
    m[0] = 1.0  # setitem checks shapes and writes nothing
    m[1:3] = meta(2, 5)
    with pytest.raises((RuntimeError, ValueError)):
        m[0] = meta(3)


def test_inplace_ops_keep_metadata():
    m = meta(3, 4)
    v = m[1:]
    before = m._version
    assert m.add_(1).mul_(ember.tensor(2.0)) is m
    v.sub_(meta(4))
    m.zero_().uniform_().normal_()
    assert m._version > before and m.is_meta
    with pytest.raises(RuntimeError):
        m.add_(meta(5))


def test_every_op_family_runs():
    x, w = meta(2, 3, 8, 8), meta(4, 3, 3, 3)
    F = nn.functional
    checks = [
        (F.conv2d(x, w, padding=1), (2, 4, 8, 8)),
        (F.max_pool2d(x, 2), (2, 3, 4, 4)),
        (F.interpolate(x, scale_factor=2, mode="bilinear"), (2, 3, 16, 16)),
        (F.softmax(x, -1), (2, 3, 8, 8)),
        (F.layer_norm(x, (8,)), (2, 3, 8, 8)),
        (F.batch_norm(x, None, None, training=True), (2, 3, 8, 8)),
        (F.group_norm(x, 3), (2, 3, 8, 8)),
        (F.cross_entropy(meta(5, 7), ember.zeros(5, dtype=ember.int64, device="meta")), ()),
        (F.embedding(ember.zeros(2, 3, dtype=ember.int64, device="meta"), meta(10, 4)),
         (2, 3, 4)),
        (F.scaled_dot_product_attention(meta(2, 4, 5, 8), meta(2, 4, 6, 8), meta(2, 4, 6, 8)),
         (2, 4, 5, 8)),
        (ember.linalg.svd(meta(5, 3), full_matrices=False)[0], (5, 3)),
        (ember.linalg.qr(meta(2, 5, 3))[1], (2, 3, 3)),
        (ember.linalg.inv(meta(3, 3)), (3, 3)),
        (ember.einsum("bij,bjk->bik", meta(2, 3, 4), meta(2, 4, 5)), (2, 3, 5)),
        (ember.fft.rfft(meta(4, 10)), (4, 6)),
        (x.sum((1, 2)), (2, 8)), (x.amax(-1, keepdim=True), (2, 3, 8, 1)),
        (x.argmax(1), (2, 8, 8)), (ember.sort(meta(3, 4), 1)[1], (3, 4)),
        (ember.topk(meta(3, 9), 2)[0], (3, 2)), (ember.cumsum(meta(3, 4), 0), (3, 4)),
        (ember.gather(meta(3, 4), 1, ember.zeros(3, 2, dtype=ember.int64)), (3, 2)),
        (F.dropout(meta(3, 4), 0.5, True), (3, 4)),
        (ember.bernoulli(meta(3, 4)), (3, 4)),
        (ember.multinomial(meta(3, 4), 2), (3, 2)),
    ]
    for out, shape in checks:
        assert out.is_meta and tuple(out.shape) == shape


# ---------------------------------------------------------------- autograd on meta
def test_backward_through_meta_gives_meta_grads():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                          nn.LayerNorm(5)).to_empty(device="meta")
    x = meta(2, 3, 8, 8).requires_grad_()
    loss = nn.functional.cross_entropy(model(x),
                                       ember.zeros(2, dtype=ember.int64, device="meta"))
    assert loss.is_meta and loss.grad_fn is not None
    loss.backward()
    assert x.grad.is_meta and tuple(x.grad.shape) == (2, 3, 8, 8)
    for p in model.parameters():
        assert p.grad.is_meta and p.grad.shape == p.shape and p.grad.dtype == p.dtype


def test_recurrent_and_attention_backward_on_meta():
    lstm = nn.LSTM(4, 5, num_layers=2, device="meta")
    out, (h, c) = lstm(meta(6, 2, 4))
    (out.sum() + h.sum() + c.sum()).backward()
    for p in lstm.parameters():
        assert p.grad.is_meta and p.grad.shape == p.shape
    mha = nn.MultiheadAttention(8, 2, device="meta", dtype=ember.float64)
    q = meta(5, 2, 8, dtype=ember.float64).requires_grad_()
    mha(q, q, q)[0].sum().backward()
    assert q.grad.is_meta and q.grad.dtype == ember.float64


def test_autograd_grad_and_double_backward_shapes():
    x = meta(3, 4).requires_grad_()
    y = (x * x).sum()
    (g,) = ember.autograd.grad(y, x, create_graph=True)
    assert g.is_meta and tuple(g.shape) == (3, 4) and g.requires_grad
    (gg,) = ember.autograd.grad(g.sum(), x)
    assert gg.is_meta and tuple(gg.shape) == (3, 4)


def test_optimizer_step_on_meta_parameters():
    model = nn.Linear(4, 3, device="meta")
    opt = ember.optim.Adam(model.parameters(), lr=0.1)
    model(meta(2, 4)).sum().backward()
    opt.step()
    assert model.weight.is_meta and model.weight.shape == (3, 4)


# ---------------------------------------------------------------- default device
def test_device_context_manager():
    with ember.device("meta"):
        assert ember.get_default_device() == ember.device("meta")
        assert ember.ones(2).is_meta and ember.arange(3).is_meta and ember.randn(2).is_meta
        lin = nn.Linear(3, 2)
        assert lin.weight.is_meta
        assert not ember.ones(2, device="cpu").is_meta
        with ember.device("cpu"):
            assert not ember.zeros(2).is_meta
        assert ember.zeros(2).is_meta
    assert ember.get_default_device() == ember.device("cpu")
    assert not ember.ones(2).is_meta


def test_context_manager_restores_on_error():
    with pytest.raises(ValueError):
        with ember.device("meta"):
            raise ValueError
    assert not ember.ones(1).is_meta


def test_set_default_device_is_thread_local():
    try:
        ember.set_default_device("meta")
        assert ember.get_default_device().type == "meta"
        assert ember.empty(3).is_meta and nn.Embedding(4, 2).weight.is_meta
        seen = []
        t = threading.Thread(target=lambda: seen.append(ember.empty(1).is_meta))
        t.start()
        t.join(timeout=10)
        assert seen == [False]
    finally:
        ember.set_default_device(None)
    assert ember.get_default_device() == ember.device("cpu") and not ember.empty(1).is_meta
    ember.set_default_device("cpu")
    assert not ember.empty(1).is_meta


# ---------------------------------------------------------------- memory
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_big_linear_on_meta_costs_no_memory():
    before = _rss_bytes()
    lin = nn.Linear(50_000, 50_000, device="meta")  # 10 GB of float32 on cpu
    y = lin(meta(8, 50_000))
    y.sum().backward()
    grown = _rss_bytes() - before
    assert grown < 50 * 2 ** 20, f"RSS grew by {grown / 2 ** 20:.1f} MiB"
    assert lin.weight.grad.shape == (50_000, 50_000) and lin.weight.nbytes == 10 ** 10
    with ember.device("meta"):
        big = nn.Sequential(*[nn.Linear(20_000, 20_000) for _ in range(4)])
    assert _rss_bytes() - before < 50 * 2 ** 20
    assert sum(p.numel() for p in big.parameters()) == 4 * (20_000 * 20_000 + 20_000)
    # kernels with an explicit meta rule allocate nothing either (a 3.3 GB input here)
    conv = nn.Conv2d(256, 512, 3, padding=1, device="meta")
    out = nn.functional.max_pool2d(conv(meta(64, 256, 224, 224)), 2)
    assert tuple(out.shape) == (64, 512, 112, 112)
    assert _rss_bytes() - before < 50 * 2 ** 20


def test_legacy_constructors_on_meta():
    assert ember.Tensor(2, 3, device="meta").is_meta
    assert ember.FloatTensor(4, device="meta").shape == (4,)
    assert ember.Tensor([1.0, 2.0], device="meta").is_meta


def test_module_to_meta():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.to("meta")
    for t in list(model.parameters()) + list(model.buffers()):
        assert t.is_meta
    assert tuple(model(meta(2, 3)).shape) == (2, 4)
    with pytest.raises(NotImplementedError):
        model.to("cpu")  # no data to copy back, as in PyTorch
