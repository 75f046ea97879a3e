"""What runs inside a DataLoader worker process, and the shared-memory batch transport.

A worker loops: take a task ``(idx, indices)`` from its index queue, fetch and collate the
samples, and send the batch back on its own result pipe. The batch is pickled with protocol 5:
NumPy arrays (and so tensors, which pickle as their array) of at least ``_SHM_MIN_BYTES`` are
handed out of band and written into one fresh shared-memory block (a file in ``/dev/shm``);
only the small pickle, the block's name and the buffers' offsets travel through the pipe. The
main process maps the block, unlinks its name at once (the memory lives on while arrays use
it), and rebuilds the batch around the mapped buffers without copying.

Messages on the result pipe (worker -> main):
    ("ok", idx, payload)                 payload as made by ``encode``
    ("stop", idx, None)                  an IterableDataset is exhausted
    ("err", idx, ExceptionWrapper)       fetch or collate raised
    ("resumed", epoch, None)             a persistent worker has started a new epoch
Tasks on the index queue (main -> worker): ``(idx, indices)``, ``("resume", epoch, seed)``,
and ``None`` to exit. A worker also exits when its parent process is gone.
"""

from __future__ import annotations

import glob
import mmap
import os
import pickle
import queue
import random
import signal
import sys
import tempfile
import traceback

import numpy as np

__all__ = ["WorkerInfo", "get_worker_info"]

# Below this many bytes a buffer is cheaper to pickle inline than to place in shared memory.
_SHM_MIN_BYTES = 16 * 1024
_ALIGN = 64
# How often a waiting worker checks that its parent still runs (seconds).
_WATCHDOG_S = 1.0

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()

_worker_info = None


class WorkerInfo:
    """``id``, ``num_workers``, ``seed`` and ``dataset`` (this worker's copy) of the current
    DataLoader worker process."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, val):
        raise RuntimeError(f"Cannot assign attributes to {self.__class__.__name__} objects")

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{self.__class__.__name__}({fields})"


def get_worker_info():
    """The current worker's ``WorkerInfo``; None in the main process."""
    return _worker_info


class ExceptionWrapper:
    """An exception caught in a worker, carried to the main process with its traceback text."""

    def __init__(self, exc_info, where):
        self.exc_type = exc_info[0]
        self.type_name = exc_info[0].__name__
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where
        try:  # classes defined in unimportable places cannot cross the pipe
            pickle.dumps(self.exc_type)
        except Exception:
            self.exc_type = RuntimeError

    def reraise(self):
        msg = f"Caught {self.type_name} {self.where}.\nOriginal {self.exc_msg}"
        try:
            exc = self.exc_type(msg)
        except Exception:  # the class needs other constructor arguments
            exc = RuntimeError(msg)
        try:
            raise exc
        finally:
            # break exc -> traceback -> this frame -> exc, which would keep the DataLoader
            # iterator (and its workers) alive until the cycle collector runs
            del exc


# ---------------------------------------------------------------- shared-memory transport
def encode(obj, block_path):
    """Pickle ``obj``; large buffers go to a new shared-memory block at ``block_path``.
    Returns ``(pickle_bytes, block_path or None, [(offset, nbytes), ...], block_size)``."""
    bufs = []

    def out_of_band(pb):
        # a true result keeps the buffer inside the pickle stream
        if pb.raw().nbytes < _SHM_MIN_BYTES:
            return True
        bufs.append(pb)
        return False

    data = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    if not bufs:
        return data, None, (), 0
    spans, off = [], 0
    for pb in bufs:
        n = pb.raw().nbytes
        spans.append((off, n))
        off += (n + _ALIGN - 1) // _ALIGN * _ALIGN
    fd = os.open(block_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, off)
        for pb, (start, n) in zip(bufs, spans):
            # a full /dev/shm fails here with ENOSPC (a clean error, unlike a SIGBUS through
            # a mapping); one call writes at most ~2 GiB, hence the loop
            raw, done = pb.raw(), 0
            while done < n:
                done += os.pwrite(fd, raw[done:], start + done)
    except BaseException:
        os.unlink(block_path)
        raise
    finally:
        os.close(fd)
    return data, block_path, spans, off


def decode(payload):
    """Rebuild an object made by ``encode``; its arrays view the mapped block (no copy)."""
    data, path, spans, size = payload
    if path is None:
        return pickle.loads(data)
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        os.unlink(path)
    view = memoryview(mm)
    return pickle.loads(data, buffers=[view[o:o + n] for o, n in spans])


def discard(payload):
    """Free the block of a payload that will never be decoded."""
    path = payload[1]
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def unlink_blocks(prefix):
    """Remove every block whose name starts with ``prefix`` (cleanup after a dead worker)."""
    for path in glob.glob(glob.escape(prefix) + "*"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------- fetching
class _Exhausted(Exception):
    """The worker's IterableDataset has no more samples."""


class MapFetcher:
    """Samples of a map-style dataset by index, collated."""

    def __init__(self, dataset, auto_collation, collate_fn):
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        getitems = getattr(dataset, "__getitems__", None)
        self.getitems = getitems if callable(getitems) else None

    def fetch(self, indices):
        ds = self.dataset
        if not self.auto_collation:
            try:
                return self.collate_fn(ds[indices])
            except Exception as e:
                _note(e, f"while fetching sample index {indices!r}")
                raise
        if self.getitems is not None:
            data = self.getitems(indices)
        else:
            data = []
            for i in indices:
                try:
                    data.append(ds[i])
                except Exception as e:
                    _note(e, f"while fetching sample index {i!r}")
                    raise
        return self.collate_fn(data)


class IterFetcher:
    """The next ``batch_size`` samples (or one) of an IterableDataset's iterator, collated."""

    def __init__(self, dataset, auto_collation, collate_fn, batch_size, drop_last):
        self.it = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.ended = False

    def fetch(self, indices=None):
        if self.ended:
            raise _Exhausted
        if not self.auto_collation:
            try:
                return self.collate_fn(next(self.it))
            except StopIteration:
                self.ended = True
                raise _Exhausted from None
        data = []
        for _ in range(self.batch_size):
            try:
                data.append(next(self.it))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < self.batch_size):
            raise _Exhausted
        return self.collate_fn(data)


def make_fetcher(dataset, iterable, auto_collation, collate_fn, batch_size, drop_last):
    if iterable:
        return IterFetcher(dataset, auto_collation, collate_fn, batch_size, drop_last)
    return MapFetcher(dataset, auto_collation, collate_fn)


def _note(exc, text):
    """Attach where a sample failed (shown under the traceback, and used by the worker)."""
    exc._ember_where = text
    if hasattr(exc, "add_note"):
        exc.add_note(f"(DataLoader {text})")


# ---------------------------------------------------------------- seeding
def seed_all(seed):
    """Seed ember's, Python's and NumPy's global generators for one worker."""
    from .... import manual_seed
    manual_seed(seed)
    random.seed(seed)
    # SeedSequence spreads consecutive seeds (base + worker id) over NumPy's whole state
    np.random.seed(np.random.SeedSequence(seed & 0xFFFFFFFFFFFFFFFF).generate_state(4))


# ---------------------------------------------------------------- the worker loop
def worker_loop(dataset, iterable, index_queue, result_conn, auto_collation, collate_fn,
                batch_size, drop_last, seed, init_fn, worker_id, num_workers, block_prefix):
    """Entry point of a worker process (see the module docstring for the protocol)."""
    global _worker_info
    # Ctrl-C goes to the whole process group: the main process handles it and shuts us down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    seed_all(seed)
    _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
    init_error = fetcher = None
    try:
        if init_fn is not None:
            init_fn(worker_id)
        fetcher = make_fetcher(dataset, iterable, auto_collation, collate_fn, batch_size,
                               drop_last)
    except Exception:
        init_error = ExceptionWrapper(sys.exc_info(),
                                      f"in DataLoader worker process {worker_id} while starting")
    serial = 0
    try:
        while True:
            try:
                task = index_queue.get(timeout=_WATCHDOG_S)
            except queue.Empty:
                if os.getppid() != parent:
                    break
                continue
            if task is None:
                break
            if task[0] == "resume":
                _, epoch, seed = task
                seed_all(seed)
                _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed,
                                          dataset=dataset)
                if init_error is None and iterable:
                    try:
                        fetcher = make_fetcher(dataset, iterable, auto_collation, collate_fn,
                                               batch_size, drop_last)
                    except Exception:
                        init_error = ExceptionWrapper(
                            sys.exc_info(),
                            f"in DataLoader worker process {worker_id} while starting")
                result_conn.send(("resumed", epoch, None))
                continue
            idx, indices = task
            if init_error is not None:
                result_conn.send(("err", idx, init_error))
                continue
            try:
                serial += 1
                msg = ("ok", idx, encode(fetcher.fetch(indices), f"{block_prefix}{serial}"))
            except _Exhausted:
                msg = ("stop", idx, None)
            except Exception as e:
                where = getattr(e, "_ember_where", None) or f"while processing batch {idx}"
                msg = ("err", idx, ExceptionWrapper(
                    sys.exc_info(), f"in DataLoader worker process {worker_id} {where}"))
            result_conn.send(msg)
    except (BrokenPipeError, EOFError, OSError):
        pass  # the main process has gone away
    finally:
        result_conn.close()
        if os.getppid() != parent:
            unlink_blocks(block_prefix)
