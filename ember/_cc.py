"""Compiling C source with the system C compiler and loading it through ctypes.

One helper serves every part of ember that emits C: the compiler's fused kernels
(``ember.compiler``), the convolution kernels (``ember.ops._conv_c``) and the int8 kernels
(``ember.ao``). ``load_kernel(src, symbol)`` returns the ctypes function ``symbol`` of ``src``:
from this process's table, from the disk cache, or freshly compiled. Callers catch its
RuntimeError (no compiler, or the compiler failed) and fall back to NumPy.

Libraries are cached on disk under ``$EMBER_CACHE_DIR`` (default ``~/.cache/ember/compile``),
named by a hash of the source, the compiler and its flags, written atomically (temp file +
rename). A cache that is read-only or holds a corrupt library is never fatal: the kernel is
compiled again into a private temporary directory.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

__all__ = ["load_kernel", "prebuild", "c_compiler", "cache_dir", "cache_path", "CFLAGS"]

# -fno-trapping-math lets comparisons be if-converted (so loops vectorise); it changes no
# result, only floating-point exception flags; -ffp-contract=off keeps eager's roundings
CFLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno",
          "-fno-trapping-math", "-fopenmp"]


def c_compiler():
    """The C compiler to use (``$CC``, else ``cc``, else ``gcc``), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_dir():
    """Where compiled kernels are kept: ``$EMBER_CACHE_DIR`` or ``~/.cache/ember/compile``."""
    return os.environ.get("EMBER_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "ember", "compile")


_PRIVATE_DIR: list = []
_LOADED: dict = {}   # (source hash, symbol) -> ctypes function (one load per process)
STATS = {"compiles": 0, "disk_hits": 0, "memory_hits": 0}


def _private_dir():
    if not _PRIVATE_DIR:
        _PRIVATE_DIR.append(tempfile.mkdtemp(prefix="ember-compile-"))
    return _PRIVATE_DIR[0]


def _build(cc, src, dest_dir, name):
    """Compile ``src`` into ``dest_dir/name`` atomically; returns the path."""
    os.makedirs(dest_dir, exist_ok=True)
    fd, c_path = tempfile.mkstemp(suffix=".c", dir=dest_dir)
    so_tmp = c_path[:-2] + ".so.tmp"
    try:
        with os.fdopen(fd, "w") as f:
            f.write(src)
        r = subprocess.run([cc, *CFLAGS, "-o", so_tmp, c_path, "-lm"], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ember.compile: the C compiler failed:\n{r.stderr[-2000:]}")
        final = os.path.join(dest_dir, name)
        os.replace(so_tmp, final)
        STATS["compiles"] += 1
        return final
    finally:
        for p in (c_path, so_tmp):
            if os.path.exists(p):
                os.unlink(p)


def _key(src, cc):
    return hashlib.sha256("\0".join([src, cc, *CFLAGS]).encode()).hexdigest()[:24]


def cache_path(src):
    """Where the disk cache keeps the library of C source ``src`` (None without a compiler)."""
    cc = c_compiler()
    return None if cc is None else os.path.join(cache_dir(), f"k_{_key(src, cc)}.so")


def _omp_env():
    """Make the OpenMP runtime's idle threads sleep instead of spin, before it starts.

    libgomp reads its settings once, when the first library linking it is loaded. By default
    an idle OpenMP thread spins for a while after each parallel region; on a machine whose
    cores the BLAS under NumPy also uses (its own thread pool, which also spins), the two
    pools then take turns on the same cores and every GEMM that follows a fused kernel stalls
    for scheduler time slices: compiled steps ran 2-3x slower than eager at 2 threads. With
    ``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep on a futex (a wake costs microseconds).
    A user's own ``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT`` is respected; the variable is set only
    around each load, so child processes do not inherit it. It is set around every load, not
    only the first: a library without OpenMP loops (the convolution kernels) does not pull in
    libgomp (the linker drops unneeded libraries), and the runtime reads the variable only
    when a later library first loads it."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return None
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "OMP_WAIT_POLICY"


def _cdll(path):
    """``ctypes.CDLL(path)``, the first one with the OpenMP settings of ``_omp_env``."""
    added = _omp_env()
    try:
        return ctypes.CDLL(path)
    finally:
        if added is not None:
            os.environ.pop(added, None)


def load_kernel(src, symbol="kernel"):
    """The ctypes function ``symbol`` of ``src`` compiled as C: from memory, from the disk
    cache, or freshly compiled. Raises RuntimeError when no C compiler works."""
    cc = c_compiler()
    if cc is None:
        raise RuntimeError("ember.compile: no C compiler (cc/gcc) found")
    key = _key(src, cc)
    # one library may export several symbols: the in-memory cache is keyed by both
    fn = _LOADED.get((key, symbol))
    if fn is not None:
        STATS["memory_hits"] += 1
        return fn
    name = f"k_{key}.so"
    path = os.path.join(cache_dir(), name)
    lib = None
    if os.path.exists(path):
        try:
            lib = _cdll(path)
            getattr(lib, symbol)
            STATS["disk_hits"] += 1
        except (OSError, AttributeError):  # corrupt or truncated: compile again
            lib = None
    if lib is None:
        try:
            path = _build(cc, src, cache_dir(), name)
        except OSError:  # the cache is read-only or unusable: a private directory serves
            path = _build(cc, src, _private_dir(), name)
        lib = _cdll(path)
    fn = getattr(lib, symbol)
    fn.restype = None
    _LOADED[(key, symbol)] = fn
    return fn


def prebuild(sources):
    """Compile the C sources that neither memory nor the disk cache holds, concurrently (one
    compiler process per core): a cold compile of a step with several kernels then costs
    about one compiler run instead of one per kernel. Failures are left to ``load_kernel``,
    which compiles again (into a private directory where the cache is unusable)."""
    cc = c_compiler()
    if cc is None:
        return
    loaded = {key for key, _ in _LOADED}
    todo = [s for s in dict.fromkeys(sources) if _key(s, cc) not in loaded and
            not os.path.exists(os.path.join(cache_dir(), f"k_{_key(s, cc)}.so"))]
    if len(todo) < 2:
        return

    def build(src):
        try:
            _build(cc, src, cache_dir(), f"k_{_key(src, cc)}.so")
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:
        list(pool.map(build, todo))



def kernel_table(src, symbol, env, entries):
    """``{key: ctypes function}`` for a library whose ``symbol(i)`` returns the address of its
    i-th kernel; ``entries``: ``[(key, prototype)]`` in that order. Empty where the
    environment variable ``env`` is ``"0"`` or no C compiler works (the callers' NumPy paths
    run then)."""
    if os.environ.get(env, "1") == "0":
        return {}
    try:
        entry = load_kernel(src, symbol)
    except (RuntimeError, OSError, AttributeError):
        return {}
    entry.restype, entry.argtypes = ctypes.c_void_p, [ctypes.c_int]
    return {key: proto(entry(i)) for i, (key, proto) in enumerate(entries)}
