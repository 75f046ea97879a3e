"""ember.export.aot_compile / aot_load: the model zoo through the C library vs ember eager,
and the C API's answers to bad input (through ctypes), never a crash."""

import ctypes
import os
import shutil
import sys

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.compiler._codegen import c_compiler
from ember.export import Dim, aot_compile, aot_load, export

pytestmark = pytest.mark.skipif(c_compiler() is None, reason="no C compiler")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "onnx"))
import _zoo  # noqa: E402

ZOO = {z[0]: z for z in _zoo.zoo()}


def _randomise_batchnorm(model):
    """Running statistics and affine parameters away from their initial values, so that the
    folded eval-mode batch norm is really checked (and outputs are not near zero)."""
    g = np.random.default_rng(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(ember.tensor(g.normal(0, 0.1, c).astype(np.float32)))
            m.running_var.copy_(ember.tensor(g.uniform(0.5, 1.5, c).astype(np.float32)))
            with ember.no_grad():
                m.weight.copy_(ember.tensor(g.uniform(0.5, 1.5, c).astype(np.float32)))
                m.bias.copy_(ember.tensor(g.normal(0, 0.1, c).astype(np.float32)))


def _with_batch(args, b):
    """The example inputs at batch size ``b`` (new random floats; ids and masks repeated)."""
    out = []
    for a in args:
        if a.dtype == ember.float32:
            out.append(ember.randn(b, *a.shape[1:]))
        else:
            idx = np.arange(b) % a.shape[0]
            out.append(ember.from_numpy(np.ascontiguousarray(a.numpy()[idx])))
    return tuple(out)


def _close(got, ref):
    ref = ref.numpy()
    got = got.numpy()
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(np.abs(ref).max(), 1e-3))


_BUILT = {}


def _built(name, tmp_path_factory):
    """Each zoo model exported with a dynamic batch and compiled once per session."""
    if name not in _BUILT:
        _, model, args, _, _ = ZOO[name]
        model.eval()
        _randomise_batchnorm(model)
        import inspect
        params = list(inspect.signature(model.forward).parameters)[:len(args)]
        batch = Dim("batch", min=1, max=64)
        ep = export(model, args, dynamic_shapes={p: {0: batch} for p in params})
        out = str(tmp_path_factory.mktemp(f"aot_{name}"))
        aot_compile(ep, out)
        _BUILT[name] = (model, args, out, aot_load(out))
    return _BUILT[name]


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_matches_eager_at_two_batch_sizes(name, tmp_path_factory):
    model, args, out, lib = _built(name, tmp_path_factory)
    for b in (args[0].shape[0], 5):
        inputs = _with_batch(args, b) if b != args[0].shape[0] else args
        with ember.no_grad():
            ref = model(*inputs)
        _close(lib(*inputs), ref)
    for f in ("ember_model.c", "ember_model.h", "ember_model.weights", "libember_model.so"):
        assert os.path.exists(os.path.join(out, f))


def test_library_needs_only_libc_and_libm(tmp_path_factory):
    _, _, out, _ = _built("lenet", tmp_path_factory)
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd")
    import subprocess
    deps = subprocess.run([ldd, os.path.join(out, "libember_model.so")], capture_output=True,
                          text=True, timeout=30).stdout
    names = {line.split()[0] for line in deps.strip().splitlines()}
    allowed = ("libc.so", "libm.so", "linux-vdso", "ld-linux", "/lib", "linux-gate")
    assert all(n.startswith(allowed) for n in names), names


# ---------------------------------------------------------------------- the C API, bad input
class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lin = nn.Linear(4, 3)

    def forward(self, ids, x):
        return self.lin(self.emb(ids)).sum(1) + x, x * 2


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ember.manual_seed(0)
    m = _Small().eval()
    ids = ember.randint(0, 10, (3, 5))
    x = ember.randn(3, 3)
    ep = export(m, (ids, x), dynamic_shapes={"ids": {0: Dim("b", min=1, max=8)},
                                             "x": {0: Dim("b", min=1, max=8)}})
    out = str(tmp_path_factory.mktemp("aot_small"))
    aot_compile(ep, out)
    return m, out, aot_load(out)


def test_small_tuple_output_and_int_inputs(small):
    m, _, lib = small
    ids, x = ember.randint(0, 10, (6, 5)), ember.randn(6, 3)
    got = lib(ids, x)
    with ember.no_grad():
        ref = m(ids, x)
    assert isinstance(got, tuple) and len(got) == 2
    for g, r in zip(got, ref):
        _close(g, r)


def _codes():
    from ember.export._aot import ERRORS
    return {v: k for k, v in ERRORS.items()}


def test_bad_shapes_ranks_counts_and_capacity(small):
    _, _, lib = small
    E = _codes()
    ids = np.zeros((2, 5), np.float32)
    x = np.zeros((2, 3), np.float32)
    assert lib.run_raw([ids, x])[0] == E["EMBER_OK"]
    code, msg, _ = lib.run_raw([ids, np.zeros((2, 4), np.float32)])
    assert code == E["EMBER_ERR_SHAPE"] and "input 1: dimension 1 is 4, expected 3" in msg
    code, msg, _ = lib.run_raw([ids, np.zeros((3, 3), np.float32)])  # batch disagrees
    assert code == E["EMBER_ERR_SHAPE"] and "input 1" in msg
    code, msg, _ = lib.run_raw([ids, np.zeros((2, 3, 1), np.float32)])
    assert code == E["EMBER_ERR_RANK"] and "expected rank 2, got 3" in msg
    code, msg, _ = lib.run_raw([ids])
    assert code == E["EMBER_ERR_COUNT"] and "expected 2 inputs, got 1" in msg
    code, msg, _ = lib.run_raw([np.zeros((9, 5), np.float32), np.zeros((9, 3), np.float32)])
    assert code == E["EMBER_ERR_SHAPE"] and "outside [1, 8]" in msg
    code, msg, _ = lib.run_raw([ids, x], out_sizes=[5, 6])
    assert code == E["EMBER_ERR_CAPACITY"] and "output 0: the buffer holds 5 floats" in msg
    code, msg, _ = lib.run_raw([np.full((2, 5), 10.0, np.float32), x])
    assert code == E["EMBER_ERR_VALUE"] and "embedding" in msg
    code, msg, _ = lib.run_raw([np.full((2, 5), 1.5, np.float32), x])
    assert code == E["EMBER_ERR_VALUE"]
    # the Python wrapper raises with the message
    with pytest.raises(RuntimeError, match="EMBER_ERR_SHAPE"):
        lib(ember.zeros(2, 5), ember.zeros(2, 4))
    # a success clears the last error
    assert lib.run_raw([ids, x])[:2] == (0, "")


def test_null_arguments(small):
    _, _, lib = small
    E = _codes()
    L = lib.lib
    h = lib.handle
    x = np.zeros((2, 3), np.float32)
    shape = np.array([2, 3], np.int64)
    out = np.zeros(6, np.float32)
    vp = ctypes.c_void_p
    ins = (vp * 2)(None, x.ctypes.data)
    shapes = (vp * 2)(shape.ctypes.data, shape.ctypes.data)
    ranks = (ctypes.c_int * 2)(2, 2)
    outs = (vp * 2)(out.ctypes.data, out.ctypes.data)
    sizes = np.array([6, 6], np.int64)
    assert L.ember_model_run(None, 2, ins, shapes, ranks, 2, outs, sizes.ctypes.data) == \
        E["EMBER_ERR_NULL"]
    assert L.ember_model_run(h, 2, ins, shapes, ranks, 2, outs, sizes.ctypes.data) == \
        E["EMBER_ERR_NULL"]
    assert "input 0: NULL buffer" in L.ember_model_last_error(h).decode()
    assert L.ember_model_run(h, 2, None, None, None, 2, None, None) == E["EMBER_ERR_NULL"]
    outs0 = (vp * 2)(None, out.ctypes.data)
    ids = np.zeros((2, 5), np.float32)
    shape0 = np.array([2, 5], np.int64)
    ins = (vp * 2)(ids.ctypes.data, x.ctypes.data)
    shapes = (vp * 2)(shape0.ctypes.data, shape.ctypes.data)
    assert L.ember_model_run(h, 2, ins, shapes, ranks, 2, outs0, sizes.ctypes.data) == \
        E["EMBER_ERR_NULL"]
    assert "output 0: NULL buffer" in L.ember_model_last_error(h).decode()
    # queries
    L.ember_model_num_inputs.argtypes = [vp]
    L.ember_model_input_rank.argtypes = [vp, ctypes.c_int]
    assert L.ember_model_num_inputs(None) == -1 and L.ember_model_num_inputs(h) == 2
    assert L.ember_model_input_rank(h, 7) == -1
    s = (ctypes.c_int64 * 2)()
    assert L.ember_model_output_shape(h, 5, 2, s) == E["EMBER_ERR_INDEX"]
    assert L.ember_model_output_shape(h, 0, 0, s) == 0 and list(s) == [-1, 3]
    assert L.ember_model_output_shape(h, 0, 4, s) == 0 and list(s) == [4, 3]
    assert L.ember_model_output_shape(h, 0, 4, None) == E["EMBER_ERR_NULL"]
    L.ember_model_destroy(None)  # allowed


def _create(lib, path):
    L = lib.lib
    h = L.ember_model_create(None if path is None else path.encode())
    msg = L.ember_last_create_error().decode()
    if h:
        L.ember_model_destroy(h)
    return h, msg


def test_weights_file_checked(small, tmp_path):
    _, out, lib = small
    good = open(os.path.join(out, "ember_model.weights"), "rb").read()
    assert _create(lib, os.path.join(out, "ember_model.weights"))[0]
    h, msg = _create(lib, str(tmp_path / "missing.weights"))
    assert not h and "cannot open" in msg
    h, msg = _create(lib, None)
    assert not h and "NULL" in msg

    def variant(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return _create(lib, str(p))
    h, msg = variant("magic", b"NOTEMBER" + good[8:])
    assert not h and "bad magic" in msg
    h, msg = variant("version", good[:8] + b"\x07\x00\x00\x00" + good[12:])
    assert not h and "version" in msg
    h, msg = variant("trunc", good[:-7])
    assert not h and "truncated" in msg
    h, msg = variant("extra", good + b"\x00")
    assert not h and "trailing" in msg
    corrupt = bytearray(good)
    corrupt[-3] ^= 0x40
    h, msg = variant("corrupt", bytes(corrupt))
    assert not h and "checksum" in msg
    h, msg = variant("empty", b"")
    assert not h and "magic" in msg


def test_weights_of_another_model_refused(small, tmp_path_factory):
    _, _, lib = small
    _, _, other, _ = _built("mlp", tmp_path_factory)
    h, msg = _create(lib, os.path.join(other, "ember_model.weights"))
    assert not h and ("number of tensors" in msg or "size" in msg)


# ---------------------------------------------------------------------- static shapes, errors
def test_static_program_checks_shapes(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()
    x = ember.randn(2, 2, 9, 9)
    aot_compile(export(model, (x,)), str(tmp_path))
    lib = aot_load(str(tmp_path))
    with ember.no_grad():
        _close(lib(x), model(x))
    code, msg, _ = lib.run_raw([np.zeros((3, 2, 9, 9), np.float32)])
    assert code == 4 and "input 0: dimension 0 is 3, expected 2" in msg


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_float64_program_refused(dtype, tmp_path):
    model = nn.Linear(3, 2).to(dtype).eval()
    ep = export(model, (ember.randn(2, 3, dtype=dtype),))
    if dtype == ember.float64:
        with pytest.raises(NotImplementedError, match="float32"):
            aot_compile(ep, str(tmp_path))
    else:
        aot_compile(ep, str(tmp_path))


class _Cumsum(nn.Module):
    def forward(self, x):
        return x.cumsum(1) * 2


def test_op_without_lowering_names_op_and_line(tmp_path):
    ep = export(_Cumsum(), (ember.randn(2, 3),))
    with pytest.raises(NotImplementedError, match=r"no C lowering for Cumsum .*cumsum"):
        aot_compile(ep, str(tmp_path))
    assert not os.path.exists(tmp_path / "libember_model.so")


def test_second_dynamic_dim_refused(tmp_path):
    model = _zoo.GPTBlock().eval()
    x = ember.randn(2, 5, 32)
    ep = export(model, (x,), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("t")}})
    with pytest.raises(NotImplementedError, match="one"):
        aot_compile(ep, str(tmp_path))


# ---------------------------------------------------------------------- examples/deploy_c
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "examples", "deploy_c")


def _run(cmd, **kw):
    import subprocess
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout


@pytest.fixture(scope="module")
def deploy_build(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("deploy_c"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    _run([sys.executable, os.path.join(DEPLOY, "export_model.py"), out, "--batch", "3"],
         env=env)
    return out


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_deploy_example_prints_embers_outputs(lang, deploy_build):
    out = deploy_build
    if lang == "c":
        cc, src, extra = c_compiler(), "main.c", ["-lm"]
    else:
        cc, src, extra = shutil.which("c++") or shutil.which("g++"), "main.cpp", ["-std=c++17"]
    if cc is None:
        pytest.skip(f"no {lang} compiler")
    exe = os.path.join(out, f"main_{'c' if lang == 'c' else 'cpp'}")
    _run([cc, "-Wall", "-Werror", os.path.join(DEPLOY, src), "-I", out, "-L", out,
          "-lember_model", *extra, f"-Wl,-rpath,{out}", "-o", exe])
    got = np.array([float(v) for v in _run([exe, out]).split()], np.float32)
    ref = np.loadtxt(os.path.join(out, "reference.txt"), dtype=np.float32)
    assert got.shape == ref.shape == (3 * 10,)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # a missing weights file is reported, not a crash
    import subprocess
    r = subprocess.run([exe, os.path.join(out, "nowhere")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "cannot open the weights file" in r.stderr
