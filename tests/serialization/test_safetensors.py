"""ember.safetensors: files interchangeable with safetensors.torch."""

import numpy as np
import pytest

import ember

pytest.importorskip("safetensors")
est = pytest.importorskip("ember.safetensors")

NAMES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
         "uint8", "bool", "complex64"]


def _sample(name):
    t = ember.arange(-3, 9).reshape(3, 4)
    return (t > 0) if name == "bool" else t.to(getattr(ember, name))


def test_roundtrip_file_and_bytes(tmp_path):
    tensors = {n: _sample(n) for n in NAMES}
    tensors["empty"] = ember.zeros(0, 3)
    tensors["scalar"] = ember.tensor(2.5)
    path = tmp_path / "t.safetensors"
    est.save_file(tensors, path, metadata={"format": "pt"})
    for out in (est.load_file(path), est.load(est.save(tensors))):
        assert set(out) == set(tensors)
        for k, v in tensors.items():
            assert out[k].dtype is v.dtype and out[k].shape == v.shape
            assert out[k].numpy().tobytes() == v.numpy().tobytes()
    loaded = est.load_file(path)
    loaded["int64"][0, 0] = 7  # writable


@pytest.mark.parametrize("name", NAMES)
def test_interchange_with_safetensors_torch(tmp_path, name):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file
    e = _sample(name)
    est.save_file({"x": e}, tmp_path / "e.st")
    t = load_file(tmp_path / "e.st")["x"]
    assert str(t.dtype) == f"torch.{name}"
    assert torch.equal(t, torch.from_dlpack(e))
    save_file({"y": t.t().contiguous()}, tmp_path / "t.st")
    back = est.load_file(tmp_path / "t.st")["y"]
    assert back.dtype is e.dtype and back.numpy().tobytes() == e.t().contiguous().numpy().tobytes()


def test_refuses_what_the_format_cannot_hold(tmp_path):
    base = ember.arange(6.0)
    with pytest.raises(ValueError, match="non contiguous"):
        est.save_file({"x": base.view(2, 3).t()}, tmp_path / "a.st")
    with pytest.raises(RuntimeError, match="share memory"):
        est.save_file({"a": base, "b": base[2:4]}, tmp_path / "a.st")
    with pytest.raises(ValueError, match="complex128"):
        est.save_file({"c": ember.zeros(2, dtype=ember.complex128)}, tmp_path / "a.st")
    with pytest.raises(ValueError, match="expected ember.Tensor"):
        est.save_file({"n": np.zeros(2)}, tmp_path / "a.st")


def test_save_and_load_model_with_tied_weights(tmp_path):
    nn = pytest.importorskip("ember.nn")

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight

    m = Tied()
    path = tmp_path / "m.st"
    est.save_model(m, path)
    m2 = Tied()
    missing, unexpected = est.load_model(m2, path)
    assert not missing and not unexpected
    assert np.array_equal(m2.out.weight.detach().numpy(), m.emb.weight.detach().numpy())
    with pytest.raises(RuntimeError, match="Missing key"):
        est.load_model(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)), path)
