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


def test_integer_index_is_a_view():
    t = ember.zeros(3)
    t[1].add_(5)
    e = t[2]
    e.fill_(7)
    assert t.tolist() == [0.0, 5.0, 7.0] and e._base is t and e.shape == ()


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


def _i(m, data):
    return m.tensor(data, dtype=m.int64)


def _scatter_idx(m):
    return _i(m, [[0, 1, 2, 0], [2, 0, 0, 1]])


OPS = [
    ("index_select", lambda m, a: a.index_select(1, _i(m, [2, 0, 2])), [(3, 4)]),
    ("index_select_neg", lambda m, a: m.index_select(a, -2, _i(m, [1])), [(3, 4)]),
    ("index_add", lambda m, a, s: a.index_add(0, _i(m, [0, 2, 0]), s), [(3, 4), (3, 4)]),
    ("index_add_alpha", lambda m, a, s: m.index_add(a, 1, _i(m, [1, 1]), s, alpha=2.5),
     [(3, 4), (3, 2)]),
    ("index_copy", lambda m, a, s: a.index_copy(1, _i(m, [3, 0]), s), [(3, 4), (3, 2)]),
    ("index_fill", lambda m, a: a.index_fill(1, _i(m, [0, 2]), -1.5), [(3, 4)]),
    ("index_put", lambda m, a, v: m.index_put(a, (_i(m, [0, 2]), _i(m, [1, 1])), v),
     [(3, 4), (2,)]),
    ("index_put_acc", lambda m, a, v: a.index_put((_i(m, [0, 0, 2]),), v, accumulate=True),
     [(3, 4), (3, 4)]),
    ("gather", lambda m, a: a.gather(1, _i(m, [[0, 0], [3, 1], [2, 2]])), [(3, 4)]),
    ("gather_dim0", lambda m, a: m.gather(a, 0, _i(m, [[0, 2, 1, 0]])), [(3, 4)]),
    ("scatter", lambda m, a, s: a.scatter(1, _i(m, [[0, 1], [2, 3]]), s), [(2, 4), (2, 2)]),
    ("scatter_value", lambda m, a: m.scatter(a, 0, _i(m, [[1, 0, 1]]), 9.0), [(2, 3)]),
    ("scatter_add", lambda m, a, s: a.scatter_add(1, _scatter_idx(m), s), [(2, 3), (2, 4)]),
    ("scatter_add_dim0", lambda m, a, s: m.scatter_add(a, 0, _i(m, [[2, 0], [2, 2]]), s),
     [(3, 2), (2, 2)]),
    ("masked_fill", lambda m, a: a.masked_fill(a > 0.5, 2.0), [(3, 4)]),
    ("masked_fill_bcast", lambda m, a: m.masked_fill(a, m.tensor([True, False, False, True]),
                                                     -1.0), [(3, 4)]),
    ("masked_fill_tensor", lambda m, a, v: a.masked_fill(a < 0, v), [(3, 4), ()]),
    ("masked_select", lambda m, a: a.masked_select(a > 0), [(3, 4)]),
    ("masked_select_bcast", lambda m, a: m.masked_select(a, m.tensor([True, False, True, True])),
     [(3, 4)]),
    ("masked_scatter", lambda m, a, s: a.masked_scatter(a > 0, s), [(3, 4), (12,)]),
    ("take", lambda m, a: m.take(a, _i(m, [[0, 11], [5, 5]])), [(3, 4)]),
    ("take_along_dim", lambda m, a: m.take_along_dim(a, _i(m, [[0], [2], [1]]), 1), [(3, 4)]),
    ("take_along_dim_flat", lambda m, a: a.take_along_dim(_i(m, [0, 7])), [(3, 4)]),
    ("put", lambda m, a, s: a.put(_i(m, [0, 5, 11]), s), [(3, 4), (3,)]),
    ("put_acc", lambda m, a, s: a.put(_i(m, [1, 1]), s, accumulate=True), [(3, 4), (2,)]),
    ("select", lambda m, a: a.select(1, -1), [(3, 4)]),
    ("select_scatter", lambda m, a, s: m.select_scatter(a, s, 0, 1), [(3, 4), (4,)]),
    ("slice_scatter", lambda m, a, s: m.slice_scatter(a, s, 1, 0, 4, 2), [(3, 4), (3, 2)]),
    ("slice_scatter_default", lambda m, a, s: a.slice_scatter(s), [(3, 4), (3, 4)]),
    ("diagonal_scatter", lambda m, a, s: m.diagonal_scatter(a, s, 1), [(3, 4), (3,)]),
    ("combinations", lambda m, a: m.combinations(a), [(4,)]),
    ("combinations_r3", lambda m, a: m.combinations(a, 3, with_replacement=True), [(3,)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", OPS, ids=[c[0] for c in OPS])
def test_index_ops(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


REDUCE = ["sum", "prod", "mean", "amax", "amin"]


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", REDUCE)
def test_scatter_reduce(reduce, include_self):
    check(lambda m, a, s: a.scatter_reduce(1, _scatter_idx(m), s, reduce,
                                           include_self=include_self), [(2, 3), (2, 4)])


@pytest.mark.parametrize("reduce", REDUCE)
def test_scatter_reduce_ties_and_zeros(reduce):
    a = np.array([[1.0, 0.0, 2.0], [3.0, 3.0, 0.0]])
    s = np.array([[1.0, 0.0, 2.0, 0.0], [3.0, 3.0, 1.0, 0.0]])
    check(lambda m, a, s: a.scatter_reduce(1, _scatter_idx(m), s, reduce), None, arrays=[a, s])


@pytest.mark.parametrize("reduce", ["add", "multiply"])
def test_scatter_reduce_arg(reduce):
    check(lambda m, a, s: a.scatter(1, _scatter_idx(m), s, reduce=reduce), [(2, 3), (2, 4)],
          grad=False)


def test_scatter_reduce_gradcheck():
    for reduce in REDUCE:
        gradcheck(lambda m, a, s: a.scatter_reduce(0, _i(m, [[0, 1], [0, 0]]), s, reduce),
                  [(2, 2), (2, 2)], low=0.5, high=2.0)
    gradcheck(lambda m, a, s: a.index_add(0, _i(m, [1, 1]), s), [(2, 2), (2, 2)])


INPLACE = [
    ("index_add_", lambda m, a, s: a.index_add_(0, _i(m, [1, 1]), s), [(2, 3), (2, 3)]),
    ("index_copy_", lambda m, a, s: a.index_copy_(0, _i(m, [1]), s), [(2, 3), (1, 3)]),
    ("index_fill_", lambda m, a: a.index_fill_(1, _i(m, [1]), 0.5), [(2, 3)]),
    ("index_put_", lambda m, a, v: a.index_put_((_i(m, [1, 0]),), v), [(2, 3), (3,)]),
    ("scatter_", lambda m, a, s: a.scatter_(1, _i(m, [[2], [0]]), s), [(2, 3), (2, 1)]),
    ("scatter_add_", lambda m, a, s: a.scatter_add_(1, _i(m, [[2, 2], [0, 1]]), s),
     [(2, 3), (2, 2)]),
    ("scatter_reduce_", lambda m, a, s: a.scatter_reduce_(1, _i(m, [[2, 2], [0, 1]]), s,
                                                          "amax"), [(2, 3), (2, 2)]),
    ("masked_fill_", lambda m, a: a.masked_fill_(a > 0, 0.0), [(2, 3)]),
    ("masked_scatter_", lambda m, a, s: a.masked_scatter_(a > 0, s), [(2, 3), (6,)]),
    ("put_", lambda m, a, s: a.put_(_i(m, [4, 0]), s), [(2, 3), (2,)]),
]


@pytest.mark.parametrize("name,fn,shapes", INPLACE, ids=[c[0] for c in INPLACE])
def test_inplace_index_ops(name, fn, shapes):
    def run(m, a, *rest):
        out = a * 1  # a non-leaf, so the in-place op is recorded
        r = fn(m, out, *rest)
        assert r is out
        return out * a
    check(run, shapes)
    # without autograd too
    t = torch.tensor(np.arange(6.0).reshape(2, 3))
    e = ember.tensor(np.arange(6.0).reshape(2, 3))
    rest = [np.linspace(-1, 1, int(np.prod(s))).reshape(s) for s in shapes[1:]]
    fn(torch, t, *[torch.tensor(x) for x in rest])
    fn(ember, e, *[ember.tensor(x) for x in rest])
    np.testing.assert_allclose(e.numpy(), t.numpy())


def test_index_op_errors():
    a = ember.zeros(3, 4)
    with pytest.raises(IndexError):
        a.index_select(0, ember.tensor([3]))
    with pytest.raises(RuntimeError):
        a.gather(1, ember.tensor([0]))
    with pytest.raises(IndexError):
        a.take(ember.tensor([12]))
    with pytest.raises(RuntimeError):
        a.masked_fill(ember.ones(3, 4), 1.0)
    with pytest.raises(RuntimeError):
        a.scatter_reduce(0, ember.zeros(1, 1, dtype=ember.int64), ember.ones(1, 1), "max")


NONDIFF = [
    lambda m: m.nonzero(m.tensor([[0, 1], [2, 0]])),
    lambda m: m.nonzero(m.tensor([0, 3, 1]), as_tuple=True),
    lambda m: m.nonzero(m.tensor(5)),
    lambda m: m.argwhere(m.tensor([[0.0, 1.5], [2.0, 0.0]])),
    lambda m: m.searchsorted(m.tensor([1, 3, 5, 7]), m.tensor([[0, 3], [6, 9]])),
    lambda m: m.searchsorted(m.tensor([1, 3, 5, 7]), m.tensor([3, 5]), right=True),
    lambda m: m.searchsorted(m.tensor([1, 3, 5, 7]), m.tensor([3, 5]), side="right"),
    lambda m: m.searchsorted(m.tensor([[1, 3], [2, 4]]), m.tensor([[3], [3]]), out_int32=True),
    lambda m: m.searchsorted(m.tensor([1.0, 2.0]), 1.5),
    lambda m: m.searchsorted(m.tensor([5, 1, 3]), m.tensor([2, 4]),
                             sorter=m.tensor([1, 2, 0])),
    lambda m: m.bucketize(m.tensor([[1, 5], [3, 9]]), m.tensor([1, 3, 5, 7])),
    lambda m: m.bucketize(m.tensor([1, 5, 3]), m.tensor([1, 3, 5, 7]), right=True),
    lambda m: m.bincount(m.tensor([1, 1, 3, 0])),
    lambda m: m.bincount(m.tensor([1, 1, 3]), minlength=6),
    lambda m: m.bincount(m.tensor([1, 1, 3]), weights=m.tensor([0.5, 1.0, 2.0])),
    lambda m: m.bincount(m.tensor([1, 1, 3]), weights=m.tensor([0.5, 1.0, 2.0],
                                                               dtype=m.float64)),
    lambda m: m.bincount(m.tensor([], dtype=m.int64)),
    lambda m: m.histc(m.tensor([1.0, 2.0, 1.0, 4.0]), bins=4, min=0, max=3),
    lambda m: m.histc(m.tensor([1.0, 2.0, 1.0, 4.0]), bins=3),
    lambda m: m.histc(m.tensor([[1.0, 2.0], [2.5, 4.0]], dtype=m.float64), bins=5, min=1, max=4),
    lambda m: m.unique(m.tensor([3, 1, 2, 3, 1])),
    lambda m: m.unique(m.tensor([3, 1, 2, 3, 1]), return_inverse=True, return_counts=True),
    lambda m: m.unique(m.tensor([[1, 2], [1, 2], [0, 5]]), dim=0, return_inverse=True,
                       return_counts=True),
    lambda m: m.unique(m.tensor([[2, 1, 2], [0, 3, 0]]), dim=1),
    lambda m: m.tensor([[2.0, 1.0], [2.0, 1.0]]).unique(return_inverse=True),
    lambda m: m.unique(m.tensor([1.0, float("nan"), 0.5, float("nan")]), return_counts=True),
    lambda m: m.unique(m.tensor([3, 1, 2, 3]), sorted=False),
    lambda m: m.unique_consecutive(m.tensor([1, 1, 2, 2, 3, 1, 1]), return_inverse=True,
                                   return_counts=True),
    lambda m: m.unique_consecutive(m.tensor([[1, 1], [1, 1], [2, 3]]), dim=0,
                                   return_counts=True),
    lambda m: m.tril_indices(3, 4), lambda m: m.tril_indices(4, 3, -1),
    lambda m: m.triu_indices(3, 3, 1), lambda m: m.triu_indices(2, 5, -1),
]


@pytest.mark.parametrize("i", range(len(NONDIFF)))
def test_nondifferentiable_index_ops(i):
    t, e = NONDIFF[i](torch), NONDIFF[i](ember)
    check(lambda m: NONDIFF[i](m), [], grad=False)
    assert type(t) is torch.Tensor or len(t) == len(e)


def test_nonzero_0d_as_tuple():
    check(lambda m: m.nonzero(m.tensor(5), as_tuple=True), [], grad=False)
    check(lambda m: m.nonzero(m.tensor(0.0)), [], grad=False)


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["prod", "mean", "amax", "amin"])
def test_index_reduce(reduce, include_self):
    check(lambda m, a, s: a.index_reduce(1, _i(m, [0, 2, 0]), s, reduce,
                                         include_self=include_self), [(2, 3), (2, 3)])


def test_index_reduce_inplace_and_gradcheck():
    check(lambda m, a, s: (a * 1).index_reduce_(0, _i(m, [1, 1]), s, "amax"), [(2, 3), (2, 3)])
    gradcheck(lambda m, a, s: a.index_reduce(0, _i(m, [1, 1]), s, "prod"), [(2, 2), (2, 2)],
              low=0.5)


MORE = [
    lambda m: m.isin(m.tensor([1, 2, 3, 4]), m.tensor([2, 4])),
    lambda m: m.isin(m.tensor([[1, 2], [3, 4]]), m.tensor([2, 4]), invert=True),
    lambda m: m.histogram(m.tensor([1.0, 2.0, 1.0, 2.5]), bins=4, range=(0.0, 3.0)),
    lambda m: m.histogram(m.tensor([1.0, 2.0, 1.0]), bins=m.tensor([0.0, 1.5, 3.0]),
                          weight=m.tensor([1.0, 2.0, 4.0])),
    lambda m: m.histogram(m.tensor([1.0, 2.0, 1.0, 3.0], dtype=m.float64), 3, density=True),
    lambda m: m.put(m.zeros(2, 2), m.tensor([3, 0]), m.tensor([1.0, 2.0])),
]


@pytest.mark.parametrize("i", range(len(MORE)))
def test_more_lookups(i):
    check(lambda m: MORE[i](m), [], grad=False)


@pytest.mark.parametrize("name", ["gather", "scatter_add", "index_add", "masked_scatter",
                                  "take", "index_copy", "masked_select"])
def test_index_ops_noncontig(name):
    fn, shapes = {c[0]: c[1:] for c in OPS}[name]
    check(fn, shapes, noncontig=True)


@pytest.mark.parametrize("fn", [
    lambda m, a: a.index_select(0, _i(m, [])),
    lambda m, a: a.gather(0, _i(m, [[]]).reshape(0, 3)),
    lambda m, a: a.masked_select(a > 10),
    lambda m, a: a.take(_i(m, [])),
    lambda m, a, : a.scatter_add(0, _i(m, [[]]).reshape(0, 3), a[:0]),
])
def test_index_ops_empty(fn):
    check(fn, [(2, 3)])


@pytest.mark.parametrize("fn", [
    lambda m, a: a.index_select(0, _i(m, [0])),
    lambda m, a: a.gather(0, _i(m, [0, 0])),
    lambda m, a: a.index_add(0, _i(m, [0]), a * 2),
    lambda m, a: a.scatter_add(0, _i(m, [0, 0]), a.reshape(1).expand(2)),
    lambda m, a: a.take(_i(m, [0])),
    lambda m, a: a.masked_fill(a > 0, 1.0),
])
def test_index_ops_0d(fn):
    check(fn, [()])


@pytest.mark.parametrize("fn,shapes", [
    (lambda m, a, s: (a.scatter_add(1, _scatter_idx(m), s) ** 2), [(2, 3), (2, 4)]),
    (lambda m, a: a.gather(1, _i(m, [[0, 0], [2, 1]])) ** 2, [(2, 3)]),
    (lambda m, a, s: a.index_put((_i(m, [1, 0]),), s, accumulate=True) ** 2, [(2, 3), (2, 3)]),
    (lambda m, a, s: a.scatter_reduce(1, _scatter_idx(m), s, "mean") ** 2, [(2, 3), (2, 4)]),
    (lambda m, a: a[[0, 0], 1:] ** 2, [(2, 3)]),
])
def test_index_double_backward(fn, shapes):
    gradcheck(fn, shapes, gradgrad=True)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
@pytest.mark.parametrize("name", ["index_select", "index_add", "index_copy", "index_fill",
                                  "gather", "scatter", "scatter_add", "masked_fill", "take",
                                  "put", "select_scatter", "masked_select", "index_put_acc"])
def test_index_ops_int_and_bool(name, dtype):
    fn, shapes = {c[0]: c[1:] for c in OPS}[name]
    if dtype == np.bool_ and name in ("index_add", "scatter_add", "put", "index_put_acc",
                                      "index_fill"):
        pytest.skip("arithmetic on bool")
    check(fn, shapes, dtype, grad=False, low=-5, high=5)


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", REDUCE)
def test_scatter_reduce_int(reduce, include_self):
    check(lambda m, a, s: a.scatter_reduce(1, _scatter_idx(m), s, reduce,
                                           include_self=include_self), [(2, 3), (2, 4)],
          np.int64, grad=False, low=-7, high=7)


VIEW_INPLACE = [
    ("getitem_iadd", lambda m, x, y: _iadd_rows(x * 2, y)),
    ("slice_mul_", lambda m, x, y: _then(x * 1, lambda h: h[:, 0].mul_(y[:, 0]))),
    ("element_add_", lambda m, x, y: _then(x * 1, lambda h: h[1, 2].add_(y[0, 0]))),
    ("transposed_view", lambda m, x, y: _then(x * 1, lambda h: h.t()[1].add_(y[1, :3]))),
    ("chained_views", lambda m, x, y: _then(x * 1, lambda h: h[1:][:, ::2].sub_(y[0, :2]))),
    ("value_grad_only", lambda m, x, y: _then(m.zeros(3, 4, dtype=x.dtype),
                                               lambda h: h[0].add_(x[0] * y[0]))),
    ("nested_setitem", lambda m, x, y: _then(x * 1, lambda h: h[1].__setitem__(
        slice(0, 2), y[0, :2] * 3))),
    ("view_then_base_use", lambda m, x, y: _then(x * 1, lambda h: h.view(-1)[2:5].mul_(2)) * y),
]


def _iadd_rows(h, y):
    h[1:] += y[:2]
    return h


def _then(h, fn):
    fn(h)
    return h


@pytest.mark.parametrize("name,fn", VIEW_INPLACE, ids=[c[0] for c in VIEW_INPLACE])
def test_inplace_on_views(name, fn):
    check(fn, [(3, 4), (3, 4)])


def test_inplace_on_view_of_leaf_and_detached():
    x = ember.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        x[0].add_(1)
    y = ember.ones(3, requires_grad=True)
    d = (y * 2).detach()
    d.add_(y)  # a detached alias: the op is recorded on ``d`` alone
    d.sum().backward()
    assert y.grad.tolist() == [1.0, 1.0, 1.0]
