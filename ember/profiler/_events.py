"""Profiler results: events, their averages, and PyTorch's summary table."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

__all__ = ["FunctionEvent", "FunctionEventAvg", "EventList", "Interval", "Kernel"]

Kernel = namedtuple("Kernel", ["name", "device", "duration"])


class Interval(namedtuple("Interval", ["start", "end"])):
    """An event's time range in microseconds (a pair, with PyTorch's attribute names)."""

    __slots__ = ()

    def elapsed_us(self):
        return self.end - self.start


class FunctionEvent:
    """One recorded range: an op, a backward node, a module scope or a ``record_function``.

    Times are in microseconds, as PyTorch's. ``cpu_children``/``cpu_parent`` give the
    nesting; ``self_cpu_time_total`` is the time not spent in children."""

    def __init__(self, id, name, start_us, end_us, thread, input_shapes=None, stack=None,
                 kind="cpu_op", sequence_nr=-1):
        self.id = id
        self.name = name
        self.key = name
        self.time_range = Interval(start_us, end_us)
        self.kernels = []  # device kernels launched inside (read from nvprof traces)
        self.thread = thread
        self.input_shapes = input_shapes or []
        self.stack = stack or []
        self.kind = kind
        self.sequence_nr = sequence_nr
        self.cpu_children = []
        self.cpu_parent = None
        self.cpu_memory_usage = 0
        self.self_cpu_memory_usage = 0
        self.device_type = "CPU"
        self.count = 1
        self.is_async = False
        self.is_legacy = False
        self.device_time_total = self.self_device_time_total = 0.0
        self.cuda_time_total = self.self_cuda_time_total = 0.0

    def append_kernel(self, name, device, duration):
        """Record a device kernel launched inside this range."""
        self.kernels.append(Kernel(name, device, duration))

    @property
    def cpu_time_total(self):
        return self.time_range[1] - self.time_range[0]

    @property
    def cpu_time(self):
        return self.cpu_time_total

    @property
    def self_cpu_time_total(self):
        return self.cpu_time_total - sum(c.cpu_time_total for c in self.cpu_children)

    def __repr__(self):
        return (f"<FunctionEvent id={self.id} name={self.name} "
                f"cpu_time_total={self.cpu_time_total:.3f}us "
                f"self_cpu_time_total={self.self_cpu_time_total:.3f}us "
                f"input_shapes={self.input_shapes} cpu_memory_usage={self.cpu_memory_usage}>")


class FunctionEventAvg:
    """The events of one key (name, and input shapes / stack when grouped by them) summed."""

    def __init__(self, key):
        self.key = key
        self.count = 0
        self.cpu_time_total = 0.0
        self.self_cpu_time_total = 0.0
        self.cpu_memory_usage = 0
        self.self_cpu_memory_usage = 0
        self.input_shapes = None
        self.stack = None
        self.device_time_total = self.self_device_time_total = 0.0
        self.cuda_time_total = self.self_cuda_time_total = 0.0
        self.is_legacy = False

    def add(self, ev):
        self.count += ev.count
        self.cpu_time_total += ev.cpu_time_total
        self.self_cpu_time_total += ev.self_cpu_time_total
        self.cpu_memory_usage += ev.cpu_memory_usage
        self.self_cpu_memory_usage += ev.self_cpu_memory_usage
        if self.input_shapes is None:
            self.input_shapes = ev.input_shapes
            self.stack = ev.stack
        return self

    @property
    def cpu_time(self):
        return self.cpu_time_total / self.count if self.count else 0.0

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} self_cpu_time={self.self_cpu_time_total:.3f}us "
                f"cpu_time={self.cpu_time:.3f}us count={self.count} "
                f"input_shapes={self.input_shapes} cpu_memory_usage={self.cpu_memory_usage}>")


def _fmt_time(us):
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _fmt_mem(b):
    for unit, size in (("Gb", 1024 ** 3), ("Mb", 1024 ** 2), ("Kb", 1024)):
        if abs(b) >= size:
            return f"{b / size:.2f} {unit}"
    return f"{b} b"


class EventList(list):
    """A list of events with PyTorch's summaries: ``key_averages``, ``table``,
    ``total_average``, ``self_cpu_time_total``."""

    def __init__(self, *args, profile_memory=False, with_stack=False, **kwargs):
        super().__init__(*args)
        self._profile_memory = profile_memory
        self._with_stack = with_stack

    @property
    def self_cpu_time_total(self):
        return sum(e.self_cpu_time_total for e in self)

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0,
                     group_by_overload_name=False):
        """One averaged row per op name (and per input shapes / top ``n`` stack frames)."""
        groups = OrderedDict()
        for ev in self:
            key = (ev.key,)
            if group_by_input_shape:
                key += (str(ev.input_shapes),)
            if group_by_stack_n > 0:
                key += tuple(ev.stack[:group_by_stack_n])
            avg = groups.get(key)
            if avg is None:
                avg = groups[key] = FunctionEventAvg(ev.key)
            avg.add(ev)
        out = EventList(groups.values(), profile_memory=self._profile_memory,
                        with_stack=self._with_stack)
        out._grouped_shapes = group_by_input_shape
        out._stack_n = group_by_stack_n
        return out

    def total_average(self):
        total = FunctionEventAvg("Total")
        for ev in self:
            total.add(ev)
        return total

    def table(self, sort_by=None, row_limit=100, max_src_column_width=75, max_name_column_width=55,
              max_shapes_column_width=80, header=None, top_level_events_only=False):
        """PyTorch's text table: name, self/total CPU time and share, average, calls (and
        memory, input shapes, source location when recorded)."""
        rows = list(self)
        if top_level_events_only:
            rows = [e for e in rows if getattr(e, "cpu_parent", None) is None]
        if sort_by is not None:
            if rows and not hasattr(rows[0], sort_by):
                raise AttributeError(f"unknown sort_by key {sort_by!r}")
            rows.sort(key=lambda e: getattr(e, sort_by), reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        self_total = sum(e.self_cpu_time_total for e in self) or 1.0
        name_w = min(max([len(e.key) for e in rows] + [4]) + 4, max_name_column_width)
        cols = [("Name", name_w), ("Self CPU %", 12), ("Self CPU", 12), ("CPU total %", 12),
                ("CPU total", 12), ("CPU time avg", 12)]
        mem = self._profile_memory
        if mem:
            cols += [("CPU Mem", 12), ("Self CPU Mem", 12)]
        cols.append(("# of Calls", 12))
        shapes = getattr(self, "_grouped_shapes", False)
        if shapes:
            cols.append(("Input Shapes", max_shapes_column_width))
        stack_n = getattr(self, "_stack_n", 0)
        if stack_n:
            cols.append(("Source Location", max_src_column_width))
        sep = "  ".join("-" * w for _, w in cols) + "  "

        def line(vals):
            out = []
            for (title, w), v in zip(cols, vals):
                v = str(v)
                if len(v) > w:
                    v = v[:w - 3] + "..."
                out.append(v.ljust(w) if title in ("Input Shapes", "Source Location")
                           else v.rjust(w))
            return "  ".join(out) + "  "

        lines = [sep]
        if header:
            lines = [header, sep]
        lines += [line([t for t, _ in cols]), sep]
        for e in rows:
            vals = [e.key, f"{100 * e.self_cpu_time_total / self_total:.2f}%",
                    _fmt_time(e.self_cpu_time_total),
                    f"{100 * e.cpu_time_total / self_total:.2f}%", _fmt_time(e.cpu_time_total),
                    _fmt_time(e.cpu_time_total / max(e.count, 1))]
            if mem:
                vals += [_fmt_mem(e.cpu_memory_usage), _fmt_mem(e.self_cpu_memory_usage)]
            vals.append(e.count)
            if shapes:
                vals.append(e.input_shapes)
            if stack_n:
                vals.append(e.stack[0] if e.stack else "")
            lines.append(line(vals))
            if stack_n:
                for fr in (e.stack or [])[1:stack_n]:
                    lines.append(line([""] * (len(cols) - 1) + [fr]))
        lines.append(sep)
        lines.append(f"Self CPU time total: {_fmt_time(self.self_cpu_time_total)}")
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.table()
