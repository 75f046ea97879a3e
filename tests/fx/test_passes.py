"""Interpreter, Transformer, replace_pattern and ShapeProp."""

import operator

import numpy as np
import pytest

import ember
from ember import nn
from ember.fx import Interpreter, Transformer, replace_pattern, symbolic_trace
from ember.fx.passes.shape_prop import ShapeProp, TensorMetadata

torch = pytest.importorskip("torch")
torch_fx = pytest.importorskip("torch.fx")


def _det(t):
    return t.detach().numpy()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        h = ember.relu(self.lin(x))
        h = self.bn(h) + ember.sigmoid(h)
        return h.sum(dim=1), h.t()


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_interpreter_runs_like_the_module(dtype):
    m = Net().to(dtype)
    gm = symbolic_trace(m)
    x = ember.randn(5, 4, dtype=dtype)
    gm.eval()
    out = Interpreter(gm).run(x)
    ref = gm(x)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(_det(a), _det(b))
    with pytest.raises(RuntimeError, match="Expected positional argument for parameter x"):
        Interpreter(gm).run()


def test_interpreter_hooks_and_errors_name_the_node():
    gm = symbolic_trace(Net())
    seen = []

    class Counting(Interpreter):
        def call_function(self, target, args, kwargs):
            seen.append(getattr(target, "__name__", target))
            return super().call_function(target, args, kwargs)

        def call_module(self, target, args, kwargs):
            seen.append(target)
            return super().call_module(target, args, kwargs)
    Counting(gm).run(ember.randn(3, 4))
    assert seen == ["lin", "relu", "bn", "sigmoid", "add"]

    class Broken(Interpreter):
        def call_function(self, target, args, kwargs):
            if target is ember.sigmoid:
                raise ValueError("boom")
            return super().call_function(target, args, kwargs)
    with pytest.raises(ValueError, match="boom") as info:
        Broken(gm).run(ember.randn(3, 4))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "While executing %sigmoid" in notes and "ember.sigmoid(h)" in notes
    # values are freed after their last use
    interp = Interpreter(gm)
    interp.run(ember.randn(3, 4))
    assert list(interp.env) == [n for n in gm.graph.nodes if n.op == "output"]


def test_transformer_rewrites_functions():
    m = Net()
    gm = symbolic_trace(m)

    class SigmoidToTanh(Transformer):
        def call_function(self, target, args, kwargs):
            if target is ember.sigmoid:
                target = ember.tanh
            return super().call_function(target, args, kwargs)
    new = SigmoidToTanh(gm).transform()
    assert "ember.tanh(relu)" in new.code and "sigmoid" not in new.code
    assert [n.op for n in new.graph.nodes] == [n.op for n in gm.graph.nodes]
    x = ember.randn(3, 4)
    new.eval()
    m.eval()
    h = ember.relu(m.lin(x))
    ref = m.bn(h) + ember.tanh(h)
    np.testing.assert_allclose(_det(new(x)[0]), _det(ref.sum(dim=1)), rtol=1e-6)
    # an identity Transformer reproduces the graph
    same = Transformer(gm).transform()
    assert same.code == gm.code


def _pattern(x, y):
    return ember.relu(ember.add(x, y))


def _replacement(x, y):
    return ember.clamp(x + y, min=0)


def test_replace_pattern():
    class M(nn.Module):
        def forward(self, a, b, c):
            u = ember.relu(ember.add(a, b))
            v = ember.relu(ember.add(u, c))
            w = ember.add(a, c)  # add without relu: no match
            return u * v + w
    m = M()
    gm = symbolic_trace(m)
    matches = replace_pattern(gm, _pattern, _replacement)
    assert len(matches) == 2
    assert all(mt.anchor.name.startswith("relu") for mt in matches)
    code = gm.code
    assert "ember.relu" not in code and code.count("ember.clamp") == 2
    a, b, c = (ember.randn(6) for _ in range(3))
    np.testing.assert_array_equal(_det(gm(a, b, c)), _det(m(a, b, c)))
    gm.graph.lint()

    class TM(torch.nn.Module):
        def forward(self, a, b, c):
            u = torch.relu(torch.add(a, b))
            v = torch.relu(torch.add(u, c))
            w = torch.add(a, c)
            return u * v + w
    tgm = torch_fx.symbolic_trace(TM())
    tmatches = torch_fx.replace_pattern(
        tgm, lambda x, y: torch.relu(torch.add(x, y)),
        lambda x, y: torch.clamp(x + y, min=0))
    assert len(tmatches) == len(matches)
    assert [n.op for n in tgm.graph.nodes] == [n.op for n in gm.graph.nodes]


def test_replace_pattern_skips_matches_used_outside():
    def f(a, b):
        s = ember.add(a, b)
        return ember.relu(s), s  # ``s`` escapes: the relu(add) match would drop it
    gm = symbolic_trace(f)
    assert replace_pattern(gm, _pattern, _replacement) == []
    a, b = ember.randn(3), ember.randn(3)
    np.testing.assert_array_equal(_det(gm(a, b)[0]), _det(f(a, b)[0]))


def test_shape_prop_records_metadata():
    m = Net().double()
    gm = symbolic_trace(m)
    x = ember.randn(5, 4, dtype=ember.float64)
    ShapeProp(gm).propagate(x)
    by_name = {n.name: n for n in gm.graph.nodes}
    tm = by_name["lin"].meta["tensor_meta"]
    assert isinstance(tm, TensorMetadata)
    assert tuple(tm.shape) == (5, 4) and tm.dtype == ember.float64 and tm.requires_grad
    assert tm.stride == (4, 1)
    out = by_name["output"].meta["tensor_meta"]
    assert tuple(out[0].shape) == (5,) and tuple(out[1].shape) == (4, 5)
    assert out[1].stride == (1, 4)  # t() is a view with swapped strides
    val = by_name["relu"].meta["val"]
    assert tuple(val.shape) == (5, 4) and not val.requires_grad
    assert by_name["x"].meta["type"] is ember.Tensor
    # print_readable shows the shapes and dtypes; the code that runs stays plain
    text = gm.print_readable(print_output=False)
    assert 'def forward(self, x: "f64[5, 4]"):' in text
    assert 'lin: "f64[5, 4]" = self.lin(x)' in text
    assert 'sum_1: "f64[5]" = add.sum(dim = 1)' in text
    assert gm.print_readable(print_output=False, include_stride=True).count('[4, 1]"') >= 3
    assert '"f64' not in gm.code

    # torch's ShapeProp over the same program gives the same shapes and strides
    from torch.fx.passes.shape_prop import ShapeProp as TShapeProp

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.bn = torch.nn.BatchNorm1d(4)

        def forward(self, x):
            h = torch.relu(self.lin(x))
            h = self.bn(h) + torch.sigmoid(h)
            return h.sum(dim=1), h.t()
    tgm = torch_fx.symbolic_trace(TNet().double())
    TShapeProp(tgm).propagate(torch.randn(5, 4, dtype=torch.float64))
    for n, tn in zip(gm.graph.nodes, tgm.graph.nodes):
        if n.op == "output":
            continue
        assert tuple(n.meta["tensor_meta"].shape) == tuple(tn.meta["tensor_meta"].shape)
        assert n.meta["tensor_meta"].stride == tn.meta["tensor_meta"].stride


def test_graph_module_code_after_graph_edit_and_print_readable(capsys):
    gm = symbolic_trace(Net())
    g = gm.graph
    sig = next(n for n in g.nodes if n.target is ember.sigmoid)
    with g.inserting_after(sig):
        double = g.call_function(operator.mul, (sig, 2))
    sig.replace_all_uses_with(double, delete_user_cb=lambda u: u is not double)
    gm.recompile()
    assert "mul = sigmoid * 2" in gm.code
    text = gm.print_readable()
    assert "class Net(ember.nn.Module):" in capsys.readouterr().out
    assert "mul = sigmoid * 2" in text
    x = ember.randn(3, 4)
    gm.eval()
    out = gm(x)[0]
    m_ref = Interpreter(gm).run(x)[0]
    np.testing.assert_array_equal(_det(out), _det(m_ref))
