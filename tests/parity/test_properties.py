"""Property tests against NumPy: broadcasting, indexing and reductions over random shapes.

Hypothesis draws the shapes, indices and dims; NumPy is the oracle for values (PyTorch and
NumPy agree on these semantics: broadcasting, basic and advanced indexing, first-occurrence
argmax). Where PyTorch departs from NumPy the strategy stays inside PyTorch's rules: slice
steps are positive, ``var`` uses PyTorch's default ``correction=1``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import ember  # noqa: E402

# EMBER_HYPOTHESIS_EXAMPLES=600 searches harder (all pass at 600 as of writing)
EXAMPLES = int(os.environ.get("EMBER_HYPOTHESIS_EXAMPLES", "50"))
SETTINGS = settings(deadline=None, max_examples=EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ELEMENTS = st.floats(-10, 10, allow_nan=False, width=64)


def arrays(shape, dtype=np.float64):
    return hnp.arrays(dtype, shape, elements=ELEMENTS if dtype == np.float64 else None)


def assert_matches(result, expected):
    """ember's tensor equals NumPy's array: shape and values (NaNs equal)."""
    got = result.numpy()
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"shape {got.shape} != numpy {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


# --- broadcasting -----------------------------------------------------------------------

BINARY = {
    "add": (ember.add, np.add),
    "sub": (ember.sub, np.subtract),
    "mul": (ember.mul, np.multiply),
    "maximum": (ember.maximum, np.maximum),
    "minimum": (ember.minimum, np.minimum),
    "atan2": (ember.atan2, np.arctan2),
    "lt": (ember.lt, np.less),
    "eq": (ember.eq, np.equal),
    "where_gt": (lambda a, b: ember.where(a > b, a, b), lambda a, b: np.where(a > b, a, b)),
}


@SETTINGS
@given(data=st.data(), op=st.sampled_from(sorted(BINARY)),
       shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                min_side=0, max_side=3))
def test_binary_broadcasting(data, op, shapes):
    a = data.draw(arrays(shapes.input_shapes[0]))
    b = data.draw(arrays(shapes.input_shapes[1]))
    ours, theirs = BINARY[op]
    out = ours(ember.tensor(a), ember.tensor(b))
    assert tuple(out.shape) == shapes.result_shape
    assert_matches(out, theirs(a, b))


@SETTINGS
@given(data=st.data(),
       shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                min_side=1, max_side=3))
def test_broadcast_gradient_sums_to_input_shape(data, shapes):
    """d(sum(a * b))/da is b broadcast to the result, summed back to a's shape."""
    a = data.draw(arrays(shapes.input_shapes[0]))
    b = data.draw(arrays(shapes.input_shapes[1]))
    ta = ember.tensor(a, requires_grad=True)
    tb = ember.tensor(b, requires_grad=True)
    (ta * tb).sum().backward()
    full_b = np.broadcast_to(b, shapes.result_shape)
    full_a = np.broadcast_to(a, shapes.result_shape)
    assert_matches(ta.grad, _sum_to(full_b, a.shape))
    assert_matches(tb.grad, _sum_to(full_a, b.shape))


def _sum_to(x, shape):
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


# --- indexing ---------------------------------------------------------------------------

def _positive_steps(index):
    """PyTorch rejects negative slice steps: flip them to positive ones."""
    def fix(i):
        if isinstance(i, slice) and i.step is not None and i.step < 0:
            return slice(i.stop, i.start, -i.step)
        return i
    return tuple(fix(i) for i in index) if isinstance(index, tuple) else fix(index)


shapes_nd = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4)


@SETTINGS
@given(data=st.data(), shape=shapes_nd)
def test_basic_getitem_setitem(data, shape):
    x = data.draw(arrays(shape))
    index = _positive_steps(data.draw(hnp.basic_indices(shape, allow_newaxis=True)))
    t = ember.tensor(x)
    assert_matches(t[index], x[index])
    value = data.draw(arrays(x[index].shape))
    t[index] = ember.tensor(value)
    x = x.copy()
    x[index] = value
    assert_matches(t, x)


@SETTINGS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_advanced_index_round_trip(data, shape):
    """y = x[idx]; z[idx] = y puts every picked value back where it came from."""
    x = data.draw(arrays(shape))
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(
        min_dims=1, max_dims=2, max_side=3)))
    e_index = tuple(ember.tensor(i.astype(np.int64)) for i in index)
    t = ember.tensor(x)
    picked = t[e_index]
    assert_matches(picked, x[index])
    z = ember.zeros(*shape, dtype=ember.float64)
    z[e_index] = picked
    expected = np.zeros(shape)
    expected[index] = x[index]
    assert_matches(z, expected)


@SETTINGS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
def test_boolean_mask_getitem_setitem(data, shape):
    x = data.draw(arrays(shape))
    mask = data.draw(hnp.arrays(np.bool_, shape))
    t = ember.tensor(x)
    assert_matches(t[ember.tensor(mask)], x[mask])
    t[ember.tensor(mask)] = -1.0
    x = x.copy()
    x[mask] = -1.0
    assert_matches(t, x)


@SETTINGS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4))
def test_mixed_slice_and_tensor_index(data, shape):
    """An integer tensor in one dim beside slices elsewhere (NumPy's mixed indexing rules)."""
    x = data.draw(arrays(shape))
    dim = data.draw(st.integers(0, len(shape) - 1))
    rows = data.draw(hnp.arrays(np.int64, data.draw(st.integers(1, 4)),
                                elements=st.integers(-shape[dim], shape[dim] - 1)))
    index = tuple(rows if i == dim else slice(None) for i in range(len(shape)))
    e_index = tuple(ember.tensor(rows) if i == dim else slice(None) for i in range(len(shape)))
    assert_matches(ember.tensor(x)[e_index], x[index])


# --- reductions -------------------------------------------------------------------------

def _dims(ndim, data, allow_none=True, single=False):
    choices = st.integers(-ndim, ndim - 1) if single else st.lists(
        st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    if allow_none:
        choices = st.none() | choices
    return data.draw(choices) if ndim else None


REDUCTIONS = {
    "sum": (lambda t, d, k: ember.sum(t, d, keepdim=k) if d is not None else ember.sum(t),
            lambda x, d, k: np.sum(x, axis=d, keepdims=k) if d is not None else np.sum(x)),
    "mean": (lambda t, d, k: ember.mean(t, d, keepdim=k) if d is not None else ember.mean(t),
             lambda x, d, k: np.mean(x, axis=d, keepdims=k) if d is not None else np.mean(x)),
    "amax": (lambda t, d, k: ember.amax(t, d if d is not None else (), keepdim=k),
             lambda x, d, k: np.max(x, axis=d, keepdims=k)),
    "var": (lambda t, d, k: ember.var(t, d, keepdim=k),
            lambda x, d, k: np.var(x, axis=d, keepdims=k, ddof=1)),
}


@SETTINGS
@given(data=st.data(), op=st.sampled_from(sorted(REDUCTIONS)), keepdim=st.booleans(),
       shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
def test_reductions(data, op, keepdim, shape):
    x = data.draw(arrays(shape))
    dims = _dims(len(shape), data)
    if op == "amax" and dims is None and keepdim:
        keepdim = False  # amax(dim=()) reduces all dims; NumPy keeps them with keepdims
    ours, theirs = REDUCTIONS[op]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # var of one element: both give NaN with a warning
        expected = theirs(x, dims, keepdim)
    assert_matches(ours(ember.tensor(x), dims, keepdim), expected)


@SETTINGS
@given(data=st.data(), keepdim=st.booleans(),
       shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
def test_argmax_first_occurrence(data, keepdim, shape):
    # few distinct values, so ties are common: both pick the first maximum
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0, 2.0])))
    dim = _dims(len(shape), data, single=True)
    got = ember.argmax(ember.tensor(x), dim, keepdim=keepdim)
    expected = np.argmax(x, axis=dim, keepdims=keepdim)
    assert got.dtype == ember.int64
    assert_matches(got, expected)


@SETTINGS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_sum_gradient_is_ones(data, shape):
    x = data.draw(arrays(shape))
    dims = _dims(len(shape), data, allow_none=False)
    assume(dims)
    t = ember.tensor(x, requires_grad=True)
    t.sum(dims).sum().backward()
    assert_matches(t.grad, np.ones(shape))
