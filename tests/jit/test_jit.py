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


# ---------------------------------------------------------------------- scripted save/load
class _Wrapped(nn.Module):
    """The transformer encoder as a leaf module (a root module is always traced through)."""

    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def forward(self, x):
        return self.enc(x)


def _scripted_case(i):
    m, xs = _build(i, ember.float64)
    if CASES[i][0] == "encoder":
        m = _Wrapped(m)
    return m, xs


def test_script_save_load_in_a_fresh_process_without_the_source(tmp_path):
    wants = []
    for i in range(len(CASES)):
        m, xs = _scripted_case(i)
        s = ember.jit.script(m)
        s.save(tmp_path / f"prog{i}.zip")  # ScriptModule.save
        ember.save(list(xs), tmp_path / f"in{i}.pt")
        wants.append(m(*xs))
    run_child(tmp_path, "jit", len(CASES))
    for i, want in enumerate(wants):
        _assert_same(ember.load(tmp_path / f"out{i}.pt"), want, exact=True)


def test_script_save_load_in_process_keeps_modules_and_state():
    m, xs = _scripted_case(2)  # ResNet-18: convolutions without bias, batch norm buffers
    s = ember.jit.script(m)
    buf = io.BytesIO()
    ember.jit.save(s, buf)
    buf.seek(0)
    loaded = ember.jit.load(buf)
    _assert_same(loaded(*xs), m(*xs), exact=True)
    assert list(loaded.state_dict()) == list(s.state_dict())
    assert loaded.code == s.code
    assert ember.jit.script(loaded) is loaded
    # a loaded scripted module trains: batch norm updates its running statistics
    loaded.train()
    before = loaded.bn1.running_mean.clone()
    loaded(ember.cat([xs[0], xs[0] + 1]))  # two samples: batch norm needs more than one
    assert not np.array_equal(before.numpy(), loaded.bn1.running_mean.numpy())


def test_script_function_save_load():
    def f(a, b):
        return ember.relu(a) * b.sum(0) + a.view(-1, 2).shape[0]

    s = ember.jit.script(f)
    buf = io.BytesIO()
    s.save(buf)
    buf.seek(0)
    g = ember.jit.load(buf)
    a, b = ember.randn(4, 2), ember.randn(4, 2)
    _assert_same(g(a, b), f(a, b), exact=True)


@ember.fx.wrap
def _user_helper(x):
    return x * 3


def test_script_save_refuses_what_would_need_the_source():
    class UsesHelper(nn.Module):
        def forward(self, x):
            return _user_helper(x) + 1

    s = ember.jit.script(UsesHelper())
    with pytest.raises(TypeError, match="not a function of ember"):
        s.save(io.BytesIO())

    class MyLeaf(nn.Module):
        def forward(self, x):
            return x + 1

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.leaf = MyLeaf()

        def forward(self, x):
            return self.leaf(x)

    class LeafTracer(ember.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, MyLeaf) or super().is_leaf_module(m, qualname)

    outer = Outer()
    gm = ember.fx.GraphModule(outer, LeafTracer().trace(outer))
    with pytest.raises(TypeError, match="not a module of ember"):
        ember.jit.save(gm, io.BytesIO())


@pytest.mark.parametrize("field, value", [
    ("target", {"fn": "os:system"}),
    ("target", {"fn": "ember.serialization:pickle.loads"}),
    ("target", {"fn": "builtins:eval"}),
    ("module", "builtins:object"),
    ("module", "ember.nn.modules.module:__class__"),
])
def test_script_load_refuses_tampered_targets(field, value):
    import json
    import zipfile

    from ember.export._serialize import UnknownTargetError
    s = ember.jit.script(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    s2 = ember.jit.script(lambda x: ember.relu(x) + 1)
    buf = io.BytesIO()
    (s if field == "module" else s2).save(buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        files = {n: z.read(n) for n in z.namelist()}
    prog = json.loads(files["program.json"])
    if field == "module":
        prog["modules"][0][1] = value
    else:
        node = next(n for n in prog["graph"]["nodes"] if n["op"] == "call_function")
        node["target"] = value
    files["program.json"] = json.dumps(prog).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    out.seek(0)
    with pytest.raises(UnknownTargetError):
        ember.jit.load(out)
