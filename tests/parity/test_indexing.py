"""Parity of indexing (getitem/setitem) and the index/scatter/gather op family with PyTorch."""

import numpy as np
import pytest

from .helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

F = [np.float32, np.float64]


def _idx(m, data, dtype="int64"):
    return m.tensor(data, dtype=getattr(m, dtype))


GETITEM = [
    ("int", lambda m, a: a[1], [(3, 4)]),
    ("neg_int", lambda m, a: a[-1, -2], [(3, 4)]),
    ("slice", lambda m, a: a[1:], [(3, 4)]),
    ("slice_step", lambda m, a: a[::2, 1::2], [(5, 4)]),
    ("slice_neg", lambda m, a: a[-3:-1], [(5, 4)]),
    ("none", lambda m, a: a[None, :, None], [(3, 4)]),
    ("ellipsis", lambda m, a: a[..., 1], [(2, 3, 4)]),
    ("ellipsis_none", lambda m, a: a[1, ..., None], [(2, 3, 4)]),
    ("bool_mask", lambda m, a: a[a > 0], [(3, 4)]),
    ("bool_mask_row", lambda m, a: a[m.tensor([True, False, True])], [(3, 4)]),
    ("int_tensor", lambda m, a: a[_idx(m, [0, 2, 0])], [(3, 4)]),
    ("int_tensor_2d", lambda m, a: a[_idx(m, [[0, 1], [2, 2]])], [(3, 4)]),
    ("int_list", lambda m, a: a[[2, 0, 2]], [(3, 4)]),
    ("two_tensors", lambda m, a: a[_idx(m, [0, 2]), _idx(m, [1, 3])], [(3, 4)]),
    ("tensor_slice", lambda m, a: a[:, _idx(m, [3, 0, 3])], [(3, 4)]),
    ("tensor_broadcast", lambda m, a: a[_idx(m, [[0], [2]]), _idx(m, [1, 3])], [(3, 4)]),
    ("separated_adv", lambda m, a: a[_idx(m, [0, 1]), :, _idx(m, [2, 0])], [(2, 3, 4)]),
    ("int_and_tensor", lambda m, a: a[1, _idx(m, [0, 0, 2])], [(2, 3)]),
    ("neg_tensor", lambda m, a: a[_idx(m, [-1, -3])], [(3, 4)]),
    ("zero_d", lambda m, a: a[()], [()]),
    ("zero_d_none", lambda m, a: a[None], [()]),
    ("empty_slice", lambda m, a: a[2:1], [(3, 4)]),
    ("empty_index", lambda m, a: a[_idx(m, [])], [(3, 4)]),
    ("mask_and_slice", lambda m, a: a[m.tensor([True, False, True]), 1:], [(3, 4)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", GETITEM, ids=[c[0] for c in GETITEM])
def test_getitem(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


@pytest.mark.parametrize("name", ["slice_step", "int_tensor", "separated_adv", "bool_mask"])
def test_getitem_noncontig(name):
    fn, shapes = {c[0]: c[1:] for c in GETITEM}[name]
    check(fn, shapes, noncontig=True)


def test_getitem_gradcheck():
    gradcheck(lambda m, a: a[[0, 2, 0], 1::2], [(3, 4)])


def _setter(idx_fn, value_shape=None):
    """``out = a * 1; out[idx] = v * 2; return out`` with grads into both ``a`` and ``v``."""
    def fn(m, a, *v):
        out = a * 1
        val = v[0] * 2 if v else 3.0
        out[idx_fn(m)] = val
        return out * out
    return fn


SETITEM = [
    ("int", lambda m: 1, [(3, 4), (4,)]),
    ("scalar_value", lambda m: (0, 1), [(3, 4)]),
    ("slice_step", lambda m: (slice(None, None, 2), slice(1, None)), [(3, 4), (2, 3)]),
    ("broadcast", lambda m: slice(0, 2), [(3, 4), (4,)]),
    ("ellipsis", lambda m: (Ellipsis, 0), [(2, 3, 4), (2, 3)]),
    ("bool_mask", lambda m: m.tensor([True, False, True]), [(3, 4), (2, 4)]),
    ("int_tensor", lambda m: _idx(m, [2, 0]), [(3, 4), (2, 4)]),
    ("int_list", lambda m: [2, 0], [(3, 4), (1, 4)]),
    ("two_tensors", lambda m: (_idx(m, [0, 2]), _idx(m, [1, 3])), [(3, 4), (2,)]),
    ("tensor_slice", lambda m: (slice(None), _idx(m, [3, 1])), [(3, 4), (3, 2)]),
    ("none", lambda m: (None, 1), [(3, 4), (4,)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,idx,shapes", SETITEM, ids=[c[0] for c in SETITEM])
def test_setitem(name, idx, shapes, dtype):
    check(_setter(idx), shapes, dtype)


def test_setitem_gradcheck():
    gradcheck(_setter(lambda m: (_idx(m, [0, 2]), slice(1, 3))), [(3, 4), (2, 2)])


def test_setitem_bool_mask_tensor_value():
    def fn(m, a, b):
        out = a.clone()
        out[a > 0] = b[a > 0]
        return out
    check(fn, [(3, 4), (3, 4)])


def test_setitem_through_view_updates_base():
    base = ember.zeros(3, 4)
    v = base[1:]
    v[0, 0] = 5.0
    assert base[1, 0].item() == 5.0
    before = base._version
    base[0] = ember.ones(4)
    assert base._version == before + 1 and v._version == base._version
    assert base[0].sum().item() == 4.0


def test_index_errors():
    a = ember.zeros(3, 4)
    with pytest.raises(IndexError):
        a[3]
    with pytest.raises(IndexError):
        a[ember.tensor([0, 5])]
    with pytest.raises(IndexError):
        a[0, 0, 0]
    with pytest.raises(IndexError):
        a[ember.tensor([0.5])]


def test_setitem_into_plain_buffer():
    def fn(m, v):
        out = m.zeros(3, 4, dtype=v.dtype)
        out[1:, ::2] = v
        return out
    check(fn, [(2, 2)])


def test_setitem_leaf_error():
    a = ember.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        a[0] = 1.0


@pytest.mark.parametrize("fn", [lambda m, a: a[True], lambda m, a: a[False],
                                lambda m, a: a[m.tensor(1)], lambda m, a: a[0, None, ..., 1],
                                lambda m, a: a[m.tensor([[True, False, True, True]] * 3)]])
def test_getitem_misc(fn):
    check(fn, [(3, 4)])
