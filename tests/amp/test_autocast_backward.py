"""Autocast's backward against PyTorch's: the dtypes of the gradients each op hands back and
their values (bit for bit on these programs), ops inside a custom Function's forward, and
convolutions of mixed dtypes."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _chain(lib, low, ops, inside):
    """A small program under autocast; returns {name: (dtype, grad dtype, grad values)}."""
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    w = lib.tensor(rng.standard_normal((5, 6)).astype(np.float32), requires_grad=True)
    b = lib.tensor(rng.standard_normal(5).astype(np.float32), requires_grad=True)
    k = lib.tensor(rng.standard_normal((3, 4, 2)).astype(np.float32), requires_grad=True)
    t = lib.tensor([0, 1, 2, 3])
    kept = {}

    def keep(name, v):
        v.retain_grad()
        kept[name] = v
        return v

    region = lib.autocast("cpu", dtype=low)
    region.__enter__()
    v = keep("linear", lib.nn.functional.linear(x, w, b))
    if "relu" in ops:
        v = keep("relu", v.relu())
    if "mm" in ops:
        v = keep("mm", v @ w)
    if "softmax" in ops:
        v = keep("softmax", v.softmax(-1))
    if "mix" in ops:
        v = keep("mix", v + x)  # low + float32 promotes to float32
    if "conv" in ops:
        c = keep("conv", lib.nn.functional.conv1d(v[:, :5].unsqueeze(0), k))
        v = v + c.float().sum()
    loss = (v.float() * lib.arange(v.numel()).reshape(v.shape).float()).sum()
    if "ce" in ops:
        loss = loss + keep("ce", lib.nn.functional.cross_entropy(v[:, :4].float(), t))
    if not inside:
        region.__exit__(None, None, None)
    loss.backward()
    if inside:
        region.__exit__(None, None, None)
    out = {n: (str(v.dtype).split(".")[-1], str(v.grad.dtype).split(".")[-1],
               v.grad.double().numpy()) for n, v in kept.items()}
    for n, p in (("x", x), ("w", w), ("b", b), ("k", k)):
        if p.grad is not None:
            out[n] = ("float32", str(p.grad.dtype).split(".")[-1], p.grad.double().numpy())
    return out


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
@pytest.mark.parametrize("inside", [False, True], ids=["backward_outside", "backward_inside"])
@pytest.mark.parametrize("ops", [["relu"], ["mm"], ["relu", "mm"], ["mm", "softmax"],
                                 ["mm", "softmax", "mix", "ce"], ["conv", "relu"]],
                         ids=lambda o: "+".join(o))
def test_backward_dtypes_and_values_match_pytorch(low, inside, ops):
    want = _chain(torch, getattr(torch, low), ops, inside)
    got = _chain(ember, getattr(ember, low), ops, inside)
    assert set(got) == set(want)
    # the same roundings in the same places: equal within PyTorch's own tolerance for the low
    # dtype (torch.testing's defaults; float32 summation order may round a value the other
    # way, and one-ulp differences carry through later ops). Before the backward computed in
    # float32, softmax's gradients were 7% off.
    rtol = {"bfloat16": 1.6e-2, "float16": 1e-3}[low]
    scale = max(float(np.abs(g).max()) for _, _, g in want.values())
    for name, (dt, gdt, g) in want.items():
        assert got[name][:2] == (dt, gdt), name
        np.testing.assert_allclose(got[name][2], g, rtol=rtol, atol=rtol * scale / 4, err_msg=name)


def test_low_precision_backward_rounds_once_per_op():
    # softmax's backward on bfloat16 gradients computes in float32, rounded once at the edge
    # (NumPy's bfloat16 arithmetic rounds every step: several percent off PyTorch here)
    def run(lib):
        x = lib.tensor(np.linspace(-3, 3, 64, dtype=np.float32).reshape(4, 16))
        x = x.to(lib.bfloat16).requires_grad_()
        y = x.softmax(-1)
        (y * lib.arange(64).reshape(4, 16).to(lib.bfloat16)).sum().backward()
        return x.grad
    g, want = run(ember), run(torch)
    assert g.dtype is ember.bfloat16
    np.testing.assert_array_equal(g.float().numpy(), want.float().numpy())


def _cube_classes(lib):
    amp = lib.amp

    class Cube(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            return (x @ w).exp() * 2

        @staticmethod
        def backward(ctx, g):
            return g, g.sum(0)

    class CastTo32(lib.autograd.Function):
        @staticmethod
        @amp.custom_fwd(device_type="cpu", cast_inputs=lib.float32)
        def forward(ctx, x, w):
            return (x @ w).exp() * 2

        @staticmethod
        @amp.custom_bwd(device_type="cpu")
        def backward(ctx, g):
            return g, g.sum(0)

    class Plain(lib.autograd.Function):
        @staticmethod
        @amp.custom_fwd(device_type="cpu")
        def forward(ctx, x, w):
            return x @ w

        @staticmethod
        @amp.custom_bwd(device_type="cpu")
        def backward(ctx, g):
            return g, g.sum(0)
    return Cube, CastTo32, Plain


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
def test_custom_function_forward_is_autocast(low):
    def run(lib):
        x = lib.tensor(np.full((3, 4), 0.25, np.float32), requires_grad=True)
        w = lib.tensor(np.full((4, 4), 0.1, np.float32))
        outs = []
        with lib.autocast("cpu", dtype=getattr(lib, low)):
            for cls in _cube_classes(lib):
                y = cls.apply(x, w)
                outs.append((str(y.dtype).split(".")[-1], y.float().detach().numpy()))
                y.float().sum().backward()
        return outs, x.grad.numpy()
    got, gx = run(ember)
    want, tx = run(torch)
    assert [d for d, _ in got] == [d for d, _ in want] == [low, "float32", low]
    for (_, a), (_, b) in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(gx, tx, rtol=1e-6)


def test_conv_with_mixed_dtypes_under_autocast():
    # PyTorch's autocast casts before the convolution checks its input and weight dtypes
    def run(lib):
        x = lib.ones(1, 4, 8, dtype=lib.bfloat16)
        w = lib.full((3, 4, 2), 0.5)
        with lib.autocast("cpu"):
            y = lib.nn.functional.conv1d(x, w, lib.zeros(3))
        return str(y.dtype).split(".")[-1], y.float().numpy()
    (dt, y), (tdt, ty) = run(ember), run(torch)
    assert dt == tdt == "bfloat16"
    np.testing.assert_array_equal(y, ty)
    with pytest.raises(RuntimeError, match="Input type"):  # outside autocast: still an error
        ember.nn.functional.conv1d(ember.ones(1, 4, 8, dtype=ember.bfloat16),
                                   ember.ones(3, 4, 2))
