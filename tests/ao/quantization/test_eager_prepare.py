"""Eager flow up to convert: fusion, prepare, prepare_qat, against torch.ao on the same
weights (the converted integer models are tested in test_eager_convert.py)."""

import numpy as np
import pytest

import ember
import ember.ao.quantization as eq
from ember import nn as enn
from ember.ao.nn import intrinsic as nni
from ember.ao.nn import qat as nnqat
from ember.ao.nn.intrinsic import qat as nniqat

torch = pytest.importorskip("torch")
tq = torch.ao.quantization
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min")


def _net(nn, q):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = q.QuantStub()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(4, 4, 3, bias=False)
            self.bn2 = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 4 * 4, 8)
            self.relu2 = nn.ReLU()
            self.fc2 = nn.Linear(8, 3)
            self.dequant = q.DeQuantStub()

        def forward(self, x):
            x = self.relu(self.bn(self.conv(self.quant(x))))
            x = self.bn2(self.conv2(x))
            x = self.relu2(self.fc(x.flatten(1)))
            return self.dequant(self.fc2(x))
    return Net()


FUSE = [["conv", "bn", "relu"], ["conv2", "bn2"], ["fc", "relu2"]]


def _pair(seed=0):
    """The same network in ember and torch, with non-trivial BN statistics."""
    t = _net(torch.nn, tq)
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    e = _net(enn, eq)
    e.load_state_dict({k: ember.from_numpy(v.detach().numpy().copy())
                       for k, v in t.state_dict().items()})
    return e, t


def _x(seed, n=4):
    return np.random.default_rng(seed).standard_normal((n, 2, 6, 6)).astype(np.float32)


def test_fuse_modules_eval_folds_bn_like_torch():
    e, t = _pair()
    e.eval()
    t.eval()
    fe, ft = eq.fuse_modules(e, FUSE), tq.fuse_modules(t, FUSE)
    assert type(fe.conv).__name__ == type(ft.conv).__name__ == "ConvReLU2d"
    assert isinstance(fe.bn, enn.Identity) and isinstance(fe.conv2, enn.Conv2d)
    assert sorted(fe.state_dict()) == sorted(ft.state_dict())
    for k, v in ft.state_dict().items():
        np.testing.assert_allclose(fe.state_dict()[k].detach().numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
    x = _x(0)
    np.testing.assert_allclose(fe(ember.tensor(x)).detach().numpy(),
                               e(ember.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert e.bn is not fe.bn  # not inplace: the original is untouched


def test_fuse_modules_errors():
    e, _ = _pair()
    with pytest.raises(AssertionError, match="eval"):
        eq.fuse_modules(e.train(), [["conv", "bn"]])
    with pytest.raises(NotImplementedError, match="Cannot fuse"):
        eq.fuse_modules(e.eval(), [["conv", "fc"]])
    with pytest.raises(AttributeError, match="nope"):
        eq.fuse_modules(e.eval(), [["conv", "nope"]])


def test_fuse_modules_qat_keeps_bn():
    e, t = _pair()
    fe = eq.fuse_modules_qat(e.train(), FUSE)
    ft = tq.fuse_modules_qat(t.train(), FUSE)
    assert [type(m).__name__ for m in fe.children()] == [type(m).__name__ for m in ft.children()]
    assert isinstance(fe.conv, nni.ConvBnReLU2d) and isinstance(fe.conv2, nni.ConvBn2d)


def test_prepare_places_observers_like_torch():
    e, t = _pair()
    e.eval()
    t.eval()
    e.qconfig = eq.get_default_qconfig("x86")
    t.qconfig = tq.get_default_qconfig("x86")
    pe = eq.prepare(eq.fuse_modules(e, FUSE))
    pt = tq.prepare(tq.fuse_modules(t, FUSE))
    assert sorted(pe.state_dict()) == sorted(pt.state_dict())
    for s in range(3):
        x = _x(s)
        np.testing.assert_allclose(pe(ember.tensor(x)).detach().numpy(),
                                   pt(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    for name, m in pt.named_modules():
        if isinstance(m, tq.HistogramObserver):
            me = dict(pe.named_modules())[name]
            np.testing.assert_allclose(float(me.min_val), float(m.min_val), rtol=1e-5)
            np.testing.assert_allclose(float(me.max_val), float(m.max_val), rtol=1e-5)
    with pytest.warns(UserWarning, match="None of the submodule"):
        eq.prepare(_net(enn, eq))


@pytest.mark.parametrize("backend", ["x86", "qnnpack"])
def test_prepare_qat_trains_like_torch(backend):
    e, t = _pair(1)
    e.train()
    t.train()
    e.qconfig = eq.get_default_qat_qconfig(backend)
    t.qconfig = tq.get_default_qat_qconfig(backend)
    pe = eq.prepare_qat(eq.fuse_modules_qat(e, FUSE))
    pt = tq.prepare_qat(tq.fuse_modules_qat(t, FUSE))
    assert isinstance(pe.conv, nniqat.ConvBnReLU2d) and isinstance(pe.fc, nniqat.LinearReLU)
    assert isinstance(pe.fc2, nnqat.Linear)
    assert sorted(pe.state_dict()) == sorted(pt.state_dict())
    opt_e = ember.optim.SGD(pe.parameters(), lr=0.05)
    opt_t = torch.optim.SGD(pt.parameters(), lr=0.05)
    for s in range(3):
        x = _x(10 + s)
        ye, yt = pe(ember.tensor(x)), pt(torch.tensor(x))
        np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=2e-3,
                                   atol=2e-3)
        ye.pow(2).mean().backward()
        yt.pow(2).mean().backward()
        for (n, pe_), (_, pt_) in zip(pe.named_parameters(), pt.named_parameters()):
            np.testing.assert_allclose(pe_.grad.numpy(), pt_.grad.numpy(), rtol=2e-2, atol=2e-3,
                                       err_msg=n)
        opt_e.step()
        opt_t.step()
        opt_e.zero_grad()
        opt_t.zero_grad()
    pe.apply(nniqat.freeze_bn_stats)
    assert not pe.conv.bn.training and pe.conv.freeze_bn
    pe.apply(eq.disable_observer)
    assert int(pe.fc.weight_fake_quant.observer_enabled[0]) == 0


def test_prepare_qat_requires_training_mode():
    e, _ = _pair()
    e.qconfig = eq.get_default_qat_qconfig()
    with pytest.raises(AssertionError, match="training"):
        eq.prepare_qat(e.eval())


def test_propagate_qconfig_dict_and_quant_wrapper():
    m = enn.Sequential(enn.Linear(3, 3), enn.Sequential(enn.Linear(3, 3), enn.ReLU()))
    eq.propagate_qconfig_(m, {enn.Linear: eq.default_qconfig, "1.1": eq.default_qat_qconfig})
    assert m[0].qconfig is eq.default_qconfig and m[1][0].qconfig is eq.default_qconfig
    assert m[1][1].qconfig is eq.default_qat_qconfig and m.qconfig is None
    w = eq.QuantWrapper(enn.Linear(2, 2))
    x = ember.randn(3, 2)
    np.testing.assert_array_equal(w(x).detach().numpy(), w.module(x).detach().numpy())
    m2 = enn.Sequential(enn.Linear(3, 3))
    m2[0].qconfig = eq.default_qconfig
    m2 = eq.add_quant_dequant(m2)
    assert isinstance(m2[0], eq.QuantWrapper)
