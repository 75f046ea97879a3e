"""Datasets for the DataLoader tests, importable by spawned workers (no torch import here)."""

import os
import random
import signal
import sys
import time

import numpy as np

import ember
from ember.utils.data import Dataset, IterableDataset, get_worker_info


class Items(Dataset):
    """Sample i is ``(float32 array filled with i, i)``, or just ``i`` without a shape."""

    def __init__(self, n, shape=None):
        self.n, self.shape = n, shape

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.shape is None:
            return i
        return np.full(self.shape, i, np.float32), i


class Failing(Items):
    def __init__(self, n, bad):
        super().__init__(n)
        self.bad = bad

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"bad sample {i}")
        return i


class Sleepy(Items):
    """Sample i sleeps ``delays.get(i, default)`` seconds first."""

    def __init__(self, n, default=0.0, delays=None):
        super().__init__(n)
        self.default, self.delays = default, delays or {}

    def __getitem__(self, i):
        time.sleep(self.delays.get(i, self.default))
        return i


class Suicidal(Items):
    """The worker that fetches ``at`` dies: by a signal, or by exiting with ``code``."""

    def __init__(self, n, at, sig=signal.SIGKILL, code=None):
        super().__init__(n)
        self.at, self.sig, self.code = at, sig, code

    def __getitem__(self, i):
        if i == self.at and get_worker_info() is not None:
            if self.code is not None:
                sys.exit(self.code)
            os.kill(os.getpid(), self.sig)
            time.sleep(5)
        return i


class Randomised(Items):
    """Random draws from every global generator, with the worker's id and seed."""

    def __getitem__(self, i):
        info = get_worker_info()
        return {"np": np.random.rand(), "py": random.random(), "ember": ember.rand(1).item(),
                "wid": -1 if info is None else info.id, "seed": -1 if info is None else info.seed,
                "i": i}


class Sharded(IterableDataset):
    """``range(n)``, each worker taking every num_workers-th item from its id."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))


class Stream(IterableDataset):
    """``range(n)`` without sharding."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))
