"""ember.onnx.export: the model zoo exported, checked by onnx and run by onnxruntime at the
example size and two other sizes, compared with ember eager."""

import io
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import ember  # noqa: E402
import ember.nn as nn  # noqa: E402
from ember.onnx import UnsupportedOperatorError  # noqa: E402
from ember.onnx.verification import verify  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import _zoo  # noqa: E402

ZOO = {z[0]: z for z in _zoo.zoo()}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_export_runs_in_onnxruntime_at_three_sizes(name):
    _, model, args, dyn, others = ZOO[name]
    model.eval()
    res = verify(model, args, test_args=others, dynamic_axes=dyn, rtol=1e-5, atol=1e-5)
    assert len(res.errors) >= 3
    onnx.checker.check_model(res.model, full_check=True)
    # the dynamic axes are symbolic in the graph's inputs
    for inp in res.model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        for ax, dn in dyn.get(inp.name, {}).items():
            assert dims[ax].dim_param == dn
    # dropout is gone in eval; BatchNorm was folded into constants
    ops = {n.op_type for n in res.model.graph.node}
    assert "Dropout" not in ops and "BatchNormalization" not in ops


def test_weights_are_initializers_with_their_names(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    path = tmp_path / "m.onnx"
    ember.onnx.export(model, (ember.randn(5, 3),), str(path), input_names=["inp"],
                      output_names=["out"])
    m = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    np.testing.assert_array_equal(inits["0.weight"], model[0].weight.detach().numpy())
    assert [i.name for i in m.graph.input] == ["inp"]
    assert [o.name for o in m.graph.output] == ["out"]
    assert [o.domain for o in m.opset_import] == [""] and m.opset_import[0].version == 18
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


@pytest.mark.parametrize("opset", [17, 18, 20, 21])
def test_opsets_gelu(opset):
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 4), nn.GELU("tanh")).eval()
    x = ember.randn(3, 4)
    res = verify(model, (x,), opset_version=opset, rtol=1e-5, atol=1e-6)
    assert res.model.opset_import[0].version == opset
    assert ("Gelu" in {n.op_type for n in res.model.graph.node}) == (opset >= 20)


def test_float64_and_file_object():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)).double().eval()
    x = ember.randn(4, 3, dtype=ember.float64)
    buf = io.BytesIO()
    ember.onnx.export(model, (x,), buf)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with ember.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-12, atol=1e-12)
    assert out.dtype == np.float64


class _Ops(nn.Module):
    def forward(self, x):
        a = x.cumsum(1) + x.amax(dim=1, keepdim=True) - x.sum(0)
        b = ember.cat([a, x.permute(1, 0).reshape(x.shape[0], -1)], dim=1)
        c = ember.where(b > 0, b, b * 0.1).clamp(-1.0, 2.0)
        d = ember.einsum("ij,kj->ik", c, ember.cat([x, x], 1))
        return d.softmax(-1), d[:, 1:3].exp(), x.unsqueeze(0).expand(2, -1, -1)


def test_assorted_ops_match():
    x = ember.randn(4, 4)
    res = verify(_Ops(), (x,), rtol=1e-5, atol=1e-6)
    assert len(res.errors) == 3


def test_training_model_exported_in_eval_and_restored():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.BatchNorm1d(3))
    model.train()
    proto = ember.onnx.export(model, (ember.randn(4, 3),), io.BytesIO())
    assert model.training
    assert "Dropout" not in {n.op_type for n in proto.graph.node}


def test_bad_opset_and_unsupported_op():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="opset_version 16"):
        ember.onnx.export(model, (ember.randn(1, 2),), io.BytesIO(), opset_version=16)

    class Det(nn.Module):
        def forward(self, x):
            return ember.linalg.det(x)
    with pytest.raises(UnsupportedOperatorError, match=r"Det.*opset 18") as info:
        ember.onnx.export(Det(), (ember.randn(3, 3),), io.BytesIO())
    # the message names the model's source line
    assert "test_export.py" in str(info.value) and "linalg.det(x)" in str(info.value)


def test_node_count_not_larger_than_pytorch():
    """Where PyTorch's exporter works here, ember's graph is no larger (MLP and LeNet)."""
    torch = pytest.importorskip("torch")
    from ember.vision.models import LeNet5
    em = LeNet5().eval()
    tm = torch.nn.Sequential()  # built to the same layout through the state dict
    x = ember.randn(2, 1, 28, 28)
    ours = len(ember.onnx.export(em, (x,), io.BytesIO()).graph.node)

    class TLeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 6, 5, padding=2)
            self.c2 = torch.nn.Conv2d(6, 16, 5)
            self.f = torch.nn.Sequential(torch.nn.Linear(400, 120), torch.nn.ReLU(),
                                         torch.nn.Linear(120, 84), torch.nn.ReLU(),
                                         torch.nn.Linear(84, 10))

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
            return self.f(x.flatten(1))
    del tm
    try:
        buf = io.BytesIO()
        torch.onnx.export(TLeNet().eval(), (torch.randn(2, 1, 28, 28),), buf, dynamo=False)
    except Exception as e:  # noqa: BLE001 - the oracle's exporter may lack its deps here
        pytest.skip(f"torch.onnx.export does not run here: {type(e).__name__}")
    theirs = len(onnx.load_from_string(buf.getvalue()).graph.node)
    assert ours <= theirs, (ours, theirs)


def test_external_data_above_threshold(tmp_path, monkeypatch):
    """Above the 2 GB protobuf limit the weights go to ``<name>.data`` beside the model; the
    threshold is lowered here so a small model takes that path."""
    from ember.onnx import _export
    monkeypatch.setattr(_export, "EXTERNAL_DATA_THRESHOLD", 0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    x = ember.randn(3, 6)
    path = tmp_path / "big.onnx"
    ember.onnx.export(model, (x,), str(path))
    assert (tmp_path / "big.onnx.data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with ember.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ember.onnx.load(str(path))(x).numpy(), model(x).numpy(),
                                   rtol=1e-6, atol=1e-7)
    with pytest.raises(ember.onnx.OnnxExporterError, match="needs a path"):
        ember.onnx.export(model, (x,), io.BytesIO())


def test_import_ember_does_not_load_onnx():
    import subprocess
    code = "import sys, ember; print('onnx' in sys.modules, 'ember.onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("label", ["GPT block", "ResNet-18"])
def test_node_count_and_outputs_vs_pytorch_same_weights(label):
    """The same model source and weights through both exporters: ember's graph has no more
    nodes and onnxruntime gives the same outputs."""
    torch = pytest.importorskip("torch")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)
    from benchmarks.bench_fx import define
    i = ["GPT block", "ResNet-18"].index(label)
    e_mod, t_mod = define(ember)[i]().eval(), define(torch)[i]().eval()
    t_mod.load_state_dict({k: torch.from_numpy(v.detach().numpy().copy())
                           for k, v in e_mod.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 8, 32) if i == 0 else (2, 3, 32, 32))
    x = x.astype(np.float32)
    ours = ember.onnx.export(e_mod, (ember.from_numpy(x),), io.BytesIO())
    buf = io.BytesIO()
    try:
        torch.onnx.export(t_mod, (torch.from_numpy(x),), buf, dynamo=False)
    except Exception as e:  # noqa: BLE001 - the oracle's exporter may lack its deps here
        pytest.skip(f"torch.onnx.export does not run here: {type(e).__name__}")
    theirs = onnx.load_from_string(buf.getvalue())
    assert len(ours.graph.node) <= len(theirs.graph.node)
    outs = []
    for m in (ours, theirs):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {s.get_inputs()[0].name: x})[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_dynamic_shapes_form_and_dim_names_with_spaces():
    from ember.export import Dim
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1)).eval()
    x = ember.randn(3, 4)
    proto = ember.onnx.export(model, (x,), io.BytesIO(), dynamic_shapes={"input": {0: Dim("n")}})
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "n"
    res = verify(model, (x,), test_args=((ember.randn(7, 4),),), input_names=["data"],
                 dynamic_axes={"data": {0: "batch size"}})
    assert res.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch size"
    assert len(res.errors) == 2


class _ConvBnHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        h = ember.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc(self.ln(h))


def test_export_params_false_weights_are_inputs(tmp_path):
    ember.manual_seed(0)
    model = _ConvBnHead().eval()
    model.bn.running_mean.copy_(ember.randn(4) * 0.1)
    model.bn.running_var.copy_(ember.rand(4) + 0.5)
    x = ember.randn(2, 3, 6, 6)
    path = str(tmp_path / "m.onnx")
    ember.onnx.export(model, (x,), path, input_names=["x"], export_params=False,
                      dynamic_axes={"x": {0: "batch"}})
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    names = [i.name for i in m.graph.input]
    assert names[0] == "x" and set(names[1:]) <= set(state)
    assert {"conv.weight", "bn.running_var", "fc.weight"} <= set(names[1:])
    assert not any(t.name in state for t in m.graph.initializer)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    # the same graph serves other weights: feed modified ones and compare with eager
    with ember.no_grad():
        model.fc.weight.mul_(-2.0)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for b in (2, 3):
        xb = ember.randn(b, 3, 6, 6)
        feeds = {"x": xb.numpy(), **{n: state[n] for n in names[1:]}}
        out = sess.run(None, feeds)[0]
        with ember.no_grad():
            np.testing.assert_allclose(out, model(xb).numpy(), rtol=1e-5, atol=1e-5)


class _PoolIdx(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        y, idx = self.pool(x)
        return y * 2, idx


@pytest.mark.parametrize("pool,shape", [
    (lambda: nn.MaxPool1d(3, stride=2, padding=1, return_indices=True), (2, 3, 11)),
    (lambda: nn.MaxPool2d(2, return_indices=True), (2, 3, 6, 8)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=1, return_indices=True),
     (2, 4, 7, 9)),
    (lambda: nn.MaxPool2d(2, stride=1, dilation=2, return_indices=True), (2, 2, 7, 7)),
    (lambda: nn.MaxPool3d(2, return_indices=True), (2, 2, 4, 6, 4)),
])
def test_max_pool_return_indices(pool, shape):
    # indices numbered within each (n, c) plane, as PyTorch's (ONNX numbers them over the
    # whole tensor); equal to ember's at the example size and with another batch size
    model = _PoolIdx(pool()).eval()
    x = ember.randn(*shape)
    other = ember.randn(3, *shape[1:])
    res = verify(model, (x,), test_args=[(other,)], dynamic_axes={"x": {0: "n"}},
                 input_names=["x"], rtol=0, atol=0)
    assert len(res.errors) >= 2
    assert "MaxPool" in {n.op_type for n in res.model.graph.node}


class _PoolUnpool(nn.Module):
    def __init__(self, nd):
        super().__init__()
        self.pool = getattr(nn, f"MaxPool{nd}d")(2, stride=2, return_indices=True)
        self.unpool = getattr(nn, f"MaxUnpool{nd}d")(2, stride=2)

    def forward(self, x):
        y, idx = self.pool(x)
        return self.unpool(y * 3, idx, output_size=x.shape[2:])


@pytest.mark.parametrize("nd,shape", [(1, (2, 3, 9)), (2, (2, 3, 7, 8)), (3, (2, 2, 4, 5, 4))])
def test_max_unpool(nd, shape):
    model = _PoolUnpool(nd).eval()
    x = ember.randn(*shape)
    res = verify(model, (x,), test_args=[(ember.randn(3, *shape[1:]),)],
                 dynamic_axes={"x": {0: "n"}}, input_names=["x"], rtol=0, atol=0)
    assert len(res.errors) >= 2
    assert "ScatterElements" in {n.op_type for n in res.model.graph.node}


class _Spread(nn.Module):
    def __init__(self, dim, correction, keepdim, std):
        super().__init__()
        self.dim, self.correction, self.keepdim, self.std = dim, correction, keepdim, std

    def forward(self, x):
        f = ember.std if self.std else ember.var
        return f(x, dim=self.dim, correction=self.correction, keepdim=self.keepdim) * 2


@pytest.mark.parametrize("dim,correction,keepdim,std", [
    (0, 1, False, False), (0, 0, True, True), ((0, 2), 1, False, True), (None, 1, False, False),
    (-1, 1, True, False), (2, 0, False, True)])
def test_var_std_over_dynamic_dims(dim, correction, keepdim, std):
    # the count of reduced elements follows the run-time size: at another batch size the
    # divisor is that size's count, not the example's
    model = _Spread(dim, correction, keepdim, std).eval()
    x = ember.randn(4, 3, 5)
    others = [(ember.randn(7, 3, 5),), (ember.randn(2, 3, 5),)]
    res = verify(model, (x,), test_args=others, dynamic_axes={"x": {0: "n"}},
                 input_names=["x"], rtol=1e-5, atol=1e-6)
    assert len(res.errors) == 3


def test_var_static_export_uses_a_constant_count():
    res = verify(_Spread(1, 1, False, False).eval(), (ember.randn(4, 3, 5),), rtol=1e-5,
                 atol=1e-6)
    assert "Shape" not in {n.op_type for n in res.model.graph.node}
