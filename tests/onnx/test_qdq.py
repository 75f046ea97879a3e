"""QDQ export: a fake-quantized model (eager-mode QAT flow, observers frozen) exports with
QuantizeLinear/DequantizeLinear pairs (weights per channel, activations per tensor) and
onnxruntime, which runs such pairs as integer kernels, gives the same top-1 predictions as
ember's fake-quantized model and as the converted int8 model."""

import copy
import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import ember  # noqa: E402
from ember import nn  # noqa: E402
from ember.ao import quantization as Q  # noqa: E402
from ember.demo import build_model  # noqa: E402


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.body, self.dequant = Q.QuantStub(), build_model(nn), Q.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


def _prepared():
    ember.manual_seed(0)
    m = _Net().train()
    m.qconfig = Q.get_default_qat_qconfig("x86")
    m = Q.fuse_modules_qat(m, [["body.0", "body.1"], ["body.3", "body.4"], ["body.7", "body.8"]])
    p = Q.prepare_qat(m)
    for _ in range(3):  # calibration: the observers see a few batches
        p(ember.randn(32, 1, 28, 28))
    p.apply(Q.disable_observer)
    return p.eval()


def _session(model, x, **kw):
    f = io.BytesIO()
    ember.onnx.export(model, (x,), f, input_names=["x"], **kw)
    proto = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    return proto, ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])


def test_fake_quantized_cnn_exports_as_qdq_and_runs_in_onnxruntime():
    p = _prepared()
    proto, sess = _session(p, ember.randn(8, 1, 28, 28), dynamic_axes={"x": {0: "batch"}})
    ops = [n.op_type for n in proto.graph.node]
    n_fq = sum(1 for m in p.modules() if isinstance(m, Q.FakeQuantizeBase))
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") == n_fq
    # weights keep their Q/DQ pair (per channel, int8 zero points), not folded to floats
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    per_channel = [n for n in proto.graph.node if n.op_type == "QuantizeLinear" and
                   any(a.name == "axis" for a in n.attribute)]
    assert len(per_channel) == 4
    assert all(inits[n.input[2]].dtype == np.int8 for n in per_channel)
    out_scale = float(p.body[9].activation_post_process.scale)
    for batch in (64, 5):
        x = ember.randn(batch, 1, 28, 28)
        want = p(x).detach().numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        # integer kernels in onnxruntime: at most one output quantization step apart
        assert np.abs(got - want).max() <= out_scale * 1.01
        assert (got.argmax(1) == want.argmax(1)).all()
        converted = Q.convert(copy.deepcopy(p))
        assert (converted(x).numpy().argmax(1) == got.argmax(1)).all()


def test_narrow_ranges_are_clamped_like_the_fake_quantizer():
    """reduce_range activations use [0, 127] of uint8: QuantizeLinear saturates at 255, so the
    export clamps on the float grid and matches ember exactly."""

    class FQ(nn.Module):
        def forward(self, x):
            a = ember.fake_quantize_per_tensor_affine(x, 0.05, 20, 0, 127)
            w = ember.fake_quantize_per_channel_affine(
                x, ember.tensor([0.1, 0.02, 0.07]), ember.tensor([0, 3, -5], dtype=ember.int32),
                1, -64, 63)
            return a, w

    x = ember.randn(16, 3, 5) * 4
    _, sess = _session(FQ(), x)
    for got, want in zip(sess.run(None, {"x": x.numpy()}), FQ()(x)):
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-6)


def test_scales_computed_in_the_graph_are_refused_with_the_reason():
    class Live(nn.Module):
        def forward(self, x):
            s = x.abs().amax() / 127
            return ember.fake_quantize_per_tensor_affine(x, s, 0, -128, 127)

    with pytest.raises(ember.onnx.UnsupportedOperatorError, match="disable the observers"):
        _session(Live(), ember.randn(4, 3))
