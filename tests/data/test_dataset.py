import numpy as np
import pytest

import ember
from ember.utils.data import (ChainDataset, ConcatDataset, Dataset, IterableDataset,
                              StackDataset, Subset, TensorDataset, random_split)
from tests.data._datasets import Items, Stream


def test_tensor_dataset():
    x, y = ember.arange(12).reshape(6, 2), ember.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    a, b = ds[4]
    assert a.tolist() == [8, 9] and b.item() == 4
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(x, ember.arange(5))


def test_base_classes():
    with pytest.raises(NotImplementedError):
        Dataset()[0]
    cat = Items(2) + Items(3)
    assert isinstance(cat, ConcatDataset) and [cat[i] for i in range(5)] == [0, 1, 0, 1, 2]
    chain = Stream(2) + Stream(2)
    assert isinstance(chain, ChainDataset) and list(chain) == [0, 1, 0, 1]


def test_stack_dataset():
    ds = StackDataset(Items(3), Items(3, (2,)))
    assert ds[1][0] == 1 and ds[1][1][1] == 1 and len(ds) == 3
    kw = StackDataset(a=Items(3), b=Subset(Items(5), [4, 3, 2]))
    assert kw[0] == {"a": 0, "b": 4}
    assert kw.__getitems__([0, 2]) == [{"a": 0, "b": 4}, {"a": 2, "b": 2}]
    with pytest.raises(ValueError, match="Size mismatch"):
        StackDataset(Items(3), Items(4))
    with pytest.raises(ValueError, match="both types are given"):
        StackDataset(Items(3), b=Items(3))


def test_concat_dataset():
    ds = ConcatDataset([Items(3), Items(2), Items(4)])
    assert len(ds) == 9 and ds.cumulative_sizes == [3, 5, 9]
    assert [ds[i] for i in range(9)] == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert ds[-1] == 3 and ds[-9] == 0
    with pytest.raises(ValueError, match="absolute value of index"):
        ds[-10]
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        ConcatDataset([Items(1), Stream(2)])
    with pytest.raises(AssertionError, match="empty iterable"):
        ConcatDataset([])


def test_chain_dataset():
    ds = ChainDataset([Stream(2), Stream(3)])
    assert list(ds) == [0, 1, 0, 1, 2]
    with pytest.raises(TypeError):
        len(ds)  # Stream has no __len__
    with pytest.raises(AssertionError, match="only supports IterableDataset"):
        list(ChainDataset([Items(2)]))


def test_subset():
    ds = Subset(Items(10), [9, 3, 5])
    assert len(ds) == 3 and ds[0] == 9 and ds.__getitems__([2, 1]) == [5, 3]


def test_iterable_dataset_needs_iter():
    with pytest.raises(NotImplementedError):
        iter(IterableDataset())


def test_random_split_lengths_and_generator():
    parts = random_split(Items(10), [3, 7], generator=ember.Generator().manual_seed(1))
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(parts[0].indices + parts[1].indices) == list(range(10))
    again = random_split(Items(10), [3, 7], generator=ember.Generator().manual_seed(1))
    assert again[0].indices == parts[0].indices
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(Items(10), [3, 3])


def test_random_split_fractions_match_torch_lengths():
    torch = pytest.importorskip("torch")
    for n, fracs in [(10, [0.3, 0.7]), (11, [0.5, 0.25, 0.25]), (7, [0.1, 0.1, 0.8])]:
        ours = [len(p) for p in random_split(Items(n), fracs)]
        theirs = [len(p) for p in torch.utils.data.random_split(range(n), fracs)]
        assert ours == theirs
    with pytest.warns(UserWarning, match="Length of split at index 0 is 0"):
        random_split(Items(2), [0.0, 1.0])


def test_random_split_uses_default_generator():
    ember.manual_seed(5)
    a = random_split(Items(8), [4, 4])[0].indices
    ember.manual_seed(5)
    assert random_split(Items(8), [4, 4])[0].indices == a
    assert np.unique(a).size == 4


def test_classes_are_generic():
    from ember.utils.data import DataLoader, Sampler

    class Evens(Sampler[int]):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(0, self.n, 2))

    class Squares(Dataset[int]):
        def __getitem__(self, i):
            return i * i

    assert IterableDataset[int] is not None
    loader = DataLoader[int](Squares(), batch_size=2, sampler=Evens(7))
    assert [b.tolist() for b in loader] == [[0, 4], [16, 36]]
