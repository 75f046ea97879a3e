import collections

import numpy as np
import pytest

import ember
from ember.utils.data import default_collate, default_convert
from ember.utils.data._utils.collate import collate, default_collate_fn_map

torch = pytest.importorskip("torch")
Point = collections.namedtuple("Point", "x y")


def same(ours, theirs):
    """Same structure, container types, dtypes and values (tensors compared by value)."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, ember.Tensor)
        assert str(ours.dtype).split(".")[1] == str(theirs.dtype).split(".")[1]
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for k in theirs:
            same(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            same(a, b)
    else:
        assert type(ours) is type(theirs) and ours == theirs


def samples(mod):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    return [
        {"img": arrays[i], "t": mod.tensor([i, i + 1]), "label": i, "w": 0.5 * i,
         "name": f"s{i}", "raw": b"x", "flag": bool(i % 2), "np16": np.float16(i),
         "npi": np.int32(i), "pt": Point(i, [1.0, 2.0]), "pair": (i, float(i)),
         "nested": [{"a": np.arange(2) + i}]}
        for i in range(3)]


def test_default_collate_matches_torch():
    same(default_collate(samples(ember)), torch.utils.data.default_collate(samples(torch)))


def test_collated_number_dtypes():
    assert default_collate([1, 2]).dtype == ember.int64
    assert default_collate([1.0, 2.0]).dtype == ember.float64
    assert default_collate([True, False]).dtype == ember.bool
    assert default_collate([np.float32(1), np.float32(2)]).dtype == ember.float32


def test_default_convert_matches_torch():
    for mk in (lambda m: {"a": np.arange(3), "b": [np.float32(2), "s"], "c": (np.ones(2), 1)},
               lambda m: Point(np.zeros(2), np.array(["str"])),
               lambda m: [m.tensor([1.0]), 3]):
        same(default_convert(mk(ember)), torch.utils.data.default_convert(mk(torch)))


def test_collate_errors():
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors, numpy "
                                        "arrays, numbers, dicts or lists; found <class 'object'>"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="found <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal "
                                           "size"):
        default_collate([[1, 2], [1]])
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but got "
                                           r"\[2\] at entry 0 and \[3\] at entry 1"):
        default_collate([np.zeros(2), np.zeros(3)])


def test_custom_collate_fn_map():
    class Box:
        def __init__(self, v):
            self.v = v

    fmap = {**default_collate_fn_map, Box: lambda b, *, collate_fn_map: sum(x.v for x in b)}
    out = collate([{"b": Box(1), "n": 1}, {"b": Box(2), "n": 2}], collate_fn_map=fmap)
    assert out["b"] == 3 and out["n"].tolist() == [1, 2]
