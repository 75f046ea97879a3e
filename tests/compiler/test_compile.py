"""ember.compile: compiled == eager (and == PyTorch), guards, fallbacks, kernels, cache."""

import copy
import os
import stat
import warnings

import numpy as np
import pytest

import ember
import ember._dynamo
import ember.compiler
from ember import nn
from ember.compiler import _codegen
from tests.export.models import MLP, GPTBlock, LeNet

TOL = {ember.float32: 1e-5, ember.float64: 1e-10}
BACKENDS = ["eager", "aot_eager", "numpy", "inductor"]


def gelu_chain(x):
    return 0.5 * x * (1 + ember.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def mixed(x, y):
    a = ember.where(x > y, ember.exp(-x), ember.log(y.abs() + 1))
    return (a - ember.relu(y).sigmoid() / 2) * x.neg() + ember.tanh(y) ** 2


def _close(a, b, tol):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_elementwise_chains_match_eager_and_pytorch(backend, dtype):
    torch = pytest.importorskip("torch")
    ember.manual_seed(0)
    x, y = ember.randn(64, 33, dtype=dtype), ember.randn(64, 33, dtype=dtype)
    cg, cm = ember.compile(gelu_chain, backend=backend), ember.compile(mixed, backend=backend)
    for _ in range(2):  # first call: the capture run; second: the replay
        _close(cg(x), gelu_chain(x), TOL[dtype])
        _close(cm(x, y), mixed(x, y), TOL[dtype])
    tx = torch.from_numpy(x.numpy())
    ref = torch.nn.functional.gelu(tx, approximate="tanh").numpy()
    np.testing.assert_allclose(cg(x).numpy(), ref, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


def test_inductor_fuses_chain_into_one_kernel():
    x = ember.randn(100)
    c = ember.compile(gelu_chain)
    c(x)
    calls = [n for n in c.graphs[0].nodes if n.op == "call_function"]
    assert len(calls) == 1 and isinstance(calls[0].target, _codegen.FusedKernel)
    if _codegen.c_compiler() is not None:
        assert calls[0].target.backend == "c"
        assert "tanhf(" in calls[0].target.source


def test_noncontiguous_input_is_handled():
    x = ember.randn(20, 30).t()
    c = ember.compile(gelu_chain)
    c(x)
    _close(c(x), gelu_chain(x), 1e-5)


def _models():
    return {"mlp": (lambda: MLP(8, 16, 4), (5, 8)), "lenet": (LeNet, (2, 1, 28, 28)),
            "gpt": (lambda: GPTBlock(16, 4, 32), (2, 10, 16))}


@pytest.mark.parametrize("name", ["mlp", "lenet", "gpt"])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("grad", [True, False])
def test_models_forward_compiled_equals_eager(name, dtype, grad):
    make, shape = _models()[name]
    ember.manual_seed(1)
    m = make().to(dtype)
    cm = ember.compile(m)
    x = ember.randn(*shape, dtype=dtype)
    with ember.set_grad_enabled(grad):
        for _ in range(2):
            out = cm(x)
            _close(out, m(x), TOL[dtype])
            assert out.requires_grad == grad
    if grad:  # backward outside the compiled forward reaches the parameters
        cm(x).sum().backward()
        g = [p.grad.clone() for p in m.parameters()]
        m.zero_grad()
        m(x).sum().backward()
        for a, b in zip(g, m.parameters()):
            _close(a, b.grad, TOL[dtype])


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_training_step_compiled_matches_eager(backend, opt_name, dtype):
    ember.manual_seed(2)
    ref_model = MLP(8, 16, 4).to(dtype)
    model = copy.deepcopy(ref_model)

    def make_opt(m):
        if opt_name == "sgd":
            return ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        return ember.optim.Adam(m.parameters(), lr=0.01)
    ref_opt, opt = make_opt(ref_model), make_opt(model)

    def step_of(m, o):
        def train_step(x, y):
            loss = nn.functional.mse_loss(m(x), y)
            loss.backward()
            o.step()
            o.zero_grad()
            return loss
        return train_step
    eager_step = step_of(ref_model, ref_opt)
    compiled = ember.compile(step_of(model, opt), backend=backend)
    xs = [ember.randn(6, 8, dtype=dtype) for _ in range(6)]
    ys = [ember.randn(6, 4, dtype=dtype) for _ in range(6)]
    for x, y in zip(xs, ys):
        _close(compiled(x, y), eager_step(x, y), TOL[dtype])
    assert len(compiled.entries) == 1 and not compiled.breaks
    for a, b in zip(model.parameters(), ref_model.parameters()):
        _close(a, b, TOL[dtype])


# ---------------------------------------------------------------------- guards
def test_changed_shape_dtype_and_requires_grad_recompile():
    c = ember.compile(gelu_chain, backend="aot_eager")
    x = ember.randn(4, 5)
    c(x)
    c(x)
    assert len(c.entries) == 1
    for v in (ember.randn(3, 5), x.double(), x.clone().requires_grad_()):
        _close(c(v), gelu_chain(v), 1e-5)
    assert len(c.entries) == 4
    assert c(x.clone().requires_grad_()).requires_grad


def test_parameter_requires_grad_toggled_recompiles():
    m = MLP()
    cm = ember.compile(m)
    x = ember.randn(2, 8)
    assert cm(x).requires_grad
    for p in m.parameters():
        p.requires_grad_(False)
    out = cm(x)
    assert not out.requires_grad and len(cm._compiled.entries) == 2


def test_train_eval_switch_and_dropout_distribution():
    ember.manual_seed(3)
    m = nn.Sequential(nn.Linear(50, 400), nn.Dropout(0.5))
    cm = ember.compile(m)
    x = ember.randn(20, 50)
    outs = [cm(x) for _ in range(3)]
    zero = [float((o == 0).float().mean()) for o in outs]
    assert all(0.45 < z < 0.55 for z in zero)  # p = 0.5 of 8000 values
    assert not ember.equal(outs[1], outs[2])  # a fresh mask per replay
    cm.eval()
    _close(cm(x), m(x), 1e-6)
    assert len(cm._compiled.entries) == 2
    # same seed, same draws: compiled replay == eager
    cm.train()
    ember.manual_seed(9)
    a = cm(x)
    ember.manual_seed(9)
    _close(a, m(x), 1e-6)


def test_batchnorm_running_stats_are_updated():
    ember.manual_seed(4)
    ref = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    m = copy.deepcopy(ref)
    cm = ember.compile(m)
    for _ in range(3):
        x = ember.randn(2, 3, 8, 8)
        _close(cm(x), ref(x), 1e-5)
    _close(m[1].running_mean, ref[1].running_mean, 1e-6)
    _close(m[1].running_var, ref[1].running_var, 1e-6)


GLOBAL_SCALE = 2.0


def scaled(x):
    return x * GLOBAL_SCALE


def test_mutated_python_global_recompiles():
    global GLOBAL_SCALE
    c = ember.compile(scaled, backend="aot_eager")
    x = ember.ones(3)
    assert c(x).tolist() == [2.0] * 3
    GLOBAL_SCALE = 5.0
    try:
        assert c(x).tolist() == [5.0] * 3
    finally:
        GLOBAL_SCALE = 2.0


def test_inplace_on_input_and_view_and_aliased_output():
    def f(x):
        x.mul_(2)
        x[0].add_(1)
        return x, x[1]
    c = ember.compile(f)
    for _ in range(2):
        a, b = ember.ones(3, 2), ember.ones(3, 2)
        ra, rv = c(a)
        f(b)
        _close(a, b, 0)
        assert ra is a
        _close(rv, b[1], 0)


def test_list_and_dict_inputs():
    def f(xs, d):
        return xs[0] * d["w"] + xs[1]
    c = ember.compile(f)
    xs, d = [ember.randn(3), ember.randn(3)], {"w": ember.randn(3)}
    for _ in range(2):
        _close(c(xs, d), f(xs, d), 1e-6)


def test_no_grad_inside():
    lin = nn.Linear(3, 3)

    def f(x):
        with ember.no_grad():
            y = lin(x)
        return y * 2, lin(x)
    c = ember.compile(f)
    for _ in range(2):
        a, b = c(ember.randn(2, 3))
        assert not a.requires_grad and b.requires_grad


# ---------------------------------------------------------------------- fallbacks
def item_inside(x):
    s = x.sum().item()
    return x * s


def if_inside(x):
    if x.sum() > 0:
        return x * 2
    return x * -1


@pytest.mark.parametrize("fn", [item_inside, if_inside])
def test_data_dependent_read_splits_the_graph_and_is_explained(fn):
    c = ember.compile(fn)
    for v in (ember.ones(3), -ember.ones(3), ember.randn(3), -ember.ones(3)):
        _close(c(v), fn(v), 0)
    assert not c.eager_only and c.entries and all(len(e.breaks) == 1 for e in c.entries)
    ex = ember._dynamo.explain(fn)(ember.ones(3))
    assert ex.graph_break_count == 1 and ex.graph_count == 2
    assert "graph break" in ex.break_reasons[0] and "line" in ex.break_reasons[0]
    ok = ember._dynamo.explain(gelu_chain)(ember.ones(3))
    assert ok.graph_count == 1 and ok.graph_break_count == 0 and "Graph Count: 1" in str(ok)


def test_fallback_restores_state_touched_by_the_capture():
    ember.manual_seed(5)
    ref = MLP()
    m = copy.deepcopy(ref)
    opt, ref_opt = (ember.optim.SGD(x.parameters(), lr=0.1) for x in (m, ref))

    def step_of(model, o):
        def step(x):
            loss = model(x).sum()
            loss.backward()
            o.step()
            o.zero_grad()
            return loss.item()  # read after the update: the capture must be undone
        return step
    c, e = ember.compile(step_of(m, opt)), step_of(ref, ref_opt)
    for _ in range(3):
        x = ember.randn(2, 8)
        assert abs(c(x) - e(x)) < 1e-6
    for a, b in zip(m.parameters(), ref.parameters()):
        _close(a, b, 1e-6)


def test_fullgraph_raises_naming_the_line():
    c = ember.compile(item_inside, fullgraph=True)
    with pytest.raises(ember._dynamo.exc.Unsupported, match="s = x.sum"):
        c(ember.ones(3))


def test_exception_inside_propagates_and_next_call_works():
    def f(x, fail):
        y = x * 2
        if fail:
            raise ValueError("boom")
        return y
    c = ember.compile(f)
    with pytest.raises(ValueError, match="boom"):
        c(ember.ones(2), True)
    _close(c(ember.ones(2), False), ember.full((2,), 2.0), 0)
    _close(c(ember.ones(2), False), ember.full((2,), 2.0), 0)


def test_recompile_limit_warns_once_then_runs_eagerly(monkeypatch):
    monkeypatch.setattr(ember._dynamo.config, "cache_size_limit", 2)
    c = ember.compile(gelu_chain, backend="aot_eager")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for n in range(1, 6):
            x = ember.randn(n)
            _close(c(x), gelu_chain(x), 1e-6)
    assert len(c.entries) == 2
    assert sum("recompile limit" in str(m.message) for m in w) == 1


def test_disable_allow_in_graph_is_compiling():
    seen = []

    @ember.compiler.disable
    def helper(x):
        return x + 1

    def f(x):
        seen.append(ember.compiler.is_compiling())
        return helper(x) * 2
    c = ember.compile(f)
    _close(c(ember.ones(2)), ember.full((2,), 4.0), 0)
    assert c.eager_only and "disable" in c.breaks[0] and seen[0] is True

    @ember.compiler.allow_in_graph
    def opaque(x):
        return x * 3

    def g(x):
        return opaque(x) + 1
    cg = ember.compile(g, backend="aot_eager")
    for _ in range(2):
        _close(cg(ember.ones(2)), ember.full((2,), 4.0), 0)
    assert any(n.target is opaque.__wrapped__ for n in cg.graphs[0].nodes)
    assert not ember.compiler.is_compiling()
    ember.compiler.cudagraph_mark_step_begin()
    assert ember.compile(f, disable=True) is f


def test_decorator_module_compile_and_bad_arguments():
    @ember.compile(backend="aot_eager")
    def f(x):
        return x * 2
    _close(f(ember.ones(2)), ember.full((2,), 2.0), 0)

    @ember.compile
    def g(x):
        return x + 1
    _close(g(ember.ones(2)), ember.full((2,), 2.0), 0)
    m = MLP()
    x = ember.randn(3, 8)
    ref = m(x)
    m.compile()
    _close(m(x), ref, 0)
    _close(m(x), ref, 0)
    with pytest.raises(ValueError, match="unknown backend"):
        ember.compile(f, backend="nope")
    with pytest.raises(RuntimeError, match="Unrecognized mode"):
        ember.compile(f, mode="fast")
    ember.compile(f, mode="max-autotune")


def test_logs_print_graph_and_source(monkeypatch, capfd):
    monkeypatch.setenv("EMBER_LOGS", "graph_code")
    ember.compile(gelu_chain)(ember.ones(4))
    err = capfd.readouterr().err
    assert "captured graph of gelu_chain" in err and "Tanh.apply" in err
    assert "def kernel" in err or "void kernel" in err


# ---------------------------------------------------------------------- kernels and cache
def test_no_c_compiler_uses_numpy_kernels(monkeypatch):
    monkeypatch.setattr(_codegen, "c_compiler", lambda: None)
    c = ember.compile(mixed)
    x, y = ember.randn(7, 3), ember.randn(7, 3)
    for _ in range(2):
        _close(c(x, y), mixed(x, y), 1e-5)
    k = [n.target for n in c.graphs[0].nodes if isinstance(n.target, _codegen.FusedKernel)]
    assert k and all(t.backend == "numpy" for t in k)


needs_cc = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")


def _fresh_kernel(tag):
    """A C source nobody compiled yet in this session (a distinct constant)."""
    def f(x):
        return ember.tanh(x * tag) + 1
    return f


_SRC = """#include <stdint.h>
void kernel(int64_t n, const double *in0, double *out) {
    for (int64_t i = 0; i < n; i++) out[i] = in0[i] * %s;
}
"""


def _call(fn, x):
    import ctypes
    out = np.empty_like(x)
    fn(ctypes.c_int64(x.size), ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(out.ctypes.data))
    return out


@needs_cc
def test_corrupt_cache_entry_recompiles(tmp_path, monkeypatch):
    # a library never loaded in this process (dlopen would reuse a loaded one by name)
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    src = _SRC % f"{np.random.default_rng().integers(1 << 40)}.0"
    path = _codegen.cache_path(src)
    with open(path, "wb") as f:
        f.write(b"not a shared library")
    x = np.arange(4.0)
    scale = float(src.split("* ")[1].split(";")[0])
    np.testing.assert_array_equal(_call(_codegen.load_kernel(src), x), x * scale)
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"  # replaced atomically by a good library


@needs_cc
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
def test_read_only_cache_directory_compiles_elsewhere(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("EMBER_CACHE_DIR", str(ro))
    try:
        f = _fresh_kernel(2.5)
        c = ember.compile(f)
        x = ember.randn(6)
        _close(c(x), f(x), 1e-6)
        _close(c(x), f(x), 1e-6)
        assert os.listdir(ro) == []
    finally:
        ro.chmod(stat.S_IRWXU)


@needs_cc
def test_unusable_cache_directory_compiles_elsewhere(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    f = _fresh_kernel(3.75)
    c = ember.compile(f)
    x = ember.randn(6)
    _close(c(x), f(x), 1e-6)
    _close(c(x), f(x), 1e-6)
    assert blocker.read_text() == ""


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_exp_tanh_sigmoid_special_values_and_range(dtype):
    # the float32 kernels use their own vectorisable exp/tanh: check them over the range,
    # at the overflow/underflow edges and on inf/nan
    special = [0.0, -0.0, 1e-8, -1e-3, 0.06, 0.07, 0.5, -3.0, 9.0, 20.0, 100.0, -100.0,
               float("inf"), -float("inf"), float("nan"), -88.0, 88.5, 89.0, -104.0, -110.0]
    x = ember.cat([ember.tensor(special, dtype=dtype), ember.linspace(-30, 30, 20001,
                                                                      dtype=dtype)])

    def f(v):
        return ember.tanh(v * 1.0), ember.exp(v * 1.0), ember.sigmoid(v * 1.0)
    c = ember.compile(f)
    c(x)
    (t, e, s), (t0, e0, s0) = c(x), f(x)
    for a, b in ((t, t0), (e, e0)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=TOL[dtype] / 5, atol=1e-30)
    # eager ember's float32 sigmoid is exact only to about 3e-8 absolute (0 at -30, where the
    # true value is 9e-14): compare absolutely, and relatively against PyTorch
    np.testing.assert_allclose(s.numpy(), s0.numpy(), rtol=TOL[dtype] / 5, atol=1e-7)
    torch = pytest.importorskip("torch")
    ts = torch.sigmoid(torch.from_numpy(x.numpy())).numpy()
    np.testing.assert_allclose(s.numpy(), ts, rtol=TOL[dtype] / 5, atol=1e-30)


def test_compiled_method_reads_live_parameters_and_stateless_sgd_compiles():
    class Trainer:
        def __init__(self):
            self.model = MLP()
            self.opt = ember.optim.SGD(self.model.parameters(), lr=0.1)  # no state ever

        @ember.compile
        def step(self, m, opt, x):
            loss = m(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
    ember.manual_seed(6)
    t = Trainer()
    ref, ref_opt = copy.deepcopy(t.model), None
    ref_opt = ember.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(4):
        x = ember.randn(3, 8)
        loss = t.step(t.model, t.opt, x)
        r = ref(x).pow(2).mean()
        r.backward()
        ref_opt.step()
        ref_opt.zero_grad()
        _close(loss, r, 1e-6)
    assert len(Trainer.step.entries) == 1 and not Trainer.step.breaks
    for a, b in zip(t.model.parameters(), ref.parameters()):
        _close(a, b, 1e-6)
