"""Graph passes: constant folding, CSE, DCE, fusion with recomputation; graph before and
after, and values equal to eager."""

import numpy as np
import pytest

import ember
from ember.compiler import _codegen, _passes
from ember.export import _capture


def _ops(graph):
    return [n for n in graph.nodes if n.op == "call_function"]


def _names(graph):
    return [getattr(getattr(n.target, "__self__", None), "__name__", None) or
            getattr(n.target, "__name__", str(n.target)) for n in _ops(graph)]


def _capture_graph(fn, *args):
    return _capture.capture(fn, list(args), [f"a{i}" for i in range(len(args))],
                            flatten_out=_capture._flatten_out)


def _run(cap, *args):
    return _capture.run_graph(cap.graph, list(args), cap.attrs)


def _close(a, b):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6, atol=1e-6)


def _always(name):
    return True


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_constant_folding(dtype):
    table = ember.arange(6, dtype=dtype)

    def f(x):
        scale = ember.exp(table * 0.5).sum()      # constants only: folded
        return x * scale + ember.arange(6, dtype=dtype)
    x = ember.randn(6, dtype=dtype)
    cap = _capture_graph(f, x)
    before = _names(cap.graph)
    n = _passes.constant_fold(cap.graph, cap.attrs, _always)
    _passes.dce(cap.graph)
    after = _names(cap.graph)
    assert n >= 3 and "Exp" in before and "Exp" not in after and "Sum" not in after
    assert len(after) == 2  # x * folded + folded
    _close(_run(cap, x)[0], f(x))


def test_constant_folding_skips_parameters_and_written_constants():
    w = ember.ones(3)
    buf = ember.zeros(3)

    def f(x):
        buf.add_(1)               # a constant written in place: never folded
        return x * w.exp() + buf * 2
    x = ember.randn(3)
    cap = _capture.capture(f, [x], ["x"], persistent=[w, buf],  # read by reference
                           flatten_out=_capture._flatten_out)
    fixed = {id(w)}   # w stands for a parameter
    n = _passes.constant_fold(cap.graph, cap.attrs,
                              lambda name: id(cap.attrs.get(name)) not in fixed)
    assert n == 0
    buf.zero_()
    _close(_run(cap, x)[0], x * w.exp() + 2)


def test_cse_merges_repeated_pure_work():
    def f(x):
        return x.sin() * 2 + x.sin() * 2
    x = ember.randn(4, 4)
    cap = _capture_graph(f, x)
    assert _names(cap.graph).count("Sin") == 2
    assert _passes.cse(cap.graph) == 2  # the second sin and the second * 2
    _passes.dce(cap.graph)
    assert _names(cap.graph).count("Sin") == 1 and _names(cap.graph).count("Mul") == 1
    _close(_run(cap, x)[0], f(x))


def test_cse_respects_in_place_writes_and_distinct_outputs():
    def f(x):
        a = x * 2
        b = x * 2           # not merged with a: a is written below
        a.add_(1)
        c = x.cos()
        x.mul_(3)           # a write: cos after it is not the cos before it
        d = x.cos()
        return a + b, c + d, x * 5, x * 5
    x = ember.randn(5)
    cap = _capture_graph(f, x.clone())
    _passes.optimize(cap.graph, cap.attrs, _always)
    names = _names(cap.graph)
    assert names.count("Cos") == 2 and names.count("Mul") >= 3
    got, want = _run(cap, x.clone()), f(x.clone())
    for g, w in zip(got, want):
        _close(g, w)
    assert got[2] is not got[3]  # outputs eager returns as two tensors stay two


def test_dce_keeps_effects_and_drops_unused_values():
    lin = ember.nn.Linear(3, 3)

    def f(x):
        x.exp()                    # unused: dropped
        lin.weight.grad = None     # an effect: kept
        return x + 1
    x = ember.randn(3)
    cap = _capture.capture(f, [x], ["x"], persistent=list(lin.parameters()),
                           flatten_out=_capture._flatten_out)
    before = _names(cap.graph)
    removed = _passes.dce(cap.graph)
    after = _names(cap.graph)
    assert "Exp" in before and "Exp" not in after and removed >= 1
    assert "zero_grads" in after


def test_fusion_recomputes_a_shared_elementwise_value():
    def f(v):
        t = v * 1.0
        return ember.tanh(t), ember.exp(t) + 1
    x = ember.randn(50)
    c = ember.compile(f, backend="numpy")
    c(x)
    ops = _ops(c.graphs[0])
    assert len(ops) == 2 and all(isinstance(n.target, _codegen.FusedKernel) for n in ops)
    for a, b in zip(c(x), f(x)):
        _close(a, b)


def test_passes_run_inside_compile_and_are_reported():
    table = ember.arange(4.0)

    def f(x):
        return x.sin() + x.sin() + ember.arange(4.0).exp().sum() + table.exp()
    c = ember.compile(f, backend="numpy")
    x = ember.randn(4)
    c(x)
    _close(c(x), f(x))
    stats = c.pass_stats
    assert stats["constant_fold"] >= 2 and stats["cse"] >= 1  # exp, sum; sin
    table.add_(1)  # a global tensor is read by reference at every call: never folded
    _close(c(x), f(x))


def test_matmul_epilogue_fuses_bias_and_relu_into_the_gemm():
    from ember.compiler._passes import _LinearRelu
    lin = ember.nn.Linear(6, 5)

    def f(x):
        return ember.relu(lin(x))
    c = ember.compile(f, backend="numpy")
    x = ember.randn(4, 6)
    with ember.no_grad():
        c(x)
        got = c(x)
    assert any(getattr(n.target, "__self__", None) is _LinearRelu for n in _ops(c.graphs[0]))
    assert c.pass_stats["matmul_epilogues"] == 1
    _close(got, f(x))


def test_optimizer_steps_grouped_and_memory_planned_in_a_training_step():
    from ember.compiler import _passes as P
    ember.manual_seed(0)
    model = ember.nn.Sequential(ember.nn.Linear(8, 32), ember.nn.Tanh(), ember.nn.Linear(32, 8),
                                ember.nn.Sigmoid(), ember.nn.Linear(8, 2))
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)

    def step(x):
        h = model(x)
        loss = (ember.tanh(h) * 0.5 + ember.exp(-h) * 0.25).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    c = ember.compile(step)
    xs = [ember.randn(16, 8) for _ in range(5)]
    losses = [c(x) for x in xs]
    targets = [n.target for n in _ops(c.graphs[0])]
    assert P.optimizer_group_step in targets and _capture.optimizer_param_step not in targets
    arena = c.arena
    assert arena is not None and arena.slots and arena.nbytes <= arena.planned
    first = losses[0].item()
    assert all(np.isfinite(v.item()) for v in losses) and first != losses[-1].item()
    kept = losses[2].numpy().copy()
    c(xs[0])
    np.testing.assert_array_equal(losses[2].numpy(), kept)  # outputs never share the arena
