"""Tensor factories and views whose sizes come from an input's shape, under a dynamic ``Dim``:
``ember.zeros(x.shape[0], ...)``, ``arange(x.size(0))``, ``*_like``, ``new_*``, ``expand``,
``view``/``reshape``. The exported program must replay them at other sizes (as PyTorch's
SymInt sizes do), survive save/load, and ``jit.trace`` must stay static and guarded."""

import io
import json
import zipfile

import numpy as np
import pytest

import ember
from ember import nn
from ember.export import Dim, GuardError, export


class Factory(nn.Module):
    """``kind`` picks the factory; every output depends on the batch size ``B``."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        k, B = self.kind, x.shape[0]
        h = self.lin(x)
        if k == "zeros":
            return h + ember.zeros(x.shape[0], 4, dtype=x.dtype)
        if k == "ones":
            return h * ember.ones((B, 4), dtype=x.dtype)
        if k == "full":
            return h + ember.full((x.size(0), 1), 2.5, dtype=x.dtype)
        if k == "empty":
            return h + ember.empty(B, 4, dtype=x.dtype).fill_(1.5)
        if k == "arange":
            return h + ember.arange(B, dtype=x.dtype).unsqueeze(1) + ember.arange(x.size(1))
        if k == "linspace":
            return h * ember.linspace(0.0, 1.0, B, dtype=x.dtype).unsqueeze(1)
        if k == "eye":
            return ember.eye(B, dtype=x.dtype) @ h
        if k == "like":
            return (h + ember.zeros_like(x) + ember.ones_like(h) + ember.full_like(x, 3.0)
                    + ember.empty_like(x).zero_())
        if k == "like_new":  # the out-of-place forms only (ONNX has no in-place fills)
            return (h + ember.zeros_like(x) + ember.ones_like(h) + ember.full_like(x, 3.0)
                    + x.new_zeros(B, 4) + x.new_ones((B, 1)) + x.new_full((B, 4), 2.0))
        if k == "new":
            return (h + x.new_zeros(B, 4) + x.new_ones((B, 1)) + x.new_full((B, 4), 2.0)
                    + x.new_empty(B, 4).fill_(0.5))
        if k == "expand":
            return x * self.lin.bias.expand(x.shape[0], -1) + self.lin.bias.expand(B, 4)
        if k == "view":
            return h.view(B, 2, 2).reshape(x.size(0), -1) + h.reshape(B * 4).view(B, -1)
        if k == "index_fill":  # an in-place write into a factory's result
            z = ember.zeros(B, 4, dtype=x.dtype)
            z[:, 0] = h[:, 0]
            return z + h
        if k == "size_float":  # a float computed from the size, through the graph
            return h / ember.full((1,), float(B), dtype=x.dtype)
        if k == "long":
            return ember.zeros(B, dtype=ember.int64) + x.argmax(1)
        raise AssertionError(k)


KINDS = ["zeros", "ones", "full", "empty", "arange", "linspace", "eye", "like", "like_new", "new",
         "expand", "view", "index_fill", "size_float", "long"]


def _check(ep, m, dtype, sizes=(2, 3, 11)):
    for b in sizes:
        y = ember.randn(b, 4, dtype=dtype)
        got, want = ep.module()(y), m(y)
        assert got.shape == want.shape == (b, 4) or got.shape == want.shape == (b,)
        assert got.dtype == want.dtype
        if dtype == ember.float64 or not got.is_floating_point():
            np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())
        else:
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6,
                                       atol=1e-6)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_factories_follow_the_batch_dimension(kind, dtype):
    ember.manual_seed(0)
    m = Factory(kind).to(dtype).eval()
    ep = export(m, (ember.randn(5, 4, dtype=dtype),),
                dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    _check(ep, m, dtype)
    # save/load keeps the symbolic sizes (the graph names creation_op, an allowlisted helper)
    buf = io.BytesIO()
    ember.export.save(ep, buf)
    buf.seek(0)
    _check(ember.export.load(buf), m, dtype, sizes=(3, 17))


def test_graph_records_factories_with_symbolic_sizes():
    m = Factory("zeros").eval()
    ep = export(m, (ember.randn(5, 4),), dynamic_shapes={"x": {0: Dim("batch")}})
    code = ep.graph_module.code
    # named as PyTorch names it, with the size read from the input, not the example's 5
    assert "zeros = ember.export._capture.creation_op('zeros', sym_size, 4" in code
    buf = io.BytesIO()
    ember.export.save(ep, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        nodes = json.loads(z.read("program.json"))["graph"]["nodes"]
    targets = {n.get("target") for n in nodes}
    assert "ember.export._capture.creation_op" in targets


def test_fixed_factories_stay_constants():
    """A factory whose sizes do not follow a dynamic dimension is a constant, as in a static
    export (no creation_op node); a static export records no factories at all."""
    class Fixed(nn.Module):
        def forward(self, x):
            return x @ ember.ones(4, 4).tril() + ember.zeros(x.shape[1])
    m = Fixed()
    ep = export(m, (ember.randn(5, 4),), dynamic_shapes={"x": {0: Dim("batch")}})
    assert "creation_op" not in ep.graph_module.code
    _check(ep, m, ember.float32)
    ep = export(Factory("zeros"), (ember.randn(5, 4),))
    assert "creation_op" not in ep.graph_module.code


def test_two_dynamic_dims_and_products():
    class Grid(nn.Module):
        def forward(self, x):
            B, T = x.shape
            pos = ember.arange(T).expand(B, T)
            flat = ember.zeros(B * T).view(B, T)
            return x + pos + flat + x.new_ones(B, 1) * T
    m = Grid()
    ep = export(m, (ember.randn(3, 5),),
                dynamic_shapes={"x": {0: Dim("b", max=32), 1: Dim("t", max=32)}})
    for shape in [(2, 2), (4, 9), (7, 3)]:
        y = ember.randn(*shape)
        np.testing.assert_array_equal(ep.module()(y).numpy(), m(y).numpy())


def test_factory_dependent_shapes_run_outside_the_range_guarded():
    m = Factory("zeros")
    ep = export(m, (ember.randn(5, 4),), dynamic_shapes={"x": {0: Dim("batch", max=8)}})
    with pytest.raises(GuardError, match=r"\[2, 8\], got 9"):
        ep.module()(ember.randn(9, 4))


def test_jit_trace_stays_static_and_guarded():
    m = Factory("arange").eval()
    x = ember.randn(5, 4)
    traced = ember.jit.trace(m, (x,))
    np.testing.assert_array_equal(traced(x).detach().numpy(), m(x).detach().numpy())
    assert "creation_op" not in traced.code  # the example's tensors are constants
    with pytest.raises(GuardError, match="dim 0 was specialised to 5"):
        traced(ember.randn(3, 4))


def test_onnx_runs_factories_at_other_sizes():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    for kind in ("zeros", "ones", "full", "like_new", "expand", "view"):
        m = Factory(kind).eval()
        buf = io.BytesIO()
        ember.onnx.export(m, (ember.randn(5, 4),), buf, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
        sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        for b in (2, 9):
            y = ember.randn(b, 4)
            got = sess.run(None, {"x": y.numpy()})[0]
            with ember.no_grad():
                np.testing.assert_allclose(got, m(y).numpy(), rtol=1e-5, atol=1e-6)


def test_onnx_refuses_a_factory_it_cannot_express():
    """``arange(B)`` used to be exported as the example's constant (wrong at other sizes);
    now the exporter names the op and the line."""
    pytest.importorskip("onnx")
    from ember.onnx import UnsupportedOperatorError
    with pytest.raises(UnsupportedOperatorError, match="creation_op") as info:
        ember.onnx.export(Factory("arange").eval(), (ember.randn(5, 4),), io.BytesIO(),
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert "ember.arange(B" in str(info.value)


def test_aot_library_runs_factories_at_other_sizes(tmp_path):
    from ember.compiler._codegen import c_compiler
    if c_compiler() is None:
        pytest.skip("no C compiler")
    m = Factory("like_new").eval()
    ep = export(m, (ember.randn(5, 4),), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    ember.export.aot_compile(ep, str(tmp_path))
    lib = ember.export.aot_load(str(tmp_path))
    for b in (2, 9):
        y = ember.randn(b, 4)
        with ember.no_grad():
            np.testing.assert_allclose(lib(y).numpy(), m(y).numpy(), rtol=1e-5, atol=1e-6)
