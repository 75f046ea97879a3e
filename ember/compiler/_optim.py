"""Optimizer updates of a compiled training step as one generated C loop.

``optimizer_group_step`` (a graph node made by ``_passes.group_optimizer_steps``) calls
``sgd_group_step`` first: for ``ember.optim.SGD`` it updates every parameter of the group in
one C call, reading each gradient where it lies (eager's flat path first copies all gradients
into one buffer, then makes three to five NumPy passes over it). The arithmetic is eager's,
operation by operation in the same order and precision (``-ffp-contract=off``), so parameters
come out bit for bit as eager's. Anything unusual (another optimizer class, a first step
without momentum buffers, mixed or complex dtypes, non-contiguous or sparse gradients, a
parameter listed twice) returns False and the optimizer's own code runs.
"""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np

from .. import _threads
from .._tensor import _bump_version

__all__ = ["sgd_group_step"]

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
_CTYPES = {"float32": "float", "float64": "double"}
_PARALLEL_MIN = 1 << 18   # a memory-bound update: a second thread pays only on large tensors
_KERNELS: dict = {}


def _kernel(ctype):
    fn = _KERNELS.get(ctype)
    if fn is None:
        from ._codegen import c_compiler, load_kernel
        if c_compiler() is None:
            fn = False
        else:
            try:
                fn = load_kernel(_SGD_SRC.format(T=ctype, MIN=_PARALLEL_MIN),
                                 f"sgd_step_{ctype}")
            except (RuntimeError, OSError, subprocess.SubprocessError):
                fn = False
        _KERNELS[ctype] = fn
    return fn


def _plain(a, dtype, shape):
    return type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and \
        a.flags.c_contiguous


def sgd_group_step(opt, group):
    """One SGD update of ``group`` in a single C call; False where eager's code must run."""
    from ..optim.sgd import SGD
    from .._tensor import Tensor
    if type(opt) is not SGD or opt.__dict__.get("_swapped"):
        return False
    params = [p for p in group["params"] if p.grad is not None]
    if not params or len({id(p) for p in params}) != len(params):
        return False
    dtype = params[0]._data.dtype
    ctype = _CTYPES.get(str(dtype))
    if ctype is None:
        return False
    momentum = float(group["momentum"])
    lr = group["lr"]
    if isinstance(lr, Tensor):
        lr = lr.item()
    ps, gs, bs, sizes = [], [], [], []
    for p in params:
        a, g = p._data, p.grad
        if not _plain(a, dtype, a.shape) or g.is_sparse or not _plain(g._data, dtype, a.shape):
            return False
        b = None
        if momentum != 0:
            st = opt.state.get(p)
            b = st.get("momentum_buffer") if st else None
            if b is None or not _plain(b._data, dtype, a.shape):
                return False  # the first step initialises the buffers: eager's code does it
        ps.append(a.ctypes.data)
        gs.append(g._data.ctypes.data)
        bs.append(b._data.ctypes.data if b is not None else None)
        sizes.append(a.size)
    fn = _kernel(ctype)
    if not fn:
        return False
    k = len(params)
    dampening = float(group["dampening"])
    fn(ctypes.c_int64(k), (ctypes.c_int64 * k)(*sizes), (ctypes.c_void_p * k)(*ps),
       (ctypes.c_void_p * k)(*gs), (ctypes.c_void_p * k)(*bs), ctypes.c_double(float(lr)),
       ctypes.c_double(momentum), ctypes.c_double(1.0 - dampening),
       ctypes.c_double(float(group["weight_decay"])), int(momentum != 0),
       int(dampening != 0), int(bool(group["nesterov"])), int(bool(group["maximize"])),
       _threads.get_num_threads())
    for p in params:
        _bump_version(p)
    return True


def _ctypes_needed(graph, attrs):
    from ..export import _capture
    from ..optim.sgd import SGD
    from ._passes import optimizer_group_step
    out = set()
    for n in graph.nodes:
        if n.op != "call_function" or n.target not in (optimizer_group_step,
                                                       _capture.optimizer_param_step):
            continue
        opt = attrs.get(getattr(n.args[0], "target", None))
        if type(opt) is SGD:
            out |= {_CTYPES[str(p._data.dtype)] for g in opt.param_groups
                    for p in g["params"] if str(p._data.dtype) in _CTYPES}
    return sorted(out)


def sources(graph, attrs):
    """The C sources of the update kernels the graph's SGD steps will call."""
    return [_SGD_SRC.format(T=c, MIN=_PARALLEL_MIN) for c in _ctypes_needed(graph, attrs)]


def prepare(graph, attrs):
    """Load (compiling on a cold cache) the update kernels the graph's SGD group steps will
    call, now, so that the compile cost falls in the first call, not in the first replay."""
    for ctype in _ctypes_needed(graph, attrs):
        _kernel(ctype)
