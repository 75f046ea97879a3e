"""ember.load never runs code from a file by default, and damaged files fail clearly."""

import io
import pickle
import zipfile

import numpy as np
import pytest

import ember
from ember import serialization as S

LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError)


class Point:
    """A user class: allowed only through the safe-globals API."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def _archive(pkl, records=None, prefix="archive"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", pkl)
        zf.writestr(f"{prefix}/byteorder", "little")
        for name, data in (records or {}).items():
            zf.writestr(f"{prefix}/{name}", data)
        zf.writestr(f"{prefix}/version", "3\n")
    buf.seek(0)
    return buf


def _tensor_pickle(storage="FloatStorage", numel=4, offset=0, size=(4,), stride=(1,),
                   key="0"):
    """A hand-written pickle of one tensor, exactly as torch lays it out."""
    def tup(xs):
        return b"(" + b"".join(b"I%d\n" % x for x in xs) + b"t"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("
            b"(Vstorage\nctorch\n" + storage.encode() + b"\nV" + key.encode() + b"\nVcpu\n"
            + b"I%d\ntQ" % numel + b"I%d\n" % offset + tup(size) + tup(stride)
            + b"I00\nccollections\nOrderedDict\n)RtR.")


def test_hand_written_pickle_is_valid():
    data = np.arange(4, dtype=np.float32).tobytes()
    t = ember.load(_archive(_tensor_pickle(), {"data/0": data}))
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0]


def _system_pickle(path):
    return b"\x80\x02cos\nsystem\n(V" + f"touch {path}".encode() + b"\ntR."


def test_os_system_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="os.system") as info:
        ember.load(_archive(_system_pickle(marker)))
    assert "add_safe_globals" in str(info.value) and "weights_only=False" in str(info.value)
    assert not marker.exists()


def test_malicious_legacy_style_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        ember.load(io.BytesIO(_system_pickle(marker)))
    assert not marker.exists()


def test_malicious_pickle_hidden_in_a_tensor_argument(tmp_path):
    marker = tmp_path / "pwned"
    evil = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(cbuiltins\neval\n(V__import__('os')"
            b".system('touch " + str(marker).encode() + b"')\ntRI0\n(t(tI00\n)tR.")
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        ember.load(_archive(evil))
    assert not marker.exists()


@pytest.mark.parametrize("global_name", [b"builtins\ngetattr", b"subprocess\nPopen",
                                         b"numpy.core.multiarray\n_reconstruct",
                                         b"ember.serialization\n_atomic_write",
                                         b"torch.nn.modules.linear\nLinear"])
def test_other_globals_are_refused(global_name):
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        ember.load(_archive(b"\x80\x02c" + global_name + b"\n)R."))


def test_numpy_arrays_need_opt_in():
    buf = io.BytesIO()
    ember.save({"arr": np.arange(3)}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        ember.load(buf)
    buf.seek(0)
    assert ember.load(buf, weights_only=False)["arr"].tolist() == [0, 1, 2]


def test_safe_globals_api():
    buf = io.BytesIO()
    ember.save({"p": Point(1, 2), "t": ember.ones(2)}, buf)
    data = buf.getvalue()
    name = f"{Point.__module__}.Point"
    with pytest.raises(pickle.UnpicklingError, match=name):
        ember.load(io.BytesIO(data))
    with S.safe_globals([Point]):
        assert Point in S.get_safe_globals()
        assert ember.load(io.BytesIO(data))["p"].y == 2
    assert Point not in S.get_safe_globals()
    with pytest.raises(pickle.UnpicklingError):
        ember.load(io.BytesIO(data))
    try:
        S.add_safe_globals([(Point, name)])
        assert ember.load(io.BytesIO(data))["p"].x == 1
    finally:
        S.clear_safe_globals()
    assert S.get_safe_globals() == []
    with pytest.raises(TypeError):
        S.add_safe_globals([(Point,)])


def test_weights_only_false_is_the_documented_opt_in():
    buf = io.BytesIO()
    ember.save(Point(3, 4), buf)
    buf.seek(0)
    assert ember.load(buf, weights_only=False).x == 3


def _good_checkpoint():
    buf = io.BytesIO()
    ember.save({"w": ember.arange(64.0).reshape(8, 8), "n": 3}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("cut", [1, 3, 10, 100, 500, -200, -40, -1])
def test_truncated_files(cut):
    data = _good_checkpoint()
    with pytest.raises(LOAD_ERRORS):
        ember.load(io.BytesIO(data[:cut]))


def test_corrupt_central_directory():
    data = bytearray(_good_checkpoint())
    pos = data.rfind(b"PK\x01\x02")
    data[pos:pos + 4] = b"XXXX"
    with pytest.raises(RuntimeError, match="corrupt"):
        ember.load(io.BytesIO(bytes(data)))


def test_flipped_storage_byte_fails_checksum():
    data = bytearray(_good_checkpoint())
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.getinfo("archive/data/0")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 5] ^= 0xFF
    with pytest.raises(RuntimeError, match="checksum"):
        ember.load(io.BytesIO(bytes(data)))


@pytest.mark.parametrize("head", [b"", b"hello world, not a checkpoint", b"\x00" * 64,
                                  b"GIF89a" + b"\x00" * 40])
def test_wrong_magic(head):
    with pytest.raises(RuntimeError, match="not a checkpoint|empty"):
        ember.load(io.BytesIO(head))


def test_legacy_magic_mismatch():
    f = io.BytesIO(pickle.dumps(12345, protocol=2) + pickle.dumps(1001, protocol=2))
    with pytest.raises(RuntimeError, match="magic number"):
        ember.load(f)


def test_storage_record_shorter_than_tensor_needs():
    short = np.arange(2, dtype=np.float32).tobytes()
    with pytest.raises(RuntimeError, match="holds 8 bytes, but its tensors need 16"):
        ember.load(_archive(_tensor_pickle(numel=4), {"data/0": short}))


def test_missing_storage_record():
    with pytest.raises(RuntimeError, match="missing"):
        ember.load(_archive(_tensor_pickle()))


@pytest.mark.parametrize("kw", [dict(size=(5,)), dict(offset=2, size=(3,)),
                                dict(size=(2, 2), stride=(3, 1)), dict(size=(4,), stride=(2,)),
                                dict(offset=4, size=(1,))])
def test_out_of_bounds_views(kw):
    data = np.arange(4, dtype=np.float32).tobytes()
    with pytest.raises(RuntimeError, match="needs .* elements, but its storage"):
        ember.load(_archive(_tensor_pickle(**kw), {"data/0": data}))


@pytest.mark.parametrize("kw", [dict(stride=(-1,)), dict(offset=-1, size=(1,)),
                                dict(size=(2, 2), stride=(1,))])
def test_malformed_geometry(kw):
    data = np.arange(4, dtype=np.float32).tobytes()
    with pytest.raises(RuntimeError, match="corrupt"):
        ember.load(_archive(_tensor_pickle(**kw), {"data/0": data}))


def test_storage_of_wrong_type_in_rebuild():
    pkl = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(V0\nI0\n(I1\nt(I1\ntI00\n)tR."
    with pytest.raises(pickle.UnpicklingError, match="storage"):
        ember.load(_archive(pkl))


def test_unsupported_torch_types_say_what_they_are():
    data = np.zeros(4, dtype=np.int8).tobytes()
    with pytest.raises(NotImplementedError, match="QUInt4x2Storage"):
        ember.load(_archive(_tensor_pickle(storage="QUInt4x2Storage"), {"data/0": data}))


def test_torchscript_archive_is_named():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m/constants.pkl", b"")
        zf.writestr("m/code/__torch__.py", b"")
    buf.seek(0)
    with pytest.raises(NotImplementedError, match="TorchScript"):
        ember.load(buf)


def test_full_torch_module_pickle_is_refused():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    data = buf.getvalue()
    with pytest.raises(pickle.UnpicklingError, match="torch.nn.modules.linear.Linear"):
        ember.load(io.BytesIO(data))
    # weights_only=False (trusted files): PyTorch's classes map to ember's at the same path
    m = ember.load(io.BytesIO(data), weights_only=False)
    assert type(m) is ember.nn.Linear
    # a PyTorch class ember has no counterpart for is refused by name
    pkl = b"\x80\x02ctorch.nn.modules.nowhere\nGadget\n)\x81."
    with pytest.raises(NotImplementedError, match="torch.nn.modules.nowhere.Gadget"):
        ember.load(_archive(pkl, {}), weights_only=False)


def test_cuda_checkpoint_location_needs_map_location():
    pkl = _tensor_pickle().replace(b"Vcpu\n", b"Vcuda:0\n")
    data = np.arange(4, dtype=np.float32).tobytes()
    with pytest.raises(RuntimeError, match="map_location='cpu'"):
        ember.load(_archive(pkl, {"data/0": data}))
    t = ember.load(_archive(pkl, {"data/0": data}), map_location="cpu")
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0]
    t = ember.load(_archive(pkl, {"data/0": data}), map_location={"cuda:0": "cpu"})
    assert t.sum().item() == 6.0


def test_bad_arguments():
    with pytest.raises(TypeError):
        ember.load(42)
    with pytest.raises(TypeError):
        ember.load(io.BytesIO(_good_checkpoint()), map_location=3.5)


@pytest.mark.parametrize("target", [b"torch._utils\n_rebuild_tensor_v2", b"torch\nFloatStorage",
                                    b"collections\nOrderedDict", b"torch\nTensor"])
def test_build_cannot_rewrite_allowed_globals(target):
    # GLOBAL, then BUILD with (None, {"__defaults__": ...}) would patch it for later loads.
    evil = (b"\x80\x02c" + target + b"\nN}V__defaults__\n(I1\ntsV__doc__\nVx\ns\x86b.")
    before = S._rebuild_tensor_v2.__defaults__
    with pytest.raises(pickle.UnpicklingError, match="does not allow"):
        ember.load(_archive(evil))
    assert S._rebuild_tensor_v2.__defaults__ == before
    data = np.arange(4, dtype=np.float32).tobytes()
    assert ember.load(_archive(_tensor_pickle(), {"data/0": data})).tolist() == [0, 1, 2, 3]


def test_build_cannot_replace_tensor_internals():
    data = np.arange(4, dtype=np.float32).tobytes()
    pkl = _tensor_pickle()[:-1] + b"}V_data\nVevil\nsb."
    with pytest.raises(pickle.UnpicklingError, match="refusing to set attribute '_data'"):
        ember.load(_archive(pkl, {"data/0": data}))
    ok = _tensor_pickle()[:-1] + b"}Vtag\nI7\nsb."
    assert ember.load(_archive(ok, {"data/0": data})).tag == 7


def test_fuzzed_checkpoints_fail_cleanly():
    """Random damage (with the pickle's checksum fixed up, so the unpickler sees it) only
    ever raises ember.load's documented errors."""
    import random
    good = _good_checkpoint()
    zf = zipfile.ZipFile(io.BytesIO(good))
    pkl = zf.read("archive/data.pkl")
    rng = random.Random(1234)
    for _ in range(300):
        mode = rng.random()
        if mode < 0.5:
            bad = bytearray(pkl)
            for _ in range(rng.randint(1, 3)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            records = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()
                       if not n.endswith(("data.pkl", "byteorder", "version"))}
            data = _archive(bytes(bad), records).getvalue()
        elif mode < 0.8:
            bad = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            data = bytes(bad)
        else:
            data = good[:rng.randrange(len(good))]
        try:
            ember.load(io.BytesIO(data))
        except (RuntimeError, pickle.UnpicklingError, NotImplementedError):
            pass
