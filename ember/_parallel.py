"""Layer 0: large elementwise and reduction work spread over every core.

NumPy runs its ufunc loops and reductions on one core, but it releases the GIL inside them,
so the same loops over disjoint slices run in parallel from a small thread pool. This module
does exactly that, for the ops whose result does not depend on how the work is cut:

* ``elementwise(ufunc, *operands, out=)``: contiguous operands of one shape (or Python
  scalars), cut into contiguous slices, one ufunc call per slice;
* ``reduce(ufunc, a, axis, dtype, keepdims)``: a reduction cut into fixed-size chunks, so
  the order of the partial results, hence the float result, is the same at every thread
  count (each chunk is reduced by NumPy's pairwise loop; the chunk results then again);
  a full float32 sum instead adds short fixed rows with ``einsum`` and their sums in float64
  (faster than NumPy's pairwise loop, as accurate, and also the same at every count);
* ``rows(fn, x, *others)``: a row-independent kernel (softmax, layer norm over the last dim)
  run on blocks of leading rows.

Below ``MIN_SIZE`` elements (or with one thread, ``ember.set_num_threads(1)`` or
``OMP_NUM_THREADS=1``) every call is NumPy's own, so small tensors keep the plain path.
Work is handed to ``threads - 1`` pool threads and the calling thread takes a share too.
The pool is created on first use and dropped in a forked child (DataLoader workers), whose
copy of it would have no threads.

Hand-offs spin briefly before they block. A pool thread that has finished a part, and a
caller waiting for parts under way, first watch a memory word in a small C loop (the GIL
released, ``pause`` between reads) for up to ``EMBER_SPIN_US`` microseconds (default 1000;
``EMBER_SPIN_US=0`` turns spinning off), and only then sleep on the queue or event. A
training step hands work over every few hundred microseconds; a thread that went to sleep in
between is woken through the kernel, and on an idle virtual CPU that wake-up measured about
0.2 ms at the median (0.6 ms at p90) -- as long as many of the parts it was to share. (A
two-part split's round trip, 2-core VM: median 32 -> 16 us back to back, 34 -> 20 us with
0.3 ms between splits.) This is OpenMP's wait policy (PyTorch's threads spin the same way).
But a spin is only worth it on a free core: when more threads are runnable on the machine
than it has cores (``/proc/loadavg``'s running count, read at most every ``_LOAD_EVERY``
seconds; other processes busy, or tests running side by side), the threads block at once,
since a spinning thread would then hold back the very thread it waits for (measured: the
LeNet step at two threads on a machine loaded 4x over went from 16 to 54 ms with
unconditional spinning). Without a C compiler the threads block at once.

BLAS products cut over the pool (``gemm``, ``gemms``) go as one C batch (``run_blas``,
``ember/_pool_c.py``) rather than as Python jobs: the table of BLAS calls is posted without
the GIL, and a pool thread spinning in the C loop starts its first task 7-12 us after the post
instead of 29-62 us (medians, MLP step at two threads, ``benchmarks/step_threads.py``).
``EMBER_BLAS_BATCH=0`` turns batches off (for A/B comparisons).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time

import numpy as np

from . import _pool_c
from ._threads import blas_controls, get_num_threads

MIN_SIZE = 1 << 20  # elements; below this a thread hand-off costs more than it saves (a
# training step's optimizer update on a few hundred thousand parameters measured no gain)
MIN_SIZE_HEAVY = 1 << 16  # elements, for kernels costing 10+ ufunc passes per element (exact
# GELU, softmax, layer norm): there a 64K-element block is already ~0.1 ms of work
BLOCK = 1 << 17     # elements per block of rows in ``run_rows``: 512 KB of float32, so a
# kernel's passes over a block stay in the core's L2 cache instead of streaming memory
CHUNK = 1 << 16     # reduction chunk: fixed, so results do not depend on the thread count
_ndarray = np.ndarray
_pool = [None, 0]   # the pool's job queue and its number of threads
_lock = threading.Lock()


def _drop_pool():
    global _blas_lock, _post_lock
    _pool[0], _pool[1] = None, 0
    # a fork from inside another thread's BLAS section or batch: the child has neither
    _blas_lock, _post_lock = threading.Lock(), threading.Lock()
    if _blas_users[0] and blas_controls() is not None:
        _blas_users[0] = 0
        blas_controls()[1](_blas_users[1])


os.register_at_fork(after_in_child=_drop_pool)


def threads_for(size, min_size=MIN_SIZE):
    """How many threads a job of ``size`` elements is worth (1: run it inline): none below
    ``min_size``, then one more per ``min_size / 2`` elements, up to the thread count."""
    if size < min_size:
        return 1
    n = get_num_threads()
    return max(1, min(n, size // (min_size // 2)))


_worker = threading.local()  # ``in_pool`` is set in the pool's threads


# ``_words[0]`` counts hand-offs posted, ``_words[1]`` splits finished: the spin loops watch
# them (see the module docstring). With the C loop they live in the loop's library (static
# memory, never freed: a daemon thread may still be spinning on them while the interpreter
# exits); this array stands in until then, and without a C compiler.
_words = np.zeros(2, np.int64)
_spin: list = []  # [(the C function, the word addresses, the limit in ns)] or [None]


def _spinner():
    """``(spin_wait, posted_addr, finished_addr, max_ns)``, or None: no C compiler, or
    ``EMBER_SPIN_US=0``. First called by ``_jobs`` before it starts a thread. The loop is
    ``ember._pool_c``'s, which also runs the BLAS batches posted while it waits."""
    if not _spin:
        found = None
        try:
            us = int(os.environ.get("EMBER_SPIN_US", "1000"))
        except ValueError:
            us = 1000
        lib = _pool_c.library() if us > 0 else None
        if lib is not None:
            import ctypes
            global _words
            base = lib["spin_words"]()
            _words = np.ctypeslib.as_array((ctypes.c_longlong * 2).from_address(base))
            found = (lib["spin_wait"], base, base + _words.itemsize, us * 1000)
        _spin.append(found)
    return _spin[0]


_LOAD_EVERY = 0.02  # seconds between reads of the machine's runnable-thread count
_load = [-1.0, True]  # [when last read, whether spinning was allowed then]


def _spin_ok():
    """Whether the machine has a core to spare for spinning: no more runnable threads (this
    process's included) than cores, by ``/proc/loadavg``'s running count (cached for
    ``_LOAD_EVERY`` seconds); True where that count cannot be read."""
    now = time.monotonic()
    if now - _load[0] < _LOAD_EVERY:
        return _load[1]
    ok = True
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        ok = running <= (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        pass
    _load[0], _load[1] = now, ok
    return ok


def _serve(jobs):
    # A pool thread: runs the jobs put on the queue until it gets None, spinning a while
    # for the next before it sleeps (module docstring). NumPy's error state is per thread
    # (a context variable): pool threads ignore float errors, as ember's op forwards do
    # (PyTorch warns about none of them).
    _worker.in_pool = True
    spin = _spinner()
    with np.errstate(all="ignore"):
        while True:
            job = jobs.get()
            if job is None:
                return
            job()
            job = None
            while spin is not None and _spin_ok():
                seen = int(_words[0])  # read before looking at the queue: a job put after
                if not jobs.empty():  # the look bumps the word after its put
                    break
                if spin[0](spin[1], seen, spin[3]) != 2:
                    break  # a job was put (1), or none came (0); 2: BLAS batches came and
                    # were run in the wait (``_pool_c``): wait again while they keep coming


def _jobs(n):
    """The queue of a pool of at least ``n`` daemon threads, started on first use. Plain
    threads on a ``SimpleQueue``: a hand-off is one ``put`` (a ThreadPoolExecutor's
    futures cost several times more); an idle thread spins a while, then blocks (module
    docstring)."""
    if _pool[1] < n:
        with _lock:
            _spinner()  # before any thread: the words it watches are in place
            if _pool[0] is None:
                import queue
                _pool[0] = queue.SimpleQueue()
            while _pool[1] < n:
                threading.Thread(target=_serve, args=(_pool[0],), daemon=True,
                                 name=f"ember-parallel_{_pool[1]}").start()
                _pool[1] += 1
    return _pool[0]


def run_split(fn, bounds):
    """``fn(start, stop)`` for each pair in ``bounds``; returns the results in order. An
    exception in any part is raised here.

    The parts are claimed one at a time, in order, by this thread and by up to
    ``threads - 1`` pool threads, whichever comes first: a pool thread that is slow to
    wake (a busy machine, another process on its core) leaves its parts to the others
    instead of holding the step up, and this thread waits only for parts already under way
    (spinning up to ``EMBER_SPIN_US`` while the machine has a free core, then blocking:
    module docstring). Which thread runs a part never changes its result."""
    n = len(bounds)
    helpers = min(n, get_num_threads()) - 1
    if helpers < 1 or getattr(_worker, "in_pool", False):
        # a part that splits again (a GEMM inside a split kernel) runs its parts itself
        return [fn(s, e) for s, e in bounds]
    results = [None] * n
    errors = []
    claim = itertools.count().__next__
    finish = itertools.count(1).__next__
    done = threading.Event()

    def work():
        while True:
            i = claim()  # atomic: one C call under the GIL
            if i >= n:
                return
            try:
                results[i] = fn(*bounds[i])
            except BaseException as exc:  # noqa: BLE001 (re-raised in the caller)
                errors.append(exc)
            if finish() == n:
                done.set()
                _words[1] += 1  # after the event: a spinning caller then finds it set

    jobs = _jobs(helpers)
    for _ in range(helpers):
        jobs.put(work)
    _words[0] += 1  # after the puts: a spinning pool thread then finds them queued
    work()
    spin = _spinner()
    while not done.is_set():
        seen = int(_words[1])
        if done.is_set():
            break
        if spin is None or not _spin_ok() or not spin[0](spin[2], seen, spin[3]):
            done.wait()  # the spin timed out (or none): sleep
            break
    if errors:
        raise errors[0]
    return results


def run_split_gemm(fn, bounds):
    """``run_split`` for parts that call BLAS (matmul): NumPy's OpenBLAS runs single-threaded
    while the parts run, each part's GEMMs on its own core (see ``_threads.blas_controls``).
    Only call it where ``gemm_split_ok()``."""
    _blas_single()
    try:
        return run_split(fn, bounds)
    finally:
        _blas_restore()


_blas_users = [0, 1]  # [threads inside a single-threaded BLAS section, the count to restore]
_blas_lock = threading.Lock()


def _blas_single():
    """Enter a section where NumPy's OpenBLAS runs single-threaded. The setting is
    process-wide, so it is counted: the first thread in sets 1, the last one out restores
    the count it found (a thread leaving early must not give BLAS its threads back while
    another thread's parts still run: their products would come from the threaded kernel)."""
    ctl = blas_controls()
    if ctl is None:  # no control (callers of BLAS products check ``gemm_split_ok``)
        return
    with _blas_lock:
        if _blas_users[0] == 0:
            _blas_users[1] = ctl[0]()
            ctl[1](1)
        _blas_users[0] += 1


def _blas_restore():
    ctl = blas_controls()
    if ctl is None:
        return
    with _blas_lock:
        _blas_users[0] -= 1
        if _blas_users[0] == 0:
            ctl[1](_blas_users[1])


_post_lock = threading.Lock()  # one BLAS batch in flight at a time (``_pool_c``'s words)
blas_trace = None  # ``fn(posted_ns, table)`` after each batch (``benchmarks/step_threads.py``)


def blas_batch_ok():
    """Whether ``run_blas`` can run batches: a C compiler, NumPy's OpenBLAS found, and not
    ``EMBER_BLAS_BATCH=0`` (then the parts go to the pool as Python jobs, as before). Batches
    of BLAS products are posted only where ``gemm_split_ok()`` (BLAS's threads can be turned
    off meanwhile); batches of other C calls (``CALL`` tasks) need only this."""
    lib = _pool_c.library()
    return lib is not None and lib["blas"]


def run_blas(tasks):
    """Run the task rows ``tasks`` (``_pool_c.gemm_tasks``, ``colsum_task``, ``call_task``:
    BLAS products, bias column sums, the optimizers' C updates) over the pool as one C
    batch; False (nothing run) where it cannot: no batch support, a pool
    thread's call, or another thread's batch in flight (callers then run the parts as
    Python jobs). The calling thread takes tasks too and returns when all have ended;
    pool threads spinning in ``_pool_c``'s wait take tasks there and then, without the GIL,
    and a pool thread that sleeps is sent a job that joins the batch (module docstring of
    ``_pool_c``). OpenBLAS runs single-threaded meanwhile, each task on one core. Which
    thread runs a task never changes its result: each is the call NumPy makes."""
    lib = _pool_c.library()
    if lib is None or not lib["blas"] or getattr(_worker, "in_pool", False) or \
            not _post_lock.acquire(False):
        return False
    try:
        n = len(tasks)
        table = np.array(tasks, np.int64)
        helpers = min(n, get_num_threads()) - 1
        spin = _spinner()
        spin_ns = spin[3] if spin is not None and _spin_ok() else 0
        _blas_single()
        posted = time.monotonic_ns()
        try:
            lib["batch_post"](table.ctypes.data, n)
            if helpers > 0:  # after the post: a thread woken now finds the batch
                jobs = _jobs(helpers)
                for _ in range(helpers - (lib["batch_spinners"]() if spin_ns else 0)):
                    jobs.put(lib["batch_join"])
            lib["batch_finish"](n, spin_ns)
        finally:
            _blas_restore()
        if blas_trace is not None:
            blas_trace(posted, table)
        return True
    finally:
        _post_lock.release()


# ``EMBER_GEMM_POOL=0``: matmul/Linear/recurrent GEMMs go to NumPy's BLAS with its own
# threading instead of ember's pool (read once, at import; for comparisons: which wins
# depends on the machine and the model, README "Benchmarks")
_GEMM_POOL = os.environ.get("EMBER_GEMM_POOL", "1") != "0"


def gemm_split_ok():
    """Whether GEMMs may be split over the pool: several threads, a BLAS whose own
    threading can be switched off meanwhile, and not ``EMBER_GEMM_POOL=0``."""
    return _GEMM_POOL and get_num_threads() > 1 and blas_controls() is not None


# A GEMM of this many multiply-adds or more is cut over the thread pool, each part
# single-threaded in BLAS (about 0.1 ms of one core's work: a hand-off costs tens of
# microseconds). OpenBLAS threads the GEMMs of small networks poorly (a convolution's stack
# of 16 small Winograd products, or a 6-row product over 50K columns, each a separate
# threaded call with its own wake-up and join), and after each threaded call its worker
# spins for about 0.1 s on the core that ember's pool needs next.
GEMM_SPLIT_MIN = 1 << 21


def gemm(a, b, out=None, bias=None):
    """``np.matmul(a, b, out=out)`` for 2-d operands or equal 3-d stacks, cut over the thread
    pool when large: a stack by its matrices, a single product by columns (or by rows when
    it has more rows than columns). No part splits the sum over K, so every value sums
    its K products in one BLAS kernel's order; OpenBLAS may still take another kernel for a
    part's edge tiles than for the whole product's, so a value can differ from one call's in
    its last bit (257x129x300 in float32 and float64 does; 512x128x784 does not).
    ``bias``: a vector of the output's columns added to the product (a Linear's bias:
    ``out += bias``, the same roundings), or a tuple of such vectors added in turn (a
    recurrent layer's two biases), by each part of a cut 2-d product to its own block while
    the block is still in cache, instead of passes over the output on one core. With several
    threads
    every product above OpenBLAS's own one-thread limit runs here with OpenBLAS at one
    thread: its threaded GEMM waits for its workers by spinning, which on a machine busy
    with other work costs several times the product (measured: the MLP step 14 ms at one
    thread, 70-200 ms at two on a loaded machine, 10-22 ms split here)."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    nb = a.shape[0] if a.ndim == 3 else 1
    how = gemm_split_kind(nb * m * n * k)
    if bias is not None and not isinstance(bias, tuple):
        bias = (bias,)
    if bias is not None and (how < 2 or a.ndim != 2 or b.ndim != 2):
        r = gemm(a, b, out)
        for v in bias:
            r += v
        return r
    if how == 0 or a.ndim != b.ndim or a.ndim not in (2, 3) or \
            (nb > 1 and b.shape[0] != nb):
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    if how == 1:
        return run_split_gemm(
            lambda s, e: np.matmul(a, b) if out is None else np.matmul(a, b, out=out),
            [(0, 1)])[0]
    threads = get_num_threads()
    if out is None:
        out = np.empty(a.shape[:-2] + (m, n), np.result_type(a.dtype, b.dtype))
    if nb >= threads:
        def part(s, e):
            np.matmul(a[s:e], b[s:e], out=out[s:e])
        run_split_gemm(part, _bounds(nb, threads))
        return out
    if a.ndim == 3:  # a short stack (grouped convolution): each product split in turn
        for i in range(nb):
            _gemm2(a[i], b[i], out[i], threads)
    else:
        _gemm2(a, b, out, threads, bias)
    return out


def gemm_split_kind(work):
    """How a product of ``work`` multiply-adds runs: 0, one BLAS call here (one thread,
    small, or splitting off); 1, one part on one core of the pool, BLAS single-threaded (a
    threaded OpenBLAS call this small costs a wake-up and a join, and leaves its thread
    spinning for ~0.1 s on the core our pool needs next; OpenBLAS itself runs a GEMM of up
    to 4 * 65536 multiply-adds on one thread); 2, cut over the pool (``gemm_cuts``)."""
    if work <= 1 << 18 or not gemm_split_ok():
        return 0
    return 1 if work < GEMM_SPLIT_MIN else 2


def gemm_cuts(m, n, threads):
    """``(by_columns, bounds)``: the parts of an (m, n) product's output, by columns when it
    has at least as many columns as rows, else by rows. Columns come in parts of 64+, cut
    on multiples of 8 (OpenBLAS's column blocking): 784 columns split 392/392, where
    multiples of 64 gave 448/336 (57% of the work on one core; one-thread CPU time of the
    halves 614/464 us -> 549/548 us)."""
    if n >= m:
        return True, _bounds(n, min(threads, -(-n // 64)), 8)
    return False, _bounds(m, min(threads, m))


def _gemm2(a, b, out, threads, bias=None):
    by_cols, bounds = gemm_cuts(a.shape[0], b.shape[1], threads)
    if (bias is None or len(bias) == 1) and blas_batch_ok():
        rows = _pool_c.gemm_tasks(a, b, out, None if bias is None else bias[0], bounds,
                                  by_cols)
        if rows is not None and run_blas(rows):
            return
    if by_cols:
        def part(s, e):
            np.matmul(a, b[:, s:e], out=out[:, s:e])
            for v in bias or ():
                out[:, s:e] += v[s:e]
    else:
        def part(s, e):
            np.matmul(a[s:e], b, out=out[s:e])
            for v in bias or ():
                out[s:e] += v
    run_split_gemm(part, bounds)


# Two or more independent products (a Linear's input and weight gradients) each of this many
# multiply-adds or more run side by side on the pool, one whole BLAS call per core
# (``gemms``), rather than each cut over the pool in turn: a column-split 128x512x512 product
# took 0.62-0.68x of its one-thread time, two independent ones side by side 0.47-0.56x of
# theirs (timeit minimums, quiet 2-core VM), and each keeps its one-thread bits.
# ``EMBER_GEMM_PAIRS=0`` turns this off (read once, at import; for A/B comparisons): each
# product is then cut over the pool in turn, as ``gemm`` cuts a lone product.
GEMMS_MIN = GEMM_SPLIT_MIN  # below, a pair costs ~40 us at one thread: no gain after the hand-off
_GEMM_PAIRS = os.environ.get("EMBER_GEMM_PAIRS", "1") != "0"


def gemms_ok(work):
    """Whether independent products of ``work`` multiply-adds each go through ``gemms``."""
    return _GEMM_PAIRS and work >= GEMMS_MIN and gemm_split_ok()


def gemms(products, tasks=(), sums=()):
    """The 2-d products ``a @ b`` of the independent pairs ``products``, computed side by
    side over the pool, then the column sums ``np.dot(ones, a)`` of the 2-d arrays ``sums``
    (bias gradients), then the results of ``tasks`` (callables of no arguments), sums and
    tasks run by whichever thread is free first; returns
    ``[a0 @ b0, a1 @ b1, ..., sum0, ..., task0(), ...]``.

    Products of equal work are cut into ``threads / gcd(products, threads)`` parts each,
    so that every thread gets the same work: two products at two threads are one whole
    BLAS call per core (BLAS single-threaded meanwhile), each value bit for bit that of the
    one-thread call; three at two threads are cut in halves. Products of unequal work are
    each cut over every thread, all parts in one hand-off, claimed in order. Cuts are
    ``gemm_cuts``' (no part splits the sum over K). Without ``tasks``, the products and
    sums go as one BLAS batch (``run_blas``) where they fit it, else as Python jobs. An
    exception in any part is raised here, after every part has ended."""
    threads = get_num_threads()
    works = [a.shape[0] * a.shape[1] * b.shape[1] for a, b in products]
    if works and max(works) <= 1.1 * min(works):
        share = threads // math.gcd(len(works), threads)
    else:
        share = threads
    batch = not tasks and blas_batch_ok()
    outs, parts, rows = [], [], []
    for (a, b), work in zip(products, works):
        out = np.empty((a.shape[0], b.shape[1]), np.result_type(a.dtype, b.dtype))
        outs.append(out)
        if share == 1 or not work:
            parts.append(lambda a=a, b=b, out=out: np.matmul(a, b, out=out))
            if batch:
                rows.append(_pool_c.gemm_task(a, b, out))
            continue
        by_cols, bounds = gemm_cuts(a.shape[0], b.shape[1], share)
        for s, e in bounds:
            if by_cols:
                a_, b_, o_ = a, b[:, s:e], out[:, s:e]
            else:
                a_, b_, o_ = a[s:e], b, out[s:e]
            parts.append(lambda a=a_, b=b_, o=o_: np.matmul(a, b, out=o))
        if batch:
            rows.extend(_pool_c.gemm_tasks(a, b, out, None, bounds, by_cols) or [None])
    for a in sums:
        ones = np.ones(a.shape[0], a.dtype)
        out = np.empty(a.shape[1], a.dtype)
        outs.append(out)
        parts.append(lambda a=a, ones=ones, out=out: out.__setitem__(Ellipsis, np.dot(ones, a)))
        if batch:
            rows.append(_pool_c.colsum_task(a, out, ones))
    if batch and None not in rows and run_blas(rows):
        return outs
    n_prod = len(parts)
    parts.extend(tasks)
    res = run_split_gemm(lambda s, e: parts[s](), [(i, i + 1) for i in range(len(parts))])
    return outs + res[n_prod:]


def _bounds(n, parts, align=1):
    step = -(-n // parts)
    step = -(-step // align) * align
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def run_rows(fn, n, row_size, min_size=MIN_SIZE_HEAVY):
    """``fn(start, stop)`` over blocks of ``n`` independent rows of ``row_size`` elements:
    each thread takes a contiguous range of rows (several threads from ``min_size``
    elements) and walks it in blocks of about ``BLOCK`` elements, so that a multi-pass
    row kernel (softmax, layer norm) reads and writes main memory about once, not once per
    pass (4096 x 4096 float32 at one thread, CPU time, best of 15 on a loaded machine:
    softmax 87 -> 59 ms, layer norm 77 -> 50 ms). Rows are computed alone, so the result
    is the same bit for bit at any thread count and block size."""
    if n <= 0:
        return
    k = min(threads_for(n * row_size, min_size), n)
    step = max(1, BLOCK // max(row_size, 1))

    def walk(s, e):
        for i in range(s, e, step):
            fn(i, min(i + step, e))

    if k == 1:
        walk(0, n)
    else:
        run_split(walk, _bounds(n, k))


def elementwise(ufunc, *operands, out=None):
    """``ufunc(*operands, out=out)``, split over threads when it is large.

    Operands are C-contiguous arrays of one shape, or Python/NumPy scalars; anything else
    (broadcasting, strided views, other array types) runs as NumPy's plain call."""
    shape = None
    for o in operands:
        if type(o) is _ndarray:
            if shape is None:
                shape, size = o.shape, o.size
            elif o.shape != shape:
                shape = False
                break
            if not o.flags.c_contiguous:
                shape = False
                break
        elif not isinstance(o, (int, float, complex, np.generic)):
            shape = False
            break
    k = threads_for(size) if shape else 1
    if k == 1 or (out is not None and (type(out) is not _ndarray or out.shape != shape or
                                       not out.flags.c_contiguous)):
        return ufunc(*operands) if out is None else ufunc(*operands, out=out)
    flat = [o.reshape(-1) if type(o) is _ndarray else o for o in operands]
    if out is None:
        dtype = ufunc(*[o[:1] if type(o) is _ndarray else o for o in flat]).dtype
        out = np.empty(shape, dtype)
    out_flat = out.reshape(-1)

    def part(s, e):
        ufunc(*[o[s:e] if type(o) is _ndarray else o for o in flat], out=out_flat[s:e])

    run_split(part, _bounds(size, k, 1024))
    return out


def reduce(ufunc, a, axis=None, dtype=None, keepdims=False):
    """``ufunc.reduce(a, axis, dtype, keepdims=keepdims)`` (sum, max, min ...), split over
    threads when large; ``axis`` None, an int or a tuple.

    A full reduction of a contiguous array of ``MIN_SIZE`` or more elements is always cut
    into ``CHUNK``-element rows, whatever the thread count (one thread runs them all), so its
    float result is the same at 1 and N threads; a float32 sum goes through
    ``_float_sum`` instead (the same at 1 and N threads too). A reduction over trailing
    axes with leading rows left is cut by rows, each row reduced exactly as NumPy reduces
    it."""
    if type(a) is not _ndarray or a.size < MIN_SIZE or not a.flags.c_contiguous or not a.ndim:
        return ufunc.reduce(a, axis, dtype, None, keepdims)
    nd = a.ndim
    axes = tuple(range(nd)) if axis is None else \
        tuple(sorted(x % nd for x in ((axis,) if isinstance(axis, int) else axis)))
    k = threads_for(a.size)
    if len(axes) == nd and ufunc is np.add and a.dtype == np.float32 and \
            (dtype is None or np.dtype(dtype) == a.dtype):
        r = _float_sum(a.reshape(-1))
        return np.asarray(r).reshape((1,) * nd) if keepdims else r
    if len(axes) == nd:  # everything: fixed chunks, then the chunks' results
        flat = a.reshape(-1)
        n_full = flat.size // CHUNK
        body = flat[:n_full * CHUNK].reshape(n_full, CHUNK)
        res_dtype = ufunc.reduce(flat[:1], 0, dtype).dtype
        partial = np.empty(n_full + (flat.size > n_full * CHUNK), res_dtype)

        def part(s, e):
            ufunc.reduce(body[s:e], 1, dtype, partial[s:e])

        run_split(part, _bounds(n_full, min(k, n_full)))
        if flat.size > n_full * CHUNK:
            partial[-1] = ufunc.reduce(flat[n_full * CHUNK:], 0, dtype)
        r = ufunc.reduce(partial, 0, dtype)
        return np.asarray(r).reshape((1,) * nd) if keepdims else r
    lead = axes[0]
    rows = int(np.prod(a.shape[:lead]))
    if k == 1 or not axes or axes != tuple(range(lead, nd)) or lead == 0 or rows < 2:
        return ufunc.reduce(a, axis, dtype, None, keepdims)  # NumPy's own, one thread
    body = a.reshape(rows, -1)
    res_dtype = ufunc.reduce(body[:1, :1], 1, dtype).dtype
    out = np.empty(rows, res_dtype)

    def part(s, e):
        ufunc.reduce(body[s:e], 1, dtype, out[s:e])

    run_split(part, _bounds(rows, min(k, rows)))
    shape = a.shape[:lead] + ((1,) * (nd - lead) if keepdims else ())
    return out.reshape(shape)


SUM_ROW = 256  # elements per partial sum in ``_float_sum``
SUM_CHUNK = 1 << 16  # elements per float64 partial sum of the C kernel: fixed, so the result
# does not depend on the thread count

# A full float32 sum in C (built once by the compiler's toolchain, cached on disk): each
# SUM_ROW-element row is summed in 16 float lanes (a vector register's worth, which the
# compiler vectorizes without reassociating anything: -ffp-contract=off, no fast-math), the
# lanes folded pairwise, the row sums added in double per SUM_CHUNK-element chunk; a short
# last row is added element by element in double. One pass over memory at memory speed.
_SUM_SRC = r"""
void ember_chunk_sums_f32(const float *x, long n, long c0, long c1, double *out) {
    for (long c = c0; c < c1; c++) {
        long start = c * %(chunk)d, stop = start + %(chunk)d < n ? start + %(chunk)d : n;
        double total = 0.0;
        long r = start;
        for (; r + %(row)d <= stop; r += %(row)d) {
            float acc[16] = {0};
            for (long i = r; i < r + %(row)d; i += 16)
                for (int l = 0; l < 16; l++)
                    acc[l] += x[i + l];
            for (int w = 8; w >= 1; w /= 2)
                for (int l = 0; l < w; l++)
                    acc[l] += acc[l + w];
            total += (double)acc[0];
        }
        for (; r < stop; r++)
            total += (double)x[r];
        out[c] = total;
    }
}
""" % {"chunk": SUM_CHUNK, "row": SUM_ROW}
_sum_kernel: list = []  # [the ctypes function, or None without a working C compiler]


def _sum_c():
    if not _sum_kernel:
        fn = None
        if os.environ.get("EMBER_SUM_C", "1") != "0":
            try:
                import ctypes

                from ._cc import load_kernel
                fn = load_kernel(_SUM_SRC, "ember_chunk_sums_f32")
                fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long,
                               ctypes.c_void_p]
            except (RuntimeError, OSError, AttributeError):
                fn = None
        _sum_kernel.append(fn)
    return _sum_kernel[0]


def _float_sum(flat):
    """The sum of a large contiguous float32 vector at memory speed on every core.

    With a C compiler: ``_SUM_SRC``'s chunk sums (float64, one per ``SUM_CHUNK`` elements),
    chunks split over the threads, then added in float64 in order. Without one:
    ``SUM_ROW``-element rows summed by ``einsum`` (SIMD partial sums, a third faster than
    NumPy's pairwise loop and as accurate over so short a row), rows split over the
    threads, then the row sums added in float64. Either way each chunk or row is summed by
    the same code whichever thread takes it and the float64 total is over them in order, so
    the result is the same at every thread count. (A BLAS matrix-vector product with ones
    was as fast but neither as accurate nor the same at 1 and 2 threads.)"""
    dt = flat.dtype
    n = flat.size
    fn = _sum_c()
    if fn is not None:
        n_chunks = -(-n // SUM_CHUNK)
        parts = np.empty(n_chunks, np.float64)
        src = flat.__array_interface__["data"][0]
        dst = parts.__array_interface__["data"][0]

        def chunks(s, e):
            fn(src, n, s, e, dst)

        run_split(chunks, _bounds(n_chunks, min(threads_for(n), n_chunks)))
        return dt.type(np.add.reduce(parts))
    n_full = n // SUM_ROW
    body = flat[:n_full * SUM_ROW].reshape(n_full, SUM_ROW)
    parts = np.empty(n_full, dt)

    def part(s, e):
        np.einsum("ij->i", body[s:e], out=parts[s:e])

    run_split(part, _bounds(n_full, min(threads_for(n), n_full)))
    total = np.add.reduce(parts, dtype=np.float64)
    if n > n_full * SUM_ROW:
        total += np.add.reduce(flat[n_full * SUM_ROW:], dtype=np.float64)
    return dt.type(total)


def rows(fn, x, *others, out_dtype=None):
    """``fn(x_block, *other_blocks)`` over blocks of ``x``'s leading rows, written into one
    output of ``x``'s shape (``fn`` returns each block's result). ``others`` are arrays with
    the same leading dimension as ``x``, or anything else (passed whole to every block).
    For kernels whose rows are independent: softmax, log-softmax, layer norm."""
    n = x.shape[0] if x.ndim else 0
    k = threads_for(x.size) if type(x) is _ndarray and n > 1 else 1
    if k == 1:
        return fn(x, *others)
    bounds = _bounds(n, min(k, n))

    def block(s, e):
        return [o[s:e] if type(o) is _ndarray and o.ndim and o.shape[0] == n else o
                for o in others]

    probe = fn(x[:1], *block(0, 1))  # one row: the result's row shape and dtype
    out = np.empty((n,) + probe.shape[1:], out_dtype or probe.dtype)

    def part(s, e):
        out[s:e] = fn(x[s:e], *block(s, e))

    run_split(part, bounds)
    return out


def pair(fa, fb):
    """``(fa(), fb())`` side by side: ``fb`` on a pool thread while ``fa`` runs here (or
    here too, after ``fa``, if no pool thread is free first), each as at one thread
    (ember's thread count 1, so no cut inside either; NumPy's BLAS single-threaded), both
    restored after. For two independent ops of similar cost (a convolution's input and
    weight gradients, ``ops/conv.py``): each keeps a core for its whole run, with none of
    the hand-offs, joins and serial stretches between the cuts of each op in turn. Values
    are those of the one-thread calls. In order where there is one thread or no BLAS thread
    control, and inside a pool part."""
    if not gemm_split_ok() or getattr(_worker, "in_pool", False):
        return fa(), fb()
    from . import _threads
    count = _threads._n[0]
    _blas_single()  # counted with the other sections (a raw set/restore could hand BLAS its
    # threads back under another thread's section)

    def part(i, _):
        _threads._n[0] = 1
        was = getattr(_worker, "in_pool", False)
        _worker.in_pool = True
        try:
            return fa() if i == 0 else fb()
        finally:
            _worker.in_pool = was

    try:
        ra, rb = run_split(part, [(0, 1), (1, 2)])
    finally:
        _threads._n[0] = count
        _blas_restore()
    return ra, rb
