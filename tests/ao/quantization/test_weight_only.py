"""Weight-only quantization (torchao's quantize_ with int8/int4 weight-only configs)."""

import copy
import os
import sys

import numpy as np
import pytest

import ember
from ember import nn
from ember.ao.quantization import (Int4WeightOnlyLinear, Int8WeightOnlyLinear,
                                   int4_weight_only, int8_weight_only, quantize_)


def _mlp():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 384), nn.GELU(), nn.Linear(384, 128, bias=False))


def test_int8_weight_only_integers_match_torch_per_channel():
    torch = pytest.importorskip("torch")
    m = _mlp()
    w = m[0].weight.detach().numpy()
    quantize_(m, int8_weight_only())
    assert isinstance(m[0], Int8WeightOnlyLinear) and isinstance(m[0], nn.Linear)
    obs = torch.ao.quantization.PerChannelMinMaxObserver(dtype=torch.qint8,
                                                          qscheme=torch.per_channel_symmetric)
    tw = torch.from_numpy(w.copy())
    obs(tw)
    scale, zp = obs.calculate_qparams()
    tq = torch.quantize_per_channel(tw, scale, zp, 0, torch.qint8)
    np.testing.assert_array_equal(m[0].weight_int8.numpy(), tq.int_repr().numpy())
    np.testing.assert_array_equal(m[0].weight_scale.numpy()[:, 0], scale.numpy())
    np.testing.assert_allclose(m[0].weight.numpy(), tq.dequantize().numpy(), rtol=1e-6,
                               atol=1e-7)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("cfg,ratio", [(int8_weight_only(), 0.30), (int8_weight_only(64), 0.30),
                                       (int4_weight_only(128), 0.17),
                                       (int4_weight_only(32), 0.20)])
def test_weight_only_outputs_memory_and_error(cfg, ratio, dtype):
    m = _mlp()
    q = copy.deepcopy(m)
    quantize_(q, cfg)
    x = ember.randn(5, 7, 256, dtype=dtype)
    m = m.to(dtype)
    y0, y = m(x).detach().numpy(), q(x).detach().numpy()
    assert y.dtype == y0.dtype and y.shape == y0.shape
    # the forward equals a float linear on the dequantized weights
    ref = x.numpy() @ q[0].weight.numpy().T.astype(x.numpy().dtype) + q[0].bias.detach().numpy()
    np.testing.assert_allclose(q[0](x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    # per element, the weight error is at most half a quantization step
    for lin, orig in ((q[0], m[0]), (q[2], m[2])):
        err = np.abs(lin.weight.numpy() - orig.weight.detach().numpy().astype(np.float32))
        g = lin.group_size
        step = lin.weight_scale.numpy()
        step = np.repeat(step.reshape(step.shape[0], -1), g, axis=1)
        assert (err <= step * 0.5 + 1e-6).all()
    rel = np.abs(y - y0).max() / np.abs(y0).max()
    assert rel < (0.02 if isinstance(q[0], Int8WeightOnlyLinear) else 0.15)
    fbytes = sum(lin.weight.numel() * 4 for lin in (m[0], m[2]))
    assert sum(lin.weight_nbytes() for lin in (q[0], q[2])) <= ratio * fbytes


def test_int4_packing_roundtrip_and_gradients():
    m = _mlp()
    quantize_(m, int4_weight_only(group_size=64))
    lin = m[0]
    assert isinstance(lin, Int4WeightOnlyLinear)
    assert lin.weight_int4x2.dtype == ember.uint8
    assert tuple(lin.weight_int4x2.shape) == (384, 128)
    x = ember.randn(3, 256, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and lin.bias.grad is not None
    # state dict round trip into a freshly quantized model
    m2 = _mlp()
    quantize_(m2, int4_weight_only(group_size=64))
    m2.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(m2(x).detach().numpy(), m(x).detach().numpy())


def test_filter_fn_and_errors():
    m = _mlp()
    quantize_(m, int8_weight_only(), filter_fn=lambda mod, fqn: fqn == "2")
    assert type(m[0]) is nn.Linear and isinstance(m[2], Int8WeightOnlyLinear)
    quantize_(m, int8_weight_only())  # already quantized layers are left alone
    assert isinstance(m[0], Int8WeightOnlyLinear)
    with pytest.raises(ValueError, match="group_size"):
        int4_weight_only(group_size=100)
    with pytest.raises(ValueError, match="multiple"):
        quantize_(nn.Sequential(nn.Linear(96, 4)), int4_weight_only(64))
    with pytest.raises(NotImplementedError, match="config"):
        quantize_(_mlp(), "int8")


def test_small_gpt_perplexity_and_generation():
    """A briefly trained tiny GPT: weight-only int8 keeps perplexity within 1%, int4 within
    5%, and the next-token predictions mostly agree with float32."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    from benchmarks.quantization_flows import eval_gpt_weight_only, train_tiny_gpt
    model, data, vocab = train_tiny_gpt(steps=25, d=64, layers=1, block=32, batch=16)
    res = eval_gpt_weight_only(model, data, vocab, n_gen=10, block=32, n_windows=6)
    assert res["int8"]["weight_ratio"] <= 0.30 and res["int4"]["weight_ratio"] <= 0.17
    assert abs(res["int8"]["ppl"] / res["fp32"]["ppl"] - 1) < 0.01
    assert abs(res["int4"]["ppl"] / res["fp32"]["ppl"] - 1) < 0.05
    assert res["int8"]["top1_agree"] >= 0.95 and res["int4"]["top1_agree"] >= 0.8
