"""Observers' qparams against torch.ao.quantization's on the same data."""


import numpy as np
import pytest

import ember
import ember.ao.quantization as eq

from ._helpers import to_e, tq

torch = pytest.importorskip("torch")
tq_mod = torch.ao.quantization

pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min")


def _data(seed, shape=(4, 3, 5, 5), dtype=np.float32, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def _pair(name, **kw):
    """(ember observer, torch observer) built with the same arguments."""
    tkw = {k: tq(torch, v) if k in ("dtype", "qscheme") else v for k, v in kw.items()}
    return getattr(eq, name)(**kw), getattr(tq_mod, name)(**tkw)


def _check(eo, to, batches, exact=True):
    for b in batches:
        eo(ember.from_numpy(b))
        to(torch.from_numpy(b))
    es, ez = eo.calculate_qparams()
    ts, tz = to.calculate_qparams()
    assert es.shape == tuple(ts.shape) and ez.shape == tuple(tz.shape)
    assert str(ez.dtype).split(".")[-1] == str(tz.dtype).split(".")[-1]
    if exact:
        np.testing.assert_array_equal(es.numpy(), ts.numpy())
        np.testing.assert_array_equal(ez.numpy(), tz.numpy())
    else:
        np.testing.assert_allclose(es.numpy(), ts.numpy(), rtol=2e-3)
        np.testing.assert_allclose(ez.numpy(), tz.numpy(), atol=1)


PER_TENSOR = [
    dict(),
    dict(dtype=eq.observer.Q.qint8),
    dict(dtype=eq.observer.Q.qint8, qscheme=eq.observer.Q.per_tensor_symmetric),
    dict(dtype=eq.observer.Q.quint8, qscheme=eq.observer.Q.per_tensor_symmetric),
    dict(reduce_range=True),
    dict(dtype=eq.observer.Q.qint8, reduce_range=True),
    dict(quant_min=0, quant_max=127),
    dict(dtype=eq.observer.Q.qint8, qscheme=eq.observer.Q.per_tensor_symmetric,
         quant_min=-127, quant_max=127, eps=2 ** -12),
    dict(dtype=eq.observer.Q.quint8, qscheme=eq.observer.Q.per_tensor_symmetric,
         quant_min=0, quant_max=15),
    dict(dtype=eq.observer.Q.qint32),
]


@pytest.mark.parametrize("kw", PER_TENSOR)
@pytest.mark.parametrize("name", ["MinMaxObserver", "MovingAverageMinMaxObserver"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_tensor_observers_match_torch(name, kw, dtype):
    eo, to = _pair(name, **kw)
    _check(eo, to, [_data(s, dtype=dtype, scale=1 + s, shift=0.3 * s) for s in range(3)])
    np.testing.assert_array_equal(eo.min_val.numpy(), to.min_val.numpy())
    np.testing.assert_array_equal(eo.max_val.numpy(), to.max_val.numpy())


@pytest.mark.parametrize("kw", [
    dict(), dict(dtype=eq.observer.Q.qint8, qscheme=eq.observer.Q.per_channel_symmetric),
    dict(ch_axis=1), dict(ch_axis=-1, reduce_range=True),
    dict(dtype=eq.observer.Q.quint8, qscheme=eq.observer.Q.per_channel_affine_float_qparams),
    dict(dtype=eq.observer.Q.qint8, qscheme=eq.observer.Q.per_channel_symmetric,
         quant_min=-127, quant_max=127, eps=2 ** -12),
])
@pytest.mark.parametrize("name", ["PerChannelMinMaxObserver",
                                  "MovingAveragePerChannelMinMaxObserver"])
def test_per_channel_observers_match_torch(name, kw):
    eo, to = _pair(name, **kw)
    _check(eo, to, [_data(s, scale=1 + s, shift=0.2) for s in range(3)])


def test_positive_only_and_constant_inputs():
    for data in ([np.abs(_data(0)) + 1], [np.full((3, 4), 2.5, np.float32)],
                 [np.zeros((5, 2), np.float32)]):
        for name in ("MinMaxObserver", "PerChannelMinMaxObserver"):
            eo, to = _pair(name)
            _check(eo, to, data)


@pytest.mark.parametrize("kw", [dict(), dict(reduce_range=True),
                                dict(dtype=eq.observer.Q.qint8,
                                     qscheme=eq.observer.Q.per_tensor_symmetric),
                                dict(quant_min=0, quant_max=127)])
def test_histogram_observer_matches_torch(kw):
    eo, to = _pair("HistogramObserver", **kw)
    # growing ranges exercise the re-binning of the running histogram
    batches = [_data(s, (64, 33), scale=1 + 0.5 * s, shift=0.1 * s) for s in range(4)]
    batches.append(np.concatenate([_data(9, (500,)), [8.0, -6.0]]).astype(np.float32))
    _check(eo, to, batches, exact=False)
    np.testing.assert_allclose(eo.histogram.numpy(), to.histogram.numpy(), atol=0.05 * 4)
    assert eo.histogram.numpy().sum() == pytest.approx(to.histogram.numpy().sum(), rel=1e-4)


def test_uncalibrated_observer_warns_and_defaults():
    o = eq.MinMaxObserver()
    with pytest.warns(UserWarning, match="must run observer"):
        s, z = o.calculate_qparams()
    assert s.tolist() == [1.0] and z.tolist() == [0]
    o(ember.tensor([]))  # empty input: ignored
    assert float(o.min_val) == float("inf")


def test_bad_arguments_raise_like_torch():
    with pytest.raises(NotImplementedError):
        eq.MinMaxObserver(qscheme=eq.observer.Q.per_channel_affine)
    with pytest.raises(NotImplementedError):
        eq.PerChannelMinMaxObserver(qscheme=eq.observer.Q.per_tensor_affine)
    with pytest.raises(AssertionError, match="include 0"):
        eq.MinMaxObserver(quant_min=1, quant_max=10)
    with pytest.raises(AssertionError):
        eq.MinMaxObserver(dtype=ember.float32)
    o = eq.PerChannelMinMaxObserver(ch_axis=3)
    with pytest.raises(IndexError, match="ch_axis"):
        o(ember.randn(2, 3))


def test_with_args_builds_fresh_instances():
    f = eq.MinMaxObserver.with_args(dtype=eq.observer.Q.qint8).with_args(quant_min=-8,
                                                                          quant_max=7)
    a, b = f(), f()
    assert a is not b and (a.quant_min, a.quant_max) == (-8, 7)
    calls = []
    g = eq.MinMaxObserver.with_callable_args(eps=lambda: calls.append(1) or 1e-3)
    g()
    g()
    assert len(calls) == 2


def test_defaults_match_torch():
    for name in ("default_observer", "default_weight_observer", "default_histogram_observer",
                 "default_per_channel_weight_observer", "default_dynamic_quant_observer",
                 "default_float_qparams_observer", "weight_observer_range_neg_127_to_127"):
        e, t = getattr(eq, name)(), getattr(tq_mod, name)()
        assert type(e).__name__ == type(t).__name__, name
        for attr in ("quant_min", "quant_max", "is_dynamic", "ch_axis", "reduce_range"):
            assert getattr(e, attr, None) == getattr(t, attr, None), (name, attr)
        assert repr(e.dtype).split(".")[-1] == repr(t.dtype).split(".")[-1]


def test_observer_state_dict_roundtrip():
    o = eq.PerChannelMinMaxObserver()
    o(ember.randn(4, 6))
    sd = o.state_dict()
    assert sorted(sd) == sorted(tq_mod.PerChannelMinMaxObserver().state_dict())
    o2 = eq.PerChannelMinMaxObserver()
    o2.load_state_dict(sd)
    np.testing.assert_array_equal(o2.calculate_qparams()[0].numpy(),
                                  o.calculate_qparams()[0].numpy())
    # checkpoint from torch loads into ember
    t = tq_mod.PerChannelMinMaxObserver()
    t(torch.randn(4, 6))
    o3 = eq.PerChannelMinMaxObserver()
    o3.load_state_dict({k: to_e(v) for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(o3.calculate_qparams()[0].numpy(),
                                  t.calculate_qparams()[0].numpy())
