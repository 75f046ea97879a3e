"""Full max/min of big float arrays by the C chunk kernel (``ember/ops/_reduce_c.py``, issue
25): equal to NumPy and PyTorch (exact: a max rounds nothing), NaN propagated wherever it
sits (first chunk, a chunk's vector body or tail, the short last chunk), infinities, the
same at 1, 2 and 3 threads, gradients as PyTorch's, and the fallback paths."""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ember  # noqa: E402
from ember import _parallel  # noqa: E402
from ember.ops import _reduce_c  # noqa: E402

pytestmark = pytest.mark.skipif(not _reduce_c.available(np.float32),
                                reason="no C compiler: the kernel is unavailable")

DTYPES = [np.float32, np.float64]
CH = _reduce_c.CHUNK
SIZES = [_parallel.MIN_SIZE, _parallel.MIN_SIZE + 17, 3 * CH * 7 + 5]


def _both(a):
    t, tt = ember.from_numpy(a), torch.from_numpy(a)
    return [(t.max(), tt.max()), (t.min(), tt.min()), (t.amax(), tt.amax()),
            (t.amin(), tt.amin())]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_max_min_equal_numpy_and_torch(n, dtype, threads, monkeypatch):
    calls = []
    real = _reduce_c.extreme
    monkeypatch.setattr(_reduce_c, "extreme", lambda a, op: calls.append(op) or real(a, op))
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(dtype)
    a[n - 1] = 9.0  # the largest in the short last chunk's tail
    a[CH + 3] = -9.0  # the smallest inside a chunk's vector body
    for k in (1, 2, 3):
        threads(k)
        for e, t in _both(a):
            assert e.dtype == {np.float32: ember.float32, np.float64: ember.float64}[dtype]
            assert e.shape == ()
            assert e.item() == t.item()
    assert ember.from_numpy(a).max().item() == 9.0 == a.max()
    assert ember.from_numpy(a).min().item() == -9.0 == a.min()
    assert calls.count("max") == 7 and calls.count("min") == 7  # the C kernel served them


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", [0, 5, CH - 1, CH + 40, 2 * CH + 31, -1, -3])
def test_nan_propagates_from_anywhere(where, dtype, threads):
    n = _parallel.MIN_SIZE + 13
    a = np.random.default_rng(1).standard_normal(n).astype(dtype)
    a[where] = np.nan
    a[7] = np.inf
    for k in (1, 2):
        threads(k)
        for e, t in _both(a):
            assert np.isnan(e.item()) and np.isnan(t.item())


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinities_and_constant_arrays(dtype, threads):
    n = _parallel.MIN_SIZE + 1
    a = np.full(n, -np.inf, dtype)
    for k in (1, 2):
        threads(k)
        assert ember.from_numpy(a).max().item() == -np.inf
        b = a.copy()
        b[n // 2] = np.inf
        assert ember.from_numpy(b).max().item() == np.inf
        assert ember.from_numpy(b).min().item() == -np.inf
        c = np.full(n, 2.5, dtype)
        assert ember.from_numpy(c).max().item() == 2.5 == ember.from_numpy(c).min().item()


def test_multi_dim_and_noncontiguous_inputs(threads):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((1024, 1100)).astype(np.float32)
    threads(2)
    t, tt = ember.from_numpy(a), torch.from_numpy(a)
    assert t.max().item() == tt.max().item() and t.min().item() == tt.min().item()
    # transposed view: NumPy's reduction (not contiguous)
    assert t.t().max().item() == tt.t().max().item()
    assert t[:, ::2].amin().item() == tt[:, ::2].amin().item()
    # keepdim and dims stay on the NumPy path
    np.testing.assert_array_equal(t.amax(dim=(0, 1), keepdim=True).numpy(),
                                  tt.amax(dim=(0, 1), keepdim=True).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_shared_between_ties_as_torch(dtype, threads):
    threads(2)
    n = _parallel.MIN_SIZE + 5
    a = np.random.default_rng(4).standard_normal(n).astype(dtype)
    a[[10, CH + 2, n - 1]] = 7.0
    for name in ("max", "amax", "min"):
        x, xt = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        getattr(x, name)().backward()
        getattr(xt, name)().backward()
        np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


def test_switch_off_in_a_new_process():
    code = ("import numpy as np, ember; from ember.ops import _reduce_c;"
            "a = np.arange(1 << 21, dtype=np.float32);"
            "print(_reduce_c.available(np.float32), ember.from_numpy(a).max().item())")
    env = dict(os.environ, EMBER_REDUCE_C="0", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["False", str(float((1 << 21) - 1))]
