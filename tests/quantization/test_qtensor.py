"""Quantized tensors: quantize/dequantize bit for bit against torch, metadata, views,
printing, errors, and checkpoints both ways."""

import copy
import io

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation:UserWarning")

QDTYPES = [("quint8", 0, 255), ("qint8", -128, 127), ("qint32", -(2 ** 31), 2 ** 31 - 1)]


def _inputs(rng, n, scale):
    x = (rng.standard_normal(n) * rng.uniform(0.1, 20)).astype(np.float32)
    # exact ties x = (k + 0.5) * scale: the rounding rule decides them
    k = n // 3
    x[:k] = ((rng.integers(-300, 300, k) + 0.5) * np.float32(scale)).astype(np.float32)
    return x


@pytest.mark.parametrize("name,lo,hi", QDTYPES)
@pytest.mark.parametrize("n", [7, 1000])
def test_quantize_per_tensor_matches_torch_bitwise(name, lo, hi, n):
    rng = np.random.default_rng(n)
    for _ in range(30):
        scale = float(rng.uniform(1e-3, 0.2))
        zp = int(rng.integers(max(lo, -100), min(hi, 100)))
        x = _inputs(rng, n, scale)
        tq = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, getattr(torch, name))
        eq = ember.quantize_per_tensor(ember.from_numpy(x), scale, zp, getattr(ember, name))
        np.testing.assert_array_equal(eq.int_repr().numpy(), tq.int_repr().numpy())
        assert eq.int_repr().dtype == {"quint8": ember.uint8, "qint8": ember.int8,
                                       "qint32": ember.int32}[name]
        np.testing.assert_array_equal(eq.dequantize().numpy(), tq.dequantize().numpy())
        assert eq.q_scale() == tq.q_scale() and eq.q_zero_point() == tq.q_zero_point()
        assert eq.dtype is getattr(ember, name) and eq.is_quantized
        assert eq.qscheme() is ember.per_tensor_affine


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("name", ["qint8", "quint8"])
def test_quantize_per_channel_matches_torch_bitwise(axis, name):
    rng = np.random.default_rng(axis)
    for _ in range(20):
        x = rng.standard_normal((4, 5, 60)).astype(np.float32)
        n = x.shape[axis]
        s = rng.uniform(1e-3, 0.1, n)
        z = rng.integers(-20, 20, n) if name == "qint8" else rng.integers(100, 150, n)
        ts, tz = torch.tensor(s), torch.tensor(z)
        tq = torch.quantize_per_channel(torch.from_numpy(x), ts, tz, axis, getattr(torch, name))
        eq = ember.quantize_per_channel(ember.from_numpy(x), ember.tensor(s), ember.tensor(z),
                                        axis, getattr(ember, name))
        np.testing.assert_array_equal(eq.int_repr().numpy(), tq.int_repr().numpy())
        np.testing.assert_array_equal(eq.dequantize().numpy(), tq.dequantize().numpy())
        np.testing.assert_array_equal(eq.q_per_channel_scales().numpy(),
                                      tq.q_per_channel_scales().numpy())
        np.testing.assert_array_equal(eq.q_per_channel_zero_points().numpy(),
                                      tq.q_per_channel_zero_points().numpy())
        assert eq.q_per_channel_axis() == axis and eq.qscheme() is ember.per_channel_affine


def test_quantize_per_channel_float_qparams_matches_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 16)).astype(np.float32)
    s = rng.uniform(0.01, 0.05, 6).astype(np.float32)
    z = rng.uniform(-50, 50, 6).astype(np.float32)
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(s),
                                    torch.from_numpy(z), 0, torch.quint8)
    eq = ember.quantize_per_channel(ember.from_numpy(x), ember.from_numpy(s),
                                    ember.from_numpy(z), 0, ember.quint8)
    assert tq.qscheme() == torch.per_channel_affine_float_qparams
    assert eq.qscheme() is ember.per_channel_affine_float_qparams
    np.testing.assert_array_equal(eq.int_repr().numpy(), tq.int_repr().numpy())
    np.testing.assert_allclose(eq.dequantize().numpy(), tq.dequantize().numpy(), rtol=1e-6,
                               atol=1e-6)


def test_tensor_and_list_forms():
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), torch.tensor(0.05), torch.tensor(7),
                                   torch.quint8)
    eq = ember.quantize_per_tensor(ember.from_numpy(x), ember.tensor(0.05), ember.tensor(7),
                                   ember.quint8)
    np.testing.assert_array_equal(eq.int_repr().numpy(), tq.int_repr().numpy())
    tl = torch.quantize_per_tensor([torch.from_numpy(x), torch.from_numpy(-x)],
                                   torch.tensor([0.1, 0.2]), torch.tensor([1, 2]), torch.qint8)
    el = ember.quantize_per_tensor([ember.from_numpy(x), ember.from_numpy(-x)],
                                   ember.tensor([0.1, 0.2]), ember.tensor([1, 2]), ember.qint8)
    for a, b in zip(el, tl):
        np.testing.assert_array_equal(a.int_repr().numpy(), b.int_repr().numpy())
    dl = ember.dequantize(el)
    assert isinstance(dl, list) and dl[0].dtype is ember.float32


@pytest.mark.parametrize("reduce_range", [False, True])
@pytest.mark.parametrize("name", ["quint8", "qint8"])
def test_quantize_per_tensor_dynamic_matches_torch(reduce_range, name):
    rng = np.random.default_rng(5)
    for scale in (1e-7, 1e-3, 1.0, 50.0):
        for shift in (-3.0, 0.0, 3.0):
            x = (rng.standard_normal(50) * scale + shift * scale).astype(np.float32)
            tq = torch.quantize_per_tensor_dynamic(torch.from_numpy(x), getattr(torch, name),
                                                   reduce_range)
            eq = ember.quantize_per_tensor_dynamic(ember.from_numpy(x), getattr(ember, name),
                                                   reduce_range)
            assert eq.q_scale() == pytest.approx(tq.q_scale(), rel=1e-7)
            assert eq.q_zero_point() == tq.q_zero_point()
            np.testing.assert_array_equal(eq.int_repr().numpy(), tq.int_repr().numpy())
    z = ember.quantize_per_tensor_dynamic(ember.zeros(4), ember.quint8, False)
    tz = torch.quantize_per_tensor_dynamic(torch.zeros(4), torch.quint8, False)
    assert (z.q_scale(), z.q_zero_point()) == (pytest.approx(tz.q_scale()), tz.q_zero_point())


def test_clamping_to_the_dtype_range():
    x = ember.tensor([-1e6, -3.0, 0.0, 3.0, 1e6])
    q = ember.quantize_per_tensor(x, 0.01, 10, ember.quint8)
    assert q.int_repr().tolist() == [0, 0, 10, 255, 255]
    q = ember.quantize_per_tensor(x, 0.01, 0, ember.qint8)
    assert q.int_repr().tolist() == [-128, -128, 0, 127, 127]


def _pair():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    return (torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 9, torch.quint8),
            ember.quantize_per_tensor(ember.from_numpy(x), 0.05, 9, ember.quint8))


VIEWS = [lambda t: t[0], lambda t: t[:, 1], lambda t: t[1:, ::2], lambda t: t[..., -1],
         lambda t: t.reshape(12, 5), lambda t: t.view(-1), lambda t: t.flatten(1),
         lambda t: t.permute(2, 0, 1), lambda t: t.transpose(0, 2).contiguous(),
         lambda t: t.clone(), lambda t: t.unsqueeze(1), lambda t: t[:1].squeeze(0),
         lambda t: t[0].t(), lambda t: t[0, 0].expand(2, 5), lambda t: t.detach(),
         lambda t: t.relu()]


@pytest.mark.parametrize("k", range(len(VIEWS)))
def test_views_keep_quantization(k):
    tq, eq = _pair()
    tr, er = VIEWS[k](tq), VIEWS[k](eq)
    assert er.is_quantized and tuple(er.shape) == tuple(tr.shape)
    np.testing.assert_array_equal(er.int_repr().numpy(), tr.int_repr().numpy())
    assert (er.q_scale(), er.q_zero_point()) == (tr.q_scale(), tr.q_zero_point())
    assert er.is_contiguous() == tr.is_contiguous()


def test_per_channel_views_and_errors():
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    s, z = [0.1, 0.2, 0.3], [0, 1, 2]
    tq = torch.quantize_per_channel(torch.from_numpy(x), torch.tensor(s, dtype=torch.double),
                                    torch.tensor(z), 0, torch.qint8)
    eq = ember.quantize_per_channel(ember.from_numpy(x), ember.tensor(s, dtype=ember.float64),
                                    ember.tensor(z), 0, ember.qint8)
    for f in (lambda t: t[1:], lambda t: t[:, 1:], lambda t: t.clone(), lambda t: t[0],
              lambda t: t.contiguous()):
        a, b = f(eq), f(tq)
        np.testing.assert_array_equal(a.int_repr().numpy(), b.int_repr().numpy())
        assert repr(a.qscheme()).split(".")[1] == repr(b.qscheme()).split(".")[1]
    assert eq[1:].q_per_channel_scales().tolist() == tq[1:].q_per_channel_scales().tolist()
    assert eq.unsqueeze(0).q_per_channel_axis() == 1
    for f in (lambda t: t.t(), lambda t: t.permute(1, 0), lambda t: t.q_scale()):
        with pytest.raises(RuntimeError):
            f(tq)
        with pytest.raises(RuntimeError):
            f(eq)


def test_unsupported_ops_raise_not_implemented():
    tq, eq = _pair()
    for f in (lambda t: t + t, lambda t: t.sum(), lambda t: t.abs(), lambda t: t * 2):
        with pytest.raises((NotImplementedError, RuntimeError)):
            f(tq)
        with pytest.raises(NotImplementedError, match="QuantizedCPU"):
            f(eq)
    with pytest.raises(NotImplementedError):
        ember.exp(eq)
    with pytest.raises(RuntimeError):
        eq.requires_grad_()


def test_bad_arguments():
    x = ember.randn(4)
    with pytest.raises(RuntimeError, match="Float"):
        ember.quantize_per_tensor(x.double(), 0.1, 0, ember.quint8)
    with pytest.raises(RuntimeError, match="quantized dtype"):
        ember.quantize_per_tensor(x, 0.1, 0, ember.float32)
    with pytest.raises(RuntimeError, match="zero_point"):
        ember.quantize_per_tensor(x, 0.1, 300, ember.quint8)
    with pytest.raises(RuntimeError, match="scale"):
        ember.quantize_per_tensor(x, 0.0, 0, ember.quint8)
    with pytest.raises(RuntimeError, match="expected 4 scales"):
        ember.quantize_per_channel(x, ember.tensor([0.1]), ember.tensor([0]), 0, ember.qint8)
    with pytest.raises(RuntimeError, match="axis"):
        ember.quantize_per_channel(x, ember.tensor([0.1]), ember.tensor([0]), 3, ember.qint8)
    with pytest.raises(RuntimeError, match="expected a quantized tensor"):
        x.int_repr()
    with pytest.raises(RuntimeError, match="Promotion for quantized"):
        ember.promote_types(ember.qint8, ember.float32)
    assert x.dequantize() is x


def test_repr_matches_torch():
    tq, eq = _pair()
    for a, b in ((eq[0, :2], tq[0, :2]), (eq[0, 0], tq[0, 0])):
        assert repr(a) == repr(b).replace("torch.", "ember.")
    x = np.array([[0.3, -1.2], [0.5, 2.0]], np.float32)
    tp = torch.quantize_per_channel(torch.from_numpy(x), torch.tensor([0.1, 0.2],
                                    dtype=torch.double), torch.tensor([1, 2]), 0, torch.qint8)
    ep = ember.quantize_per_channel(ember.from_numpy(x), ember.tensor([0.1, 0.2],
                                    dtype=ember.float64), ember.tensor([1, 2]), 0, ember.qint8)
    assert repr(ep) == repr(tp).replace("torch.", "ember.")
    assert ep[1, 1].item() == tp[1, 1].item()


def test_dtypes_and_qschemes_exist():
    for name in ("qint8", "quint8", "qint32", "quint4x2"):
        assert repr(getattr(ember, name)) == "ember." + name
        assert not getattr(ember, name).is_floating_point
    assert ember.quint8.is_signed is False and ember.qint8.is_signed is True
    for name in ("per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
                 "per_channel_symmetric", "per_channel_affine_float_qparams"):
        assert repr(getattr(ember, name)) == "ember." + name
    assert copy.deepcopy(ember.qint8) is ember.qint8


def test_deepcopy_and_pickle():
    import pickle
    _, eq = _pair()
    for c in (copy.deepcopy(eq), pickle.loads(pickle.dumps(eq))):
        assert c.equal(eq) and c._q is not eq._q


def test_checkpoints_move_both_ways(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.1, 3, torch.quint8)
    tp = torch.quantize_per_channel(torch.from_numpy(x), torch.tensor([0.1, 0.2, 0.3],
                                    dtype=torch.double), torch.tensor([0, 1, 2]), 0, torch.qint8)
    t32 = torch.quantize_per_tensor(torch.from_numpy(x), 0.001, -5, torch.qint32)
    torch.save({"a": tq, "b": tp, "c": [t32, torch.from_numpy(x)]}, tmp_path / "t.pt")
    d = ember.load(tmp_path / "t.pt")
    for e, t in ((d["a"], tq), (d["b"], tp), (d["c"][0], t32)):
        np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
        assert e.dtype.name == str(t.dtype).split(".")[1]
    assert d["b"].q_per_channel_scales().tolist() == [0.1, 0.2, 0.3]
    ember.save({"a": d["a"], "b": d["b"], "again": d["a"], "v": d["a"][1:]},
               tmp_path / "e.pt")
    back = torch.load(tmp_path / "e.pt")
    assert torch.equal(back["a"], tq) and torch.equal(back["b"], tp)
    assert back["again"] is back["a"] and torch.equal(back["v"], tq[1:])
    buf = io.BytesIO()
    ember.save(d["b"], buf)
    buf.seek(0)
    assert ember.load(buf).equal(d["b"])


def test_float_modules_that_pytorch_runs_on_quantized_tensors():
    # after eager-mode convert, ReLU / MaxPool2d / AdaptiveAvgPool2d / Flatten / Dropout stay
    # float modules and receive quantized tensors, as in PyTorch
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 100, torch.quint8)
    eq = ember.quantize_per_tensor(ember.from_numpy(x), 0.05, 100, ember.quint8)

    def model(m):
        return m.nn.Sequential(m.nn.ReLU(), m.nn.MaxPool2d(2), m.nn.AdaptiveAvgPool2d(2),
                               m.nn.Flatten(), m.nn.Dropout()).eval()
    ty, ey = model(torch)(tq), model(ember)(eq)
    assert ey.is_quantized and tuple(ey.shape) == tuple(ty.shape)
    np.testing.assert_array_equal(ey.int_repr().numpy(), ty.int_repr().numpy())
    np.testing.assert_array_equal(ember.flatten(eq, 1).int_repr().numpy(),
                                  torch.flatten(tq, 1).int_repr().numpy())
    np.testing.assert_array_equal(ember.nn.functional.relu(eq).int_repr().numpy(),
                                  torch.nn.functional.relu(tq).int_repr().numpy())
