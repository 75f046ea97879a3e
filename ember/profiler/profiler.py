"""The profiler session: a mode on the one dispatch path that times every op.

While a session records, it sits in ``_MODES`` (every dispatched op), in the engine's
``_PROFILER`` slot (backward nodes, named ``autograd::engine::evaluate_function: MulBackward0``
as PyTorch's), in the optimizers' global step hooks (``Optimizer.step#SGD.step``), in the
modules' global forward hooks (``nn.Module: Linear_0``, with ``with_modules``) and around the
DataLoader iterators' ``__next__``. When no session records, none of these costs anything.

Events are kept as small lists while recording (name, start, end, parent, shapes, ...) and
turned into ``FunctionEvent`` objects only when asked for.
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import json
import os
import re
import socket
import threading
import time
import traceback
import weakref

from .._tensor import Tensor
from ..autograd import engine as _engine
from ..autograd import graph as _graph
from ._events import EventList, FunctionEvent

__all__ = ["ProfilerActivity", "ProfilerAction", "profile", "schedule", "record_function",
           "tensorboard_trace_handler", "supported_activities"]

_perf = time.perf_counter_ns
_ACTIVE: list = []  # the recording sessions (innermost last); record_function reports here


class ProfilerActivity(enum.Enum):
    """What to profile: ``CPU`` (ember runs everything on the CPU)."""

    CPU = 0
    XPU = 1
    MTIA = 2
    CUDA = 3
    HPU = 4
    PrivateUse1 = 5


def supported_activities():
    return {ProfilerActivity.CPU}


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


def schedule(*, wait, warmup, active, repeat=0, skip_first=0, skip_first_wait=0):
    """PyTorch's profiling schedule: skip ``skip_first`` steps, then cycles of ``wait`` idle,
    ``warmup`` and ``active`` recorded steps (``repeat`` cycles, 0 = forever); the last active
    step of a cycle hands the trace to ``on_trace_ready``."""
    if wait < 0 or warmup < 0 or active <= 0 or repeat < 0 or skip_first < 0:
        raise AssertionError("Invalid profiler schedule arguments")

    def schedule_fn(step):
        if step < 0:
            raise AssertionError(f"Invalid step number {step}")
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        cycle = wait + warmup + active
        if skip_first_wait and step < wait:
            return ProfilerAction.NONE
        if repeat > 0 and step / cycle >= repeat:
            return ProfilerAction.NONE
        mod = step % cycle
        if mod < wait:
            return ProfilerAction.NONE
        if mod < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if mod < cycle - 1 else ProfilerAction.RECORD_AND_SAVE
    return schedule_fn


def _always_record(step):
    return ProfilerAction.RECORD


# PyTorch's names for ember's op classes where the class name does not give it directly.
_ATEN = {"ConvNd": "convolution", "ConvInputGrad": "convolution_backward",
         "ConvWeightGrad": "convolution_backward", "MaxPoolNd": "max_pool", "AvgPoolNd": "avg_pool",
         "ToDtype": "to", "CrossEntropy": "cross_entropy_loss", "Fill": "fill_",
         "IndexPut": "index_put_", "Relu": "relu", "Gelu": "gelu", "NllLoss": "nll_loss",
         "LogSoftmax": "log_softmax", "Matmul": "matmul", "Linear": "linear",
         "_Assign": "copy"}
_NAMES: dict = {}
_INPLACE_NAMES: dict = {}  # op class -> a ``_Named`` with its in-place event name


def _op_name(cls):
    name = _NAMES.get(cls)
    if name is None:
        if isinstance(cls, type) and issubclass(cls, _graph.Function):
            name = cls.__name__  # a user Function: PyTorch names its range after the class
        else:
            base = _ATEN.get(cls.__name__)
            if base is None:
                base = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__.lstrip("_")).lower()
            name = "aten::" + base
        _NAMES[cls] = name
    return name


class _Named:
    """Stands for an op class in ``on_op`` under an event name of its own."""

    _raw = True  # an in-place op computes on arrays: nothing nests inside it

    def __init__(self, name):
        _NAMES[self] = name

    def __hash__(self):
        return id(self)


def _raw_shapes(args):
    """What ``record_shapes`` keeps per op while recording: (shape, dtype) per tensor
    argument, a list of them for tensor lists, None otherwise; formatted later."""
    out = []
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            out.append((d.shape, d.dtype))
        elif type(a) in (list, tuple) and a and isinstance(a[0], Tensor):
            out.append([(x._data.shape, x._data.dtype) for x in a if isinstance(x, Tensor)])
        else:
            out.append(a if isinstance(a, (int, float, bool)) else None)
    return out


def _fmt_shapes(raw):
    """PyTorch's ``Input Dims`` and ``Input type`` from ``_raw_shapes``."""
    if raw is None:
        return None, None
    dims, types = [], []
    for r in raw:
        if type(r) is tuple:
            dims.append(list(r[0]))
            types.append(_dtype_name(r[1]))
        elif type(r) is list:
            dims.append([list(x[0]) for x in r])
            types.append("TensorList")
        else:
            dims.append([])
            types.append("Scalar" if r is not None else "")
    return dims, types


def _dtype_name(np_dtype):
    from .._dtype import _BY_NP
    d = _BY_NP.get(np_dtype)
    return {"float32": "float", "float64": "double", "float16": "c10::Half",
            "bfloat16": "c10::BFloat16", "int64": "long int", "int32": "int",
            "bool": "bool"}.get(d.name if d is not None else "", str(np_dtype))


_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_stack():
    """The caller's frames outside ember, innermost first (``with_stack``)."""
    frames = []
    for fr in reversed(traceback.extract_stack()[:-3]):
        if fr.filename.startswith(_HERE):
            continue
        frames.append(f"{fr.filename}({fr.lineno}): {fr.name}")
    return frames


class _Recorder:
    """The mode in ``_MODES``: one event per dispatched op; also the target of the engine's,
    the optimizers', the modules' and the DataLoader's reports."""

    sees_function_body = True  # ops inside a custom Function's forward nest under it

    def __init__(self, session):
        self.s = session
        self.events = []  # [name, t0, t1, parent, shapes, kind, mem_self, stack, dtypes]
        self.cur = -1
        self.mem_log = []  # (t_ns, +/- bytes)
        self.finalizers = []
        self.tid = threading.get_ident()
        self.plain = not (session.record_shapes or session.with_stack or session.profile_memory)

    # ------------------------------------------------------------ ranges
    def begin(self, name, kind="user_annotation", args=None):
        ev = [name, _perf(), None, self.cur, None, kind, 0, None, None]
        s = self.s
        if args is not None and s.record_shapes:
            ev[4] = _raw_shapes(args)
        if s.with_stack:
            ev[7] = _user_stack()
        self.events.append(ev)
        self.cur = len(self.events) - 1
        return self.cur

    def end(self, idx):
        ev = self.events[idx]
        if ev[2] is None:
            ev[2] = _perf()
        self.cur = ev[3]

    def on_op(self, cls, args, kwargs, run):
        # the per-op cost of profiling: keep it to a list, two clock reads and a dict lookup
        name = _NAMES.get(cls)
        if name is None:
            name = _op_name(cls)
        if self.plain and cls._raw:
            # the common case, kept short: no shapes, stacks or memory asked for, and a
            # built-in op, which cannot open events inside it (its forward computes on
            # arrays), so its event can be appended when it ends, at the same place
            t0 = _perf()
            try:
                return run()
            finally:
                self.events.append([name, t0, _perf(), self.cur, None, "cpu_op", 0, None, None])
        events = self.events
        parent = self.cur
        ev = [name, 0, None, parent, None, "cpu_op", 0, None, None]
        s = self.s
        if s.record_shapes:
            ev[4] = _raw_shapes(args)
        if s.with_stack:
            ev[7] = _user_stack()
        self.cur = len(events)
        events.append(ev)
        ev[1] = _perf()
        try:
            out = run()
        finally:
            ev[2] = _perf()
            self.cur = parent
        if s.profile_memory:
            self._track(ev, out, args)
        return out

    def on_inplace(self, cls, target, args, kwargs, run):
        # an in-place op is its own event, named as PyTorch names it (``aten::mul_``)
        named = _INPLACE_NAMES.get(cls)
        if named is None:
            name = _op_name(cls)
            named = _INPLACE_NAMES[cls] = _Named(name if name.endswith("_") else name + "_")
        return self.on_op(named, (target,) + args, kwargs, run)

    def backward_node(self, node, call, buf, retain_graph, raw):
        idx = self.begin("autograd::engine::evaluate_function: " + node.name(), "cpu_op")
        try:
            return call(node, buf, retain_graph, raw)
        finally:
            self.end(idx)

    # ------------------------------------------------------------ memory
    def _track(self, ev, out, args):
        ins = {id(a._data) for a in args if isinstance(a, Tensor)}
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:
            if not isinstance(o, Tensor):
                continue
            d = o._data
            if id(d) in ins or d.base is not None or o._base is not None:
                continue  # a view or an input returned: nothing new was allocated
            n = d.nbytes
            ev[6] += n
            self.mem_log.append((ev[2], n))
            self.finalizers.append(weakref.finalize(o, self._freed, n))

    def _freed(self, n):
        if self.cur >= 0:
            self.events[self.cur][6] -= n
        self.mem_log.append((_perf(), -n))


def _module_name(session, module):
    names = session._module_names
    key = id(module)
    if key not in names:
        cls = type(module).__name__
        k = session._module_counts.get(cls, 0)
        session._module_counts[cls] = k + 1
        names[key] = f"nn.Module: {cls}_{k}"
    return names[key]


class profile:
    """``ember.profiler.profile``: record what runs inside it (PyTorch's API).

    ``activities`` (CPU), ``record_shapes``, ``profile_memory``, ``with_stack``,
    ``with_modules``, ``schedule`` (see ``schedule``) with ``prof.step()`` per iteration,
    ``on_trace_ready`` (e.g. ``tensorboard_trace_handler(dir)``)."""

    def __init__(self, *, activities=None, schedule=None, on_trace_ready=None,
                 record_shapes=False, profile_memory=False, with_stack=False, with_flops=False,
                 with_modules=False, experimental_config=None, execution_trace_observer=None,
                 acc_events=False, use_cuda=None, custom_trace_id_callback=None):
        acts = set(activities) if activities is not None else supported_activities()
        if use_cuda:
            acts.add(ProfilerActivity.CUDA)
        unsupported = acts - supported_activities()
        if unsupported:
            import warnings
            warnings.warn(f"ember profiles the CPU only; ignoring activities "
                          f"{sorted(a.name for a in unsupported)}", stacklevel=2)
        self.activities = acts
        self.schedule = schedule if schedule is not None else _always_record
        self.record_steps = schedule is not None
        self.on_trace_ready = on_trace_ready
        self.record_shapes = bool(record_shapes)
        self.profile_memory = bool(profile_memory)
        self.with_stack = bool(with_stack)
        self.with_flops = bool(with_flops)
        self.with_modules = bool(with_modules)
        self.acc_events = acc_events
        self.step_num = 0
        self.current_action = self.schedule(self.step_num)
        self._rec = None
        self._done = None  # the last finished recording
        self._metadata = {}
        self._step_range = None
        self._hooks = []
        self._patched = []
        self._module_names = {}
        self._module_counts = {}
        self._t0 = _perf()

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self._transit(None, self.current_action)

    def stop(self):
        if self._rec is not None:
            self._finish(save=self.current_action in (ProfilerAction.RECORD,
                                                      ProfilerAction.RECORD_AND_SAVE))

    def step(self):
        """Mark the end of one training step: advance the schedule."""
        prev = self.current_action
        self.step_num += 1
        self.current_action = self.schedule(self.step_num)
        self._transit(prev, self.current_action)

    def _transit(self, prev, now):
        recording = (ProfilerAction.WARMUP, ProfilerAction.RECORD,
                     ProfilerAction.RECORD_AND_SAVE)
        if prev == ProfilerAction.RECORD_AND_SAVE and self._rec is not None:
            self._finish(save=True)
        elif prev in recording and now not in recording and self._rec is not None:
            self._finish(save=prev != ProfilerAction.WARMUP)
        if now in recording:
            if self._rec is None:
                self._begin()
            elif prev == ProfilerAction.WARMUP and now != ProfilerAction.WARMUP:
                # warm-up steps are run but not kept: start the kept recording afresh
                self._end_hooks()
                self._begin()
            if self.record_steps and self._rec is not None:
                self._step_range = self._rec.begin(f"ProfilerStep#{self.step_num}")

    def _begin(self):
        rec = self._rec = _Recorder(self)
        _graph._MODES.insert(0, rec)  # outermost: it times what the other modes do too
        _engine._PROFILER[0] = rec
        _ACTIVE.append(self)
        from ..optim import optimizer as O
        pending = {}

        def pre(opt, args, kwargs):
            pending[id(opt)] = rec.begin(f"Optimizer.step#{type(opt).__name__}.step")

        def post(opt, args, kwargs):
            idx = pending.pop(id(opt), None)
            if idx is not None:
                rec.end(idx)
        self._hooks = [O.register_optimizer_step_pre_hook(pre),
                       O.register_optimizer_step_post_hook(post)]
        if self.with_modules:
            from ..nn.modules import module as M
            open_scopes = {}

            def mpre(mod, inputs):
                open_scopes.setdefault(id(mod), []).append(
                    rec.begin(_module_name(self, mod), "python_function"))

            def mpost(mod, inputs, output):
                stack = open_scopes.get(id(mod))
                if stack:
                    rec.end(stack.pop())
            self._hooks += [M.register_module_forward_pre_hook(mpre),
                            M.register_module_forward_hook(mpost)]
        self._patch_dataloader(rec)

    def _patch_dataloader(self, rec):
        from ..utils.data import dataloader as dl
        for cls_name in ("_SingleProcessDataLoaderIter", "_MultiProcessingDataLoaderIter"):
            cls = getattr(dl, cls_name, None)
            if cls is None or "__next__" not in cls.__dict__:
                continue
            orig = cls.__dict__["__next__"]
            label = f"enumerate(DataLoader)#{cls_name}.__next__"

            def nxt(it, _orig=orig, _label=label):
                idx = rec.begin(_label)
                try:
                    return _orig(it)
                finally:
                    rec.end(idx)
            cls.__next__ = nxt
            self._patched.append((cls, orig))

    def _end_hooks(self):
        rec = self._rec
        if rec is None:
            return
        now = _perf()
        for ev in rec.events:  # close what is still open (a step range, a failed scope)
            if ev[2] is None:
                ev[2] = now
        if rec in _graph._MODES:
            _graph._MODES.remove(rec)
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if _engine._PROFILER[0] is rec:  # an enclosing session gets the engine's reports back
            _engine._PROFILER[0] = _ACTIVE[-1]._rec if _ACTIVE else None
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for cls, orig in self._patched:
            cls.__next__ = orig
        self._patched = []
        for f in rec.finalizers:
            f.detach()
        rec.finalizers = []
        self._rec = None
        return rec

    def _finish(self, save):
        rec = self._end_hooks()
        self._done = rec
        self._events_cache = None
        if save and self.on_trace_ready is not None:
            self.on_trace_ready(self)

    # ------------------------------------------------------------ results
    def events(self):
        """The recorded events (an ``EventList`` of ``FunctionEvent``)."""
        if getattr(self, "_events_cache", None) is not None:
            return self._events_cache
        rec = self._done
        if rec is None:
            if self._rec is not None:
                raise RuntimeError("the profiler is still recording: leave its context (or "
                                   "call stop()) before reading its events")
            raise AssertionError("no profiler results yet: run code inside the profiler "
                                 "(and step() through an active schedule step) first")
        t0 = self._t0
        out = []
        for i, (name, a, b, parent, shapes, kind, mem, stack, _) in enumerate(rec.events):
            ev = FunctionEvent(i, name, (a - t0) / 1e3, ((b or a) - t0) / 1e3, rec.tid,
                               _fmt_shapes(shapes)[0], stack, kind)
            ev.self_cpu_memory_usage = mem
            ev.cpu_memory_usage = mem
            out.append(ev)
            if parent >= 0:
                p = out[parent]
                ev.cpu_parent = p
                p.cpu_children.append(ev)
        for ev in reversed(out):  # children come after parents: totals flow upwards
            if ev.cpu_parent is not None:
                ev.cpu_parent.cpu_memory_usage += ev.cpu_memory_usage
        self._events_cache = EventList(out, profile_memory=self.profile_memory,
                                       with_stack=self.with_stack)
        return self._events_cache

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0,
                     group_by_overload_name=False):
        """Events averaged by name (and input shapes / stack): ``.table(sort_by=...)``."""
        if group_by_input_shape and not self.record_shapes:
            raise RuntimeError("group_by_input_shape needs profile(record_shapes=True)")
        if group_by_stack_n and not self.with_stack:
            raise RuntimeError("group_by_stack_n needs profile(with_stack=True)")
        return self.events().key_averages(group_by_input_shape, group_by_stack_n)

    def add_metadata(self, key, value):
        self._metadata[key] = value

    def add_metadata_json(self, key, value):
        self._metadata[key] = json.loads(value)

    def _trace(self):
        pid = os.getpid()
        evs = []
        rec = self._done
        self.events()
        t0 = self._t0
        for i, (name, a, b, parent, shapes, kind, mem, stack, _) in enumerate(rec.events):
            args = {"External id": i + 1, "Record function id": i + 1}
            if shapes is not None:
                args["Input Dims"], args["Input type"] = _fmt_shapes(shapes)
            if stack:
                args["Call stack"] = ";".join(stack)
            evs.append({"ph": "X", "cat": kind, "name": name, "pid": pid, "tid": rec.tid,
                        "ts": (a - t0) / 1e3, "dur": ((b or a) - a) / 1e3, "args": args})
        total = 0
        for t, n in rec.mem_log:
            total += n
            evs.append({"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": "[memory]",
                        "pid": pid, "tid": rec.tid, "ts": (t - t0) / 1e3,
                        "args": {"Device Type": 0, "Device Id": -1, "Addr": 0, "Bytes": n,
                                 "Total Allocated": total, "Total Reserved": total}})
        evs.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                    "args": {"name": "python"}})
        evs.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": rec.tid,
                    "args": {"name": "thread " + str(rec.tid) + " (python)"}})
        return {"schemaVersion": 1, "deviceProperties": [], "displayTimeUnit": "ms",
                "traceName": "ember", "traceEvents": evs, **self._metadata}

    def export_chrome_trace(self, path):
        """Write a Chrome/Perfetto trace (JSON; gzip when ``path`` ends in ``.gz``)."""
        data = json.dumps(self._trace()).encode()
        if str(path).endswith(".gz"):
            data = gzip.compress(data)
        _atomic_write(path, data)
        return path

    def export_stacks(self, path, metric="self_cpu_time_total"):
        """Write the recorded stacks as collapsed-stack lines (flame graph input)."""
        if not self.with_stack:
            raise RuntimeError("export_stacks needs profile(with_stack=True)")
        lines = []
        for ev in self.events():
            if ev.stack:
                frames = ";".join(reversed([f.replace(";", ",") for f in ev.stack]))
                lines.append(f"{frames};{ev.name} {int(getattr(ev, metric))}")
        _atomic_write(path, ("\n".join(lines) + "\n").encode())

    def export_memory_timeline(self, path, device=None):
        """Write the memory allocated by ops over time (needs ``profile_memory``):
        ``.json`` gives ``[times_us, bytes]``, ``.json.gz`` the same gzipped, ``.html`` a
        plot. ember records one category, the bytes held by op outputs."""
        if not self.profile_memory:
            raise RuntimeError("export_memory_timeline needs profile(profile_memory=True)")
        rec = self._done
        if rec is None:
            self.events()
        times, sizes, total = [], [], 0
        for t, n in sorted(rec.mem_log):
            total += n
            times.append((t - self._t0) / 1e3)
            sizes.append(total)
        p = str(path)
        if p.endswith(".html"):
            top = max(sizes + [1])
            span = max((times[-1] - times[0]) if times else 1.0, 1e-9)
            pts = " ".join(f"{800 * (t - times[0]) / span:.1f},{300 - 300 * s / top:.1f}"
                           for t, s in zip(times, sizes))
            html = ("<html><head><title>ember memory timeline</title></head><body>"
                    f"<h3>Memory allocated by ops (peak {top} bytes)</h3>"
                    '<svg width="820" height="320"><polyline fill="none" stroke="steelblue" '
                    f'points="{pts}"/></svg></body></html>')
            _atomic_write(p, html.encode())
            return
        data = json.dumps([times, sizes]).encode()
        if p.endswith(".gz"):
            data = gzip.compress(data)
        elif not p.endswith(".json"):
            raise ValueError(f"export_memory_timeline: unsupported file type {p!r} (use .json, "
                             ".json.gz or .html)")
        _atomic_write(p, data)


def _atomic_write(path, data):
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def tensorboard_trace_handler(dir_name, worker_name=None, use_gzip=False):
    """An ``on_trace_ready`` that writes each trace into ``dir_name`` as
    ``{worker}.{time_ms}.pt.trace.json`` (TensorBoard's profiler plugin reads these)."""

    def handler(prof):
        os.makedirs(dir_name, exist_ok=True)
        worker = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        ext = ".pt.trace.json.gz" if use_gzip else ".pt.trace.json"
        ms = int(time.time() * 1000)
        while os.path.exists(os.path.join(dir_name, f"{worker}.{ms}{ext}")):
            ms += 1  # two traces in one millisecond: never overwrite the first
        prof.export_chrome_trace(os.path.join(dir_name, f"{worker}.{ms}{ext}"))
    return handler


class record_function(contextlib.ContextDecorator):
    """Label a block (``with record_function("name"):``) or a function (as a decorator) in
    the profile; costs a list check when no profiler records."""

    def __init__(self, name, args=None):
        self.name = name
        self.args = args
        self._open = []

    def __enter__(self):
        if _ACTIVE:
            rec = _ACTIVE[-1]._rec
            self._open.append((rec, rec.begin(self.name)))
        else:
            self._open.append(None)
        return self

    def __exit__(self, *exc):
        top = self._open.pop()
        if top is not None:
            top[0].end(top[1])
        return False
