"""One-line parity tests against PyTorch (the test oracle).

``check(fn, shapes)`` makes random inputs of the given shapes, runs ``fn(torch, *tensors)``
and ``fn(ember, *tensors)`` — the same code with either module — and compares the outputs
and, when ``grad`` is set, the gradients of every floating input for a random upstream
gradient. ``noncontig=True`` feeds transposed (non-contiguous) views instead.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ember  # noqa: E402

TOL = {np.float32: (1e-5, 1e-4), np.float64: (1e-10, 1e-7)}


def make_arrays(shapes, dtype=np.float64, low=-2.0, high=2.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        if isinstance(s, np.ndarray):
            out.append(s)
        elif np.dtype(dtype).kind in "iu":
            out.append(rng.integers(int(low), int(high) + 1, size=s).astype(dtype))
        elif np.dtype(dtype).kind == "b":
            out.append(rng.random(size=s) < 0.5)
        else:
            out.append(rng.uniform(low, high, size=s).astype(dtype))
    return out


def _to_np(x):
    if isinstance(x, torch.Tensor):
        if x._is_zerotensor():  # e.g. the gradient of sgn: an efficient zero
            return np.zeros(x.shape, dtype=torch.empty(0, dtype=x.dtype).numpy().dtype)
        return x.detach().resolve_conj().numpy()
    if isinstance(x, ember.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def _flatten(out):
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res.extend(_flatten(o))
        return res
    return [out]


def assert_close(a, b, atol, rtol, what="output"):
    a, b = _to_np(a), _to_np(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} (ember) != {b.shape} (torch)"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} (ember) != {b.dtype} (torch)"
    if a.dtype.kind in "fc":
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


def check(fn, shapes, dtype=np.float64, grad=True, low=-2.0, high=2.0, atol=None, rtol=None,
          noncontig=False, arrays=None, seed=0):
    """Compare ``fn(torch, *xs)`` with ``fn(ember, *xs)``: values, then gradients."""
    arrays = arrays if arrays is not None else make_arrays(shapes, dtype, low, high, seed)
    d_atol, d_rtol = TOL.get(np.dtype(dtype).type, (1e-6, 1e-5))
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol

    def inputs(mod):
        xs = []
        for a in arrays:
            if noncontig and a.ndim >= 2:
                base = mod.tensor(np.ascontiguousarray(np.swapaxes(a, -1, -2)))
                if grad and a.dtype.kind == "f":
                    base.requires_grad_(True)
                xs.append((base, base.transpose(-1, -2)))
                continue
            t = mod.tensor(a)
            if grad and a.dtype.kind == "f":
                t.requires_grad_(True)
            xs.append((t, t))
        return xs

    t_in = inputs(torch)
    e_in = inputs(ember)
    t_out = fn(torch, *[v for _, v in t_in])
    e_out = fn(ember, *[v for _, v in e_in])
    t_flat, e_flat = _flatten(t_out), _flatten(e_out)
    assert len(t_flat) == len(e_flat)
    for i, (a, b) in enumerate(zip(e_flat, t_flat)):
        assert_close(a, b, atol, rtol, f"output {i}")
    if not grad:
        return
    rng = np.random.default_rng(seed + 1)
    t_diff = [o for o in t_flat if isinstance(o, torch.Tensor) and o.requires_grad]
    e_diff = [o for o, t in zip(e_flat, t_flat) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not t_diff:
        return
    gos = [rng.uniform(-1, 1, size=o.shape).astype(_to_np(o).dtype) for o in t_diff]
    t_leaves = [b for b, _ in t_in if b.requires_grad]
    e_leaves = [b for b, _ in e_in if b.requires_grad]
    t_grads = torch.autograd.grad(t_diff, t_leaves, [torch.tensor(g) for g in gos],
                                  allow_unused=True)
    e_grads = ember.autograd.grad(e_diff, e_leaves, [ember.tensor(g) for g in gos],
                                  allow_unused=True)
    for i, (eg, tg) in enumerate(zip(e_grads, t_grads)):
        if tg is None:
            assert eg is None or not np.any(_to_np(eg)), f"grad {i}: torch None, ember nonzero"
            continue
        assert eg is not None, f"grad {i}: ember None, torch {tg}"
        assert_close(eg, tg, atol, rtol, f"grad of input {i}")


def gradcheck(fn, shapes, low=-2.0, high=2.0, seed=0, gradgrad=False, arrays=None):
    """Finite-difference check of ember's gradients (float64)."""
    arrays = arrays if arrays is not None else make_arrays(shapes, np.float64, low, high, seed)
    xs = [ember.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    assert ember.autograd.gradcheck(lambda *a: fn(ember, *a), xs)
    if gradgrad:
        assert ember.autograd.gradgradcheck(lambda *a: fn(ember, *a), xs)
