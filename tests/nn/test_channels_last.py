"""memory_format=ember.channels_last: PyTorch's layout semantics (strides, is_contiguous,
preservation through clone/*_like/elementwise ops/conv) and the NHWC convolution path's values
and gradients against PyTorch and against the NCHW path."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")

CL = ember.channels_last


def _cl(t):
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def test_strides_and_flags_match_pytorch():
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    x, tx = ember.tensor(a), torch.tensor(a)
    y, ty = x.contiguous(memory_format=CL), tx.contiguous(memory_format=torch.channels_last)
    assert y.stride() == ty.stride()
    assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()
    assert x.is_contiguous() and not x.is_contiguous(memory_format=CL)
    np.testing.assert_array_equal(y.numpy(), a)
    assert y.contiguous(memory_format=CL) is y
    assert y.contiguous().stride() == tx.stride()
    assert x.to(memory_format=CL).stride() == ty.stride()
    assert ember.empty(2, 3, 4, 5, memory_format=CL).stride() == \
        torch.empty(2, 3, 4, 5, memory_format=torch.channels_last).stride()
    z = ember.tensor(np.zeros((2, 3, 4, 5, 6), np.float32))
    tz = torch.zeros(2, 3, 4, 5, 6)
    assert z.contiguous(memory_format=ember.channels_last_3d).stride() == \
        tz.contiguous(memory_format=torch.channels_last_3d).stride()


def test_preserved_where_pytorch_preserves_it():
    x = ember.randn(2, 3, 6, 6).contiguous(memory_format=CL)
    for y in (x.clone(), ember.empty_like(x), ember.zeros_like(x), ember.ones_like(x),
              ember.full_like(x, 2.0), x.double(), F.relu(x), x + 1, x * x, F.max_pool2d(x, 2),
              F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 2), F.batch_norm(
                  x, None, None, training=True)):
        assert _cl(y), y.stride()
    assert not _cl(x.clone(memory_format=ember.contiguous_format))
    assert not _cl(ember.zeros_like(x, memory_format=ember.contiguous_format))


def test_errors_name_the_rank():
    with pytest.raises(RuntimeError, match="rank 4"):
        ember.zeros(2, 3, 4).contiguous(memory_format=CL)
    with pytest.raises(RuntimeError, match="rank 4"):
        ember.empty(2, 3, memory_format=CL)


def test_module_to_channels_last_converts_4d_parameters_only():
    m = ember.nn.Sequential(ember.nn.Conv2d(3, 4, 3), ember.nn.BatchNorm2d(4))
    w = m[0].weight
    m.to(memory_format=CL)
    assert m[0].weight is w and _cl(m[0].weight)
    assert m[0].bias.is_contiguous() and m[1].weight.is_contiguous()


CASES = [  # (N, C, H, W), O, kernel, stride, padding, dilation, bias
    ((2, 3, 9, 9), 4, 3, 1, 1, 1, True),
    ((2, 5, 8, 7), 6, 3, 2, 1, 1, False),
    ((1, 4, 10, 10), 3, (3, 2), (2, 1), (0, 1), (2, 1), True),
    ((3, 8, 5, 5), 16, 1, 1, 0, 1, True),       # pointwise: no columns at all
    ((2, 8, 6, 6), 4, 1, 2, 0, 1, False),
    ((2, 16, 8, 8), 16, 3, 1, 1, 1, True),      # the NCHW path would take Winograd here
    ((0, 3, 5, 5), 2, 3, 1, 1, 1, True),        # empty batch
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("w_cl", [False, True])
def test_conv2d_channels_last_matches_pytorch(case, dtype, w_cl):
    shape, o, k, s, p, d, bias = case
    rng = np.random.default_rng(1)
    ks = (k, k) if isinstance(k, int) else k
    a = rng.standard_normal(shape).astype(dtype)
    wa = rng.standard_normal((o, shape[1]) + ks).astype(dtype)
    ba = rng.standard_normal(o).astype(dtype) if bias else None

    def run(lib, fmt):
        x = lib.tensor(a).contiguous(memory_format=fmt).requires_grad_()
        w = lib.tensor(wa)
        if w_cl:
            w = w.contiguous(memory_format=fmt)
        w.requires_grad_()
        b = lib.tensor(ba).requires_grad_() if bias else None
        y = lib.nn.functional.conv2d(x, w, b, stride=s, padding=p, dilation=d)
        g = lib.tensor(rng.standard_normal(tuple(y.shape)).astype(dtype))
        (y * g).sum().backward()
        return y, x.grad, w.grad, (b.grad if bias else None)

    rng = np.random.default_rng(2)
    ours = run(ember, CL)
    rng = np.random.default_rng(2)
    theirs = run(torch, torch.channels_last)
    rng = np.random.default_rng(2)
    nchw = run(ember, ember.contiguous_format)
    assert shape[0] == 0 or _cl(ours[0])
    tol = 1e-4 if dtype == "float32" else 1e-10
    for e, t, n in zip(ours, theirs, nchw):
        if e is None:
            continue
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(e.detach().numpy(), n.detach().numpy(), rtol=tol, atol=tol)


def test_double_backward_through_the_nhwc_path():
    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((2, 3, 6, 6))).contiguous(memory_format=CL)
    w = ember.tensor(rng.standard_normal((4, 3, 3, 3)))
    x.requires_grad_(), w.requires_grad_()
    assert ember.autograd.gradcheck(lambda a, b: F.conv2d(a, b, padding=1, stride=2), (x, w))
    assert ember.autograd.gradgradcheck(lambda a, b: F.conv2d(a, b, padding=1), (x, w))


def test_a_channels_last_cnn_trains_as_the_nchw_one():
    def build():
        ember.manual_seed(0)
        return ember.nn.Sequential(
            ember.nn.Conv2d(3, 8, 3, padding=1), ember.nn.BatchNorm2d(8), ember.nn.ReLU(),
            ember.nn.Conv2d(8, 8, 1), ember.nn.ReLU(), ember.nn.Conv2d(8, 4, 3, stride=2),
            ember.nn.Flatten(), ember.nn.Linear(4 * 3 * 3, 5)).double()

    data = np.random.default_rng(4).standard_normal((8, 3, 8, 8))
    target = ember.tensor(np.arange(8) % 5)
    losses = []
    for fmt in (ember.contiguous_format, CL):
        m = build().to(memory_format=fmt)
        opt = ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        x = ember.tensor(data).contiguous(memory_format=fmt)
        run = []
        for _ in range(5):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), target)
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-10, atol=1e-12)
