"""Reference quantized modules: ``convert(..., is_reference=True)``, ``convert_fx(...,
is_reference=True)`` / ``convert_to_reference_fx`` against PyTorch's reference models on the
same weights and calibration data."""

import io

import numpy as np
import pytest

import ember
import ember.ao.quantization as eq
from ember.ao.nn.quantized import reference as nnqr
from ember.ao.quantization.quantize_fx import (convert_fx, convert_to_reference_fx,
                                               prepare_fx)
from ember.demo import build_model

torch = pytest.importorskip("torch")
tq = torch.ao.quantization
tfx = pytest.importorskip("torch.ao.quantization.quantize_fx")
tnqr = pytest.importorskip("torch.ao.nn.quantized.reference")
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


def _pair(build):
    torch.manual_seed(0)
    t, e = build(torch), build(ember)
    e.load_state_dict({k: ember.from_numpy(v.detach().numpy().copy())
                       for k, v in t.state_dict().items()})
    return t.eval(), e.eval()


def _net(m):
    class Net(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = m.nn.Conv2d(3, 4, 3)
            self.relu = m.nn.ReLU()
            self.fc = m.nn.Linear(4 * 6 * 6, 8)
            self.r2 = m.nn.ReLU()
            self.fc2 = m.nn.Linear(8, 5)

        def forward(self, x):
            return self.fc2(self.r2(self.fc(self.relu(self.conv(x)).flatten(1))))
    return Net()


def _e(x):
    return ember.from_numpy(x.detach().numpy().copy())


@pytest.mark.parametrize("build,shape", [(_net, (8, 3, 8, 8)),
                                         (lambda m: build_model(m.nn), (8, 1, 28, 28))])
@pytest.mark.parametrize("backend", ["x86", "qnnpack"])
def test_convert_fx_reference_matches_torch(build, shape, backend):
    t, e = _pair(build)
    x = torch.randn(*shape)
    tp = tfx.prepare_fx(t, tq.get_default_qconfig_mapping(backend), (x,))
    ep = prepare_fx(e, eq.get_default_qconfig_mapping(backend), (_e(x),))
    tp(x)
    ep(_e(x))
    tr = tfx.convert_to_reference_fx(tp)
    er = convert_fx(ep, is_reference=True)
    assert "quantize_per_tensor" in er.code and "dequantize" in er.code
    kinds = {type(m).__name__ for m in er.modules()}
    assert "Linear" in kinds and not any("Quantized" in k for k in kinds - {"Linear",
                                                                             "Conv2d"})
    x2 = torch.randn(*shape) * 1.5
    with torch.no_grad():
        ref = tr(x2).numpy()
    got = er(_e(x2)).detach().numpy()
    # the same quantize/dequantize points and fake-quantized weights; float32 GEMMs differ
    # in summation order only, which can move a value across a rounding point of the next
    # quantize: then it differs by one step of the output grid
    diff = np.abs(got - ref)
    levels = np.unique(ref)
    step = np.diff(levels).min()
    assert (diff > 2e-6).mean() <= 0.05
    assert diff.max() <= step * 1.001 + 2e-6
    # the reference model states the int8 model's numerics (a value can land on the other
    # side of a rounding point of the output grid: one step, rarely)
    diff8 = np.abs(convert_fx(ep)(_e(x2)).detach().numpy() - got)
    assert (diff8 > 1e-5).mean() <= 0.05
    assert diff8.max() <= step * 1.001 + 1e-5
    same = convert_to_reference_fx(ep)(_e(x2)).detach().numpy()
    np.testing.assert_array_equal(same, got)


def test_eager_convert_is_reference_matches_torch():
    def build(m):
        q = tq if m is torch else eq

        class M(m.nn.Module):
            def __init__(self):
                super().__init__()
                self.q, self.dq = q.QuantStub(), q.DeQuantStub()
                self.conv = m.nn.Conv2d(3, 4, 3)
                self.fc = m.nn.Linear(4 * 6 * 6, 5)

            def forward(self, x):
                return self.dq(self.fc(self.conv(self.q(x)).flatten(1)))
        return M()
    t, e = _pair(build)
    t.qconfig, e.qconfig = tq.get_default_qconfig("x86"), eq.get_default_qconfig("x86")
    tp, ep = tq.prepare(t), eq.prepare(e)
    x = torch.randn(4, 3, 8, 8)
    tp(x)
    ep(_e(x))
    tr, er = tq.convert(tp, is_reference=True), eq.convert(ep, is_reference=True)
    assert isinstance(er.conv, nnqr.Conv2d) and isinstance(er.fc, nnqr.Linear)
    assert repr(er.fc) == repr(tr.fc) and repr(er.conv) == repr(tr.conv)
    assert list(er.state_dict()) == list(tr.state_dict())
    assert er.conv.weight_qscheme is ember.per_channel_affine
    for name in ("conv", "fc"):
        tm, em = getattr(tr, name), getattr(er, name)
        np.testing.assert_array_equal(em.get_weight().detach().numpy(),
                                      tm.get_weight().detach().numpy())
        np.testing.assert_array_equal(em.get_quantized_weight().int_repr().numpy(),
                                      tm.get_quantized_weight().int_repr().numpy())
    xf = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = tr.conv(xf).numpy()
    np.testing.assert_allclose(er.conv(_e(xf)).detach().numpy(), ref, atol=1e-6)


def test_reference_state_dict_round_trips_with_torch():
    torch.manual_seed(1)
    tl = torch.nn.Linear(6, 3)
    obs = tq.default_per_channel_weight_observer()
    obs(tl.weight)
    tref = tnqr.Linear.from_float(tl, tq.utils.get_qparam_dict(obs))
    buf = io.BytesIO()
    torch.save(tref.state_dict(), buf)
    buf.seek(0)
    eref = nnqr.Linear(6, 3)
    eref.load_state_dict(ember.load(buf))
    assert eref.weight_qscheme is ember.per_channel_affine and eref.weight_axis_int == 0
    x = torch.randn(4, 6)
    with torch.no_grad():
        ref = tref(x).numpy()
    np.testing.assert_allclose(eref(_e(x)).detach().numpy(), ref, atol=1e-6)
    buf = io.BytesIO()
    ember.save(eref.state_dict(), buf)
    buf.seek(0)
    back = tnqr.Linear(6, 3)
    back.load_state_dict(torch.load(buf))
    with torch.no_grad():
        np.testing.assert_array_equal(back(x).numpy(), ref)


def test_unsupported_qscheme_is_refused():
    with pytest.raises(AssertionError, match="not supported"):
        nnqr.Linear(3, 2, weight_qparams={"qscheme": ember.per_tensor_symmetric,
                                          "dtype": ember.qint8, "scale": 1.0,
                                          "zero_point": 0})
