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
    with pytest.raises(NotImplementedError, match=r"no C lowering for Cumsum .*test_aot.py.*cumsum"):
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


# ---------------------------------------------------------------------- layers and ops
class _ConvPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, dilation=2, groups=2, padding=2, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, groups=8, padding=1)
        self.pw = nn.Conv2d(8, 8, 1)
        self.same = nn.Conv2d(8, 4, 4, padding="same")
        self.bn = nn.BatchNorm2d(8)
        self.c1d = nn.Conv1d(4, 5, 3, padding=1, stride=2)

    def forward(self, x):
        y = self.c2(nn.functional.hardswish(self.c1(x)))
        y = nn.functional.relu6(self.bn(self.dw(y)))
        y = self.same(nn.functional.silu(self.pw(y)))
        a = nn.functional.max_pool2d(y, 3, stride=2, padding=1)
        b = nn.functional.avg_pool2d(y, 3, stride=2, padding=1, count_include_pad=False)
        c = nn.functional.adaptive_avg_pool2d(y, (3, 2))
        d = nn.functional.max_pool2d(y, 2, ceil_mode=True)
        e = self.c1d(x.mean(2))
        f = nn.functional.avg_pool1d(nn.functional.max_pool1d(e, 2), 2)
        g = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        h = nn.functional.interpolate(y, size=(5, 4), mode="bilinear", align_corners=False)
        return (a.flatten(1), b.sum((2, 3)), c, d.amax(-1), f,
                nn.functional.adaptive_avg_pool2d(y, 1).flatten(1), g, h)


class _Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 12)
        self.ln = nn.LayerNorm(12)
        self.bn = nn.BatchNorm1d(12)

    def forward(self, x):
        h = self.ln(self.lin(x))
        F = nn.functional
        outs = [F.gelu(h), F.gelu(h, approximate="tanh"), ember.tanh(h), ember.sigmoid(h),
                F.silu(h), F.hardswish(h), F.elu(h), F.leaky_relu(h, 0.2), F.softplus(h),
                F.hardsigmoid(h), F.relu(h), h.clamp(min=-0.5), h.clamp(max=0.5),
                F.softmax(h, dim=-1), F.log_softmax(h, dim=0), ember.exp(h * 0.1),
                ember.sqrt(h.abs() + 1), ember.rsqrt(h * h + 1), h.pow(2), h.pow(3),
                ember.maximum(h, -h), ember.minimum(h, h * 2), self.bn(h), h / 3 - 1]
        return ember.stack(outs, dim=1)


class _Shapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(ember.randn(5, 7))

    def forward(self, x, mask):
        # x: (B, 4, 5), mask: (B, 4) bool
        y = x.permute(0, 2, 1) @ x                        # (B, 5, 5) bmm
        z = x @ self.w                                     # (B, 4, 7) batch @ matrix
        s = ember.cat([z[:, 1:3, ::2], z[:, :2, 1:5:3]], dim=2)
        t = x.transpose(1, 2).reshape(x.shape[0], -1)
        m = x.masked_fill(mask.unsqueeze(-1), -1.0)
        w = ember.where(mask, x.sum(-1), ember.zeros(()))
        a, b = x.split([2, 2], dim=1)
        e = x[:, None, 0, :].expand(x.shape[0], 3, 5)
        sel = x.index_select(2, ember.tensor([4, 0, 2, 2]))
        mx, idx = y.max(dim=1)
        return (y, s, t, m, w, a * b, e, mx, idx, x.argmax(-1), z.mean(1, keepdim=True),
                ember.tril(y, 0), y.triu(1), x.unbind(1)[2], x.narrow(1, 1, 2), sel)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 24)

    def forward(self, x, keep):
        B, T, _ = x.shape
        q, k, v = self.proj(x).view(B, T, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
        F = nn.functional
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        b = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return a + b


class _Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)

    def forward(self, tokens):
        out, (h, c) = self.lstm(self.emb(tokens))
        return out, h.permute(1, 0, 2), c.sum(0)


def _layer_cases():
    r = ember.randn
    mask = ember.tensor([[False, True, False, False], [True, False, False, True],
                         [False, False, True, False]])
    keep = ember.ones(3, 6, dtype=ember.bool)
    keep[0, 4:] = False
    return {
        "conv_pool": (_ConvPool(), (r(3, 4, 13, 11),)),
        "activations": (_Activations(), (r(3, 6),)),
        "shapes": (_Shapes(), (r(3, 4, 5), mask)),
        "attention": (_Attention(), (r(3, 6, 8), keep)),
        "recurrent": (_Recurrent(), (ember.randint(0, 20, (3, 7)),)),
    }


@pytest.mark.parametrize("name", ["conv_pool", "activations", "shapes", "attention",
                                  "recurrent"])
def test_layers_match_eager(name, tmp_path):
    ember.manual_seed(3)
    model, args = _layer_cases()[name]
    model.eval()
    _randomise_batchnorm(model)
    import inspect
    params = list(inspect.signature(model.forward).parameters)[:len(args)]
    ep = export(model, args, dynamic_shapes={p: {0: Dim("batch", min=1)} for p in params})
    aot_compile(ep, str(tmp_path))
    lib = aot_load(str(tmp_path))
    for b in (3, 2, 5):
        inputs = args if b == 3 else _with_batch(args, b)
        with ember.no_grad():
            ref = model(*inputs)
        got = lib(*inputs)
        refs = ref if isinstance(ref, tuple) else (ref,)
        gots = got if isinstance(got, tuple) else (got,)
        assert len(gots) == len(refs)
        for g, rr in zip(gots, refs):
            _close(g, rr)


def test_aoti_package_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    import ember._inductor as inductor
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 2)).eval()
    x = ember.randn(4, 5)
    ep = export(model, (x,), dynamic_shapes={"input": {0: Dim("batch", min=1)}})
    path = inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "m.pt2"))
    assert path == str(tmp_path / "m.pt2") and os.path.getsize(path) > 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    compiled = inductor.aoti_load_package(path)
    for b in (4, 1):
        xb = ember.randn(b, 5)
        with ember.no_grad():
            _close(compiled(xb), model(xb))
    with pytest.raises(ValueError, match=".pt2"):
        inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "m.zip"))
    bad = tmp_path / "bad.pt2"
    import zipfile
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("model/other.txt", "x")
    with pytest.raises(RuntimeError, match="not an ember AOT package"):
        inductor.aoti_load_package(str(bad))


def test_blas_option_links_the_named_library(tmp_path):
    ep = export(nn.Linear(3, 2).eval(), (ember.randn(2, 3),))
    # a CBLAS that does not exist: the build fails with the compiler's message, no library
    with pytest.raises(RuntimeError, match="C compiler failed"):
        aot_compile(ep, str(tmp_path), blas="ember_no_such_blas")
    assert not os.path.exists(tmp_path / "libember_model.so")
    from ember.export._aot import build_flags
    flags, libs = build_flags("openblas", march_native=True)
    assert "-DEMBER_USE_CBLAS" in flags and "-march=native" in flags
    assert libs == ["-lopenblas", "-lm"]
