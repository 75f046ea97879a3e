"""The end of a compiled training step as one hand-off: the last weight gradient and the
optimizer update, side by side on two cores.

A step's backward ends with the weight gradient of its first layer, ``dW = g^T @ x`` (in an
MLP the largest product of the backward: 512 x 128 x 784), which nothing but the optimizer
reads. Run as before, it is one GEMM cut over the pool (a hand-off, a join), then the update
of every parameter cut over the pool again (a second hand-off), the gradient written to
memory by the first and read back by the second. ``fuse_tail_update`` makes the two one
graph node, ``tail_update``, which at several threads runs

* on the calling thread: rows ``[0, k)`` of ``dW`` (one single-threaded GEMM), then the
  update of that parameter's elements in those rows, while the rows are in the core's cache;
* on a pool thread: the update of every other parameter of the group (their gradients are
  final), then rows ``[k, m)`` of ``dW`` and their update;

with ``k`` (a multiple of 16) chosen so that both sides have about the same work. No sum is
split (the update is elementwise; a GEMM's rows are computed alone), so the values are
those of the step run op by op as far as a cut GEMM's are one call's: for the MLP benchmark's
shapes bit for bit, float32 and float64, but OpenBLAS computes some shapes' parts with other
kernels than the whole (odd sizes such as 257 x 129 x 300 here), and then the last bits may
differ, as for every GEMM that ``_parallel.gemm`` cuts. ``p.grad`` holds
the gradient afterwards, as in eager. At one thread, where the optimizer has no C kernel for
the group (``_optim.group_step`` declines), or where the parameter already has a gradient
(accumulation), the node runs the product, stores the gradient and steps the optimizer as
the separate nodes did. ``EMBER_TAIL_LANES=0`` leaves the graph as it is (for comparisons).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["fuse_tail_update", "tail_update"]

ENABLED = os.environ.get("EMBER_TAIL_LANES", "1") != "0"
MIN_WORK = 1 << 21   # multiply-adds of the product below which the nodes stay as they are
UPDATE_COST = 16     # an element's update in multiply-adds of GEMM time (a memory-bound
# pass over 3-5 arrays against a GEMM at 40+ GMAC/s), for balancing the two sides


def tail_update(opt, group_index, p, a, b):
    """Graph node: ``p``'s gradient ``a @ b`` stored (``p`` had none) and ``opt``'s update of
    parameter group ``group_index``, as described in the module doc."""
    from .. import _parallel
    from .._tensor import _make
    from ..autograd.grad_mode import no_grad
    from ..ops.linalg import Matmul
    from ._optim import group_step
    from ._passes import optimizer_group_step
    from ._program import accumulate_grad_owned
    a, b = a._data, b._data
    pa = p._data
    if not (p._grad is None and type(a) is np.ndarray and type(b) is np.ndarray and
            type(pa) is np.ndarray and a.ndim == 2 and b.ndim == 2 and pa.ndim == 2 and
            a.dtype == pa.dtype and b.dtype == pa.dtype and pa.dtype.kind == "f" and
            (a.shape[0], b.shape[1]) == pa.shape and a.shape[1] == b.shape[0] and
            _parallel.gemm_split_ok() and not getattr(_parallel._worker, "in_pool", False)
            and pa.shape[0] > 1):
        from ..autograd.graph import _ScratchCtx
        accumulate_grad_owned(p, Matmul.forward(_ScratchCtx(), a, b))
        optimizer_group_step(opt, group_index)
        return
    g = np.empty(pa.shape, pa.dtype)
    p._grad = _make(g)
    computed = []

    def product_whole():
        np.matmul(a, b, out=g)
        computed.append(True)

    def run(fn, params, sizes, addrs, itemsize, *rest):
        from ._optim import _run, call_runs
        i = next((j for j, q in enumerate(params) if q is p), None)
        if i is None:  # not in this group (cannot happen for a captured step): plainly
            product_whole()
            _run(fn, params, sizes, addrs, itemsize, *rest)
            return
        m, n = g.shape
        row = a.shape[1] * n + UPDATE_COST * n
        others = [(j, 0, s) for j, s in enumerate(sizes) if j != i and s]
        half = (m * row + UPDATE_COST * sum(s for _, _, s in others)) / 2
        k = min(max(int(round(half / row / 16)) * 16, 16), m - 1)  # (OpenBLAS's row blocks)

        def part(lane, _):
            if lane == 0:
                np.matmul(a[:k], b, out=g[:k])
                call_runs(fn, [(i, 0, k * n)], addrs, itemsize, *rest)
            else:
                if others:
                    call_runs(fn, others, addrs, itemsize, *rest)
                np.matmul(a[k:], b, out=g[k:])
                call_runs(fn, [(i, k * n, (m - k) * n)], addrs, itemsize, *rest)
        _parallel.run_split_gemm(part, [(0, 1), (1, 2)])
        computed.append(True)

    group = opt.param_groups[group_index]
    with no_grad():
        opt._prepare(group)
        if not group_step(opt, group, run=run):
            if not computed:
                product_whole()
            opt._step_group(group_index, group)


tail_update._fx_impure = True


def _is_matmul(n):
    from ._program import _op_class
    cls = _op_class(n) if n.op == "call_function" else None
    return cls is not None and cls.__name__ == "Matmul" and not n.kwargs and len(n.args) == 2


def _shape(n):
    meta = getattr(n, "meta", {}).get("tensor_meta")
    return tuple(meta[0]) if meta else None


def fuse_tail_update(graph, rg):
    """Make the last optimizer group step and the unpaired weight-gradient product that only
    its parameter's ``accumulate_grad`` reads (found among the nodes just before the step:
    gradient stores and pure ops) one ``tail_update`` node (see the module doc); ``rg``:
    requires-grad map. Returns 1 if it did, else 0."""
    from ..export import _capture
    from ._passes import optimizer_group_step
    if not ENABLED:
        return 0
    steps = [n for n in graph.nodes
             if n.op == "call_function" and n.target is optimizer_group_step]
    if not steps:
        return 0
    step = steps[-1]
    best, n = None, step._prev
    root = graph._root
    while n is not root:
        if n.op == "call_function" and n.target is _capture.accumulate_grad:
            mm = n.args[1] if len(n.args) == 2 else None
            if not n.users and _is_matmul(mm) and len(mm.users) == 1 and \
                    not rg.get(mm, True):
                sa, sb = _shape(mm.args[0]), _shape(mm.args[1])
                work = sa[0] * sa[1] * sb[1] if sa and sb and len(sa) == len(sb) == 2 else 0
                if work >= MIN_WORK and (best is None or work > best[0]):
                    best = (work, n, mm)
        elif n.op == "call_function" and n.is_impure(False):
            break  # nothing moves across another write
        n = n._prev
    if best is None:
        return 0
    _, acc, mm = best
    n = mm._next
    while n is not step:  # the product moves to the step: nothing may write its inputs
        if n.op == "call_function" and n.is_impure(False) and \
                n.target is not _capture.accumulate_grad:
            return 0
        n = n._next
    with graph.inserting_before(step):
        node = graph.call_function(tail_update, (step.args[0], step.args[1], acc.args[0],
                                                 mm.args[0], mm.args[1]))
    node.meta.update(step.meta)
    rg[node] = False
    graph.erase_node(step)
    graph.erase_node(acc)
    graph.erase_node(mm)
    return 1
