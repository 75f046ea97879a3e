"""ember.export: round trips on six models, save/load in a fresh process, dynamic shapes."""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import ember
from ember import nn
from ember.export import Dim, GuardError, InputKind, UserError
from ember.export._pytree import tree_flatten
from ember.export._serialize import UnknownTargetError

from .models import GPTBlock, LSTMLM, MLP, cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = cases()
IDS = [c[0] for c in CASES]


def _leaves(x):
    return [t for t in tree_flatten(x)[0] if isinstance(t, ember.Tensor)]


def _assert_same(got, want, exact):
    a, b = _leaves(got), _leaves(want)
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        if exact:
            np.testing.assert_array_equal(x.detach().numpy(), y.detach().numpy())
        else:
            np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(), rtol=1e-6,
                                       atol=1e-6)


def _build(i, dtype):
    name, make, inputs = CASES[i]
    ember.manual_seed(i)
    m = make().eval().to(dtype)
    xs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs())
    return m, xs


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_round_trip(i, dtype):
    m, xs = _build(i, dtype)
    ep = ember.export.export(m, xs)
    _assert_same(ep.module()(*xs), m(*xs), exact=dtype is ember.float64)
    # the graph holds only core ops (and the capture's helpers)
    core = set(ember.export.core_ops())
    for n in ep.graph.nodes:
        if n.op == "call_function":
            name = ember.export._capture.target_name(n.target)
            assert name.rsplit(".", 1)[0] in core or name.startswith("operator.") or \
                name.startswith("ember.export._capture."), name
    kinds = {s.kind for s in ep.graph_signature.input_specs}
    assert InputKind.USER_INPUT in kinds and InputKind.PARAMETER in kinds
    assert set(ep.graph_signature.parameters) == {k for k, _ in m.named_parameters()}
    assert set(ep.state_dict) >= set(dict(m.named_parameters()))


def test_signature_state_and_call():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    x = ember.randn(5, 3)
    ep = ember.export.export(m, (x,))
    sig = ep.graph_signature
    assert sig.parameters == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert sig.buffers == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(sig.user_inputs) == 1 and len(sig.user_outputs) == 1
    dec = ep.run_decompositions()  # a new program, as PyTorch returns (no buffer writes here)
    assert dec is not ep and [s.kind for s in dec.graph_signature.output_specs] == \
        [s.kind for s in ep.graph_signature.output_specs]
    with pytest.raises(RuntimeError, match="module()"):
        ep(x)
    gm = ep.graph_module
    assert "Linear.apply" in gm.code
    assert "ExportedProgram" in str(ep)
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    assert [p.name for p in placeholders][:2] == ["p_0_weight", "p_0_bias"]
    assert placeholders[0].meta["val"].shape == (4, 3)


def test_static_shape_change_is_a_clear_error():
    m, xs = _build(0, ember.float32)
    ep = ember.export.export(m, xs)
    with pytest.raises(GuardError, match=r"input x dim 0 was specialised to 4.*got 7"):
        ep.module()(ember.randn(7, 8))
    with pytest.raises(GuardError, match="dtype"):
        ep.module()(xs[0].double())
    with pytest.raises(GuardError, match="structure"):
        ep.module()(xs[0], xs[0])


def test_dynamic_batch_and_sequence():
    ember.manual_seed(0)
    m = GPTBlock().eval()
    x = ember.randn(2, 6, 16)
    ep = ember.export.export(m, (x,), dynamic_shapes={"x": {0: Dim("b", max=8),
                                                           1: Dim("t", max=32)}})
    assert ep.range_constraints == {"b": (2, 8), "t": (2, 32)}
    for shape in [(2, 6), (3, 9), (8, 32), (5, 2)]:
        z = ember.randn(*shape, 16)
        _assert_same(ep.module()(z), m(z), exact=False)
    with pytest.raises(GuardError, match=r"dim 1 \(t\) must be in \[2, 32\], got 33"):
        ep.module()(ember.randn(2, 33, 16))
    with pytest.raises(GuardError, match=r"dim 2 was specialised to 16"):
        ep.module()(ember.randn(2, 6, 8))
    # the program survives a save/load with its symbolic sizes
    buf = io.BytesIO()
    ember.export.save(ep, buf)
    buf.seek(0)
    ep2 = ember.export.load(buf)
    z = ember.randn(4, 11, 16)
    _assert_same(ep2.module()(z), m(z), exact=False)


def test_dynamic_dims_shared_and_lstm():
    ember.manual_seed(0)
    m = LSTMLM().eval()
    tok = ember.randint(0, 20, (2, 7))
    ep = ember.export.export(m, (tok,), dynamic_shapes=({1: Dim("seq")},))
    t2 = ember.randint(0, 20, (2, 12))
    _assert_same(ep.module()(t2), m(t2), exact=False)

    class Add(nn.Module):
        def forward(self, a, b):
            return a + b
    batch = Dim("batch")
    ep = ember.export.export(Add(), (ember.randn(3, 2), ember.randn(3, 2)),
                             dynamic_shapes={"a": {0: batch}, "b": {0: batch}})
    assert ep.module()(ember.randn(5, 2), ember.randn(5, 2)).shape == (5, 2)
    with pytest.raises(GuardError, match="batch"):
        ep.module()(ember.randn(5, 2), ember.randn(4, 2))
    with pytest.raises(UserError, match="not arguments"):
        ember.export.export(Add(), (ember.randn(3, 2), ember.randn(3, 2)),
                            dynamic_shapes={"c": {0: batch}})


def test_dynamic_dim_with_size_dependent_branch_is_refused():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.shape[0] > 3:
                return x * 2
            return x + 1
    with pytest.raises(UserError, match="change with the size"):
        ember.export.export(Branchy(), (ember.randn(3, 2),),
                            dynamic_shapes={"x": {0: Dim("n", max=10)}})


def test_size_dependent_constants_are_refused_and_interpolate_follows_sizes():
    # adaptive pooling at uneven sizes averages with a matrix made for the example's size
    pool = nn.AdaptiveAvgPool2d((2, 3))
    with pytest.raises(UserError, match="constant made in forward .* changes with"):
        ember.export.export(pool, (ember.randn(2, 3, 7, 8),),
                            dynamic_shapes={"input": {2: Dim("h", max=20)}})

    class Up(nn.Module):  # interpolate is one op: its sizes follow the input's
        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=1.5, mode="bilinear")
    ep = ember.export.export(Up(), (ember.randn(2, 3, 7, 8),),
                             dynamic_shapes={"x": {2: Dim("h", max=20), 3: Dim("w", max=20)}})
    for hw in [(7, 8), (9, 5), (20, 13)]:
        z = ember.randn(2, 3, *hw)
        _assert_same(ep.module()(z), Up()(z), exact=False)


def test_kwargs_and_nested_inputs_and_outputs():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, pair, d, *, scale=1.0, extra=None):
            a, b = pair
            y = self.lin(a) * scale + b
            return {"y": y, "parts": (a.sum(), [d["u"] * 2, d["v"]])} if extra is None \
                else (y, extra)

    ember.manual_seed(0)
    m = Nested()
    args = ((ember.randn(2, 3), ember.randn(2, 3)), {"u": ember.randn(4), "v": ember.randn(1)})
    kwargs = {"scale": 0.5}
    ep = ember.export.export(m, args, kwargs)
    got, want = ep.module()(*args, **kwargs), m(*args, **kwargs)
    assert set(got) == {"y", "parts"} and isinstance(got["parts"][1], list)
    _assert_same(got, want, exact=True)
    new = ((ember.randn(2, 3), ember.randn(2, 3)), {"u": ember.randn(4), "v": ember.randn(1)})
    _assert_same(ep.module()(*new, scale=0.5), m(*new, scale=0.5), exact=True)
    with pytest.raises(GuardError, match="specialised to the constant 0.5"):
        ep.module()(*new, scale=2.0)
    buf = io.BytesIO()
    ember.export.save(ep, buf)
    buf.seek(0)
    _assert_same(ember.export.load(buf).module()(*new, scale=0.5), m(*new, scale=0.5), True)


# ---------------------------------------------------------------------- save / load
_CHILD = textwrap.dedent("""
    import importlib.abc, io, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tests" or name.startswith("tests."):
                raise ImportError("the model's source is not available here")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import ember
    from ember.export._pytree import tree_flatten
    kind, n = sys.argv[1], int(sys.argv[2])
    try:
        import tests.export.models  # noqa: F401
        raise SystemExit("the model's module is importable")
    except ImportError:
        pass
    for i in range(n):
        load = ember.export.load if kind == "export" else ember.jit.load
        prog = load(f"prog{i}.zip")
        mod = prog.module() if kind == "export" else prog
        ins = ember.load(f"in{i}.pt")
        out = mod(*ins)
        ember.save([t for t in tree_flatten(out)[0] if isinstance(t, ember.Tensor)], f"out{i}.pt")
    print("ok")
""")


def run_child(tmp_path, kind, n):
    (tmp_path / "child.py").write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "child.py", kind, str(n)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("ok")


def test_save_load_in_a_fresh_process_without_the_source(tmp_path):
    wants = []
    for i in range(len(CASES)):
        m, xs = _build(i, ember.float64)
        ep = ember.export.export(m, xs)
        ember.export.save(ep, tmp_path / f"prog{i}.zip")
        ember.save(list(xs), tmp_path / f"in{i}.pt")
        wants.append(m(*xs))
    run_child(tmp_path, "export", len(CASES))
    for i, want in enumerate(wants):
        _assert_same(ember.load(tmp_path / f"out{i}.pt"), want, exact=True)


def test_archive_layout_and_schema(tmp_path):
    m, xs = _build(0, ember.float32)
    ep = ember.export.export(m, xs)
    path = tmp_path / "p.zip"
    ember.export.save(ep, path, extra_files={"note.txt": "hello"})
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        program = json.loads(z.read("program.json"))
        weights = z.read("weights.pt")
    assert {"program.json", "weights.pt", "extra/note.txt"} <= names
    assert program["schema"] == "ember.program" and program["version"] == 1
    assert zipfile.is_zipfile(io.BytesIO(weights))  # PyTorch's checkpoint format
    torch = pytest.importorskip("torch")
    sd = torch.load(io.BytesIO(weights), weights_only=True)
    np.testing.assert_array_equal(sd["state"]["fc1.weight"].detach().numpy(),
                                  m.fc1.weight.detach().numpy())
    extra = {"note.txt": ""}
    ember.export.load(path, extra_files=extra)
    assert extra["note.txt"] == b"hello"


def _tamper(src, dst, fn):
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    program = json.loads(files["program.json"])
    fn(program)
    files["program.json"] = json.dumps(program).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "ember.serialization.save",
                                    "ember.export._capture.optimizer_param_step",
                                    "ember.nn.modules.module.Module.apply",
                                    "tests.export.models.MLP.apply", "ember.ops.nn.__import__"])
def test_tampered_target_is_refused(tmp_path, target):
    m, xs = _build(0, ember.float32)
    ember.export.save(ember.export.export(m, xs), tmp_path / "ok.zip")

    def swap(program):
        for n in program["graph"]["nodes"]:
            if n["op"] == "call_function":
                n["target"] = target
                break
    _tamper(tmp_path / "ok.zip", tmp_path / "bad.zip", swap)
    with pytest.raises(UnknownTargetError, match="not"):
        ember.export.load(tmp_path / "bad.zip")


def test_bad_archives(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="not a zip"):
        ember.export.load(tmp_path / "junk.zip")
    m, xs = _build(0, ember.float32)
    ember.export.save(ember.export.export(m, xs), tmp_path / "ok.zip")
    _tamper(tmp_path / "ok.zip", tmp_path / "v9.zip", lambda p: p.update(version=9))
    with pytest.raises(RuntimeError, match="version 9"):
        ember.export.load(tmp_path / "v9.zip")
    with pytest.raises(RuntimeError, match="not a traced module"):
        ember.jit.load(tmp_path / "ok.zip")


def test_save_refuses_custom_function():
    class Cube(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            return g

    class M(nn.Module):
        def forward(self, x):
            return Cube.apply(x) + 1

    x = ember.randn(3)
    ep = ember.export.export(M(), (x,))
    _assert_same(ep.module()(x), M()(x), exact=True)  # replays in process
    with pytest.raises(TypeError, match="not an ember core op"):
        ember.export.save(ep, io.BytesIO())


def test_export_leaves_module_state_alone():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    x = ember.randn(6, 3)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    state = ember.random.get_rng_state()
    ember.export.export(m, (x,), dynamic_shapes={"input": {0: Dim("n")}})
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k].numpy())
    np.testing.assert_array_equal(ember.random.get_rng_state().numpy(), state.numpy())


def test_wrong_arguments():
    with pytest.raises(ValueError, match="tuple"):
        ember.export.export(MLP(), ember.randn(4, 8))
    with pytest.raises(ValueError, match="nn.Module"):
        ember.export.export(lambda x: x, (ember.randn(2),))
    with pytest.raises(UserError, match="outside the range"):
        ember.export.export(MLP(), (ember.randn(4, 8),),
                            dynamic_shapes={"x": {0: Dim("b", min=5)}})
