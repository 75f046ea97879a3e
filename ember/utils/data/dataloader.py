"""``DataLoader``: batches from a dataset, in the main process or in worker processes.

Pieces, as in PyTorch: a sampler yields keys, a ``BatchSampler`` groups them, a fetcher turns a
group into samples, ``collate_fn`` turns samples into a batch. With ``num_workers=0`` that is a
plain loop in the calling process.

With workers (``_MultiProcessingDataLoaderIter``)::

    main process                                   worker w (w = 0 .. num_workers-1)
    ------------                                   ---------------------------------
    draw base seed from ember's generator          seeds ember/random/NumPy: base + w
    start workers, prefetch tasks round-robin  --> index queue w: (idx, indices)
                                                   fetch, collate, write arrays to a
    wait on all result pipes + process         <-- shared-memory block; send small pickle
    sentinels (a dead worker wakes us at once)
    map the block, rebuild the batch, yield it
    in idx order (or as ready: in_order=False);
    each yielded batch sends one more task
    epoch over / break / del / error:
    None to every queue, join (terminate after
    a grace period), unlink leftover blocks

A worker's exception comes back with its traceback text and re-raises in the main process; a
worker that dies raises RuntimeError naming it and its signal; ``timeout`` bounds the wait for
one batch. Iterators own their workers through a finalizer, so dropping the iterator (breaking
out of a loop) or leaving the interpreter stops them.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import secrets
import signal
import sys
import time
import warnings
import weakref
from typing import Generic, TypeVar

from ._utils.collate import default_collate, default_convert
from ._utils.worker import (SHM_DIR, _Exhausted, decode, discard, make_fetcher, unlink_blocks,
                            worker_loop)
from ._utils.worker import get_worker_info  # noqa: F401  (at PyTorch's path too)
from .dataset import IterableDataset
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, _draw_seed)

__all__ = ["DataLoader"]

_T_co = TypeVar("_T_co", covariant=True)

# Seconds a worker gets to exit after being told to, before it is terminated.
_SHUTDOWN_GRACE_S = 2.0
# Upper bound on one wait for results; waiting is woken at once by results and worker deaths,
# this only bounds how long a signal handler or timeout check can be delayed.
_WAIT_SLICE_S = 1.0


class _InfiniteConstantSampler(Sampler):
    """The sampler of an IterableDataset: keys mean nothing there."""

    def __iter__(self):
        while True:
            yield None


def _default_context():
    # fork starts workers in milliseconds and shares the dataset without pickling it
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context()


class DataLoader(Generic[_T_co]):
    """Iterate over ``dataset`` in batches (PyTorch's ``torch.utils.data.DataLoader``).

    ``pin_memory`` and ``pin_memory_device`` are accepted and have no effect (ember has no
    accelerator memory to pin for).
    """

    _initialized = False

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             "disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in "
                             "multiprocessing.let num_workers > 0 to enable multiprocessing, "
                             "otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order

        if isinstance(dataset, IterableDataset):
            self._dataset_kind = "iterable"
            if shuffle not in {False, None}:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler "
                                 f"option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
            self._dataset_kind = "map"

        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")

        if sampler is None:
            if self._dataset_kind == "iterable":
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self.persistent_workers = persistent_workers
        self._iterator = None
        self._initialized = True
        self._check_worker_number_rationality()

    @property
    def multiprocessing_context(self):
        return self._multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, ctx):
        if ctx is not None:
            if self.num_workers == 0:
                raise ValueError(f"multiprocessing_context can only be used with multi-process "
                                 f"loading (num_workers > 0), but got "
                                 f"num_workers={self.num_workers}")
            if isinstance(ctx, str):
                valid = mp.get_all_start_methods()
                if ctx not in valid:
                    raise ValueError(f"multiprocessing_context option should specify a valid "
                                     f"start method in {valid!r}, but got "
                                     f"multiprocessing_context={ctx!r}")
                ctx = mp.get_context(ctx)
            if not isinstance(ctx, mp.context.BaseContext):
                raise TypeError(f"multiprocessing_context option should be a valid context "
                                f"object or a string specifying the start method, but got "
                                f"multiprocessing_context={ctx}")
        self._multiprocessing_context = ctx

    def __setattr__(self, attr, val):
        if self._initialized and attr in ("batch_size", "batch_sampler", "sampler", "drop_last",
                                          "dataset", "persistent_workers"):
            raise ValueError(f"{attr} attribute should not be set after "
                             f"{self.__class__.__name__} is initialized")
        super().__setattr__(attr, val)

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def _get_iterator(self):
        if self.num_workers == 0:
            return _SingleProcessDataLoaderIter(self)
        return _MultiProcessingDataLoaderIter(self)

    def __iter__(self):
        """A new pass over the data; persistent workers are reused across passes."""
        if self.persistent_workers and self.num_workers > 0:
            if self._iterator is None or self._iterator._pool.closed:
                self._iterator = self._get_iterator()
            else:
                self._iterator._reset(self)
            return self._iterator
        return self._get_iterator()

    def __len__(self):
        if self._dataset_kind == "iterable":
            # each worker holds a copy of the stream, so this is only right when the dataset
            # shards itself across workers
            length = len(self.dataset)
            if self.batch_size is not None:
                if self.drop_last:
                    length = length // self.batch_size
                else:
                    length = math.ceil(length / self.batch_size)
            return length
        return len(self._index_sampler)

    def _check_worker_number_rationality(self):
        if self.num_workers == 0:
            return
        if hasattr(os, "sched_getaffinity"):
            cpus = len(os.sched_getaffinity(0))
        else:
            cpus = os.cpu_count()
        if cpus and self.num_workers > cpus:
            warnings.warn(f"This DataLoader will create {self.num_workers} worker processes in "
                          f"total. Our suggested max number of worker in current system is "
                          f"{cpus}, which is smaller than what this DataLoader is going to "
                          f"create. Please be aware that excessive worker creation might get "
                          f"DataLoader running slow or even freeze, lower the worker number to "
                          f"avoid potential slowness/freeze if necessary.", stacklevel=3)


class _BaseDataLoaderIter:
    def __init__(self, loader):
        self._dataset = loader.dataset
        self._iterable = loader._dataset_kind == "iterable"
        self._auto_collation = loader._auto_collation
        self._index_sampler = loader._index_sampler
        self._collate_fn = loader.collate_fn
        self._batch_size = loader.batch_size
        self._drop_last = loader.drop_last
        self._generator = loader.generator
        self._timeout = loader.timeout
        if loader.pin_memory:
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=3)
        self._sampler_iter = iter(self._index_sampler)
        # Drawn with and without workers alike, so one ember.manual_seed gives the same
        # shuffle whatever num_workers is.
        self._base_seed = _draw_seed(self._generator)

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._index_sampler)


class _SingleProcessDataLoaderIter(_BaseDataLoaderIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = make_fetcher(self._dataset, self._iterable, self._auto_collation,
                                     self._collate_fn, self._batch_size, self._drop_last)

    def __next__(self):
        if self._iterable:
            try:
                return self._fetcher.fetch()
            except _Exhausted:
                raise StopIteration from None
        return self._fetcher.fetch(next(self._sampler_iter))


class _WorkerPool:
    """The processes, queues and pipes of one iterator. Kept apart from the iterator so that a
    finalizer can shut them down without keeping the iterator alive."""

    def __init__(self, block_prefix):
        self.block_prefix = block_prefix
        self.workers = []
        self.index_queues = []
        self.conns = []
        self.owner_pid = os.getpid()
        self.closed = False

    def shutdown(self):
        """Stop every worker (asking first, then terminating) and free leftover blocks."""
        # A forked child holds a copy of this object; only the creator may act on it.
        if self.closed or os.getpid() != self.owner_pid:
            return
        self.closed = True
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        alive = {w.sentinel: w for w in self.workers}
        open_conns = list(self.conns)
        while alive and time.monotonic() < deadline:
            ready = mp_connection.wait(list(alive) + open_conns,
                                       max(0.0, deadline - time.monotonic()))
            for obj in ready:
                if obj in alive:
                    del alive[obj]
                else:  # drain results nobody will read, so a worker blocked on send exits
                    try:
                        msg = obj.recv()
                        if msg[0] == "ok":
                            discard(msg[2])
                    except (EOFError, OSError):
                        open_conns.remove(obj)
        for w in alive.values():
            w.terminate()
        for w in self.workers:
            w.join(1.0)
            if w.exitcode is None:
                w.kill()
                w.join()
        for c in self.conns:
            try:
                while c.poll():
                    msg = c.recv()
                    if msg[0] == "ok":
                        discard(msg[2])
            except (EOFError, OSError):
                pass
            c.close()
        for q in self.index_queues:
            q.cancel_join_thread()
            q.close()
        unlink_blocks(self.block_prefix)


_block_counter = itertools.count()


class _MultiProcessingDataLoaderIter(_BaseDataLoaderIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._num_workers = nw = loader.num_workers
        self._prefetch = loader.prefetch_factor * nw
        self._in_order = loader.in_order
        self._persistent = loader.persistent_workers
        self._epoch = 0
        ctx = loader.multiprocessing_context or _default_context()
        prefix = os.path.join(SHM_DIR, f"ember_dl_{os.getpid()}_{secrets.token_hex(4)}_"
                                       f"{next(_block_counter)}_")
        self._pool = pool = _WorkerPool(prefix)
        self._finalizer = weakref.finalize(self, pool.shutdown)
        for wid in range(nw):
            q = ctx.Queue()
            reader, writer = ctx.Pipe(duplex=False)
            w = ctx.Process(
                target=worker_loop, daemon=True,
                args=(self._dataset, self._iterable, q, writer, self._auto_collation,
                      self._collate_fn, self._batch_size, self._drop_last,
                      self._base_seed + wid, loader.worker_init_fn, wid, nw,
                      f"{prefix}w{wid}_"))
            w.start()
            # our copy of the write end must go, or a dead worker's pipe would never see EOF
            # (and later forks would inherit it)
            writer.close()
            pool.workers.append(w)
            pool.index_queues.append(q)
            pool.conns.append(reader)
        self._owner = {c: i for i, c in enumerate(pool.conns)}
        self._owner.update({w.sentinel: i for i, w in enumerate(pool.workers)})
        self._start_epoch()

    # ------------------------------------------------------------ epochs
    def _start_epoch(self):
        self._send_idx = 0      # next task id to send
        self._rcvd_idx = 0      # next task id to yield (in_order)
        self._pending = {}      # task id -> worker id, sent and not yet answered
        self._ready = {}        # task id -> (status, data), answered early (in_order)
        self._active = [True] * self._num_workers  # False once an IterableDataset copy ends
        self._next_worker = itertools.cycle(range(self._num_workers))
        for _ in range(self._prefetch):
            self._try_put_index()

    def _reset(self, loader):
        """Start another pass with the same (persistent) workers."""
        # Answers to tasks of the last pass are dropped until each worker confirms the new
        # epoch, whose seed it takes (one draw per pass, as without persistent workers).
        self._sampler_iter = iter(self._index_sampler)
        seed = _draw_seed(self._generator)
        self._epoch += 1
        for wid, q in enumerate(self._pool.index_queues):
            q.put(("resume", self._epoch, seed + wid))
        for wid in range(self._num_workers):
            while True:
                status, tag, data = self._receive((wid,), use_timeout=False)
                if status == "resumed" and tag == self._epoch:
                    break
        self._start_epoch()

    def _try_put_index(self):
        if not any(self._active):
            return
        if self._iterable:
            indices = None  # workers read their own streams
        else:
            try:
                indices = next(self._sampler_iter)
            except StopIteration:
                return
        for _ in range(self._num_workers):
            wid = next(self._next_worker)
            if self._active[wid]:
                break
        self._pool.index_queues[wid].put((self._send_idx, indices))
        self._pending[self._send_idx] = wid
        self._send_idx += 1

    # ------------------------------------------------------------ receiving
    def __next__(self):
        if self._pool.closed:
            raise StopIteration
        while True:
            if self._in_order:
                while self._rcvd_idx in self._ready:
                    status, data = self._ready.pop(self._rcvd_idx)
                    self._rcvd_idx += 1
                    self._try_put_index()
                    if status != "stop":
                        return self._deliver(status, data)
            if not self._pending:
                if not self._persistent:
                    self._finalizer()
                raise StopIteration
            status, idx, data = self._receive(range(self._num_workers))
            wid = self._pending.pop(idx)
            if status == "stop":
                self._active[wid] = False
            if self._in_order:
                self._ready[idx] = (status, data)
                continue
            self._try_put_index()
            if status != "stop":
                return self._deliver(status, data)

    @staticmethod
    def _deliver(status, data):
        if status == "err":
            data.reraise()
        return data

    def _receive(self, wids, use_timeout=True):
        """The next message from any of workers ``wids``, with ``ok`` payloads decoded.
        Raises at once if one of them dies, and after ``timeout`` seconds if set."""
        pool = self._pool
        waitables = [pool.conns[i] for i in wids] + [pool.workers[i].sentinel for i in wids]
        timeout = self._timeout if use_timeout else 0
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while True:
            slice_s = _WAIT_SLICE_S
            if deadline is not None:
                slice_s = min(slice_s, max(0.0, deadline - time.monotonic()))
            ready = mp_connection.wait(waitables, slice_s)
            # results first: a worker may have sent its last batch just before it died
            for obj in ready:
                if obj in pool.conns:
                    try:
                        status, tag, data = obj.recv()
                    except (EOFError, OSError):
                        self._worker_failed(self._owner[obj])
                    if status == "ok":
                        data = decode(data)
                    return status, tag, data
            for obj in ready:
                self._worker_failed(self._owner[obj])
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")

    def _worker_failed(self, wid):
        w = self._pool.workers[wid]
        w.join(1.0)  # reap it, to read how it ended
        code = w.exitcode
        self._finalizer()
        who = f"DataLoader worker {wid} (pid {w.pid})"
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            hint = ""
            if sig == signal.SIGKILL:
                hint = " A SIGKILL often means the system ran out of memory."
            elif sig == signal.SIGBUS:
                hint = f" A SIGBUS often means {SHM_DIR} ran out of space."
            raise RuntimeError(f"{who} was killed by signal {sig.name} "
                               f"({signal.strsignal(sig)}).{hint}")
        if code is not None:
            raise RuntimeError(f"{who} exited unexpectedly with exit code {code}.")
        raise RuntimeError(f"{who} closed its result pipe unexpectedly.")

    def _shutdown_workers(self):
        """Stop the workers now (also done when the iterator is garbage collected)."""
        self._finalizer()
