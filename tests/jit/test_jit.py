"""ember.jit: trace round trips, save/load without the source, script, freeze, helpers."""

import io
import typing

import numpy as np
import pytest

import ember
from ember import nn
from ember.export import GuardError

from ..export.models import MLP, cases
from ..export.test_export import _assert_same, _build, run_child

CASES = cases()


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_trace_round_trip(i):
    m, xs = _build(i, ember.float32)
    t = ember.jit.trace(m, xs)
    _assert_same(t(*xs), m(*xs), exact=False)
    assert [k for k, _ in t.named_parameters()] == [k for k, _ in m.named_parameters()]
    assert list(t.state_dict()) == list(m.state_dict())
    assert "apply(" in t.code and t.graph is not None


def test_trace_shares_parameters_and_trains():
    ember.manual_seed(0)
    m = MLP()
    x, y = ember.randn(4, 8), ember.randn(4, 4)
    t = ember.jit.trace(m, (x,))
    opt = ember.optim.SGD(t.parameters(), lr=0.1)
    before = m.fc1.weight.detach().clone()
    loss = nn.functional.mse_loss(t(x), y)
    loss.backward()  # gradients flow through the replayed graph
    opt.step()
    assert not np.array_equal(m.fc1.weight.detach().numpy(), before.numpy())
    _assert_same(t(x), m(x), exact=True)


def test_trace_function_and_check_inputs():
    def f(a, b):
        return (a * b).sum(0), a - b

    a, b = ember.randn(3, 2), ember.randn(3, 2)
    sf = ember.jit.trace(f, (a, b))
    assert isinstance(sf, ember.jit.ScriptFunction)
    _assert_same(sf(a, b), f(a, b), exact=True)
    assert list(sf.parameters()) == [] and sf.state_dict() == {}
    with pytest.raises(GuardError, match="specialised to 3"):
        ember.jit.trace(f, (a, b), check_inputs=[(ember.randn(4, 2), ember.randn(4, 2))])


def test_check_trace_catches_a_trace_that_disagrees():
    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1  # Python state the trace specialises on
            return x * self.calls

    with pytest.raises(ember.jit.TracingCheckError, match="disagrees"):
        ember.jit.trace(Sneaky(), (ember.randn(3),))


def test_save_load_in_a_fresh_process_without_the_source(tmp_path):
    wants = []
    for i in range(len(CASES)):
        m, xs = _build(i, ember.float64)
        t = ember.jit.trace(m, xs)
        ember.jit.save(t, tmp_path / f"prog{i}.zip")
        ember.save(list(xs), tmp_path / f"in{i}.pt")
        wants.append(m(*xs))
    run_child(tmp_path, "jit", len(CASES))
    for i, want in enumerate(wants):
        _assert_same(ember.load(tmp_path / f"out{i}.pt"), want, exact=True)


def test_save_load_in_process_and_function():
    m, xs = _build(1, ember.float32)
    t = ember.jit.trace(m, xs)
    buf = io.BytesIO()
    t.save(buf)
    buf.seek(0)
    loaded = ember.jit.load(buf)
    _assert_same(loaded(*xs), m(*xs), exact=True)
    assert set(loaded.state_dict()) == set(m.state_dict())

    sf = ember.jit.trace(lambda a: ember.tanh(a) * 2, (ember.randn(3),))
    buf = io.BytesIO()
    ember.jit.save(sf, buf)
    buf.seek(0)
    x = ember.randn(3)
    _assert_same(ember.jit.load(buf)(x), ember.tanh(x) * 2, exact=True)
    with pytest.raises(TypeError, match="jit.trace"):
        ember.jit.save(MLP(), io.BytesIO())
    with pytest.raises(RuntimeError, match="not an exported program"):
        buf.seek(0)
        ember.export.load(buf)


def test_script_traces_symbolically_and_explains_control_flow():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(RuntimeError, match=r"jit.trace.*export|export.*jit.trace"):
        ember.jit.script(Branchy())
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    s = ember.jit.script(seq)
    x = ember.randn(2, 3)
    _assert_same(s(x), seq(x), exact=True)
    assert s.graph is not None and "forward" in s.code
    t = ember.jit.script(seq, example_inputs=[(x,)])
    _assert_same(t(x), seq(x), exact=True)


def test_freeze():
    m, xs = _build(0, ember.float32)
    t = ember.jit.trace(m, xs)
    t.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        ember.jit.freeze(t)
    t.eval()
    frozen = ember.jit.freeze(t)
    want = m(*xs)
    with ember.no_grad():
        m.fc1.weight.add_(1.0)  # later changes do not reach the frozen module
    _assert_same(frozen(*xs), want, exact=True)
    assert list(frozen.parameters()) == []
    with pytest.raises(RuntimeError, match="ScriptModule"):
        ember.jit.freeze(m)


def test_helpers():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(ember.jit.is_tracing())
            return x + 1

    ember.jit.trace(Probe(), (ember.randn(2),), check_trace=False)
    assert seen == [True] and not ember.jit.is_tracing() and not ember.jit.is_scripting()

    @ember.jit.ignore
    def helper(x):
        return x

    @ember.jit.unused
    def other(x):
        return x

    assert helper(3) == 3 and other(4) == 4
    assert ember.jit.annotate(typing.List[int], [1]) == [1]
    assert ember.jit.Final is typing.Final
    assert ember.jit.wait(ember.jit.fork(lambda: 5)) == 5
