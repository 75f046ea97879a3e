"""fake_quantize ops (values, straight-through gradients) and FakeQuantize modules vs torch."""

import numpy as np
import pytest

import ember
import ember.ao.quantization as eq

from ._helpers import to_e, tq

torch = pytest.importorskip("torch")
tq_mod = torch.ao.quantization
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min")


def _x(seed, shape=(3, 4, 5), dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x.flat[:4] = [0.05, 0.15, 0.25, -0.35]  # exact halves of the grid: round half to even
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale,zp,qmin,qmax", [(0.1, 0, 0, 255), (0.1, 128, 0, 255),
                                                (0.037, 0, -128, 127), (0.5, 3, -8, 7),
                                                (1e-3, 10, 0, 255)])
def test_fake_quantize_per_tensor_values_and_grad(dtype, scale, zp, qmin, qmax):
    x = _x(0, dtype=dtype)
    ex = ember.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ey = ember.fake_quantize_per_tensor_affine(ex, scale, zp, qmin, qmax)
    ty = torch.fake_quantize_per_tensor_affine(tx, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    ey.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())
    # tensor qparams give the same result
    ey2 = ember.fake_quantize_per_tensor_affine(ember.tensor(x), ember.tensor([scale]),
                                                ember.tensor([zp], dtype=ember.int32),
                                                qmin, qmax)
    np.testing.assert_array_equal(ey2.numpy(), ty.detach().numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_fake_quantize_per_channel_values_and_grad(dtype, axis):
    x = _x(2, dtype=dtype)
    n = x.shape[axis]
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.01, 0.3, n).astype(np.float32)
    zp = rng.integers(-5, 5, n).astype(np.int32)
    ex = ember.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ey = ember.fake_quantize_per_channel_affine(ex, ember.tensor(scale), ember.tensor(zp),
                                                axis, -128, 127)
    ty = torch.fake_quantize_per_channel_affine(tx, torch.tensor(scale), torch.tensor(zp),
                                                axis, -128, 127)
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
    ey.sum().backward()
    ty.sum().backward()
    np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())


def test_fake_quantize_per_channel_float_zero_point():
    x = _x(4, (4, 6))
    scale = np.array([0.05, 0.1, 0.02, 0.3], np.float32)
    zp = np.array([1.5, -2.25, 30.0, 0.0], np.float32)
    ey = ember.fake_quantize_per_channel_affine(ember.tensor(x), ember.tensor(scale),
                                                ember.tensor(zp), 0, 0, 255)
    ty = torch.fake_quantize_per_channel_affine(torch.tensor(x), torch.tensor(scale),
                                                torch.tensor(zp), 0, 0, 255)
    np.testing.assert_allclose(ey.numpy(), ty.numpy(), rtol=1e-6, atol=1e-7)


def test_fake_quantize_bad_inputs():
    x = ember.randn(3, 4)
    with pytest.raises(RuntimeError, match="quant_min"):
        ember.fake_quantize_per_tensor_affine(x, 0.1, 0, 10, 0)
    with pytest.raises(RuntimeError, match="zero_point"):
        ember.fake_quantize_per_tensor_affine(x, 0.1, 300, 0, 255)
    with pytest.raises(RuntimeError, match="consistent"):
        ember.fake_quantize_per_channel_affine(x, ember.ones(3), ember.zeros(3, dtype=ember.int32),
                                               1, 0, 255)
    with pytest.raises(RuntimeError, match="axis"):
        ember.fake_quantize_per_channel_affine(x, ember.ones(4), ember.zeros(4, dtype=ember.int32),
                                               -1, 0, 255)
    with pytest.raises(RuntimeError, match="floating point"):
        ember.fake_quantize_per_tensor_affine(ember.ones(3, dtype=ember.int64), 0.1, 0, 0, 255)


def _tkw(kw):
    return {k: tq(torch, v) if k in ("dtype", "qscheme") else v for k, v in kw.items()}


@pytest.mark.parametrize("name", ["default_fake_quant", "default_weight_fake_quant",
                                  "default_per_channel_weight_fake_quant",
                                  "default_fused_act_fake_quant",
                                  "default_fused_per_channel_wt_fake_quant",
                                  "default_fused_wt_fake_quant"])
def test_fake_quantize_modules_match_torch(name):
    e, t = getattr(eq, name)(), getattr(tq_mod, name)()
    assert type(e).__name__ == type(t).__name__
    assert sorted(e.state_dict()) == sorted(t.state_dict())
    for s in range(3):
        x = _x(10 + s, (4, 8)) * (1 + s)
        ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ey, ty = e(ex), t(tx)
        np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-6,
                                   atol=1e-6)
        ey.sum().backward()
        ty.sum().backward()
        np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())
    np.testing.assert_array_equal(e.scale.numpy(), t.scale.numpy())
    np.testing.assert_array_equal(e.zero_point.numpy(), t.zero_point.numpy())
    # freeze the qparams: the observer stops, the fake quantization continues
    e.apply(eq.disable_observer)
    t.apply(tq_mod.disable_observer)
    x = _x(20, (4, 8)) * 10
    np.testing.assert_allclose(e(ember.tensor(x)).numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    e.apply(eq.disable_fake_quant)
    np.testing.assert_array_equal(e(ember.tensor(x)).numpy(), x)
    # the state dict moves to torch's module and back
    e2 = getattr(eq, name)()
    e2.load_state_dict({k: to_e(v) for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(e2.scale.numpy(), t.scale.numpy())


def test_qconfigs_match_torch():
    for backend in ("x86", "fbgemm", "qnnpack", "onednn"):
        for fn in ("get_default_qconfig", "get_default_qat_qconfig"):
            eqc, tqc = getattr(eq, fn)(backend), getattr(tq_mod, fn)(backend)
            for part in ("activation", "weight"):
                e, t = getattr(eqc, part)(), getattr(tqc, part)()
                assert type(e).__name__ == type(t).__name__, (backend, fn, part)
                eo = getattr(e, "activation_post_process", e)
                to = getattr(t, "activation_post_process", t)
                assert type(eo).__name__ == type(to).__name__
                for a in ("quant_min", "quant_max", "reduce_range", "ch_axis",
                          "averaging_constant"):
                    assert getattr(eo, a, None) == getattr(to, a, None), (backend, fn, part, a)
                assert repr(eo.qscheme).split(".")[-1] == repr(to.qscheme).split(".")[-1]
    with pytest.raises(AssertionError, match="not supported"):
        eq.get_default_qconfig("arm")
    with pytest.raises(ValueError, match="observer instance"):
        eq.QConfig(activation=eq.MinMaxObserver(), weight=eq.MinMaxObserver)
    assert eq.qconfig_equals(eq.get_default_qconfig("x86"), eq.get_default_qconfig("x86"))
    assert not eq.qconfig_equals(eq.get_default_qconfig("x86"), eq.get_default_qconfig("qnnpack"))


def test_qconfig_mapping():
    m = eq.get_default_qconfig_mapping("x86")
    assert m.global_qconfig.activation().reduce_range
    d = m.to_dict()
    m2 = eq.QConfigMapping.from_dict(d)
    assert m2.object_type_qconfigs.keys() == m.object_type_qconfigs.keys()
    m3 = (eq.QConfigMapping().set_global(eq.default_qconfig)
          .set_module_name("a.b", None).set_module_name_regex("c.*", eq.default_qconfig))
    assert m3._qconfig_for_module("a.b.c", ember.nn.Linear) is None
    assert m3._qconfig_for_module("cc", ember.nn.Linear) is eq.default_qconfig
    assert m3._qconfig_for_module("x", ember.nn.Linear) is eq.default_qconfig
    assert "QConfigMapping" in repr(m3)


def test_backends_quantized_engine():
    b = ember.backends.quantized
    assert b.engine == torch.backends.quantized.engine == "x86"
    assert set(b.supported_engines) == set(torch.backends.quantized.supported_engines)
    b.engine = "qnnpack"
    try:
        assert b.engine == "qnnpack"
        with pytest.raises(RuntimeError, match="not supported"):
            b.engine = "tpu"
    finally:
        b.engine = "x86"


def test_old_names():
    import ember.quantization as old
    assert old.QConfig is eq.QConfig and old.prepare is eq.prepare
    assert old.observer.MinMaxObserver is eq.MinMaxObserver
    with pytest.warns(FutureWarning, match="QConfigDynamic"):
        q = eq.QConfigDynamic(weight=eq.default_weight_observer)
    assert q.activation is ember.nn.Identity
