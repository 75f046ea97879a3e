"""The one-call C paths of dynamic quantization (ember.ao._qfast): the fused dynamic Linear
equals the NumPy formulation bit for bit and PyTorch's dynamic Linear exactly at the
benchmark's shapes; the C recurrence of the dynamic LSTM/GRU agrees with the Python one and
with PyTorch's (float gate math: a few ulp)."""

import io

import numpy as np
import pytest

import ember
import ember.ao.nn.quantized.dynamic as enqd
from ember.ao import _gemm, _qfast
from ember.ao.nn.quantized import functional as QF

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
needs_c = pytest.mark.skipif(not _qfast.available(), reason="no C compiler")


def _numpy_path(fn):
    _gemm.set_backend("blas")  # a forced backend disables the fused path
    try:
        return fn()
    finally:
        _gemm.set_backend(None)


def _packed(rng, N, K, kind, bias=True):
    w = ember.from_numpy((rng.standard_normal((N, K)) * 0.1).astype(np.float32))
    if kind == "tensor":
        wq = ember.quantize_per_tensor(w, 0.002, 0, ember.qint8)
    elif kind == "asym":
        wq = ember.quantize_per_tensor(w, 0.002, 5, ember.qint8)
    else:
        s = ember.from_numpy(np.abs(rng.standard_normal(N)) * 0.003 + 1e-4)
        zp = ember.from_numpy(rng.integers(-4, 5, N))
        wq = ember.quantize_per_channel(w, s, zp, 0, ember.qint8)
    b = ember.from_numpy(rng.standard_normal(N).astype(np.float32)) if bias else None
    return QF.PackedLinearWeight(wq, b)


@needs_c
@pytest.mark.parametrize("M,N,K", [(1, 512, 784), (64, 512, 784), (3, 10, 50), (5, 33, 7),
                                   (2, 3, 1), (0, 4, 4), (17, 65, 129)])
@pytest.mark.parametrize("kind", ["tensor", "asym", "channel"])
def test_fused_linear_equals_numpy_path(M, N, K, kind):
    rng = np.random.default_rng(M * 7 + K)
    pk = _packed(rng, N, K, kind, bias=(M % 2 == 1))
    for shift, relu in ((0.0, False), (2.5, True), (-7.0, False)):
        x = (rng.standard_normal((M, K)) * 3 + shift).astype(np.float32)
        fused = QF.linear_dynamic(x, pk, True, relu)
        assert pk.fast_plan(relu) is not None
        np.testing.assert_array_equal(fused, _numpy_path(lambda: QF.linear_dynamic(
            x, pk, True, relu)))


@needs_c
def test_fused_linear_constant_and_3d_inputs():
    rng = np.random.default_rng(0)
    pk = _packed(rng, 40, 24, "tensor")
    for x in (np.zeros((3, 24), np.float32), np.full((2, 24), -1e-9, np.float32),
              (rng.standard_normal((4, 5, 24)) * 1e3).astype(np.float32),
              rng.standard_normal((24, 6)).astype(np.float32).T):  # not contiguous
        out = QF.linear_dynamic(x, pk, True)
        assert out.shape == x.shape[:-1] + (40,)
        np.testing.assert_array_equal(out, _numpy_path(lambda: QF.linear_dynamic(x, pk, True)))


@needs_c
def test_module_uses_new_weights_after_set_weight_bias():
    rng = np.random.default_rng(1)
    m = enqd.Linear(16, 8)
    x = ember.from_numpy(rng.standard_normal((2, 16)).astype(np.float32))
    m(x)  # builds the plan of the first weights
    w = ember.quantize_per_tensor(ember.from_numpy(rng.standard_normal((8, 16)).astype(
        np.float32)), 0.01, 0, ember.qint8)
    m.set_weight_bias(w, ember.ones(8))
    ref = _numpy_path(lambda: m(x).numpy())
    np.testing.assert_array_equal(m(x).numpy(), ref)
    assert np.abs(ref).max() > 0


def test_shape_errors():
    m = enqd.Linear(16, 8)
    with pytest.raises(RuntimeError, match="does not match"):
        m(ember.ones(2, 15))
    with pytest.raises(RuntimeError, match="float32"):
        m(ember.ones(2, 16, dtype=ember.float64))


# ---------------------------------------------------------------- against PyTorch
@pytest.fixture
def torch_q():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch.ao.nn.quantized.dynamic")
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield torch
    torch.backends.quantized.engine = old


def _ember_state(torch, module):
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return ember.load(buf)


@pytest.mark.parametrize("rows", [1, 64])
@pytest.mark.parametrize("relu", [False, True])
def test_benchmark_shapes_equal_torch(torch_q, rows, relu):
    torch = torch_q
    import torch.ao.nn.intrinsic.quantized.dynamic as tniqd
    import torch.ao.nn.quantized.dynamic as tnqd

    import ember.ao.nn.intrinsic.quantized.dynamic as eniqd
    torch.manual_seed(rows)
    tcls, ecls = (tniqd.LinearReLU, eniqd.LinearReLU) if relu else (tnqd.Linear, enqd.Linear)
    t = tcls(784, 512)
    w = torch.quantize_per_tensor(torch.randn(512, 784) * 0.05, 0.0015, 0, torch.qint8)
    t.set_weight_bias(w, torch.randn(512))
    e = ecls(784, 512)
    e.load_state_dict(_ember_state(torch, t))
    for shift in (0.0, 3.0):
        x = torch.randn(rows, 784) * 2 + shift
        np.testing.assert_array_equal(e(ember.from_numpy(x.numpy())).numpy(), t(x).numpy())


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
@pytest.mark.parametrize("I,H,layers,bidir,T,B", [(12, 16, 2, True, 7, 3),
                                                  (128, 256, 2, False, 16, 1),
                                                  (20, 32, 1, False, 0, 2)])
def test_rnn_c_recurrence_matches_python_and_torch(torch_q, name, I, H, layers, bidir, T, B):
    torch = torch_q
    import torch.ao.nn.quantized.dynamic as tnqd
    import torch.ao.quantization as tq
    torch.manual_seed(3)
    tm = getattr(torch.nn, name)(I, H, num_layers=layers, bidirectional=bidir)
    em = getattr(ember.nn, name)(I, H, num_layers=layers, bidirectional=bidir)
    em.load_state_dict({k: ember.from_numpy(v.detach().numpy().copy())
                        for k, v in tm.state_dict().items()})
    tm.qconfig = tq.default_dynamic_qconfig
    t, e = getattr(tnqd, name).from_float(tm), getattr(enqd, name).from_float(em)
    x = torch.randn(T, B, I)
    ey, es = e(ember.from_numpy(x.numpy()))
    py, ps = _numpy_path(lambda: e(ember.from_numpy(x.numpy())))
    assert tuple(ey.shape) == (T, B, H * (2 if bidir else 1))
    # the same integers; the float gate functions agree within 3 ulp, so outputs within 1e-6
    np.testing.assert_allclose(ey.numpy(), py.numpy(), atol=1e-6)
    if T == 0:  # PyTorch's quantized RNNs refuse empty sequences; ember returns the states
        for a in (es if isinstance(es, tuple) else (es,)):
            assert not a.numpy().any()
        return
    ty, ts = t(x)
    np.testing.assert_allclose(ey.numpy(), ty.detach().numpy(), atol=1e-6)
    es = es if isinstance(es, tuple) else (es,)
    ts = ts if isinstance(ts, tuple) else (ts,)
    for a, b in zip(es, ts):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-6)


@needs_c
def test_gate_functions_within_three_ulp_of_torch(torch_q):
    torch = torch_q
    import ctypes

    from ember.compiler._codegen import load_kernel
    src = _qfast._SRC + ("\nvoid gate_probe(const float *x, float *t, float *s, long n) {"
                         "for (long i = 0; i < n; ++i) { t[i] = e_tanh(x[i]); "
                         "s[i] = sigm(x[i]); } }\n")
    fn = load_kernel(src, "gate_probe")
    x = np.concatenate([np.linspace(-30, 30, 200001), [0.0, -0.0, 0.4999, 0.5, 1e-30]]
                       ).astype(np.float32)
    th, sg = np.empty_like(x), np.empty_like(x)
    fn(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(th.ctypes.data),
       ctypes.c_void_p(sg.ctypes.data), ctypes.c_long(x.size))
    for ours, ref in ((th, torch.tanh(torch.from_numpy(x)).numpy()),
                      (sg, torch.sigmoid(torch.from_numpy(x)).numpy())):
        ulps = np.abs(ours.astype(np.float64) - ref) / np.spacing(np.abs(ref))
        assert ulps.max() <= 3.0


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}])
def test_dynamic_rnn_loads_torch_state_dict(torch_q, name, kw):
    # PyTorch pickles TorchScript CellParamsBase objects there; ember reads their state
    torch = torch_q
    import torch.ao.nn.quantized.dynamic as tnqd
    import torch.ao.quantization as tq
    torch.manual_seed(5)
    m = getattr(torch.nn, name)(5, 7, **kw)
    m.qconfig = tq.default_dynamic_qconfig
    t = getattr(tnqd, name).from_float(m)
    e = getattr(enqd, name)(5, 7, **kw)
    e.load_state_dict(_ember_state(torch, t))
    for (ih, hh), key in zip(e._cells, t.state_dict()):
        w_ih = t.state_dict()[key].__getstate__()[0][4][0].__getstate__()[0][0]
        np.testing.assert_array_equal(ih.qweight.int_repr().numpy(), w_ih.int_repr().numpy())
    x = torch.randn(4, 2, 5)
    np.testing.assert_allclose(e(ember.from_numpy(x.numpy()))[0].numpy(),
                               t(x)[0].detach().numpy(), atol=1e-6)


def test_other_torchscript_objects_are_refused():
    from ember.serialization import ScriptObjectState
    obj = ScriptObjectState()
    obj.__setstate__(((), "__torch__.torch.classes.quantized.Conv2dPackedParamsBase"))
    e = enqd.LSTM(3, 2)
    with pytest.raises(NotImplementedError, match="Conv2dPackedParamsBase"):
        e.load_state_dict({"_all_weight_values.0.param": obj})
