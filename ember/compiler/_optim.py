"""Optimizer updates of a compiled training step as one generated C loop.

``optimizer_group_step`` (a graph node made by ``_passes.group_optimizer_steps``) calls
``group_step`` first: for ``ember.optim.SGD`` (``sgd_group_step``) and ``Adam``/``AdamW``
(``adam_group_step``) it updates every parameter of the group in one C call (at several
threads, one call per run of elements on ember's pool, in one hand-off: ``_run``), reading each
gradient where it lies (eager's flat path first copies all gradients into one buffer, then
makes three to five (SGD) or about fifteen (Adam) NumPy passes over it). The arithmetic is
eager's, operation by operation in the same order and precision (``-ffp-contract=off``; each
Python-float coefficient rounded to the parameter's dtype as NumPy rounds a weak scalar), so
parameters and optimizer state come out bit for bit as eager's. Anything unusual (another
optimizer class, a first step without state, mixed or complex dtypes, non-contiguous or
sparse gradients, a parameter listed twice, parameters at different step counts) returns
False and the optimizer's own code runs.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import weakref

import numpy as np

from .. import _threads
from .._tensor import _bump_version

__all__ = ["group_step", "sgd_group_step", "adam_group_step", "lanes", "call_runs"]

# one element: g = ±grad (+ wd * p); b = b * m + (1 - d) * g (or + g); g = g + m * b
# (Nesterov) or b; p = p - lr * g: eager's _sgd, one NumPy statement per line here
_SGD_SRC = """
#include <stdint.h>
void sgd_step_{T}(int64_t count, const int64_t *sizes, void **pp, void **gp, void **bp,
                  double lr, double momentum, double damp1, double wd, int use_momentum,
                  int dampening, int nesterov, int maximize, int nthreads) {{
    const {T} tlr = ({T})lr, tm = ({T})momentum, td = ({T})damp1, twd = ({T})wd;
    for (int64_t k = 0; k < count; k++) {{
        {T} *restrict p = ({T} *)pp[k];
        const {T} *restrict g = (const {T} *)gp[k];
        {T} *restrict b = ({T} *)bp[k];
        int64_t n = sizes[k];
        #pragma omp parallel for simd schedule(static) num_threads(nthreads) \\
            if(parallel: nthreads > 1 && n >= {MIN})
        for (int64_t i = 0; i < n; i++) {{
            {T} gv = g[i];
            if (maximize) gv = -gv;
            if (wd != 0) gv = gv + twd * p[i];
            if (use_momentum) {{
                {T} bv = b[i] * tm;
                bv = dampening ? bv + td * gv : bv + gv;
                b[i] = bv;
                gv = nesterov ? gv + tm * bv : bv;
            }}
            p[i] = p[i] - tlr * gv;
        }}
    }}
}}
"""
# one element of eager's _adam (ember/optim/adam.py), statement by statement: g = ±grad;
# p *= 1 - lr wd (decoupled) or g += wd p; m = m b1 + (1 - b1) g; v = v b2 + (g g)(1 - b2);
# (AMSGrad: vmax = max(vmax, v), NaN-propagating as np.maximum); d = sqrt(v) * c2 + eps;
# p -= (m / d) * step_size
_ADAM_SRC = """
#include <math.h>
#include <stdint.h>
void adam_step_{T}(int64_t count, const int64_t *sizes, void **pp, void **gp, void **mp,
                   void **vp, void **xp, double decay, double wd, double b1, double omb1,
                   double b2, double omb2, double c2, double eps, double step_size,
                   int weight_decay, int decoupled, int amsgrad, int maximize, int nthreads) {{
    const {T} tdecay = ({T})decay, twd = ({T})wd, tb1 = ({T})b1, tomb1 = ({T})omb1,
              tb2 = ({T})b2, tomb2 = ({T})omb2, tc2 = ({T})c2, teps = ({T})eps,
              tstep = ({T})step_size;
    for (int64_t k = 0; k < count; k++) {{
        {T} *restrict p = ({T} *)pp[k];
        const {T} *restrict g = (const {T} *)gp[k];
        {T} *restrict m = ({T} *)mp[k];
        {T} *restrict v = ({T} *)vp[k];
        {T} *restrict x = ({T} *)xp[k];
        int64_t n = sizes[k];
        #pragma omp parallel for simd schedule(static) num_threads(nthreads) \\
            if(parallel: nthreads > 1 && n >= {MIN})
        for (int64_t i = 0; i < n; i++) {{
            {T} gv = g[i];
            {T} pv = p[i];
            if (maximize) gv = -gv;
            if (weight_decay) {{
                if (decoupled) pv = pv * tdecay;
                else gv = gv + twd * pv;
            }}
            {T} mv = m[i] * tb1;
            mv = mv + tomb1 * gv;
            m[i] = mv;
            {T} vv = v[i] * tb2;
            {T} gg = gv * gv;
            gg = gg * tomb2;
            vv = vv + gg;
            v[i] = vv;
            if (amsgrad) {{
                {T} xv = x[i];
                xv = (xv != xv || xv >= vv) ? xv : vv;
                x[i] = xv;
                vv = xv;
            }}
            {T} d = sqrt{F}(vv);
            d = d * tc2;
            d = d + teps;
            d = mv / d;
            d = d * tstep;
            p[i] = pv - d;
        }}
    }}
}}
"""
_CTYPES = {"float32": "float", "float64": "double"}
_PARALLEL_MIN = 1 << 18   # a memory-bound update: a second thread pays only on large tensors
LANE_MIN = 1 << 15        # elements per run of ``_run`` (about 10-20 us of update: a hand-off
# to ember's pool costs 6-8 us)
LANES_ON = os.environ.get("EMBER_OPTIM_LANES", "1") != "0"
_KERNELS: dict = {}


def _source(kind, ctype):
    if kind == "sgd":
        return _SGD_SRC.format(T=ctype, MIN=_PARALLEL_MIN)
    return _ADAM_SRC.format(T=ctype, MIN=_PARALLEL_MIN // 2,
                            F="f" if ctype == "float" else "")


def _kernel(ctype, kind="sgd"):
    fn = _KERNELS.get((kind, ctype))
    if fn is None:
        from ._codegen import c_compiler, load_kernel
        if c_compiler() is None:
            fn = False
        else:
            try:
                fn = load_kernel(_source(kind, ctype), f"{kind}_step_{ctype}")
            except (RuntimeError, OSError, subprocess.SubprocessError):
                fn = False
        _KERNELS[(kind, ctype)] = fn
    return fn


def group_step(opt, group, run=None):
    """The group's update in one C call where a kernel serves ``opt``; False otherwise.
    ``run(fn, params, sizes, addrs, itemsize, *args)``: what makes the kernel call(s)
    (default ``_run``; ``_tail`` computes the last gradient inside it)."""
    return sgd_group_step(opt, group, run) or adam_group_step(opt, group, run)


_CT_OF = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
# id(array) -> (array, its address), per optimizer: the parameters' arrays and the state's
# are the same objects step after step, and ``ndarray.ctypes.data`` costs 1-2.5 us (a group of
# 30 tensors with three or five arrays each: 0.1-0.4 ms a step). The entry holds the array, so
# its id cannot be reused by another array while cached.
_ADDRS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _address(a, cache):
    hit = cache.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]
    addr = a.ctypes.data
    cache[id(a)] = (a, addr)
    return addr


def _plain(a, dtype, shape):
    return type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and \
        a.flags.c_contiguous


def _pack(opt, group, keys):
    """What a group kernel reads, or None where eager's code must run: ``(params, ctype,
    sizes, addresses)`` with ``addresses`` one list per array kind (parameter, gradient,
    then each optimizer-state entry of ``keys``, None for a key that is None). The
    parameters with a gradient, each listed once, one float dtype; every array plain
    (C-contiguous, the parameter's dtype and shape); the state made (the first step makes
    it: eager's code does that step)."""
    params = [p for p in group["params"] if p.grad is not None]
    if not params or len({id(p) for p in params}) != len(params):
        return None
    dtype = params[0]._data.dtype
    ctype = _CT_OF.get(dtype)
    if ctype is None:
        return None
    sizes, addrs = [], [[] for _ in range(2 + len(keys))]
    try:
        cache = _ADDRS.get(opt)
        if cache is None or len(cache) > 4 * (1 + len(keys)) * len(params):  # rebound arrays
            cache = _ADDRS[opt] = {}
    except TypeError:  # an optimizer that takes no weak reference: no cache
        cache = {}
    for p in params:
        a, g = p._data, p.grad
        if not _plain(a, dtype, a.shape) or g.is_sparse or not _plain(g._data, dtype, a.shape):
            return None
        st = opt.state.get(p) or {}
        arrays = [a, g._data]
        for k in keys:
            if k is None:
                arrays.append(None)
                continue
            t = st.get(k)
            if t is None or not _plain(t._data, dtype, a.shape):
                return None
            arrays.append(t._data)
        addrs[0].append(_address(a, cache))
        addrs[1].append(arrays[1].ctypes.data)  # a gradient: a new array each step
        for lst, arr in zip(addrs[2:], arrays[2:]):
            lst.append(None if arr is None else _address(arr, cache))
        sizes.append(a.size)
    return params, ctype, sizes, addrs


def _call(fn, sizes, addrs, *rest):
    k = len(sizes)
    arr = ctypes.c_void_p * k
    fn(ctypes.c_int64(k), (ctypes.c_int64 * k)(*sizes), *[arr(*a) for a in addrs], *rest)


def lanes(sizes, parts, align=16):
    """The group's elements (the tensors' ``sizes`` laid end to end) cut into ``parts``
    contiguous runs of about equal length, each boundary on a multiple of ``align``: per
    run, a list of ``(tensor index, first element, element count)``. A cut may fall inside
    a tensor: its two pieces go to two runs."""
    total = sum(sizes)
    step = -(-total // parts)
    step = -(-step // align) * align
    out = []
    for lo in range(0, total, step):
        hi, run = min(lo + step, total), []
        start = 0
        for i, n in enumerate(sizes):
            a, b = max(lo, start), min(hi, start + n)
            if a < b:
                run.append((i, a - start, b - a))
            start += n
        out.append(run)
    return out


def call_runs(fn, runs, addrs, itemsize, *rest):
    """One single-threaded kernel call over ``runs`` (``(tensor index, first element,
    element count)`` triples, as ``lanes`` makes them) of the group packed in ``addrs``."""
    sub = [[None if a[i] is None else a[i] + off * itemsize for i, off, _ in runs]
           for a in addrs]
    _call(fn, [n for _, _, n in runs], sub, *rest, 1)


def _run(fn, params, sizes, addrs, itemsize, *rest):
    """``fn`` (a group kernel: count, sizes, address lists, ``*rest``, thread count) over
    the group: at several threads, the elements cut into one run per thread (``lanes``),
    each run one single-threaded call on ember's pool, all in one hand-off. The update is
    elementwise, so every element is computed as in one call: the same bits at any thread
    count. This replaces the kernel's OpenMP loop: one fork and join per large tensor through
    a second pool of threads (libgomp's, woken from sleep each time, beside ember's), small
    tensors serial: an MLP step's update went through two OpenMP regions, a GPT block's
    AdamW update on its many 16K-65K-element tensors ran on one core. ``EMBER_OPTIM_LANES=0``:
    the OpenMP loop (for comparisons)."""
    from .. import _parallel
    threads = _threads.get_num_threads()
    total = sum(sizes)
    parts = min(threads, total // LANE_MIN)
    if not LANES_ON or parts < 2 or getattr(_parallel._worker, "in_pool", False):
        _call(fn, sizes, addrs, *rest, threads)
        return
    runs = lanes(sizes, parts)
    _parallel.run_split(lambda i, _: call_runs(fn, runs[i], addrs, itemsize, *rest),
                        [(i, i + 1) for i in range(len(runs))])


def sgd_group_step(opt, group, run=None):
    """One SGD update of ``group`` in a single C call; False where eager's code must run.
    ``run``: see ``group_step``."""
    from ..optim.sgd import SGD
    from .._tensor import Tensor
    if type(opt) is not SGD or opt.__dict__.get("_swapped"):
        return False
    momentum = float(group["momentum"])
    packed = _pack(opt, group, ("momentum_buffer" if momentum != 0 else None,))
    if packed is None:
        return False
    params, ctype, sizes, addrs = packed
    fn = _kernel(ctype, "sgd")
    if not fn:
        return False
    lr = group["lr"]
    if isinstance(lr, Tensor):
        lr = lr.item()
    dampening = float(group["dampening"])
    (run or _run)(fn, params, sizes, addrs, params[0]._data.itemsize,
                  ctypes.c_double(float(lr)), ctypes.c_double(momentum),
                  ctypes.c_double(1.0 - dampening), ctypes.c_double(float(group["weight_decay"])),
                  int(momentum != 0), int(dampening != 0), int(bool(group["nesterov"])),
                  int(bool(group["maximize"])))
    for p in params:
        _bump_version(p)
    return True


def adam_group_step(opt, group, run=None):
    """One Adam/AdamW update of ``group`` in a single C call (bit for bit eager's ``_adam``);
    False where eager's code must run. ``run``: see ``group_step``."""
    from ..optim.adam import Adam, AdamW
    from ..optim.optimizer import _to_scalar
    if type(opt) not in (Adam, AdamW) or opt.__dict__.get("_swapped"):
        return False
    amsgrad = bool(group["amsgrad"])
    packed = _pack(opt, group, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if amsgrad else None))
    if packed is None:
        return False
    params, ctype, sizes, addrs = packed
    steps = []
    for p in params:
        step = opt.state[p].get("step")
        if step is None or step._data.size != 1:
            return False
        steps.append(step._data)
    t = float(steps[0].reshape(-1)[0])
    if any(float(s.reshape(-1)[0]) != t for s in steps):
        return False  # parameters at different step counts: eager's loop serves them
    fn = _kernel(ctype, "adam")
    if not fn:
        return False
    # the Python-float coefficients of eager's _adam, computed as it computes them
    t += 1
    lr = _to_scalar(group["lr"])
    beta1, beta2 = (_to_scalar(b) for b in group["betas"])
    wd = group["weight_decay"]
    (run or _run)(fn, params, sizes, addrs, params[0]._data.itemsize,
                  ctypes.c_double(1 - lr * wd), ctypes.c_double(wd), ctypes.c_double(beta1),
                  ctypes.c_double(1 - beta1), ctypes.c_double(beta2), ctypes.c_double(1 - beta2),
                  ctypes.c_double(1 / (1 - beta2 ** t) ** 0.5), ctypes.c_double(group["eps"]),
                  ctypes.c_double(lr / (1 - beta1 ** t)), int(wd != 0),
                  int(bool(group["decoupled_weight_decay"])), int(amsgrad),
                  int(bool(group["maximize"])))
    for s in steps:
        s[...] = t
    for p in params:
        _bump_version(p)
    return True


def _kinds_needed(graph, attrs):
    from ..export import _capture
    from ..optim.adam import Adam, AdamW
    from ..optim.sgd import SGD
    from ._passes import optimizer_group_step
    out, seen = set(), set()
    for n in graph.nodes:
        if n.op != "call_function" or n.target not in (optimizer_group_step,
                                                       _capture.optimizer_param_step):
            continue
        opt = attrs.get(getattr(n.args[0], "target", None))
        kind = {SGD: "sgd", Adam: "adam", AdamW: "adam"}.get(type(opt))
        if kind is not None and id(opt) not in seen:  # one walk per optimizer, not per node
            seen.add(id(opt))
            out |= {(kind, _CTYPES[str(p._data.dtype)]) for g in opt.param_groups
                    for p in g["params"] if str(p._data.dtype) in _CTYPES}
    return sorted(out)


def sources(graph, attrs):
    """The C sources of the update kernels the graph's optimizer steps will call, of the
    ``Linear``, row-scatter and cross-entropy kernels (``_stepc``) where the graph has such
    nodes, and of the attention and layer-norm kernels (``_attention``, ``_layernorm``) its
    nodes of those kinds will load: what a cold cache compiles for this step, all at once
    (``prebuild``)."""
    out = [_source(kind, c) for kind, c in _kinds_needed(graph, attrs)]
    step_nodes = ("Linear", "IndexAddZeros", "_CrossEntropyGrad")
    if any(getattr(getattr(n.target, "__self__", None), "__name__", None) in step_nodes
           for n in graph.nodes if n.op == "call_function"):
        from . import _stepc
        out.append(_stepc.source())
    from . import _attention, _layernorm
    return out + _attention.sources(graph) + _layernorm.sources(graph)


def prepare(graph, attrs):
    """Load (compiling on a cold cache) the update kernels the graph's optimizer group steps
    will call, now, so that the compile cost falls in the first call, not in the first
    replay."""
    for kind, ctype in _kinds_needed(graph, attrs):
        _kernel(ctype, kind)
