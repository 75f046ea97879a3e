"""quint4x2 (and quint2x4) quantized tensors and 4-bit embedding tables against PyTorch:
the packed ``int_repr``, dequantized values, checkpoints both ways, EmbeddingBag/Embedding."""

import io

import numpy as np
import pytest

import ember
import ember.ao.nn.quantized as enq
from ember._quantized import pack_subbyte, unpack_subbyte

torch = pytest.importorskip("torch")
tnq = pytest.importorskip("torch.ao.nn.quantized")
tq = pytest.importorskip("torch.ao.quantization")
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SHAPES = [(2, 3), (7,), (3, 5), (1,), (4, 4, 3), (0, 3)]


def _e(t):
    return ember.from_numpy(t.detach().numpy().copy())


def _roundtrip_torch_to_ember(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return ember.load(buf)


def _roundtrip_ember_to_torch(obj):
    buf = io.BytesIO()
    ember.save(obj, buf)
    buf.seek(0)
    return torch.load(buf)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["quint4x2", "quint2x4"])
def test_per_tensor_matches_torch(shape, dtype):
    torch.manual_seed(len(shape))
    x = torch.randn(*shape) * 2
    x.view(-1)[:2] = torch.tensor([0.15, 0.45])[:x.numel()]  # ties: x / scale + zp at .5
    tdt, edt = getattr(torch, dtype), getattr(ember, dtype)
    t = torch.quantize_per_tensor(x, 0.3, 2, tdt)
    e = ember.quantize_per_tensor(_e(x), 0.3, 2, edt)
    assert e.dtype is edt and tuple(e.shape) == shape and e.element_size() == 1
    np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
    np.testing.assert_array_equal(e.dequantize().numpy(), t.dequantize().numpy())
    assert repr(e).replace("ember.", "torch.") == repr(t)


@pytest.mark.parametrize("shape", [s for s in SHAPES if len(s) > 1 and s[0]])
def test_checkpoints_both_ways(shape):
    torch.manual_seed(1)
    x = torch.randn(*shape)
    tensors = {
        "per_tensor": torch.quantize_per_tensor(x, 0.2, 8, torch.quint4x2),
        "per_channel": torch.quantize_per_channel(
            x, torch.rand(shape[0]) + 0.05, torch.rand(shape[0]) * 6, 0, torch.quint4x2),
    }
    loaded = _roundtrip_torch_to_ember(tensors)
    for k, t in tensors.items():
        e = loaded[k]
        assert e.dtype is ember.quint4x2 and tuple(e.shape) == shape
        np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
        np.testing.assert_array_equal(e.dequantize().numpy(), t.dequantize().numpy())
    back = _roundtrip_ember_to_torch(loaded)
    for k, t in tensors.items():
        assert back[k].dtype == torch.quint4x2 and back[k].qscheme() == t.qscheme()
        assert torch.equal(back[k].int_repr(), t.int_repr())
        assert torch.equal(back[k].dequantize(), t.dequantize())


def test_views_keep_values_and_pack_helpers():
    x = ember.randn(4, 6)
    q = ember.quantize_per_tensor(x, 0.25, 7, ember.quint4x2)
    v = q[1:3].reshape(3, 4)
    np.testing.assert_array_equal(v.dequantize().numpy(),
                                  q.dequantize().numpy()[1:3].reshape(3, 4))
    assert v.int_repr().numpy().shape == (6,)
    vals = np.arange(16, dtype=np.uint8).reshape(2, 8) % 16
    packed = pack_subbyte(vals, ember.quint4x2)
    assert packed[0] == 0x10 and packed.size == 8
    np.testing.assert_array_equal(unpack_subbyte(packed, (2, 8), ember.quint4x2), vals)
    assert pack_subbyte(np.ones((3, 5), np.uint8), ember.quint4x2, row_padded=True).size == 9
    with pytest.raises(NotImplementedError, match="quint4x2"):
        ember.quantize_per_tensor_dynamic(x, ember.quint4x2, False)


def _bag_pair(mode="sum", num=20, dim=12, cls="EmbeddingBag"):
    torch.manual_seed(3)
    f = getattr(torch.nn, cls)(num, dim, **({"mode": mode} if cls == "EmbeddingBag" else {}))
    f.qconfig = tq.float_qparams_weight_only_qconfig_4bit
    t = getattr(tnq, cls).from_float(f)
    return f, t


def test_embedding_bag_4bit_matches_torch():
    f, t = _bag_pair()
    e = enq.EmbeddingBag(20, 12, dtype=ember.quint4x2)
    e.load_state_dict(_roundtrip_torch_to_ember(t.state_dict()))
    assert list(e.state_dict()) == list(t.state_dict())
    assert e.weight().dtype is ember.quint4x2
    idx, off = torch.randint(0, 20, (15,)), torch.tensor([0, 4, 4, 9])
    got = e(_e(idx), _e(off)).numpy()
    # the same float16 row scales/biases and fma per element as fbgemm's 4-bit kernel
    np.testing.assert_allclose(got, t(idx, off).numpy(), rtol=1e-6, atol=1e-6)
    # from_float in ember gives the same integers and qparams
    ef = ember.nn.EmbeddingBag(20, 12, mode="sum")
    ef.load_state_dict({k: _e(v) for k, v in f.state_dict().items()})
    from ember.ao.quantization import float_qparams_weight_only_qconfig_4bit
    ef.qconfig = float_qparams_weight_only_qconfig_4bit
    e2 = enq.EmbeddingBag.from_float(ef)
    assert e2.weight().dtype is ember.quint4x2
    np.testing.assert_array_equal(e2.weight().int_repr().numpy(), t.weight().int_repr().numpy())
    np.testing.assert_array_equal(e2(_e(idx), _e(off)).numpy(), got)
    # the module's state dict goes back to PyTorch
    t2 = tnq.EmbeddingBag(20, 12, dtype=torch.quint4x2)
    t2.load_state_dict(_roundtrip_ember_to_torch(e2.state_dict()))
    np.testing.assert_array_equal(t2(idx, off).numpy(), t(idx, off).numpy())


def test_embedding_4bit_rows_equal_the_bag_of_one():
    # PyTorch's Embedding.from_float drops the 4-bit dtype (its packed rows are then read as
    # 8-bit); a PyTorch Embedding built with dtype=quint4x2 and the same weight is the oracle
    _, t = _bag_pair()
    tw = t.weight()
    temb = tnq.Embedding(20, 12, dtype=torch.quint4x2)
    temb.set_weight(tw)
    e = enq.Embedding(20, 12, dtype=ember.quint4x2)
    e.set_weight(_roundtrip_torch_to_ember(tw))
    idx = torch.randint(0, 20, (6,))
    np.testing.assert_array_equal(e(_e(idx)).numpy(), temb(idx).numpy())
    assert tuple(e(_e(idx.reshape(2, 3))).shape) == (2, 3, 12)


def test_wrong_embedding_weight_dtype():
    w = ember.quantize_per_tensor(ember.randn(4, 3), 0.1, 0, ember.qint8)
    with pytest.raises(NotImplementedError, match="quint4x2"):
        enq.Embedding(4, 3, _weight=w)
