"""``ember.utils.benchmark``: time a statement (PyTorch's ``torch.utils.benchmark`` API).

``Timer(stmt, setup, globals=...).timeit(n)`` runs ``setup`` once, then ``stmt`` ``n`` times,
and returns a ``Measurement`` of the time per run; ``blocked_autorange(min_run_time=0.2)``
picks a block size that takes at least ~10 ms, then times blocks until ``min_run_time`` has
passed. ``Measurement`` reports ``mean``, ``median``, ``iqr`` (interquartile range) and the
raw per-run ``times``.
"""

from __future__ import annotations

import statistics
import textwrap
import time
import timeit as _timeit

__all__ = ["Timer", "Measurement"]


class Measurement:
    """Times per run (seconds) of one statement, one entry per timed block."""

    def __init__(self, number_per_run, raw_times, task_spec=None, metadata=None):
        self.number_per_run = int(number_per_run)
        self.raw_times = list(raw_times)
        self.task_spec = task_spec or {}
        self.metadata = metadata

    @property
    def times(self):
        return [t / self.number_per_run for t in self.raw_times]

    @property
    def mean(self):
        return statistics.fmean(self.times)

    @property
    def median(self):
        return statistics.median(self.times)

    def _quantile(self, q):
        ts = sorted(self.times)
        if len(ts) == 1:
            return ts[0]
        pos = q * (len(ts) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ts) - 1)
        return ts[lo] + (ts[hi] - ts[lo]) * (pos - lo)

    @property
    def iqr(self):
        return self._quantile(0.75) - self._quantile(0.25)

    @property
    def stmt(self):
        return self.task_spec.get("stmt")

    @property
    def label(self):
        return self.task_spec.get("label")

    @property
    def description(self):
        return self.task_spec.get("description")

    @property
    def title(self):
        return self.label or self.stmt

    def __repr__(self):
        unit, scale = _unit(self.median)
        lines = [f"<ember.utils.benchmark.Measurement object at {hex(id(self))}>"]
        if self.label:
            lines.append(f"{self.label}: {self.description or ''}".rstrip(": "))
        lines.append(textwrap.shorten(str(self.stmt), 70))
        if len(self.times) > 1:
            lines.append(f"  Median: {self.median / scale:.2f} {unit}")
            lines.append(f"  IQR:    {self.iqr / scale:.2f} {unit} "
                         f"({self._quantile(0.25) / scale:.2f} to "
                         f"{self._quantile(0.75) / scale:.2f})")
        else:
            lines.append(f"  {self.median / scale:.2f} {unit}")
        lines.append(f"  {len(self.times)} measurement{'s' if len(self.times) > 1 else ''}, "
                     f"{self.number_per_run} runs per measurement")
        return "\n".join(lines)


def _unit(t):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return unit, scale
    return "ns", 1e-9


class Timer:
    """Times ``stmt`` (a string of code, or a callable) after ``setup``, in ``globals``."""

    def __init__(self, stmt="pass", setup="pass", global_setup="", timer=time.perf_counter,
                 globals=None, label=None, sub_label=None, description=None, env=None,
                 num_threads=1, language="python"):
        if language not in ("python", "py"):
            raise ValueError(f"Timer: only Python statements are supported, got {language}")
        self._globals = dict(globals or {})
        self._stmt = stmt
        setup_code = "\n".join(s for s in (global_setup, setup) if s)
        self._timer = _timeit.Timer(stmt=stmt, setup=setup_code or "pass", timer=timer,
                                    globals=self._globals)
        self._spec = {"stmt": stmt if isinstance(stmt, str) else getattr(stmt, "__name__", ""),
                      "setup": setup, "label": label, "sub_label": sub_label,
                      "description": description, "env": env, "num_threads": num_threads}

    def timeit(self, number=1000000):
        """Run the statement ``number`` times (after one warm-up run); one measurement."""
        self._timer.timeit(number=1)  # warm-up: first-call costs (imports, caches)
        return Measurement(number, [self._timer.timeit(number=number)], self._spec)

    def repeat(self, repeat=-1, number=-1):
        raise NotImplementedError("Timer.repeat: use timeit() or blocked_autorange()")

    def autorange(self, callback=None):
        number, _ = self._timer.autorange(callback)
        return number

    def blocked_autorange(self, callback=None, min_run_time=0.2):
        """Blocks of runs, each at least ~10 ms, until ``min_run_time`` seconds are spent."""
        self._timer.timeit(number=1)
        number = 1
        while True:  # find a block size that takes >= 10 ms
            t = self._timer.timeit(number=number)
            if t >= 0.01 or number >= 10 ** 9:
                break
            number *= 10 if t < 0.001 else 2
        times = [t]
        total = t
        while total < min_run_time:
            t = self._timer.timeit(number=number)
            if callback is not None:
                callback(number, t)
            times.append(t)
            total += t
        return Measurement(number, times, self._spec)

    def adaptive_autorange(self, threshold=0.1, *, min_run_time=0.01, max_run_time=10.0,
                           callback=None):
        """Time more blocks until IQR/median falls under ``threshold`` (or time runs out)."""
        m = self.blocked_autorange(callback, min_run_time=min_run_time)
        start = time.perf_counter()
        while len(m.raw_times) < 3 or (m.median and m.iqr / m.median > threshold):
            if time.perf_counter() - start >= max_run_time:
                break
            m.raw_times.append(self._timer.timeit(number=m.number_per_run))
        return m
