import pytest

import ember
from ember.utils.data import (BatchSampler, DistributedSampler, RandomSampler,
                              SequentialSampler, SubsetRandomSampler, WeightedRandomSampler)
from tests.data._datasets import Items


def test_sequential_and_batch():
    s = SequentialSampler(Items(5))
    assert list(s) == [0, 1, 2, 3, 4] and len(s) == 5
    b = BatchSampler(s, 2, False)
    assert list(b) == [[0, 1], [2, 3], [4]] and len(b) == 3
    b = BatchSampler(s, 2, True)
    assert list(b) == [[0, 1], [2, 3]] and len(b) == 2
    assert list(BatchSampler(range(4), 2, True)) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="batch_size should be a positive integer value, but got "
                                         "batch_size=0"):
        BatchSampler(s, 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler(s, 2, 1)


def test_random_sampler():
    ember.manual_seed(0)
    a = list(RandomSampler(Items(20)))
    assert sorted(a) == list(range(20)) and a != list(range(20))
    ember.manual_seed(0)
    assert list(RandomSampler(Items(20))) == a
    g = ember.Generator().manual_seed(3)
    s = RandomSampler(Items(5), num_samples=12, generator=g)
    out = list(s)
    assert len(s) == 12 and len(out) == 12
    assert sorted(out[:5]) == sorted(out[5:10]) == list(range(5))  # whole passes first
    r = list(RandomSampler(Items(3), replacement=True, num_samples=70))
    assert len(r) == 70 and set(r) <= {0, 1, 2}
    with pytest.raises(TypeError, match="replacement should be a boolean value"):
        RandomSampler(Items(3), replacement=1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        RandomSampler(Items(3), num_samples=0)


def test_subset_random_sampler():
    s = SubsetRandomSampler([10, 20, 30, 40])
    assert sorted(s) == [10, 20, 30, 40] and len(s) == 4


def test_weighted_random_sampler():
    s = WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 200)
    out = list(s)
    assert len(s) == 200 and set(out) == {1, 3} and out.count(3) > out.count(1)
    s = WeightedRandomSampler(ember.tensor([1.0, 1.0, 1.0]), 3, replacement=False)
    assert sorted(s) == [0, 1, 2]
    with pytest.raises(ValueError, match="weights should be a 1d sequence"):
        WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        WeightedRandomSampler([1.0], -1)
    with pytest.raises(ValueError, match="replacement should be a boolean value"):
        WeightedRandomSampler([1.0], 1, replacement=None)


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (2, 4, False),
                                                  (12, 4, True)])
def test_distributed_sampler_matches_torch(n, replicas, drop_last):
    torch = pytest.importorskip("torch")
    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(range(n), replicas, rank, shuffle=False,
                                                     drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_distributed_sampler_shuffle_partitions():
    shards = [DistributedSampler(Items(12), 3, r, seed=7) for r in range(3)]
    first = [list(s) for s in shards]
    assert sorted(sum(first, [])) == list(range(12))
    assert [list(s) for s in shards] == first  # same epoch, same order
    for s in shards:
        s.set_epoch(1)
    second = [list(s) for s in shards]
    assert second != first and sorted(sum(second, [])) == list(range(12))


def test_distributed_sampler_needs_rank_without_backend():
    with pytest.raises(RuntimeError, match="Requires distributed package"):
        DistributedSampler(Items(4))
    with pytest.raises(ValueError, match=r"Invalid rank 3, rank should be in the interval \[0, 2\]"):
        DistributedSampler(Items(4), num_replicas=3, rank=3)
