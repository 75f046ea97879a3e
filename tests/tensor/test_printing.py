"""repr/str of tensors: identical to PyTorch's after replacing "torch." with "ember."."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

nan, inf = float("nan"), float("inf")

CASES = {
    "ints": ([1, 2, 3], None),
    "neg_ints": ([[-1, 20], [300, -4000]], None),
    "floats": ([1.5, -2.25, 3.125], None),
    "int_valued_floats": ([1.0, 2.0, -3.0], None),
    "small_floats": ([0.001, 0.5], None),
    "sci_large": ([1e10, 1.0], None),
    "sci_small": ([1e-5, 1.0], None),
    "sci_ratio": ([0.01, 1000.5], None),
    "int_valued_big": ([1e9, 2.0], None),
    "nan_inf": ([nan, inf, -inf, 1.5], None),
    "nan_only": ([nan, nan], None),
    "inf_ints": ([inf, 1.0, 2.0], None),
    "bool": ([True, False, True], None),
    "bool_all_true": ([True, True], None),
    "complex": ([1 + 2j, -3.5 - 1j], None),
    "complex_intlike": ([1 + 2j, 3 + 0j], None),
    "scalar_float": (3.5, None),
    "scalar_int": (7, None),
    "scalar_bool": (True, None),
    "scalar_neg_zero": (-0.0, None),
    "empty": ([], None),
    "matrix": ([[1.1, 2.2], [3.3, -4.4]], None),
    "cube": ([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], None),
    "float64": ([1.0, 2.5], "float64"),
    "float16": ([1.0, 2.5], "float16"),
    "bfloat16": ([1.0, 2.5], "bfloat16"),
    "int32": ([1, 2], "int32"),
    "uint8": ([1, 255], "uint8"),
    "int8": ([-1, 2], "int8"),
    "int16": ([1, 2], "int16"),
    "complex128": ([1 + 1j], "complex128"),
    "float64_scalar": (2.0, "float64"),
    "mixed_magnitude": ([123.456, 0.001234, 5.0], None),
    "zeros": ([0.0, 0.0], None),
    "negzero_row": ([-0.0, 1.5], None),
    "precision_round": ([0.12345678, 1.99999], None),
    "long_row": ([float(i) * 1.1 for i in range(30)], None),
    "long_int_row": (list(range(40)), None),
}


def _pair(data, dt):
    e = ember.tensor(data, dtype=getattr(ember, dt) if dt else None)
    t = torch.tensor(data, dtype=getattr(torch, dt) if dt else None)
    return e, t


def _same(e, t):
    assert repr(e) == repr(t).replace("torch.", "ember.")
    assert str(e) == str(t).replace("torch.", "ember.")


@pytest.mark.parametrize("name", sorted(CASES))
def test_repr_matches_torch(name):
    _same(*_pair(*CASES[name]))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 1)])
def test_empty_shapes(shape):
    _same(ember.zeros(shape), torch.zeros(shape))
    _same(ember.zeros(shape, dtype=ember.int32), torch.zeros(shape, dtype=torch.int32))


@pytest.mark.parametrize("shape", [(2000,), (40, 40), (5, 300), (12, 12, 12), (1001,)])
def test_summarized(shape):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) / 7
    _same(ember.tensor(a), torch.tensor(a))
    b = np.arange(int(np.prod(shape))).reshape(shape)
    _same(ember.tensor(b), torch.tensor(b))


def test_wide_matrix_wraps():
    a = np.random.default_rng(0).normal(size=(3, 20)).astype(np.float32)
    _same(ember.tensor(a), torch.tensor(a))


def test_requires_grad_and_grad_fn():
    a = np.array([1.0, 2.0], dtype=np.float32)
    e, t = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    _same(e, t)
    _same(e * 2, t * 2)
    _same(e.sum(), t.sum())
    ed, td = ember.tensor(a, dtype=ember.float64, requires_grad=True), torch.tensor(
        a, dtype=torch.float64, requires_grad=True)
    _same(ed * 2, td * 2)


def test_suffixes_wrap_at_linewidth():
    a = np.linspace(-3, 3, 9)
    _same(ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True))
    _same(ember.tensor(a[:6]) * 2, torch.tensor(a[:6]) * 2)
    b = np.arange(7, dtype=np.int16) * 1000
    _same(ember.tensor(b), torch.tensor(b))


def test_set_printoptions():
    a = [1.123456789, 2.5]
    try:
        for kw in ({"precision": 2}, {"precision": 8}, {"sci_mode": True},
                   {"threshold": 5, "edgeitems": 1}, {"profile": "short"},
                   {"threshold": 5, "edgeitems": 0}, {"linewidth": 20}):
            ember.set_printoptions(**kw)
            torch.set_printoptions(**kw)
            _same(ember.tensor(a), torch.tensor(a))
            _same(ember.arange(10.0), torch.arange(10.0))
            _same(ember.ones(3, 4), torch.ones(3, 4))
    finally:
        ember.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")
    _same(ember.tensor(a), torch.tensor(a))


def test_format_and_parameter_like_subclass_prefix():
    e, t = ember.tensor(2.5), torch.tensor(2.5)
    assert f"{e:.2f}" == f"{t:.2f}"
    assert f"{ember.tensor([1.0])}" == f"{torch.tensor([1.0])}".replace("torch.", "ember.")


def test_random_arrays_match_torch():
    rng = np.random.default_rng(1)
    for _ in range(60):
        shape = tuple(rng.integers(1, 7, size=rng.integers(0, 4)))
        kind = rng.integers(0, 5)
        a = rng.normal(size=shape) * 10.0 ** rng.integers(-6, 11)
        if kind == 1:
            a = np.round(a)
        elif kind == 2:
            a.flat[0] = nan
        elif kind == 3:
            a = a + 1j * rng.normal(size=shape)
        elif kind == 4:
            a = rng.integers(-10 ** 6, 10 ** 6, size=shape)
        _same(ember.tensor(a), torch.tensor(a))


def test_default_dtype_changes_suffix():
    try:
        ember.set_default_dtype(ember.float64)
        torch.set_default_dtype(torch.float64)
        _same(ember.tensor([1.5]), torch.tensor([1.5]))
        _same(ember.tensor([1.5], dtype=ember.float32), torch.tensor([1.5], dtype=torch.float32))
        _same(ember.tensor([1 + 1j]), torch.tensor([1 + 1j]))
        _same(ember.tensor([], dtype=ember.float32), torch.tensor([], dtype=torch.float32))
    finally:
        ember.set_default_dtype(ember.float32)
        torch.set_default_dtype(torch.float32)
