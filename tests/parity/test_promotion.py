"""Type promotion against PyTorch: promote_types, result_type and the dtype of ``a + b`` for
every pair of dtypes and every tensor / 0-d tensor / python scalar combination."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ember  # noqa: E402

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
         "float64", "complex64", "complex128"]
PAIRS = list(itertools.product(NAMES, NAMES))
SCALARS = [True, 3, -2, 2.5, 1 + 2j]


def _dtypes(name):
    return getattr(ember, name), getattr(torch, name)


def _same(e_dtype, t_dtype):
    # ember has no complex32 (ComplexHalf, experimental in PyTorch): it widens to complex64
    t_name = str(t_dtype).replace("torch.", "").replace("complex32", "complex64")
    return e_dtype.name == t_name


def _pair(a, b, shape_a, shape_b):
    (ea, ta), (eb, tb) = _dtypes(a), _dtypes(b)
    x = (ember.ones(shape_a, dtype=ea), torch.ones(shape_a, dtype=ta))
    y = (ember.ones(shape_b, dtype=eb), torch.ones(shape_b, dtype=tb))
    return x, y


@pytest.mark.parametrize("a,b", PAIRS)
def test_promote_types(a, b):
    (ea, ta), (eb, tb) = _dtypes(a), _dtypes(b)
    assert _same(ember.promote_types(ea, eb), torch.promote_types(ta, tb))


SHAPES = [((2,), (2,)), ((2,), ()), ((), (2,)), ((), ())]


@pytest.mark.parametrize("shapes", SHAPES, ids=["dim-dim", "dim-0d", "0d-dim", "0d-0d"])
@pytest.mark.parametrize("a,b", PAIRS)
def test_result_type_and_add(a, b, shapes):
    (ex, tx), (ey, ty) = _pair(a, b, *shapes)
    assert _same(ember.result_type(ex, ey), torch.result_type(tx, ty))
    if a == b == "bool":
        return  # bool + bool is logical or in both; dtype already covered by result_type
    assert _same((ex + ey).dtype, (tx + ty).dtype), f"{a}{shapes[0]} + {b}{shapes[1]}"


@pytest.mark.parametrize("scalar", SCALARS, ids=repr)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2,), ()], ids=["dim", "0d"])
def test_tensor_scalar(name, scalar, shape):
    e_dt, t_dt = _dtypes(name)
    ex, tx = ember.ones(shape, dtype=e_dt), torch.ones(shape, dtype=t_dt)
    assert _same(ember.result_type(ex, scalar), torch.result_type(tx, scalar))
    assert _same(ember.result_type(scalar, ex), torch.result_type(scalar, tx))
    assert _same((ex + scalar).dtype, (tx + scalar).dtype)
    assert _same((scalar + ex).dtype, (scalar + tx).dtype)
    assert _same((ex * scalar).dtype, (tx * scalar).dtype)
    tr = tx * 3 + scalar
    if tr.dtype != torch.complex32:  # values too: integer scalars wrap like PyTorch's
        np.testing.assert_allclose(np.asarray((ex * 3 + scalar).tolist()), tr.tolist(),
                                   rtol=1e-2)


@pytest.mark.parametrize("s1,s2", list(itertools.product(SCALARS, SCALARS)))
def test_scalar_scalar_result_type(s1, s2):
    assert _same(ember.result_type(s1, s2), torch.result_type(s1, s2))


@pytest.mark.parametrize("a,b", PAIRS)
def test_can_cast(a, b):
    (ea, ta), (eb, tb) = _dtypes(a), _dtypes(b)
    assert ember.can_cast(ea, eb) == torch.can_cast(ta, tb)


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64", "complex64",
                                  "complex128"])
def test_finfo(name):
    e, t = ember.finfo(getattr(ember, name)), torch.finfo(getattr(torch, name))
    for attr in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution"):
        assert getattr(e, attr) == getattr(t, attr), attr
    assert e.dtype == t.dtype


def test_finfo_default():
    assert ember.finfo().eps == torch.finfo().eps
    with pytest.raises(TypeError):
        ember.finfo(ember.int32)


@pytest.mark.parametrize("name", ["uint8", "int8", "int16", "int32", "int64"])
def test_iinfo(name):
    e, t = ember.iinfo(getattr(ember, name)), torch.iinfo(getattr(torch, name))
    for attr in ("bits", "max", "min"):
        assert getattr(e, attr) == getattr(t, attr), attr
    assert e.dtype == t.dtype


def test_iinfo_rejects_float():
    with pytest.raises(TypeError):
        ember.iinfo(ember.float32)


@pytest.mark.parametrize("name", ["float64", "float16", "bfloat16", "float32"])
def test_default_dtype(name):
    old = ember.get_default_dtype()
    assert old is ember.float32 and torch.get_default_dtype() is torch.float32
    ember.set_default_dtype(getattr(ember, name))
    torch.set_default_dtype(getattr(torch, name))
    try:
        assert _same(ember.get_default_dtype(), torch.get_default_dtype())
        assert _same(ember.tensor([1.5]).dtype, torch.tensor([1.5]).dtype)
        if name != "bfloat16":  # PyTorch has no complex type for a bfloat16 default
            assert _same(ember.tensor([1j]).dtype, torch.tensor([1j]).dtype)
            assert _same(ember.result_type(1, 1j), torch.result_type(1, 1j))
        assert _same(ember.ones(2).dtype, torch.ones(2).dtype)
        assert _same((ember.tensor([1, 2]) * 1.5).dtype, (torch.tensor([1, 2]) * 1.5).dtype)
        assert _same((ember.tensor([1, 2]) / 2).dtype, (torch.tensor([1, 2]) / 2).dtype)
    finally:
        ember.set_default_dtype(old)
        torch.set_default_dtype(torch.float32)


def test_set_default_dtype_rejects_int():
    with pytest.raises(TypeError):
        ember.set_default_dtype(ember.int64)


@pytest.mark.parametrize("name", ["int64", "int32", "uint8", "bool", "float16", "float64"])
def test_float_ops_on_ints(name):
    e_dt, t_dt = _dtypes(name)
    ex, tx = ember.ones(3, dtype=e_dt), torch.ones(3, dtype=t_dt)
    for f in (lambda m, x: x / x, lambda m, x: m.sqrt(x), lambda m, x: m.exp(x),
              lambda m, x: m.true_divide(x, 2), lambda m, x: m.atan2(x, x),
              lambda m, x: x ** 0.5):
        assert _same(f(ember, ex).dtype, f(torch, tx).dtype)


def test_inplace_keeps_dtype_and_rejects_downcast():
    x = ember.ones(3, dtype=ember.float16)
    x += ember.ones(3, dtype=ember.float64)
    assert x.dtype is ember.float16
    i = ember.ones(3, dtype=ember.int32)
    i += 2
    assert i.dtype is ember.int32
    with pytest.raises(RuntimeError, match="can't be cast"):
        i += 1.5
    np.testing.assert_array_equal(i.numpy(), [3, 3, 3])
