"""Parity of sorting and order statistics with PyTorch."""

import numpy as np
import pytest

from .helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

F = [np.float32, np.float64]

CASES = [
    ("sort", lambda m, a: m.sort(a), [(3, 5)]),
    ("sort_dim0_desc", lambda m, a: a.sort(0, descending=True), [(4, 3)]),
    ("sort_stable_kw", lambda m, a: m.sort(a, stable=True, dim=-2), [(4, 3)]),
    ("sort_0d", lambda m, a: m.sort(a), [()]),
    ("sort_empty", lambda m, a: m.sort(a), [(0, 3)]),
    ("argsort", lambda m, a: a.argsort(dim=0, descending=True), [(4, 3)]),
    ("msort", lambda m, a: m.msort(a), [(4, 3)]),
    ("topk", lambda m, a: a.topk(2), [(3, 5)]),
    ("topk_smallest", lambda m, a: m.topk(a, 3, dim=0, largest=False), [(4, 3)]),
    ("kthvalue", lambda m, a: a.kthvalue(2), [(3, 5)]),
    ("kthvalue_keep", lambda m, a: m.kthvalue(a, 4, 0, keepdim=True), [(4, 3)]),
    ("median_all", lambda m, a: a.median(), [(3, 4)]),
    ("median_dim", lambda m, a: m.median(a, 1), [(3, 4)]),
    ("median_dim_keep", lambda m, a: a.median(0, keepdim=True), [(5, 2)]),
    ("nanmedian", lambda m, a: m.nanmedian(a, -1), [(3, 5)]),
    ("quantile", lambda m, a: m.quantile(a, 0.3), [(3, 4)]),
    ("quantile_dim", lambda m, a: a.quantile(0.75, dim=1, keepdim=True), [(3, 4)]),
    ("quantile_q", lambda m, a, q: m.quantile(a, q.detach().sort().values.clamp(0, 1).abs(),
                                              dim=0), [(5, 3), (3,)]),
    ("nanquantile", lambda m, a: m.nanquantile(a, 0.5, dim=0), [(4, 3)]),
]


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("name,fn,shapes", CASES, ids=[c[0] for c in CASES])
def test_sorting(name, fn, shapes, dtype):
    check(fn, shapes, dtype)


@pytest.mark.parametrize("interp", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_quantile_interpolation(interp):
    q = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    check(lambda m, a, q: m.quantile(a, q, dim=-1, interpolation=interp), None,
          arrays=[np.random.default_rng(0).normal(size=(2, 5)), q])
    check(lambda m, a: a.quantile(0.5, keepdim=True, interpolation=interp), [(2, 4)])


def test_nan_handling():
    a = np.array([[1.0, np.nan, 3.0, 0.5], [2.0, 1.0, 0.0, 4.0], [np.nan] * 4])
    check(lambda m, a: m.sort(a, 1), None, arrays=[a])
    check(lambda m, a: m.sort(a, 1, descending=True), None, arrays=[a])
    # which NaN an all-NaN row reports is an implementation detail: gradients on rows 0-1
    check(lambda m, a: m.nanmedian(a, 1).values, None, arrays=[a], grad=False)
    check(lambda m, a: m.nanmedian(a[:2], 1).values, None, arrays=[a])
    check(lambda m, a: m.nanquantile(a, 0.4, dim=1), None, arrays=[a])
    check(lambda m, a: m.quantile(a, 0.4, dim=1), None, arrays=[a])
    check(lambda m, a: m.nanmedian(a), None, arrays=[a])
    check(lambda m, a: m.median(a[1:2]), None, arrays=[a])
    check(lambda m, a: m.median(a, 1).values, None, arrays=[a], grad=False)


def test_stable_ties_and_ints():
    a = np.array([[3, 1, 3, 1, 2], [0, 0, 0, 5, 5]], dtype=np.int64)
    check(lambda m, a: m.sort(a, stable=True), None, arrays=[a], grad=False)
    check(lambda m, a: m.sort(a, descending=True, stable=True), None, arrays=[a], grad=False)
    check(lambda m, a: m.argsort(a, stable=True, descending=True), None, arrays=[a], grad=False)
    b = np.array([[True, False, True]])
    check(lambda m, a: m.sort(a, stable=True), None, arrays=[b], grad=False)


def test_mode():
    a = np.array([[1.0, 2.0, 2.0, 3.0, 1.0], [4.0, 4.0, 0.5, 0.5, 0.5]])
    check(lambda m, a: m.mode(a), None, arrays=[a])
    check(lambda m, a: a.mode(0, keepdim=True), None, arrays=[a[:, :3]])
    check(lambda m, a: m.mode(a), None, arrays=[np.array([2, 7, 7, 2, 1])], grad=False)


def test_sorting_gradcheck():
    gradcheck(lambda m, a: m.topk(a, 2, 0).values, [(4, 3)])
    gradcheck(lambda m, a: m.quantile(a, 0.35, dim=1), [(3, 4)])
    gradcheck(lambda m, a: a.sort(1, descending=True).values * 2, [(2, 4)])


def test_sorting_errors():
    a = ember.zeros(3, 4)
    with pytest.raises(RuntimeError):
        a.topk(5)
    with pytest.raises(RuntimeError):
        a.kthvalue(0)
    with pytest.raises(RuntimeError):
        ember.quantile(a, 1.5)
    with pytest.raises(IndexError):
        a.sort(2)


@pytest.mark.parametrize("name", ["sort", "topk", "kthvalue", "median_dim", "quantile_dim",
                                  "msort"])
def test_sorting_noncontig(name):
    fn, shapes = {c[0]: c[1:] for c in CASES}[name]
    check(fn, shapes, noncontig=True)


@pytest.mark.parametrize("fn", [lambda m, a: m.sort(a), lambda m, a: a.topk(1),
                                lambda m, a: a.kthvalue(1), lambda m, a: a.median(0),
                                lambda m, a: a.median(), lambda m, a: a.quantile(0.5),
                                lambda m, a: a.argsort()])
def test_sorting_0d(fn):
    check(fn, [()])


def test_sorting_double_backward():
    gradcheck(lambda m, a: m.sort(a, 0).values * a, [(3, 2)], gradgrad=True)
