"""ember.fx's IR: building graphs by hand, codegen, editing, DCE and lint."""

import copy
import operator

import numpy as np
import pytest

import ember
from ember import nn
from ember.fx import Graph, GraphModule, Node


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.register_buffer("b", ember.ones(4))


def build(root=None):
    """x -> lin -> seq.0 -> + b -> relu -> (view, sum)"""
    g = Graph()
    x = g.placeholder("x")
    lin = g.call_module("lin", (x,))
    s0 = g.call_module("seq.0", (lin,))
    b = g.get_attr("b")
    add = g.call_function(operator.add, (s0, b))
    relu = g.call_function(ember.relu, (add,))
    view = g.call_method("view", (relu, -1))
    total = g.call_function(ember.sum, (relu,), {"dim": 1, "keepdim": True})
    g.output((view, {"total": total}))
    return g


def eager(m, x):
    h = ember.relu(m.seq[0](m.lin(x)) + m.b)
    return h.view(-1), ember.sum(h, dim=1, keepdim=True)


def test_build_and_run():
    m = Small()
    gm = GraphModule(m, build())
    x = ember.randn(2, 3)
    out_view, out = gm(x)
    ref_view, ref = eager(m, x)
    np.testing.assert_array_equal(out_view.detach().numpy(), ref_view.detach().numpy())
    np.testing.assert_array_equal(out["total"].detach().numpy(), ref.detach().numpy())
    # the parameters are shared with the root, so gradients reach them
    out["total"].sum().backward()
    assert m.lin.weight.grad is not None


def test_nodes_users_and_names():
    g = build()
    nodes = list(g.nodes)
    assert [n.op for n in nodes] == ["placeholder", "call_module", "call_module", "get_attr",
                                     "call_function", "call_function", "call_method",
                                     "call_function", "output"]
    assert [n.name for n in nodes] == ["x", "lin", "seq_0", "b", "add", "relu", "view",
                                       "sum_1", "output"]
    relu = nodes[5]
    assert set(relu.users) == {nodes[6], nodes[7]}
    assert relu.all_input_nodes == [nodes[4]]
    assert nodes[4].all_input_nodes == [nodes[2], nodes[3]]
    assert relu.prev is nodes[4] and relu.next is nodes[6]
    assert len(g.nodes) == 9
    assert [n.name for n in reversed(g.nodes)][0] == "output"
    assert g.find_nodes(op="call_module") == nodes[1:3]


def test_code_reads_as_python():
    gm = GraphModule(Small(), build())
    code = gm.code
    assert "def forward(self, x):" in code
    assert "lin = self.lin(x)" in code
    assert "seq_0 = getattr(self.seq, '0')(lin)" in code
    assert "add = seq_0 + b" in code
    assert "relu = ember.relu(add)" in code
    assert "view = relu.view(-1)" in code
    assert "sum_1 = ember.sum(relu, dim = 1, keepdim = True)" in code
    assert "return (view, {'total': sum_1})" in code
    text = gm.print_readable(print_output=False)
    assert text.startswith("class GraphModule(ember.nn.Module):")
    assert "    def forward(self, x):" in text
    assert "%relu : [num_users=2] = call_function[target=ember.relu](args = (%add,)" in \
        str(gm.graph)


def test_codegen_of_constants_and_op_targets():
    g = Graph()
    x = g.placeholder("x")
    a = g.call_function(ember.ops.elementwise.Add.apply, (x, 1.5))
    c = g.call_function(ember.full, ((2,), float("inf")), {"dtype": ember.float64})
    i = g.call_function(operator.getitem, (a, (slice(None), slice(0, 1))))
    d = g.call_method("to", (i, ember.float64))

    def helper(t, k):
        return t * k
    h = g.call_function(helper, (d, 3))
    g.output((h, c))
    gm = GraphModule(nn.Module(), g)
    assert "ember.ops.elementwise.Add.apply(x, 1.5)" in gm.code
    assert "ember.full((2,), inf, dtype = ember.float64)" in gm.code
    assert "getitem = add[:, 0:1]" in gm.code
    # the node took the name ``helper``: the function's global gets another one
    assert "helper = helper_1(to, 3)" in gm.code
    x = ember.randn(3, 2, dtype=ember.float64)
    out, full = gm(x)
    np.testing.assert_array_equal(out.detach().numpy(), ((x + 1.5)[:, 0:1] * 3).detach().numpy())
    assert np.isinf(full.detach().numpy()).all()


def test_placeholder_defaults_and_reserved_names():
    g = Graph()
    inp = g.placeholder("input")
    scale = g.placeholder("scale", default_value=2.0)
    g.output(g.call_function(operator.mul, (inp, scale)))
    assert inp.name == "input_1"  # ``input`` would shadow the builtin
    gm = GraphModule(nn.Module(), g)
    assert "def forward(self, input, scale = 2.0):" in gm.code
    assert gm(ember.ones(2)).tolist() == [2.0, 2.0]
    assert gm(ember.ones(2), 3.0).tolist() == [3.0, 3.0]


def test_edit_and_recompile():
    m = Small()
    gm = GraphModule(m, build())
    x = ember.randn(2, 3)
    relu = next(n for n in gm.graph.nodes if n.target is ember.relu)
    with gm.graph.inserting_after(relu):
        neg = gm.graph.call_function(operator.neg, (relu,))
    relu.replace_all_uses_with(neg, delete_user_cb=lambda u: u is not neg)
    gm.recompile()
    assert "neg = -relu" in gm.code
    out_view, out = gm(x)
    ref_view, ref = eager(m, x)
    np.testing.assert_array_equal(out_view.detach().numpy(), (-ref_view).detach().numpy())
    # swap relu for sigmoid in place
    relu.target = ember.sigmoid
    gm.recompile()
    assert "ember.sigmoid(add)" in gm.code
    h = ember.sigmoid(m.seq[0](m.lin(x)) + m.b)
    np.testing.assert_allclose(gm(x)[0].detach().numpy(), (-h).view(-1).detach().numpy())


def test_inserting_before_prepend_append_and_erase():
    g = Graph()
    x = g.placeholder("x")
    y = g.call_function(ember.exp, (x,))
    out = g.output(y)
    with g.inserting_before(y):
        z = g.call_function(ember.neg, (x,))
    assert [n.name for n in g.nodes] == ["x", "neg", "exp", "output"]
    y.replace_input_with(x, z)
    assert y.args == (z,)
    out.prepend(z)  # moving z after its user breaks topological order
    with pytest.raises(RuntimeError, match="used before it has been defined"):
        g.lint()
    y.prepend(z)
    g.lint()
    with pytest.raises(RuntimeError, match="still had 1 users"):
        g.erase_node(z)
    y.replace_input_with(z, x)
    g.erase_node(z)
    assert [n.name for n in g.nodes] == ["x", "exp", "output"]
    g.lint()


def test_dead_code_elimination_keeps_impure():
    g = Graph()
    x = g.placeholder("x")
    g.call_function(ember.exp, (x,))           # dead
    dead2 = g.call_function(ember.sin, (x,))
    g.call_function(ember.cos, (dead2,))       # dead chain
    g.call_method("add_", (x, 1))              # in-place: kept
    g.call_function(ember.rand, (3,))          # random: kept
    keep = g.call_function(ember.tanh, (x,))
    g.output(keep)
    assert g.eliminate_dead_code()
    assert [n.name for n in g.nodes] == ["x", "add_", "rand", "tanh", "output"]
    assert not g.eliminate_dead_code()
    custom = g.eliminate_dead_code(is_impure_node=lambda n: n.op in ("placeholder", "output"))
    assert custom and [n.name for n in g.nodes] == ["x", "tanh", "output"]


def test_lint_errors():
    g = Graph()
    x = g.placeholder("x")
    other = Graph()
    y = other.placeholder("y")
    with pytest.raises(ValueError, match="another graph"):
        g.call_function(ember.exp, (y,))
    n = g.call_function(ember.exp, (x,))
    g.output(n)
    n.name = "x"
    with pytest.raises(RuntimeError, match="redefined name x"):
        g.lint()
    n.name = "exp"
    g.lint()
    gm = GraphModule(Small(), build())
    with gm.graph.inserting_before(gm.graph.output_node()):
        gm.graph.get_attr("nope.weight")
    with pytest.raises(RuntimeError, match="nonexistent attribute nope"):
        gm.graph.lint()
    with pytest.raises(ValueError, match="unknown opcode"):
        Node(g, "bad", "call_lambda", "f", (), {})
    with pytest.raises(ValueError, match="must be callable"):
        g.call_function("relu", (x,))


def test_node_copy_graph_copy_and_deepcopy():
    m = Small()
    g = build()
    g2 = Graph()
    val_map = {}
    rv = g2.graph_copy(g, val_map)
    g2.output(rv)
    assert [n.op for n in g2.nodes] == [n.op for n in g.nodes]
    assert all(val_map[n].graph is g2 for n in val_map)
    gm = GraphModule(m, g2)
    x = ember.randn(2, 3)
    np.testing.assert_array_equal(gm(x)[0].detach().numpy(), eager(m, x)[0].detach().numpy())
    gm2 = copy.deepcopy(gm)
    assert gm2.code == gm.code and type(gm2) is not type(gm)
    assert gm2.lin.weight is not gm.lin.weight
    np.testing.assert_array_equal(gm2(x)[0].detach().numpy(), gm(x)[0].detach().numpy())
    # editing the copy's graph leaves the original alone
    next(iter(gm2.graph.find_nodes(op="call_function", target=ember.relu))).target = ember.abs
    gm2.recompile()
    assert "ember.relu" in gm.code and "ember.abs" in gm2.code


def test_graph_module_copies_only_what_the_graph_uses():
    m = Small()
    gm = GraphModule(m, build(), class_name="Sliced")
    assert type(gm).__name__ == "Sliced"
    names = dict(gm.named_parameters())
    assert set(names) == {"lin.weight", "lin.bias", "seq.0.weight", "seq.0.bias"}
    assert gm.lin is m.lin and gm.b is m.b
    assert "b" in dict(gm.named_buffers())
    assert not hasattr(gm.seq, "1")  # seq.1 (the ReLU) is not used by the graph
    # a dict root works too
    gm2 = GraphModule({"lin": m.lin, "seq.0": m.seq[0], "b": m.b}, build())
    x = ember.randn(2, 3)
    np.testing.assert_array_equal(gm2(x)[0].detach().numpy(), gm(x)[0].detach().numpy())
    with pytest.raises(RuntimeError, match="not provided"):
        GraphModule({"lin": m.lin}, build())


def test_submodule_management():
    gm = GraphModule(Small(), build())
    assert gm.add_submodule("extra.inner", nn.ReLU())
    assert isinstance(gm.extra.inner, nn.ReLU)
    assert gm.delete_submodule("extra.inner") and not gm.delete_submodule("extra.inner")
    gm.delete_all_unused_submodules()
    assert not hasattr(gm, "extra")
    assert hasattr(gm, "lin")


def test_tracebacks_point_into_generated_code():
    g = Graph()
    x = g.placeholder("x")
    g.output(g.call_method("view", (x, 7)))
    gm = GraphModule(nn.Module(), g)
    import traceback
    with pytest.raises(RuntimeError) as info:
        gm(ember.ones(3))
    text = "".join(traceback.format_exception(info.value))
    assert "view = x.view(7)" in text


def test_str_and_tabular(capsys):
    g = build()
    s = str(g)
    assert s.splitlines()[0] == "graph():"
    assert s.splitlines()[-1].strip() == "return (view, {'total': sum_1})"
    g.print_tabular()
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["opcode", "name", "target", "args", "kwargs"]
    assert "call_module" in out and "seq.0" in out


def test_pickle_graph_module_and_long_graphs():
    import io
    import pickle
    m = Small()
    gm = GraphModule(m, build(), class_name="Sliced")
    gm2 = pickle.loads(pickle.dumps(gm))
    assert type(gm2).__name__ == "Sliced" and gm2.code == gm.code
    x = ember.randn(2, 3)
    np.testing.assert_array_equal(gm2(x)[0].detach().numpy(), gm(x)[0].detach().numpy())
    buf = io.BytesIO()
    ember.save(gm, buf)
    buf.seek(0)
    gm3 = ember.load(buf, weights_only=False)
    np.testing.assert_array_equal(gm3(x)[0].detach().numpy(), gm(x)[0].detach().numpy())
    # a graph far longer than the recursion limit pickles (nodes go as a flat list)
    g = Graph()
    v = g.placeholder("x")
    for _ in range(5000):
        v = g.call_function(operator.add, (v, 1))
    g.output(v)
    g2 = pickle.loads(pickle.dumps(g))
    assert len(g2.nodes) == 5002 and str(g2) == str(g)
    assert GraphModule(nn.Module(), g2)(ember.zeros(1)).item() == 5000


def test_fx_loads_lazily():
    import subprocess
    import sys
    code = ("import sys, ember; assert 'ember.fx' not in sys.modules; "
            "g = ember.fx.Graph(); print(type(g).__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "ember.fx.graph"
