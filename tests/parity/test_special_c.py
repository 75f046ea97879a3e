"""erf and erfc through the C library (``ember/ops/_special_c.py``): as accurate as SciPy's
and the standard library's, every layout and size, and the fallbacks where it is absent."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.ops import _special, _special_c

torch = pytest.importorskip("torch")
needs_c = pytest.mark.skipif(_special_c.kernel("erf", np.dtype(np.float64)) is None,
                             reason="no working C compiler")


def _points():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.standard_normal(20001) * 3, rng.uniform(-30, 30, 5001),
                           np.logspace(-300, 1.5, 3001), -np.logspace(-300, 1.5, 301),
                           [0.0, -0.0, np.inf, -np.inf, np.nan, 5.9, 6.0, 26.5, 27.0, -27.0,
                            5e-324]])


@needs_c
@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_float64_matches_math(name):
    x = _points()
    got = getattr(_special, name)(x)
    want = np.array([getattr(math, name)(v) for v in x])
    ok = np.isfinite(want) & (want != 0)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.all(got[~ok & ~np.isnan(want)] == want[~ok & ~np.isnan(want)])
    rel = np.abs(got[ok] - want[ok]) / np.abs(want[ok])
    assert rel.max() <= 1e-15


@needs_c
def test_erf_float64_matches_scipy():
    sp = pytest.importorskip("scipy.special")
    x = _points()
    got, want = _special.erf(x), sp.erf(x)
    ok = np.isfinite(want) & (want != 0)
    assert np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok])) <= 1e-15
    # SciPy's erfc is itself off by up to ~1e-13 relative in the far tail
    got, want = _special.erfc(x), sp.erfc(x)
    ok = np.isfinite(want) & (want != 0)
    assert np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok])) <= 1e-12


@needs_c
@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_float32_rounds_the_double(name):
    x = _points().astype(np.float32)
    got = getattr(_special, name)(x)
    want = np.array([getattr(math, name)(float(v)) for v in x]).astype(np.float32)
    assert got.dtype == np.float32
    assert np.array_equal(got, want, equal_nan=True)


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_layouts_and_sizes(name, dtype):
    rng = np.random.default_rng(1)
    f = getattr(_special, name)
    for shape in [(0,), (0, 3), (), (1,), (7,), (13, 5), (3, 1, 17)]:
        x = rng.standard_normal(shape).astype(dtype)
        y = f(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        np.testing.assert_array_equal(y, np.vectorize(getattr(math, name), otypes=[dtype])(x))
    base = rng.standard_normal((9, 12)).astype(dtype)
    for view in (base[::2, 1::3], base.T, base[:, ::-1]):
        np.testing.assert_array_equal(f(view), f(np.ascontiguousarray(view)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_ops_match_torch_values_and_grads(name, dtype):
    x = np.random.default_rng(2).standard_normal((5, 7)).astype(dtype) * 2
    tol = 1e-6 if dtype == "float32" else 1e-12
    for threads in (1, 2):
        ember.set_num_threads(threads)
        a = ember.tensor(x, requires_grad=True)
        b = torch.tensor(x, requires_grad=True)
        ya, yb = getattr(ember, name)(a[:, ::2]), getattr(torch, name)(b[:, ::2])
        np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), rtol=tol, atol=tol)
        ya.sum().backward()
        yb.sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=tol, atol=tol)
    ember.set_num_threads(os.cpu_count() or 1)


@pytest.mark.parametrize("scipy_too", [False, True])
@pytest.mark.parametrize("name", ["erf", "erfc"])
def test_fallbacks_without_the_c_loop(name, scipy_too, monkeypatch):
    """No C loop (no compiler): SciPy serves; no SciPy either: math.erf elementwise."""
    monkeypatch.setattr(_special_c, "_LIB", {None: None})
    if scipy_too:
        monkeypatch.setattr(_special, "_SCIPY", [None])
    for dtype in (np.float32, np.float64):
        x = np.linspace(-6, 6, 41).astype(dtype)
        want = np.array([getattr(math, name)(float(v)) for v in x])
        got = getattr(_special, name)(x)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want.astype(dtype), rtol=1e-6 if dtype == np.float32
                                   else 1e-13, atol=1e-300)


def test_environment_switch_turns_the_c_loop_off():
    code = ("import numpy as np; from ember.ops import _special_c as s; "
            "print(s.kernel('erf', np.dtype('float64')) is None)")
    env = dict(os.environ, EMBER_SPECIAL_C="0")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert r.stdout.strip() == "True", r.stderr
