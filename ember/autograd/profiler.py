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


# reading nvprof's SQLite traces of CUDA runs: not implemented (counted as missing)
from .._not_yet import missing as _missing  # noqa: E402

parse_nvprof_trace = _missing("torch.autograd.profiler.parse_nvprof_trace",
                              " (reading an nvprof SQLite trace of a CUDA run)")
load_nvprof = _missing("torch.autograd.profiler.load_nvprof",
                       " (reading an nvprof SQLite trace of a CUDA run)")


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
