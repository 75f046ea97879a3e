"""Layer 0: the C side of ember's thread pool: spin waits, and batches of BLAS calls that the
pool's threads pick up without the GIL.

A training step at two threads hands work to the pool every few hundred microseconds, and
most of that work is BLAS products. Handed over as Python jobs (``_parallel.run_split``),
each costs a queue put, a thread that wakes for the GIL (which the caller holds until it
reaches its own part) and the GIL again to report back: the pool thread started its part
29-45 us after the caller posted it (MLP step, 2-core VM, ``benchmarks/step_threads.py``).
Here a batch is a table of BLAS calls posted in one ctypes call (GIL released throughout):

* ``ember_batch_post(tasks, n)`` publishes the table; ``ember_batch_finish(n, spin_ns)``
  then runs tasks, claimed one at a time with the other threads, and returns when every task
  has ended (spinning up to ``spin_ns`` for tasks under way on other threads, then sleeping
  on a futex); ``ember_batch_run`` is the two in one call;
* a pool thread that waits in ``ember_spin_wait`` (after each Python job, up to
  ``EMBER_SPIN_US``: ``_parallel``'s module docstring) runs the tasks of a batch posted
  meanwhile, there and then, and goes on waiting, in C while batches keep coming (up to 32
  waits' worth, then once through Python, where ``_parallel._serve`` checks that the
  machine still has a core to spare: each pass through Python takes the GIL from the
  caller); a pool thread asleep on the Python queue is sent ``ember_batch_join`` as a job
  instead (``_parallel.run_blas``).

Claims are one compare-and-swap on a word holding (batch number, task count, next task), so a
thread late for a batch finds it over and takes nothing. A task is one of:

* ``GEMM``: ``C = op(A) @ op(B)`` by ``cblas_?gemm`` (row-major, alpha 1, beta 0; the same
  call NumPy's matmul makes for these strides, so the same bits), then ``bias`` (a row
  vector, or NULL) added to each row of ``C``;
* ``COLSUM``: ``c = A^T x`` by ``cblas_?gemv`` with ``x`` a vector of ones: a bias gradient's
  column sums, the call NumPy's ``np.dot(ones, A)`` makes;
* ``CALL``: ``fn(args)``, a C function taking the address of an int64 argument block (the
  optimizers' flat updates: ``ember/optim/_update_c.py``).

Tasks are validated in Python (``_parallel``) before they are posted: nothing in a batch can
fail. The BLAS functions are those of the OpenBLAS under NumPy (``_threads.blas_functions``).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

# Columns of a task row (int64): kind, dtype (0 float32, 1 float64), transposes (CBLAS's 111
# no / 112 yes), m, n, k, lda, ldb, ldc, the addresses of A, B, C and the bias (0: none);
# then, written by the run, its start and end (CLOCK_MONOTONIC ns, ``time.monotonic_ns``'s
# clock) and whether the posting thread ran it (``benchmarks/step_threads.py`` reads them).
GEMM, COLSUM, CALL = 0, 1, 2
TASK_LEN = 17
START, END, POSTER = 14, 15, 16
NO_TRANS, TRANS = 111, 112

SRC = r"""
#include <stdatomic.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>

static long long words[2];
long long *ember_spin_words(void) { return words; }

typedef void (*sgemm32)(int, int, int, int, int, int, float, const float *, int,
                        const float *, int, float, float *, int);
typedef void (*sgemm64)(int, int, int, long long, long long, long long, float, const float *,
                        long long, const float *, long long, float, float *, long long);
typedef void (*dgemm32)(int, int, int, int, int, int, double, const double *, int,
                        const double *, int, double, double *, int);
typedef void (*dgemm64)(int, int, int, long long, long long, long long, double,
                        const double *, long long, const double *, long long, double,
                        double *, long long);
typedef void (*sgemv32)(int, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int);
typedef void (*sgemv64)(int, int, long long, long long, float, const float *, long long,
                        const float *, long long, float, float *, long long);
typedef void (*dgemv32)(int, int, int, int, double, const double *, int, const double *, int,
                        double, double *, int);
typedef void (*dgemv64)(int, int, long long, long long, double, const double *, long long,
                        const double *, long long, double, double *, long long);

static void *fgemm[2], *fgemv[2];
static int ilp64;

void ember_batch_init(void *sgemm, void *dgemm, void *sgemv, void *dgemv, int il) {
    fgemm[0] = sgemm; fgemm[1] = dgemm; fgemv[0] = sgemv; fgemv[1] = dgemv; ilp64 = il;
}

enum { KIND, DTYPE, TA, TB, M, N, K, LDA, LDB, LDC, A, B, C, BIAS, START, END, POSTER, LEN };

static void run_task(long long *t) {
    long long m = t[M], n = t[N], k = t[K], lda = t[LDA], ldb = t[LDB], ldc = t[LDC];
    int ta = (int)t[TA], tb = (int)t[TB];
    if (t[KIND] == 0 && t[DTYPE] == 0) {
        const float *a = (const float *)t[A], *b = (const float *)t[B];
        float *c = (float *)t[C];
        if (ilp64) ((sgemm64)fgemm[0])(101, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
        else ((sgemm32)fgemm[0])(101, ta, tb, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b,
                                 (int)ldb, 0.0f, c, (int)ldc);
        const float *v = (const float *)t[BIAS];
        if (v)
            for (long long i = 0; i < m; i++)
                for (long long j = 0; j < n; j++)
                    c[i * ldc + j] += v[j];
    } else if (t[KIND] == 0) {
        const double *a = (const double *)t[A], *b = (const double *)t[B];
        double *c = (double *)t[C];
        if (ilp64) ((dgemm64)fgemm[1])(101, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
        else ((dgemm32)fgemm[1])(101, ta, tb, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b,
                                 (int)ldb, 0.0, c, (int)ldc);
        const double *v = (const double *)t[BIAS];
        if (v)
            for (long long i = 0; i < m; i++)
                for (long long j = 0; j < n; j++)
                    c[i * ldc + j] += v[j];
    } else if (t[KIND] == 2) {  /* a C function of the row's argument block */
        ((void (*)(const long long *))t[A])((const long long *)t[B]);
    } else if (t[KIND] == 1 && t[DTYPE] == 0) {  /* column sums: A^T x, x = ones (B) */
        if (ilp64) ((sgemv64)fgemv[0])(101, 112, m, n, 1.0f, (const float *)t[A], lda,
                                       (const float *)t[B], 1, 0.0f, (float *)t[C], 1);
        else ((sgemv32)fgemv[0])(101, 112, (int)m, (int)n, 1.0f, (const float *)t[A], (int)lda,
                                 (const float *)t[B], 1, 0.0f, (float *)t[C], 1);
    } else if (t[KIND] == 1) {
        if (ilp64) ((dgemv64)fgemv[1])(101, 112, m, n, 1.0, (const double *)t[A], lda,
                                       (const double *)t[B], 1, 0.0, (double *)t[C], 1);
        else ((dgemv32)fgemv[1])(101, 112, (int)m, (int)n, 1.0, (const double *)t[A], (int)lda,
                                 (const double *)t[B], 1, 0.0, (double *)t[C], 1);
    }
}

/* The current batch: claim = batch number << 32 | task count << 16 | next task. */
static _Atomic unsigned long long claim;
static _Atomic(long long *) tasks_now;
static _Atomic int done;          /* tasks of the current batch ended */
static _Atomic int poster_asleep; /* the poster sleeps on `done` */
static _Atomic int spinners;      /* threads inside ember_spin_wait (they take tasks) */

static long futex(_Atomic int *addr, int op, int val) {
    return syscall(SYS_futex, (int *)addr, op, val, NULL, NULL, 0);
}

static inline int pending(void) {
    unsigned long long w = atomic_load_explicit(&claim, memory_order_relaxed);
    return (w & 0xffff) < ((w >> 16) & 0xffff);
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Claim and run tasks of the current batch until none is left; returns how many ran. Each
   task row gets the times its run started and ended, and whether the poster ran it. */
static int work(int poster) {
    int ran = 0;
    unsigned long long w = atomic_load_explicit(&claim, memory_order_acquire);
    for (;;) {
        unsigned n = (unsigned)((w >> 16) & 0xffff), i = (unsigned)(w & 0xffff);
        if (i >= n)
            return ran;
        if (!atomic_compare_exchange_weak_explicit(&claim, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* the batch cannot end before this task does: the table is this batch's */
        long long *t = atomic_load_explicit(&tasks_now, memory_order_relaxed) + (long long)i * LEN;
        t[START] = now_ns();
        run_task(t);
        t[END] = now_ns();
        t[POSTER] = poster;
        ran++;
        if (atomic_fetch_add(&done, 1) + 1 == (int)n && atomic_load(&poster_asleep))
            futex(&done, FUTEX_WAKE_PRIVATE, INT_MAX);
        w = atomic_load_explicit(&claim, memory_order_acquire);
    }
}

void ember_batch_join(void) { work(0); }

int ember_batch_spinners(void) { return atomic_load(&spinners); }

/* In a forked child: no thread spins, and a batch the parent had in flight is over (its
   tasks are not the child's to run). */
void ember_batch_forked(void) {
    atomic_store(&spinners, 0);
    atomic_store(&poster_asleep, 0);
    atomic_store(&claim, atomic_load(&claim) & ~0xffffffffULL);
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Post `tasks` (n rows): from now on any thread may take them. Callers post one batch at a
   time, and end it with ember_batch_finish before the next. */
void ember_batch_post(long long *tasks, int n) {
    atomic_store(&done, 0);
    atomic_store_explicit(&tasks_now, tasks, memory_order_relaxed);
    unsigned long long w = atomic_load(&claim);
    atomic_store(&claim, (((w >> 32) + 1) << 32) | ((unsigned long long)(n > 0 ? n : 0) << 16));
}

/* Take tasks of the posted batch of n until none is left, then wait for those under way
   elsewhere: spinning up to spin_ns, then asleep on a futex. */
void ember_batch_finish(int n, long long spin_ns) {
    work(1);
    if (atomic_load(&done) >= n)
        return;
    if (spin_ns > 0) {
        long long t0 = now_ns();
        for (;;) {
            for (int i = 0; i < 64; i++) {
                if (atomic_load_explicit(&done, memory_order_acquire) >= n)
                    return;
                relax();
            }
            if (now_ns() - t0 >= spin_ns)
                break;
        }
    }
    atomic_store(&poster_asleep, 1);
    int d;
    while ((d = atomic_load(&done)) < n)
        futex(&done, FUTEX_WAIT_PRIVATE, d);
    atomic_store(&poster_asleep, 0);
}

void ember_batch_run(long long *tasks, int n, long long spin_ns) {
    ember_batch_post(tasks, n);
    ember_batch_finish(n, spin_ns);
}

/* Wait until *word != seen: 1 when it changed. Tasks of batches posted meanwhile are run
   here; the wait ends after max_ns nanoseconds without a batch (0 when none came at all, 2
   when some did), or after WAIT_CAP waits' worth while batches keep coming (2: the caller
   then checks that the machine still has a core to spare, and waits again). Runs through
   ctypes, which releases the GIL for the call. */
#define WAIT_CAP 32
int ember_spin_wait(volatile long long *word, long long seen, long long max_ns) {
    atomic_fetch_add(&spinners, 1);
    long long t0 = now_ns(), start = t0;
    int ran = 0, changed = 0;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (*word != seen) {
                changed = 1;
                goto out;
            }
            if (pending() && work(0)) {
                ran = 1;
                t0 = now_ns();
            }
            relax();
        }
        long long t = now_ns();
        if (t - t0 >= max_ns || t - start >= WAIT_CAP * max_ns)
            break;
    }
    changed = *word != seen;
out:
    atomic_fetch_sub(&spinners, 1);
    if (pending() && work(0))  /* posted as this thread left: take part anyway */
        ran = 1;
    return changed ? 1 : ran ? 2 : 0;
}
"""

_lib: list = []  # [dict of ctypes functions, or None (no C compiler, or no BLAS found)]


def library():
    """The loaded C functions by name (``"spin_wait"``, ``"batch_post"``, ...; the batch
    functions run tasks only when NumPy's OpenBLAS was found: ``"blas"`` says), or None
    without a C compiler."""
    if not _lib:
        found = None
        try:
            from ._cc import load_kernel
            fns = {}
            for name in ("spin_wait", "spin_words", "batch_run", "batch_post", "batch_finish",
                         "batch_join", "batch_spinners", "batch_forked", "batch_init"):
                fns[name] = load_kernel(SRC, f"ember_{name}")
            fns["spin_wait"].restype = ctypes.c_int
            fns["spin_wait"].argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong]
            fns["spin_words"].restype, fns["spin_words"].argtypes = ctypes.c_void_p, []
            fns["batch_run"].argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong]
            fns["batch_post"].argtypes = [ctypes.c_void_p, ctypes.c_int]
            fns["batch_finish"].argtypes = [ctypes.c_int, ctypes.c_longlong]
            fns["batch_join"].argtypes = []
            fns["batch_spinners"].restype, fns["batch_spinners"].argtypes = ctypes.c_int, []
            fns["batch_forked"].argtypes = []
            fns["batch_init"].argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int]
            from ._threads import blas_functions
            blas = blas_functions() if os.environ.get("EMBER_BLAS_BATCH", "1") != "0" else None
            fns["blas"] = blas is not None
            if blas is not None:
                fns["batch_init"](*blas)
            found = fns
        except (RuntimeError, OSError, AttributeError):
            found = None
        _lib.append(found)
    return _lib[0]


def _forked():
    if _lib and _lib[0] is not None:
        _lib[0]["batch_forked"]()


os.register_at_fork(after_in_child=_forked)

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _ld(a, row_major_ok):
    """(transpose flag, leading dimension) of a 2-d operand as NumPy's matmul hands it to
    BLAS, or None where NumPy would not call BLAS with it as it lies."""
    sz = a.itemsize
    s0, s1 = a.strides
    r, c = a.shape
    if s1 == sz and s0 % sz == 0 and s0 // sz >= max(c, 1):
        return NO_TRANS, s0 // sz
    if row_major_ok and s0 == sz and s1 % sz == 0 and s1 // sz >= max(r, 1):
        return TRANS, s1 // sz
    return None


def gemm_task(a, b, out, bias=None):
    """The task row of ``np.matmul(a, b, out=out)`` (then ``out += bias``) for 2-d float32
    or float64 arrays of one dtype, or None where the product does not fit the task
    (strides BLAS cannot take, a product NumPy computes another way: a ``syrk`` for
    ``x.T @ x``, a matrix-vector product for a single row or column)."""
    rows = gemm_tasks(a, b, out, bias, [(0, b.shape[1] if b.ndim == 2 else 0)], True)
    return None if rows is None else rows[0]


def gemm_tasks(a, b, out, bias, bounds, by_cols):
    """The task rows of the parts of ``gemm_task(a, b, out, bias)`` cut at ``bounds``: by
    columns (``a @ b[:, s:e]`` into ``out[:, s:e]``, ``bias[s:e]``) or by rows (``a[s:e] @
    b`` into ``out[s:e]``); None where a part does not fit a task. A part's strides are the
    whole operand's, so its BLAS call is the one NumPy makes for that part; the addresses
    are worked out here, not asked of NumPy part by part (each ask costs microseconds)."""
    dt = a.dtype
    if (dt is not _F32 and dt is not _F64) or b.dtype is not dt or out.dtype is not dt or \
            type(a) is not np.ndarray or type(b) is not np.ndarray or \
            type(out) is not np.ndarray or a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        return None
    m, k = a.shape
    n = b.shape[1]
    if k < 2 or b.shape[0] != k or out.shape != (m, n) or max(m, n, k) >= 1 << 31:
        return None
    ta, tb, tc = _ld(a, True), _ld(b, True), _ld(out, False)
    if ta is None or tb is None or tc is None or not out.flags.writeable:
        return None
    pa, pb = a.__array_interface__["data"][0], b.__array_interface__["data"][0]
    if pa == pb:
        return None  # NumPy may take this for x.T @ x (syrk): leave it NumPy's
    pc = out.__array_interface__["data"][0]
    if bias is not None:
        if type(bias) is not np.ndarray or bias.dtype is not dt or bias.shape != (n,) or \
                bias.strides[0] != dt.itemsize:
            return None
        pbias = bias.__array_interface__["data"][0]
    else:
        pbias = 0
    sz = dt.itemsize
    head = [GEMM, dt is _F64, ta[0], tb[0]]
    rows = []
    for s, e in bounds:
        if by_cols:
            mm, nn = m, e - s
            cut = [pa, pb + s * b.strides[1], pc + s * out.strides[1],
                   pbias + s * sz if pbias else 0]
        else:
            mm, nn = e - s, n
            cut = [pa + s * a.strides[0], pb, pc + s * out.strides[0], pbias]
        if mm < 2 or nn < 2:
            return None  # NumPy would take a matrix-vector product
        rows.append(head + [mm, nn, k, ta[1], tb[1], tc[1]] + cut + [0, 0, 0])
    return rows


def colsum_task(a, out, ones):
    """The task row of ``out[:] = np.dot(ones, a)`` (a bias gradient) for a C-contiguous 2-d
    float32/float64 ``a``, or None."""
    dt = a.dtype
    if (dt is not _F32 and dt is not _F64) or type(a) is not np.ndarray or a.ndim != 2 or \
            not a.flags.c_contiguous or a.shape[0] < 2 or a.shape[1] < 2 or \
            out.dtype is not dt or ones.dtype is not dt or out.shape != (a.shape[1],) or \
            ones.shape != (a.shape[0],) or max(a.shape) >= 1 << 31:
        return None
    m, n = a.shape
    return [COLSUM, dt is _F64, TRANS, NO_TRANS, m, n, 0, n, 1, 1,
            a.__array_interface__["data"][0], ones.__array_interface__["data"][0],
            out.__array_interface__["data"][0], 0, 0, 0, 0]


def call_task(fn, args):
    """The task row of the C call ``fn(args)``: ``fn`` the address of a ``void (const long
    long *)`` function, ``args`` the address of its int64 argument block (kept alive by the
    caller until the batch has run)."""
    return [CALL, 0, 0, 0, 0, 0, 0, 0, 0, 0, fn, args, 0, 0, 0, 0, 0]
