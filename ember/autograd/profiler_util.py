"""``torch.autograd.profiler_util``: the profiler's event containers and small helpers at
PyTorch's path. The events themselves are ember.profiler's (``FunctionEvent``,
``FunctionEventAvg``, ``EventList``)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import NamedTuple

from ..profiler._events import EventList, FunctionEvent, FunctionEventAvg, Interval, Kernel

__all__ = ["EventList", "FormattedTimesMixin", "Interval", "Kernel", "FunctionEvent",
           "FunctionEventAvg", "StringTable", "MemRecordsAcc", "EventMetadata"]


def _format_time(time_us):
    """Microseconds as PyTorch's tables print them (s, ms or us)."""
    if time_us >= 1e6:
        return f"{time_us / 1e6:.3f}s"
    if time_us >= 1e3:
        return f"{time_us / 1e3:.3f}ms"
    return f"{time_us:.3f}us"


def _time_str(name):
    return property(lambda self: _format_time(getattr(self, name)))


class FormattedTimesMixin:
    """Average and formatted times for a class with ``*_time_total`` and ``count``."""

    cpu_time_str = _time_str("cpu_time")
    device_time_str = _time_str("device_time")
    cpu_time_total_str = _time_str("cpu_time_total")
    device_time_total_str = _time_str("device_time_total")
    self_cpu_time_total_str = _time_str("self_cpu_time_total")
    self_device_time_total_str = _time_str("self_device_time_total")

    @property
    def cpu_time(self):
        return 0.0 if self.count == 0 else self.cpu_time_total / self.count

    @property
    def device_time(self):
        return 0.0 if self.count == 0 else self.device_time_total / self.count


class EventMetadata(NamedTuple):
    """Device-side metadata of an event (kernels, memory copies, collectives); ember's CPU
    events carry none, so every field is None unless given."""

    registers_per_thread: int | None = None
    shared_memory: int | None = None
    grid: list | None = None
    block: list | None = None
    priority: int | None = None
    blocks_per_sm: float | None = None
    warps_per_sm: float | None = None
    occupancy: dict | None = None
    est_occupancy_pct: float | None = None
    queued: int | None = None
    graph_id: int | None = None
    graph_node_id: int | None = None
    stream: int | None = None
    context: int | None = None
    channel: int | None = None
    channel_type: int | None = None
    bytes: int | None = None
    bandwidth_gb_s: float | None = None
    collective_name: str | None = None
    dtype: str | None = None
    in_msg_nelems: int | None = None
    out_msg_nelems: int | None = None
    in_split_size: str | None = None
    out_split_size: str | None = None
    global_rank_start: int | None = None
    global_rank_stride: int | None = None
    group_size: int | None = None
    process_group_name: str | None = None
    process_group_desc: str | None = None
    group_ranks: str | None = None
    rank: int | None = None
    src_rank: int | None = None
    dst_rank: int | None = None
    seq: int | None = None
    is_async: bool | None = None


class StringTable(defaultdict):
    """Names by key; a missing key stands for itself (PyTorch demangles C++ symbols here;
    ember's events have Python names already)."""

    def __missing__(self, key):
        self[key] = key
        return key


class MemRecordsAcc:
    """Memory records sorted by start time, for the records inside an interval. Each record
    is a sequence whose first item has ``start_ns()``."""

    def __init__(self, mem_records):
        self._mem_records = mem_records
        order = sorted((r[0].start_ns(), i) for i, r in enumerate(mem_records))
        self._start_nses = [s for s, _ in order]
        self._indices = [i for _, i in order]

    def in_interval(self, start_ns, end_ns):
        """The records that start within ``[start_ns, end_ns]``."""
        lo = bisect.bisect_left(self._start_nses, start_ns)
        hi = bisect.bisect_right(self._start_nses, end_ns)
        for i in range(lo, hi):
            yield self._mem_records[self._indices[i]]
