"""Compiled training steps take eager's fused nn kernels where the capture decomposed them
(``_passes.fuse_normalize_backward``, ``fuse_attention``): the layer/batch/group norm
backward in one pass from the forward's statistics, and the attention forward and backward
over the cores. Values and gradients against PyTorch and against eager, float32 and float64,
odd and large sizes (the C kernels and the NumPy formulas), non-contiguous inputs, an empty
batch, and 1 vs 2 threads."""

import copy

import numpy as np
import pytest

import ember
from ember.autograd.graph import _ScratchCtx as _S
from ember.compiler import _passes

torch = pytest.importorskip("torch")

TOL = {"float32": 2e-5, "float64": 1e-10}


def _grads_step(model):
    def step(x):
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss
    return step


def _run(step, model, x):
    for p in model.parameters():
        p.grad = None
    loss = step(x)
    return float(loss), [p.grad.numpy().copy() for p in model.parameters()]


def _close(a, b, tol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    err = float(np.abs(a - b).max()) if a.size else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} x {scale:.3g}"


def _to_torch(model_e, model_t):
    with torch.no_grad():
        for pe, pt in zip(model_e.parameters(), model_t.parameters()):
            pt.copy_(torch.tensor(pe.detach().numpy()))


def _check(make, x_np, dtype, stat, transpose=False, threads=None):
    """The compiled gradient step == eager's == PyTorch's (loss and every parameter's
    gradient, three steps); ``stat``: the pass that must have fired (or None). Returns the
    compiled step."""
    dt = getattr(ember, dtype)
    ember.manual_seed(0)
    ref = make(ember).to(dt)
    model = copy.deepcopy(ref)
    tmodel = make(torch).to(getattr(torch, dtype))
    _to_torch(ref, tmodel)
    x = ember.tensor(x_np, dtype=dt)
    xt = torch.tensor(x_np, dtype=getattr(torch, dtype))
    if transpose:  # a non-contiguous input
        x, xt = x.transpose(0, 1), xt.transpose(0, 1)
    compiled = ember.compile(_grads_step(model))
    eager = _grads_step(ref)
    old = ember.get_num_threads()
    if threads:
        ember.set_num_threads(threads)
    try:
        for _ in range(3):
            le, ge = _run(eager, ref, x)
            lc, gc = _run(compiled, model, x)
            _close(lc, le, TOL[dtype], "loss vs eager")
            for a, b in zip(gc, ge):
                _close(a, b, TOL[dtype], "grad vs eager")
    finally:
        ember.set_num_threads(old)
    for p in tmodel.parameters():
        p.grad = None
    loss_t = tmodel(xt).pow(2).mean()
    loss_t.backward()
    _close(lc, loss_t.item(), TOL[dtype] * 10, "loss vs PyTorch")
    for a, p in zip(gc, tmodel.parameters()):
        _close(a, p.grad.numpy(), TOL[dtype] * 10, "grad vs PyTorch")
    assert compiled.entries, "the step was not compiled"
    assert stat is None or compiled.pass_stats.get(stat, 0) >= 1, compiled.pass_stats
    return compiled


class _Norm:
    def __init__(self, kind, d, **kw):
        self.kind, self.d, self.kw = kind, d, kw

    def __call__(self, m):
        nn = m.nn
        norm = {"ln": lambda: nn.LayerNorm(self.d, **self.kw),
                "bn": lambda: nn.BatchNorm1d(self.d, **self.kw),
                "gn": lambda: nn.GroupNorm(4, self.d, **self.kw)}[self.kind]()
        return nn.Sequential(nn.Linear(self.d, self.d), norm, nn.Linear(self.d, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 5, 12), (16, 64, 128)])  # NumPy rows; the C kernel
@pytest.mark.parametrize("kw", [{}, {"elementwise_affine": False}, {"bias": False}])
def test_layer_norm_backward_is_eagers(dtype, shape, kw):
    x = np.random.default_rng(1).standard_normal(shape)
    _check(_Norm("ln", shape[-1], **kw), x, dtype, "normalize_grads")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["bn", "gn"])
def test_batch_and_group_norm_backward_is_eagers(dtype, kind):
    x = np.random.default_rng(2).standard_normal((37, 16))
    _check(_Norm(kind, 16), x, dtype, "normalize_grads")


def test_layer_norm_non_contiguous_input_and_threads():
    x = np.random.default_rng(3).standard_normal((64, 16, 128))
    for threads in (1, 2):
        _check(_Norm("ln", 128), x, "float32", "normalize_grads", transpose=True,
               threads=threads)


class _MHA:
    def __init__(self, d, heads, causal, seq):
        self.d, self.heads, self.causal, self.seq = d, heads, causal, seq

    def __call__(self, m):
        nn = m.nn
        causal, seq = self.causal, self.seq

        class Block(nn.Module):
            def __init__(self, d, heads):
                super().__init__()
                self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
                self.register_buffer(
                    "mask", nn.Transformer.generate_square_subsequent_mask(seq))

            def forward(self, x):
                if causal:
                    return self.attn(x, x, x, attn_mask=self.mask, need_weights=False)[0]
                return self.attn(x, x, x, need_weights=False)[0]
        return Block(self.d, self.heads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("size", [(3, 5, 12, 3), (16, 64, 128, 4)])  # (N, L, E, heads)
def test_attention_forward_and_backward_are_eagers(dtype, causal, size):
    n, seq, d, heads = size
    x = np.random.default_rng(4).standard_normal((n, seq, d))
    c = _check(_MHA(d, heads, causal, seq), x, dtype, "packed_attention")
    assert c.pass_stats["attention"] == 1


class _CrossAttention:
    """Attention over another sequence (q from x, k and v from ``x * 2``): the fused
    attention, not the packed one (q, k, v are not one projection's blocks)."""

    def __call__(self, m):
        nn = m.nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = nn.MultiheadAttention(12, 3, batch_first=True)

            def forward(self, x):
                y = x * 2
                return self.attn(x, y, y, need_weights=False)[0]
        return Block()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_attention_is_eagers(dtype):
    x = np.random.default_rng(9).standard_normal((3, 5, 12))
    c = _check(_CrossAttention(), x, dtype, "attention")
    assert c.pass_stats["packed_attention"] == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_attention_threads(threads):
    x = np.random.default_rng(5).standard_normal((16, 64, 64))
    _check(_MHA(64, 4, True, 64), x, "float32", "packed_attention", threads=threads)


def test_empty_batch_layer_norm():
    ember.manual_seed(0)
    model = _Norm("ln", 8)(ember)
    compiled = ember.compile(_grads_step(model))
    x = ember.zeros(0, 8)
    for _ in range(2):
        loss = compiled(x)
    assert np.isnan(float(loss))  # the mean of nothing, as eager's
    assert model[0].weight.grad.shape == (8, 8)


def test_pattern_matcher():
    """``match``: op names, commutative arguments, ``?`` names bound once, ``@`` nodes."""
    g = ember.fx.Graph()
    x = g.placeholder("x")
    mean = g.call_function(ember.ops.reduction.Mean.apply, (x, (1,), True, None))
    sub = g.call_function(ember.ops.elementwise.Sub.apply, (x, mean))
    mul = g.call_function(ember.ops.elementwise.Mul.apply, (2.0, sub))
    env = {}
    assert _passes.match(mul, ("Mul", ("@s", ("Sub", "?x", ("Mean", "?x", "?ax", True, None))),
                               "?k"), env)
    assert env["?x"] is x and env["@s"] is sub and env["?k"] == 2.0 and env["?ax"] == (1,)
    assert not _passes.match(mul, ("Mul", ("Sub", "?x", "?x"), "?k"), {})
    assert not _passes.match(mul, ("Add", "?a", "?b"), {})
    env = {"?k": 3.0}
    assert not _passes.match(mul, ("Mul", "?s", "?k"), env) and env == {"?k": 3.0}


class _GeluMLP:
    def __init__(self, d, approximate):
        self.d, self.approximate = d, approximate

    def __call__(self, m):
        nn = m.nn
        return nn.Sequential(nn.Linear(self.d, 4 * self.d),
                             nn.GELU(approximate=self.approximate), nn.Linear(4 * self.d, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7, 5), (64, 96)])  # NumPy formula; the C kernel
def test_gelu_backward_is_eagers(dtype, shape):
    x = np.random.default_rng(6).standard_normal(shape) * 2
    _check(_GeluMLP(shape[-1], "none"), x, dtype, "gelu_grads")


@pytest.mark.parametrize("threads", [1, 2])
def test_gelu_threads_and_non_contiguous(threads):
    x = np.random.default_rng(7).standard_normal((96, 64))
    _check(_GeluMLP(96, "none"), x, "float32", "gelu_grads", transpose=True, threads=threads)


def test_tanh_gelu_keeps_its_fused_kernels():
    x = np.random.default_rng(8).standard_normal((9, 6))
    assert _check(_GeluMLP(6, "tanh"), x, "float64", None).pass_stats["gelu_grads"] == 0


def test_pattern_matcher_ignores_user_functions_named_like_ops():
    class Mul(ember.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g, g

    g = ember.fx.Graph()
    x = g.placeholder("x")
    n = g.call_function(Mul.apply, (x, x))
    assert _passes._cls_name(n) is None
    assert not _passes.match(n, ("Mul", "?a", "?a"), {})


class _Classifier:
    def __init__(self, d, classes):
        self.d, self.classes = d, classes

    def __call__(self, m):
        nn = m.nn
        d, classes = self.d, self.classes

        class Loss(nn.Module):  # the cross-entropy of fixed targets
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(d, classes)
                self.register_buffer("y", m.tensor(np.arange(1000) % classes))

            def forward(self, x):
                return nn.functional.cross_entropy(self.lin(x), self.y[:x.shape[0]])
        return Loss()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(6, 5), (128, 200)])  # Softmax itself; the C rows
def test_row_softmax_in_the_backward_is_eagers(dtype, shape):
    """A cross-entropy's captured backward holds a softmax of the logits (the C rows where
    large)."""
    x = np.random.default_rng(10).standard_normal(shape)
    c = _check(_Classifier(shape[1], 211), x, dtype, None)
    assert c.pass_stats["row_softmax"] >= 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_row_softmax_values_match_pytorch(dtype, threads):
    """Odd sizes, a non-contiguous input, infinities, NaN and a fully masked row."""
    x = np.random.default_rng(11).standard_normal((301, 97)).astype(dtype) * 5
    x[3, 7], x[4, :] = np.inf, -np.inf
    x[5, 2], x[6, 1] = np.nan, -np.inf
    old = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        for a in (x, x[:, ::-1], x[:200]):
            got = _passes._RowSoftmax.forward(_S(), a, -1)
            want = torch.softmax(torch.tensor(np.ascontiguousarray(a)), -1).numpy()
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            ok = ~np.isnan(want)
            np.testing.assert_allclose(got[ok], want[ok], rtol=TOL[dtype] * 5,
                                       atol=TOL[dtype])
        small = x[:2, :5]  # below the C kernel's size: Softmax itself
        np.testing.assert_allclose(_passes._RowSoftmax.forward(_S(), small, 1),
                                   torch.softmax(torch.tensor(small), 1).numpy(), rtol=1e-6)
        assert _passes._RowSoftmax.forward(_S(), np.zeros((0, 4), dtype), -1).shape == (0, 4)
    finally:
        ember.set_num_threads(old)


def test_dynamic_batch_transformer_layer_matches_eager():
    """``dynamic=True``: a symbolic batch through the lowered layer norm, packed attention
    and GELU (one graph for every batch size), eager's losses and parameters."""
    ember.manual_seed(0)
    ref = ember.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
    model = copy.deepcopy(ref)
    opts = [ember.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (ref, model)]

    def step_of(m, opt):
        def step(x):
            loss = m(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        return step
    eager, compiled = step_of(ref, opts[0]), ember.compile(step_of(model, opts[1]),
                                                           dynamic=True)
    for b in (3, 5, 2, 7, 4):
        x = ember.randn(b, 6, 16)
        _close(float(compiled(x)), float(eager(x)), 1e-5, f"loss at batch {b}")
    for p, q in zip(ref.parameters(), model.parameters()):
        _close(q.detach().numpy(), p.detach().numpy(), 1e-5, "parameter")
    stats = compiled.pass_stats
    # the first norm reads the input, which needs no gradient: its backward has no input
    # gradient to anchor on and keeps its composed weight and bias gradients
    assert stats["normalize_grads"] == 1 and stats["gelu_grads"] == 1, stats
    # the head split's sizes follow the batch (symbolic): the fused attention, not the packed
    assert stats["attention"] == 1 and stats["packed_attention"] == 0, stats
