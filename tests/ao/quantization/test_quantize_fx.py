"""Graph-mode (FX) quantization: prepare_fx / convert_fx / prepare_qat_fx on the demo CNN and
an MLP, against torch.ao.quantization.quantize_fx on the same weights."""

import numpy as np
import pytest

import ember
import ember.ao.quantization as eq
from ember import nn as enn
from ember.ao.nn import intrinsic as nni
from ember.ao.nn.intrinsic import quantized as nniq
from ember.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx
from ember.demo import build_model

torch = pytest.importorskip("torch")
tq = torch.ao.quantization
tfx = pytest.importorskip("torch.ao.quantization.quantize_fx")
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min", "ignore::FutureWarning",
                                        "ignore:.*quantized tensor creation.*")


def _cnn_pair():
    torch.manual_seed(0)
    t = build_model(torch.nn).eval()
    e = build_model(enn).eval()
    e.load_state_dict({k: ember.from_numpy(v.detach().numpy().copy())
                       for k, v in t.state_dict().items()})
    return e, t


def _imgs(seed, n=16):
    return np.random.default_rng(seed).random((n, 1, 28, 28)).astype(np.float32)


def _minmax_mapping(q):
    return q.QConfigMapping().set_global(q.QConfig(
        activation=q.MinMaxObserver.with_args(reduce_range=True),
        weight=q.default_per_channel_weight_observer))


def test_prepare_convert_fx_demo_cnn_matches_torch():
    e, t = _cnn_pair()
    ex = (ember.tensor(_imgs(0)),)
    pe = prepare_fx(e, _minmax_mapping(eq), ex)
    pt = tfx.prepare_fx(t, _minmax_mapping(tq), (torch.tensor(_imgs(0)),))
    n_obs_e = sum(1 for n, _ in pe.named_modules() if "activation_post_process" in n)
    # input, two convs, two linears; max-pool and flatten share their input's observer
    # (torch gives nn.Flatten an observer of its own, which sees the same values)
    assert n_obs_e == 5
    for s in range(3):
        x = _imgs(s)
        pe(ember.tensor(x))
        pt(torch.tensor(x))
    ce, ct = convert_fx(pe), tfx.convert_fx(pt)
    assert isinstance(ce.get_submodule("0"), nniq.ConvReLU2d)
    assert isinstance(ce.get_submodule("7"), nniq.LinearReLU)
    assert "quantize_per_tensor" in ce.code and "activation_post_process" not in ce.code
    x = _imgs(10)
    ye, yt = ce(ember.tensor(x)).numpy(), ct(torch.tensor(x)).numpy()
    step = float(ct.get_submodule("9").scale)
    assert np.abs(ye - yt).max() <= step + 1e-6
    assert np.mean(np.abs(ye - yt) < 1e-6) > 0.95
    assert (ye.argmax(1) == yt.argmax(1)).mean() >= 0.9
    # the caller's model is untouched
    assert type(e[0]) is enn.Conv2d


def test_prepare_fx_mlp_default_mapping_functional_relu_and_none_qconfig():
    class MLP(enn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.head = enn.Linear(20, 32), enn.Linear(32, 32), \
                enn.Linear(32, 4)

        def forward(self, x):
            x = enn.functional.relu(self.fc1(x))
            x = self.fc2(x).relu()
            return self.head(x)
    ember.manual_seed(0)
    m = MLP().eval()
    mapping = eq.get_default_qconfig_mapping("x86").set_module_name("head", None)
    x = ember.randn(64, 20)
    p = prepare_fx(m, mapping, (x,))
    assert isinstance(p.fc1, nni.LinearReLU) and isinstance(p.fc2, nni.LinearReLU)
    p(x)
    c = convert_fx(p)
    assert isinstance(c.fc1, nniq.LinearReLU) and type(c.head) is enn.Linear
    y, ref = c(x).detach().numpy(), m(x).detach().numpy()
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max() + 0.02


def test_prepare_qat_fx_trains_and_converts():
    e, t = _cnn_pair()
    e.train()
    t.train()
    x0 = _imgs(0)
    pe = prepare_qat_fx(e, eq.get_default_qat_qconfig_mapping("x86"), (ember.tensor(x0),))
    pt = tfx.prepare_qat_fx(t, tq.get_default_qat_qconfig_mapping("x86"), (torch.tensor(x0),))
    oe = ember.optim.SGD(pe.parameters(), lr=0.05)
    ot = torch.optim.SGD(pt.parameters(), lr=0.05)
    labels = np.arange(16) % 10
    for s in range(3):
        x = _imgs(s)
        le = enn.functional.cross_entropy(pe(ember.tensor(x)), ember.tensor(labels))
        lt = torch.nn.functional.cross_entropy(pt(torch.tensor(x)), torch.tensor(labels))
        assert float(le) == pytest.approx(float(lt), rel=1e-3, abs=1e-3)
        le.backward()
        lt.backward()
        oe.step()
        ot.step()
        oe.zero_grad()
        ot.zero_grad()
    ce, ct = convert_fx(pe.eval()), tfx.convert_fx(pt.eval())
    x = _imgs(20)
    ye, yt = ce(ember.tensor(x)).numpy(), ct(torch.tensor(x)).numpy()
    step = float(ct.get_submodule("9").scale)
    # after three training steps the models agree to a few output steps (training drifts
    # in float rounding)
    assert np.abs(ye - yt).max() <= 4 * step + 1e-6
    assert (ye.argmax(1) == yt.argmax(1)).mean() >= 0.85


def test_fx_dynamic_and_errors():
    m = enn.Sequential(enn.Linear(8, 8), enn.ReLU(), enn.Linear(8, 2)).eval()
    mapping = eq.QConfigMapping().set_object_type(enn.Linear, eq.default_dynamic_qconfig)
    x = ember.randn(4, 8)
    c = convert_fx(prepare_fx(m, mapping, (x,)))
    assert type(c.get_submodule("2")).__module__.startswith("ember.ao.nn.quantized")
    np.testing.assert_allclose(c(x).detach().numpy(), m(x).detach().numpy(), atol=0.05)
    with pytest.raises(ValueError, match="prepare_fx"):
        convert_fx(ember.fx.symbolic_trace(m))
    with pytest.raises(TypeError, match="example_inputs"):
        prepare_fx(m, mapping, None)
    with pytest.raises(AssertionError, match="training"):
        prepare_qat_fx(m.eval(), eq.get_default_qat_qconfig_mapping(), (x,))
