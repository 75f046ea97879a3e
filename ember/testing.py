"""``ember.testing.assert_close``: PyTorch's default closeness check for tests."""

from __future__ import annotations

import numpy as np

from ._tensor import Tensor

# PyTorch's default (rtol, atol) by dtype
_TOLS = {np.dtype(np.float16): (1e-3, 1e-5), np.dtype(np.float32): (1.3e-6, 1e-5),
         np.dtype(np.float64): (1e-7, 1e-7), np.dtype(np.complex64): (1.3e-6, 1e-5),
         np.dtype(np.complex128): (1e-7, 1e-7)}


def assert_close(actual, expected, *, rtol=None, atol=None, equal_nan=False, check_dtype=True,
                 msg=None, **kwargs):
    """Raise AssertionError unless ``actual`` and ``expected`` (tensors, numbers, or nested
    sequences/dicts of them) match in shape, dtype and values within tolerance."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or actual.keys() != expected.keys():
            raise AssertionError(msg or "The mappings have different keys")
        for k in expected:
            assert_close(actual[k], expected[k], rtol=rtol, atol=atol, equal_nan=equal_nan,
                         check_dtype=check_dtype, msg=msg)
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            raise AssertionError(msg or "The sequences have different lengths")
        for a, e in zip(actual, expected):
            assert_close(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan,
                         check_dtype=check_dtype, msg=msg)
        return
    a = actual._data if isinstance(actual, Tensor) else np.asarray(actual)
    e = expected._data if isinstance(expected, Tensor) else np.asarray(expected)
    if a.shape != e.shape:
        raise AssertionError(msg or f"The values for attribute 'shape' do not match: "
                             f"{a.shape} != {e.shape}.")
    if check_dtype and isinstance(actual, Tensor) and isinstance(expected, Tensor) and \
            a.dtype != e.dtype:
        raise AssertionError(msg or f"The values for attribute 'dtype' do not match: "
                             f"{actual.dtype} != {expected.dtype}.")
    if (rtol is None) != (atol is None):
        raise ValueError("Both 'rtol' and 'atol' must be either specified or omitted")
    if rtol is None:
        rtol, atol = _TOLS.get(np.result_type(a, e), (0.0, 0.0))
    if a.dtype.kind in "biu" and e.dtype.kind in "biu":
        ok = np.array_equal(a, e)
        bad = ~(a == e)
    else:
        close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan)
        ok = bool(close.all())
        bad = ~close
    if not ok:
        n = int(bad.sum())
        diff = np.abs(a.astype(np.complex128) - e.astype(np.complex128))
        raise AssertionError(msg or f"Tensor-likes are not close!\n\nMismatched elements: {n} / "
                             f"{a.size} ({100.0 * n / max(a.size, 1):.1f}%)\nGreatest absolute "
                             f"difference: {float(np.nanmax(diff))} (up to {atol} allowed)")
