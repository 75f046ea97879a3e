"""``ember.autograd.profiler``: PyTorch's older profiler spelling over ``ember.profiler``."""

from ..profiler import record_function  # noqa: F401
from ..profiler._events import EventList, FunctionEvent, FunctionEventAvg  # noqa: F401
from ..profiler.profiler import profile as _profile

__all__ = ["profile", "record_function", "EventList", "FunctionEvent", "FunctionEventAvg"]


class profile(_profile):
    """``with ember.autograd.profiler.profile() as prof:`` then ``prof.key_averages()``,
    ``prof.table()``, ``prof.function_events``, ``prof.export_chrome_trace(path)``."""

    def __init__(self, enabled=True, *, use_cuda=False, use_device=None, record_shapes=False,
                 with_flops=False, profile_memory=False, with_stack=False, with_modules=False,
                 use_kineto=False, use_cpu=True, experimental_config=None, acc_events=False,
                 custom_trace_id_callback=None):
        super().__init__(record_shapes=record_shapes, profile_memory=profile_memory,
                         with_stack=with_stack, with_flops=with_flops, with_modules=with_modules)
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:
            self.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stop()
        return False

    @property
    def function_events(self):
        return self.events()

    def table(self, sort_by=None, row_limit=100, **kwargs):
        return self.key_averages().table(sort_by=sort_by, row_limit=row_limit, **kwargs)

    def total_average(self):
        return self.events().total_average()

    @property
    def self_cpu_time_total(self):
        return self.events().self_cpu_time_total

    def __str__(self):
        return self.table()


class emit_nvtx:
    """No NVTX on the CPU: a context manager that does nothing (PyTorch's API)."""

    def __init__(self, enabled=True, record_shapes=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class emit_itt:  # noqa: N801  (PyTorch's name)
    """Intel ITT ranges for VTune: ember does not link the ITT library, so this is a context
    manager that marks nothing; like PyTorch's, it refuses to be entered twice at once."""

    def __init__(self, enabled=True, record_shapes=False):
        self.enabled = enabled
        self.entered = False
        self.record_shapes = record_shapes

    def __enter__(self):
        if not self.enabled:
            return None
        if self.entered:
            raise RuntimeError("ITT annotation context manager is not reentrant")
        self.entered = True
        return self

    def __exit__(self, *exc):
        self.entered = False
        return False


class EnforceUnique:
    """Raises an error if a key is seen more than once."""

    def __init__(self):
        self.seen = set()

    def see(self, *key):
        """Record ``key``; a RuntimeError if it was seen before."""
        if key in self.seen:
            raise RuntimeError("duplicate key: " + str(key))
        self.seen.add(key)


def load_nvprof(path):
    """The autograd ranges of an nvprof trace (a SQLite file written by ``nvprof -o`` around
    ``emit_nvtx``) as an ``EventList``, each with the kernels launched inside it."""
    from ..profiler._events import EventList
    return EventList(parse_nvprof_trace(path))


def parse_nvprof_trace(path):
    """The ``FunctionEvent``s of an nvprof trace: one per NVTX range (a start marker with a
    name and the end marker of the same id), each holding the kernels whose launch (a CUDA
    runtime call, callback id 211) falls inside it; sorted by start time. Names are
    demangled as the C++ runtime does."""
    import os
    import sqlite3

    from ..profiler._events import FunctionEvent
    if not os.path.isfile(path):
        raise FileNotFoundError(f"parse_nvprof_trace: no trace file {path!r}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # never creates a file
    conn.row_factory = sqlite3.Row
    try:
        strings = {r["id"]: _demangle(r["value"])
                   for r in conn.execute("SELECT _id_ AS id, value FROM StringTable")}
        ranges = conn.execute(
            "SELECT s.id AS marker_id, s.name AS name, s.timestamp AS start_time, "
            "e.timestamp AS end_time FROM CUPTI_ACTIVITY_KIND_MARKER AS s "
            "JOIN CUPTI_ACTIVITY_KIND_MARKER AS e ON s.id = e.id "
            "WHERE s.name != 0 AND e.name = 0")
        events, by_id, unique = [], {}, EnforceUnique()
        for r in ranges:
            unique.see(r["marker_id"])
            evt = FunctionEvent(r["marker_id"], strings[r["name"]], r["start_time"],
                                r["end_time"], 0)
            events.append(evt)
            by_id[evt.id] = evt
        launches = conn.execute(
            "SELECT s.id AS marker_id, rt._id_ AS runtime_id, rt.cbid AS cbid, "
            "k.start AS kernel_start, k.end AS kernel_end, k.name AS kernel_name "
            "FROM CUPTI_ACTIVITY_KIND_MARKER AS s "
            "JOIN CUPTI_ACTIVITY_KIND_MARKER AS e ON s.id = e.id "
            "JOIN CUPTI_ACTIVITY_KIND_RUNTIME AS rt "
            "ON (s.timestamp < rt.start AND rt.end < e.timestamp) "
            "JOIN CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL AS k "
            "ON k.correlationId = rt.correlationId")
        unique = EnforceUnique()
        for r in launches:
            unique.see(r["marker_id"], r["runtime_id"])
            if r["cbid"] != 211:  # cudaLaunchKernel (CUDA >= 9.2)
                raise AssertionError(f"Expected cbid to be 211, but got {r['cbid']}")
            by_id[r["marker_id"]].append_kernel(r["kernel_name"], 0,
                                                r["kernel_end"] - r["kernel_start"])
    finally:
        conn.close()
    events.sort(key=lambda e: e.time_range.start)
    return events


_CXA = []


def _demangle(name):
    """A C++ symbol's readable name through the C++ runtime's ``__cxa_demangle`` (what
    PyTorch calls); the name itself if it is not a mangled symbol or no runtime is found."""
    if not _CXA:
        import ctypes
        import ctypes.util
        fn = None
        for lib in (ctypes.util.find_library("stdc++"), "libstdc++.so.6"):
            try:
                fn = ctypes.CDLL(lib).__cxa_demangle if lib else None
            except OSError:
                continue
            if fn is not None:
                fn.restype = ctypes.c_void_p
                fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.POINTER(ctypes.c_int)]
                break
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.free.argtypes = [ctypes.c_void_p]
        _CXA.extend([fn, libc.free, ctypes])
    fn, free, ctypes = _CXA
    if fn is None or not isinstance(name, str):
        return name
    status = ctypes.c_int(0)
    out = fn(name.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not out:
        return name
    try:
        return ctypes.string_at(out).decode()
    finally:
        free(out)


class KinetoStepTracker:
    """Step counts per requester (the profiler's ``step()``, each optimizer's steps); the
    global step is their maximum, so several requesters stepping together count once."""

    _current_step = 0
    _step_dict: dict = {}

    @classmethod
    def init_step_count(cls, requester):
        cls._step_dict[requester] = cls._current_step

    @classmethod
    def erase_step_count(cls, requester):
        return cls._step_dict.pop(requester, None) is not None

    @classmethod
    def increment_step(cls, requester):
        """Count a step of ``requester``; returns the global step."""
        if requester not in cls._step_dict:
            cls.init_step_count(requester)
        cls._step_dict[requester] += 1
        new = max(cls._step_dict.values())
        if new > cls._current_step:
            if new - cls._current_step > 1:
                import warnings
                warnings.warn(f"Profiler step count has increased more than 1 - current_step "
                              f"= {cls._current_step} step dict =  {cls._step_dict}",
                              stacklevel=2)
            cls._current_step = new
        return cls._current_step

    @classmethod
    def current_step(cls):
        return cls._current_step


from .profiler_util import MemRecordsAcc  # noqa: E402,F401

__all__ += ["emit_itt", "EnforceUnique", "parse_nvprof_trace", "load_nvprof",
            "KinetoStepTracker", "MemRecordsAcc"]
