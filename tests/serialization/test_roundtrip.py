"""ember.save -> ember.load: every dtype, views, parameters, containers, file kinds."""

import io
import os
import pathlib
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import ember

DTYPES = [ember.float32, ember.float64, ember.float16, ember.bfloat16, ember.int64,
          ember.int32, ember.int16, ember.int8, ember.uint8, ember.bool, ember.complex64,
          ember.complex128]


def _sample(dtype, shape=(2, 3)):
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) - 2
    if dtype is ember.bool:
        return ember.tensor(x > 0)
    if dtype.is_complex:
        return ember.tensor(x + 1j * x[::-1], dtype=dtype)
    return ember.tensor(x, dtype=dtype)


def _roundtrip(obj, **kw):
    buf = io.BytesIO()
    ember.save(obj, buf)
    buf.seek(0)
    return ember.load(buf, **kw)


def _same(a, b):
    assert type(a) is type(b)
    assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
    assert a.numpy().tobytes() == b.numpy().tobytes()  # bit for bit


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype(dtype):
    t = _sample(dtype)
    _same(_roundtrip(t), t)


def test_scalar_and_empty():
    for t in (ember.tensor(3.5), ember.zeros(0, 4), ember.ones(2, 0, dtype=ember.int64)):
        _same(_roundtrip(t), t)


def test_views_share_one_storage_and_memory_after_load():
    base = ember.arange(12.0).reshape(3, 4)
    obj = {"base": base, "t": base.t(), "row": base[1], "col": base[:, 2], "step": base[::2, 1::2]}
    out = _roundtrip(obj)
    for k, v in obj.items():
        assert out[k].stride() == v.stride()
        assert np.array_equal(out[k].numpy(), v.numpy())
    out["base"][1, 2] = 100.0
    assert out["t"][2, 1].item() == 100.0
    assert out["row"][2].item() == 100.0
    assert out["col"][1].item() == 100.0
    ptr = out["base"].untyped_storage().data_ptr()
    assert all(out[k].untyped_storage().data_ptr() == ptr for k in obj)


def test_one_storage_record_for_views():
    base = ember.arange(12.0)
    buf = io.BytesIO()
    ember.save([base, base[2:5], base.view(3, 4).t()], buf)
    names = zipfile.ZipFile(buf).namelist()
    assert [n for n in names if "/data/" in n] == ["archive/data/0"]


def test_small_slice_of_large_tensor_saves_only_its_bytes():
    big = ember.zeros(1_000_000)
    buf = io.BytesIO()
    ember.save(big[10:20], buf)
    assert len(buf.getvalue()) < 4096
    buf.seek(0)
    assert ember.load(buf).shape == (10,)


def test_negative_strides_from_numpy_are_copied():
    a = np.arange(6.0)[::-1]
    out = _roundtrip(ember.from_numpy(a))
    assert np.array_equal(out.numpy(), a)


def test_parameter_and_requires_grad():
    from ember.nn import Parameter
    p = Parameter(ember.randn(3, 2))
    frozen = Parameter(ember.randn(2), requires_grad=False)
    leaf = ember.randn(2, requires_grad=True)
    out = _roundtrip({"p": p, "frozen": frozen, "leaf": leaf, "pview": p})
    assert type(out["p"]) is Parameter and out["p"].requires_grad
    assert type(out["frozen"]) is Parameter and not out["frozen"].requires_grad
    assert type(out["leaf"]) is ember.Tensor and out["leaf"].requires_grad
    assert out["pview"] is out["p"]
    assert np.array_equal(out["p"].detach().numpy(), p.detach().numpy())


def test_nested_containers_and_primitives():
    obj = {"list": [1, 2.5, "x", None, True, b"\x00\xff", bytearray(b"ab"), 1 + 2j],
           "tuple": (1, (2, 3)), "set": {1, 2},
           "od": OrderedDict(a=ember.ones(2), b=OrderedDict(c=3)),
           "dtype": ember.bfloat16, "device": ember.device("cpu"), "size": ember.Size([2, 3]),
           "big": 2 ** 80, "neg": -1.5e300}
    out = _roundtrip(obj)
    assert type(out["od"]) is OrderedDict and list(out["od"]) == ["a", "b"]
    assert out["dtype"] is ember.bfloat16 and out["device"] == ember.device("cpu")
    assert isinstance(out["size"], ember.Size) and out["size"] == (2, 3)
    assert out["list"][:6] == obj["list"][:6] and out["list"][7] == 1 + 2j
    assert out["tuple"] == obj["tuple"] and out["set"] == {1, 2}
    assert out["big"] == 2 ** 80 and out["neg"] == -1.5e300


def test_identity_of_repeated_tensor_is_kept():
    t = ember.ones(3)
    out = _roundtrip([t, t])
    assert out[0] is out[1]


def test_paths_pathlike_and_file_objects(tmp_path):
    t = ember.arange(5)
    ember.save(t, str(tmp_path / "a.pt"))
    ember.save(t, pathlib.Path(tmp_path / "b.pt"))
    with open(tmp_path / "c.pt", "wb") as fh:
        ember.save(t, fh)
    for name in "abc":
        assert ember.load(tmp_path / f"{name}.pt").tolist() == [0, 1, 2, 3, 4]
    with open(tmp_path / "a.pt", "rb") as fh:
        assert ember.load(fh).tolist() == [0, 1, 2, 3, 4]
    assert zipfile.ZipFile(tmp_path / "a.pt").namelist()[0] == "a/data.pkl"


def test_records_are_64_byte_aligned_and_stored(tmp_path):
    path = tmp_path / "m.pt"
    ember.save({"w": ember.randn(7, 3), "b": ember.ones(5, dtype=ember.int8)}, path)
    raw = path.read_bytes()
    zf = zipfile.ZipFile(path)
    names = zf.namelist()
    for rec in ("m/data.pkl", "m/byteorder", "m/version", "m/.data/serialization_id"):
        assert rec in names
    assert zf.read("m/byteorder") == b"little"
    for info in zf.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
        n, m = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
        assert (info.header_offset + 30 + n + m) % 64 == 0, info.filename


def test_mmap_maps_the_file_copy_on_write(tmp_path):
    path = tmp_path / "m.pt"
    w = ember.arange(1000.0)
    ember.save({"w": w, "v": w[10:20]}, path)
    out = ember.load(path, mmap=True)
    assert np.array_equal(out["w"].numpy(), w.numpy())
    root = out["w"].numpy()
    while root.base is not None and isinstance(root.base, np.ndarray):
        root = root.base
    assert isinstance(root, np.memmap)
    out["w"][15] = -1.0  # private mapping: seen by the view, not written to the file
    assert out["v"][5].item() == -1.0
    assert ember.load(path)["w"][15].item() == 15.0
    with pytest.raises(ValueError, match="file path"):
        ember.load(io.BytesIO(path.read_bytes()), mmap=True)


def test_map_location_forms():
    t = ember.arange(3.0)
    for loc in ("cpu", ember.device("cpu"), {"cpu": "cpu"}, lambda s, loc: s,
                lambda s, loc: None, lambda s, loc: s.cpu()):
        assert _roundtrip(t, map_location=loc).tolist() == [0.0, 1.0, 2.0]
    for loc in ("cuda", ember.device("cuda", 0), {"cpu": "cuda:0"}, lambda s, loc: s.cuda()):
        with pytest.raises(RuntimeError, match="map_location='cpu'|no cuda backend"):
            _roundtrip(t, map_location=loc)


def test_save_failure_before_writing_leaves_file_untouched(tmp_path):
    path = tmp_path / "ckpt.pt"
    ember.save({"step": 1}, path)
    with pytest.raises(pickle.PicklingError):
        ember.save({"bad": lambda: 0}, path)  # lambdas cannot be pickled
    assert ember.load(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_save_keeps_file_mode(tmp_path):
    path = tmp_path / "ckpt.pt"
    ember.save(1, path)
    os.chmod(path, 0o640)
    ember.save(2, path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_unsupported_save_options():
    with pytest.raises(NotImplementedError, match="legacy"):
        ember.save(1, io.BytesIO(), _use_new_zipfile_serialization=False)
    with pytest.raises(TypeError):
        ember.save(1, 42)


def test_tensors_in_ordered_dict_attributes_and_custom_objects():
    od = OrderedDict(w=ember.ones(2))
    od.extra = {"t": ember.arange(3)}
    out = _roundtrip(od)
    assert out.extra["t"].tolist() == [0, 1, 2] and out["w"].tolist() == [1.0, 1.0]

    # a user class: its tensors are found by a pickling pass, and it loads when trusted
    buf = io.BytesIO()
    ember.save({"h": _Box(ember.arange(2.0))}, buf)
    buf.seek(0)
    assert ember.load(buf, weights_only=False)["h"].t.tolist() == [0.0, 1.0]


class _Box:
    def __init__(self, t):
        self.t = t
