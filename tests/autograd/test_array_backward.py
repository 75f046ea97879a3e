"""``array_backward`` (the engine's array mode) must agree with ``backward`` (ember ops).

Gradients taken with ``create_graph=False`` run the array formulas; with ``create_graph=True``
the engine runs the Tensor formulas. Both must give the same values, for every op that has
an array formula (the last test checks that this file covers them all)."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd.graph import Node

rng = np.random.default_rng(0)


def _t(shape, dtype=np.float64, positive=False, cplx=False):
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    if cplx:
        a = a + 1j * rng.standard_normal(shape)
    return ember.tensor(a.astype(np.complex128 if cplx else dtype), requires_grad=True)


# (covered op class names, function, input builders)
CASES = [
    ("Add", lambda a, b: a + b, [(3, 4), (4,)]),
    ("Add", lambda a, b: a + b, [(2, 1, 3), (4, 1)]),
    ("Sub", lambda a, b: a - b, [(3, 4), (3, 1)]),
    ("Sub", lambda a: 2.0 - a, [(3,)]),
    ("Mul", lambda a, b: a * b, [(3, 4), (4,)]),
    ("Mul", lambda a: a * 3.5, [()]),
    ("Mul", lambda a, b: a * b, [{"shape": (3,), "cplx": True}, {"shape": (3,), "cplx": True}]),
    ("Div", lambda a, b: a / b, [(2, 3), {"shape": (3,), "positive": True}]),
    ("Div", lambda a, b: a / b, [{"shape": (3,), "cplx": True}, {"shape": (3,), "cplx": True}]),
    ("Neg", lambda a: -a, [(0, 3)]),
    ("Relu", F.relu, [(5, 2)]),
    ("Square", ember.square, [(4,)]),
    ("Sum", lambda a: a.sum(), [(3, 4)]),
    ("Sum", lambda a: a.sum(-1), [(3, 4)]),
    ("Sum", lambda a: a.sum((0, 2), keepdim=True), [(2, 3, 4)]),
    ("Sum", lambda a: a.sum(), [()]),
    ("Sum", lambda a: a.sum(dtype=ember.float32), [(3,)]),
    ("Mean", lambda a: a.mean(), [(3, 4)]),
    ("Mean", lambda a: a.mean(1), [(3, 4, 2)]),
    ("View", lambda a: a.view(4, 3), [(3, 4)]),
    ("Reshape", lambda a: a.transpose(0, 1).reshape(-1), [(3, 4)]),
    ("Permute", lambda a: a.permute(2, 0, 1) * 1.0, [(2, 3, 4)]),
    ("Expand", lambda a: a.expand(2, 3, 4) * 1.0, [(3, 1)]),
    ("Matmul", lambda a, b: a @ b, [(3, 4), (4, 5)]),
    ("Matmul", lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    ("Matmul", lambda a, b: a @ b, [(3, 4), (2, 4, 5)]),
    ("Matmul", lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)]),
    ("Matmul", lambda a, b: a @ b, [(4,), (4,)]),
    ("Matmul", lambda a, b: a @ b, [(4,), (2, 4, 3)]),
    ("Matmul", lambda a, b: a @ b, [(2, 3, 4), (4,)]),
    ("Matmul", lambda a, b: a @ b, [(0, 4), (4, 3)]),
    ("Matmul", lambda a, b: a @ b, [{"shape": (2, 3), "cplx": True}, {"shape": (3, 2), "cplx": True}]),
    ("Linear", F.linear, [(5, 3), (4, 3), (4,)]),
    ("Linear", F.linear, [(2, 5, 3), (4, 3)]),
    ("Linear", F.linear, [(3,), (4, 3), (4,)]),
    ("Attention", lambda q, k, v: _attention(q, k, v, None), [(2, 3, 4), (2, 5, 4), (2, 5, 2)]),
    ("Attention", lambda q, k, v: _attention(q, k, v, np.triu(np.full((3, 3), -1e9), 1)),
     [(4, 3, 2), (4, 3, 2), (4, 3, 3)]),
    ("PackedSelfAttention", lambda qkv: _packed(qkv, None), [(3, 2, 12)]),
    ("PackedSelfAttention", lambda qkv: _packed(qkv, np.triu(np.full((4, 4), -1e9), 1)),
     [(4, 3, 6)]),
]


def _packed(qkv, mask):
    from ember.ops.nn import packed_self_attention
    mask = None if mask is None else ember.tensor(mask.astype(qkv.detach().numpy().dtype))
    out = packed_self_attention(qkv, mask, 2, 0.7)
    assert out is not None  # the fused op applies to these inputs
    return out


def _attention(q, k, v, mask):
    from ember.ops.nn import attention
    mask = None if mask is None else ember.tensor(mask.astype(q.detach().numpy().dtype))
    return attention(q, k, v, mask, 0.7)
for name, np_name in [("Exp", "exp"), ("Exp2", "exp2"), ("Expm1", "expm1"), ("Tanh", "tanh"),
                      ("Sigmoid", "sigmoid"), ("Tan", "tan"), ("Atan", "atan")]:
    CASES.append((name, getattr(ember, np_name), [(3, 2)]))
for name, np_name in [("Log", "log"), ("Log2", "log2"), ("Log10", "log10"), ("Log1p", "log1p"),
                      ("Sqrt", "sqrt"), ("Rsqrt", "rsqrt"), ("Reciprocal", "reciprocal")]:
    CASES.append((name, getattr(ember, np_name), [{"shape": (3, 2), "positive": True}]))
CASES.append(("Atanh", ember.atanh, [{"shape": (4,)}]))
CASES.append(("Exp", ember.exp, [{"shape": (3,), "cplx": True}]))


def _build(spec, dtype):
    if isinstance(spec, dict):
        return _t(spec["shape"], dtype, spec.get("positive", False), spec.get("cplx", False))
    return _t(spec, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_array_backward_matches_tensor_backward(case, dtype):
    name, fn, specs = CASES[case]
    inputs = [_build(s, dtype) for s in specs]
    if name == "Atanh":
        inputs = [ember.tensor(np.tanh(x.detach().numpy()) * 0.9, requires_grad=True)
                  for x in inputs]
    out = fn(*inputs)
    w = ember.tensor(rng.standard_normal(out.shape).astype(out.detach().numpy().dtype))
    if out.is_complex():
        w = w * (1 - 0.5j)
    fast = ember.autograd.grad((out * w).sum().real if out.is_complex() else (out * w).sum(),
                               inputs, retain_graph=True)
    ref = ember.autograd.grad((out * w).sum().real if out.is_complex() else (out * w).sum(),
                              inputs, create_graph=True)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for f, r in zip(fast, ref):
        assert f.dtype == r.dtype and f.shape == r.shape
        np.testing.assert_allclose(f.numpy(), r.detach().numpy(), rtol=tol, atol=tol)


def test_zero_stride_gradient_is_not_stored_as_grad():
    x = ember.ones(3, 4, requires_grad=True)
    x.sum().backward()
    g = x.grad.numpy()
    assert g.flags.writeable and g.strides != (0, 0)
    x.grad.add_(1)  # its own memory: an in-place update must not fail or alias
    assert float(x.grad.sum()) == 24.0


def _subclasses(cls):
    for c in cls.__subclasses__():
        yield c
        yield from _subclasses(c)


def test_every_array_backward_is_covered():
    import ember.nn.functional  # noqa: F401  (loads every op family)
    have = {c.__name__ for c in _subclasses(Node) if c.__dict__.get("array_backward")}
    covered = {name for name, _, _ in CASES}
    assert have <= covered, f"array_backward without a test here: {sorted(have - covered)}"


def test_array_mode_runs_array_formula_and_create_graph_does_not(monkeypatch):
    from ember.ops.elementwise import Mul
    calls = []
    orig = Mul.__dict__["array_backward"].__func__

    def spy(ctx, g):
        calls.append(type(g))
        return orig(ctx, g)
    monkeypatch.setattr(Mul, "array_backward", staticmethod(spy))
    a, b = _t((3,)), _t((3,))
    (a * b).sum().backward()
    assert calls == [np.ndarray]
    ember.autograd.grad((a * b).sum(), a, create_graph=True)
    assert calls == [np.ndarray]


def test_fill_in_place_gives_zero_gradient_to_the_overwritten_values():
    torch = pytest.importorskip("torch")
    out = []
    for m in (torch, ember):
        x = m.ones(3, requires_grad=True)
        v = m.tensor(2.0, requires_grad=True)
        y = x * 1
        y.fill_(v)
        z = x * 1
        z.zero_()
        (y.sum() + z.sum()).backward()
        out.append((x.grad.numpy().tolist(), float(v.grad)))
    assert out[0] == out[1] == ([0.0, 0.0, 0.0], 3.0)
