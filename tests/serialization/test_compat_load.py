"""PyTorch's load policy (environment overrides, the default weights-only allowlist) and the
storage-first dtypes (uint16/32/64, float8, complex32), both ways through files."""

import collections
import io
import pickle

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _bytes_of(save, obj):
    buf = io.BytesIO()
    save(obj, buf)
    return buf.getvalue()


class _Point:
    def __init__(self, x):
        self.x = x


@pytest.mark.parametrize("var", ["TORCH_FORCE_WEIGHTS_ONLY_LOAD",
                                 "EMBER_FORCE_WEIGHTS_ONLY_LOAD"])
def test_force_weights_only(monkeypatch, var):
    data = _bytes_of(ember.save, {"p": _Point(3)})
    assert ember.load(io.BytesIO(data), weights_only=False)["p"].x == 3
    monkeypatch.setenv(var, "true")
    with pytest.raises(pickle.UnpicklingError, match="_Point"):
        ember.load(io.BytesIO(data), weights_only=False)  # forced, whatever the call says


@pytest.mark.parametrize("var", ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
                                 "EMBER_FORCE_NO_WEIGHTS_ONLY_LOAD"])
def test_force_no_weights_only(monkeypatch, var):
    data = _bytes_of(ember.save, {"p": _Point(3)})
    monkeypatch.setenv(var, "1")
    with pytest.warns(UserWarning, match="forcing weights_only=False"):
        assert ember.load(io.BytesIO(data))["p"].x == 3
    # an explicit weights_only=True at the call site wins, as in PyTorch
    with pytest.raises(pickle.UnpicklingError):
        ember.load(io.BytesIO(data), weights_only=True)


def test_both_forces_is_an_error(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "yes")
    with pytest.raises(RuntimeError, match="Only one of"):
        ember.load(io.BytesIO(_bytes_of(ember.save, 1)))


@pytest.mark.parametrize("obj", [frozenset([1, 2]), collections.Counter("abca"), {1, 2},
                                 b"xy", bytearray(b"a"), 3 + 4j, slice(1, 2), range(3),
                                 (1, [2.5, None]), collections.OrderedDict(a=1)],
                         ids=lambda o: type(o).__name__)
def test_default_allowlist_matches_pytorch(obj):
    data = _bytes_of(torch.save, obj)
    try:
        want = torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError:
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            ember.load(io.BytesIO(data), weights_only=True)
        return
    assert ember.load(io.BytesIO(data), weights_only=True) == want


def test_legacy_tensor_classes_are_allowed():
    data = _bytes_of(torch.save, {"cls": torch.FloatTensor, "t": torch.ones(2)})
    out = ember.load(io.BytesIO(data))
    assert out["cls"] is ember.FloatTensor


def test_safe_globals_scope():
    data = _bytes_of(ember.save, [_Point(5)])
    with pytest.raises(pickle.UnpicklingError, match="_Point"):
        ember.load(io.BytesIO(data))
    with ember.serialization.safe_globals([_Point]):
        assert ember.load(io.BytesIO(data))[0].x == 5
    assert _Point not in ember.serialization.get_safe_globals()
    with pytest.raises(pickle.UnpicklingError):
        ember.load(io.BytesIO(data))


NEW_DTYPES = [("uint16", [0, 1, 65535]), ("uint32", [0, 7, 2 ** 32 - 1]),
              ("uint64", [0, 9, 2 ** 63 + 5]), ("float8_e4m3fn", [0.0, 1.5, -448.0, 0.015625]),
              ("float8_e5m2", [0.0, 1.5, -57344.0, 0.25])]


@pytest.mark.parametrize("name,values", NEW_DTYPES)
def test_new_dtypes_round_trip_with_torch(name, values):
    td = getattr(torch, name)
    ed = getattr(ember, name)
    t = torch.tensor(values, dtype=td) if "float8" not in name else \
        torch.tensor(values).to(td)
    # torch -> ember
    e = ember.load(io.BytesIO(_bytes_of(torch.save, {"t": t, "view": t[1:]})))
    assert e["t"].dtype is ed and e["view"].dtype is ed
    as_float = (lambda x: x.to(torch.float64)) if "float8" in name else (lambda x: x)
    want = [float(v) for v in as_float(t).tolist()] if "float8" in name else t.tolist()
    got = e["t"].to(ember.float64).tolist() if "float8" in name else e["t"].tolist()
    assert got == want and e["view"].tolist()[0] == e["t"].tolist()[1]
    # ember -> torch
    back = torch.load(io.BytesIO(_bytes_of(ember.save, e)))
    assert back["t"].dtype == td
    assert torch.equal(back["t"].view(torch.uint8), t.view(torch.uint8))
    assert back["view"].data_ptr() != 0 and back["view"].shape == (len(values) - 1,)


def test_complex32_round_trip_with_torch():
    t = torch.tensor([1 + 2j, -0.5 + 0.25j, 3.0j], dtype=torch.complex64).to(torch.chalf)
    e = ember.load(io.BytesIO(_bytes_of(torch.save, t)))
    assert e.dtype is ember.complex32 and ember.chalf is ember.complex32
    np.testing.assert_array_equal(e.to(ember.complex64).numpy(), t.to(torch.complex64).numpy())
    back = torch.load(io.BytesIO(_bytes_of(ember.save, e)))
    assert back.dtype == torch.complex32 and torch.equal(back.view(torch.int16),
                                                          t.view(torch.int16))
    # conversions in ember
    c = ember.tensor([1.5 + 2j]).to(ember.chalf)
    assert c.dtype is ember.chalf and c.element_size() == 2 * 2
    assert c.to(ember.complex64).tolist() == [1.5 + 2j]


def test_new_dtype_properties_and_promotion_errors():
    for name in ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "complex32"):
        ed, td = getattr(ember, name), getattr(torch, name)
        assert ed.is_signed == td.is_signed, name
        assert ed.is_floating_point == td.is_floating_point, name
        assert ed.is_complex == td.is_complex, name
        assert ed.itemsize == td.itemsize, name
    assert ember.finfo(ember.float8_e4m3fn).max == torch.finfo(torch.float8_e4m3fn).max
    assert ember.iinfo(ember.uint32).max == torch.iinfo(torch.uint32).max
    for a, b in [("uint16", "int32"), ("uint16", "uint8"), ("float8_e4m3fn", "float32"),
                 ("float8_e5m2", "float16")]:
        with pytest.raises(RuntimeError) as te:
            torch.promote_types(getattr(torch, a), getattr(torch, b))
        with pytest.raises(RuntimeError) as ee:
            ember.promote_types(getattr(ember, a), getattr(ember, b))
        assert str(ee.value) == str(te.value)
    for a, b in [("uint32", "float32"), ("complex32", "float32"), ("complex32", "float16"),
                 ("complex32", "complex64"), ("uint16", "uint16")]:
        got = ember.promote_types(getattr(ember, a), getattr(ember, b))
        assert got.name == str(torch.promote_types(getattr(torch, a), getattr(torch, b)))[6:]
    u = ember.from_numpy(np.array([1, 2], dtype=np.uint16))
    assert u.dtype is ember.uint16  # as torch.from_numpy: no silent widening


def test_new_dtypes_print_like_pytorch():
    c = ember.tensor([1 + 2j, 0.5j]).to(ember.chalf)
    t = torch.tensor([1 + 2j, 0.5j]).to(torch.chalf)
    assert repr(c) == repr(t).replace("torch.", "ember.")
    u, tu = ember.tensor([1, 2], dtype=ember.uint16), torch.tensor([1, 2], dtype=torch.uint16)
    assert repr(u) == repr(tu).replace("torch.", "ember.")


def test_get_unsafe_globals_in_checkpoint_matches_pytorch():
    import collections as C
    data = _bytes_of(torch.save, {"t": torch.ones(2), "p": C.Counter("ab"), "f": frozenset([1]),
                                  "s": slice(1, 2)})
    want = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
    assert ember.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)) == want
    mine = _bytes_of(ember.save, [_Point(1)])
    assert ember.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(mine)) == \
        [f"{__name__}._Point"]
    with ember.serialization.safe_globals([_Point]):
        assert ember.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(mine)) == []


def test_serialization_helpers():
    S = ember.serialization
    assert S.location_tag(ember.ones(1).untyped_storage()) == "cpu"
    with pytest.raises(RuntimeError, match="map_location"):
        S.validate_cuda_device(0)
    with S.mkdtemp() as d:
        import os
        assert os.path.isdir(d)
    assert not os.path.exists(d)
    assert S.storage_to_tensor_type(ember.ones(1).storage()) is ember.FloatTensor
    assert S.check_module_version_greater_or_equal(np, (1, 20))
    assert not S.check_module_version_greater_or_equal(np, (99, 0))
    assert S.get_default_load_endianness() is None
    S.set_default_load_endianness(S.LoadEndianness.LITTLE)
    assert S.get_default_load_endianness() is S.LoadEndianness.LITTLE
    S.set_default_load_endianness(None)
    with pytest.raises(TypeError):
        S.set_default_load_endianness("little")
