"""Independent heavy ops of a compiled step run side by side, one per core.

A backward pass computes, for each Linear or convolution, two products that do not depend
on each other: the gradient of the input (``g @ W``, ``ConvInputGrad``) and that of the
weight (``g^T @ x``, ``ConvWeightGrad``). Run one after the other, each is cut over ember's
thread pool (or OpenBLAS's threads): a small training step's products are short, so each
cut costs a hand-off and a join for a fraction of a millisecond of work per core, and on a
loaded machine every wake-up waits for a time slice. Measured (CIFAR CNN step, 2 threads,
the machine shared with other jobs): the two convolution-backward pairs took 54 ms wall /
46 ms CPU cut op by op, 48 / 33 ms run as pairs.

``pair_independent(graph, rg)`` finds such pairs in the lowered graph: two op nodes of the
heavy kinds (``Matmul``, the stacked matmul, the convolution gradients) close together, the
second not depending on the first, nothing impure between them. The pure nodes between them
that the second needs move before the first, and the two become one node calling
``run_pair``, which (with two threads or more) runs the second on a pool thread and the first
on the calling thread, each alone on its core: NumPy's BLAS single-threaded meanwhile and
any further split inside them run inline. Every value is computed by the same calls as
before (the kernels cut work by rows, columns or channels, never over a sum), so the
results are the same (a float64 CNN step came out bit for bit equal; the tests ask 1e-13);
with one thread the two run in order.

Only graphs that hold their own backward and need no autograd records are paired (the
program calls the ops' array forwards there).
"""

from __future__ import annotations

import contextlib
import operator
import os

__all__ = ["pair_independent", "run_pair", "single_threaded"]

# the op classes worth a core of their own, by name (``_StackMatmul``: see ``_passes``)
_HEAVY = {"Matmul", "_StackMatmul", "ConvInputGrad", "ConvWeightGrad"}  # (all of them
# return new arrays: ``_program`` reuses arena buffers read by a pair and stores a pair's
# gradient without a copy)
# multiply-adds below which an op stays as it is (a hand-off costs ~20-50 us)
MIN_WORK = 1 << 19
WINDOW = 12  # nodes looked ahead for a partner
# ``EMBER_CONCURRENT_PAIRS=0`` leaves the graph as it is (for comparisons)
ENABLED = os.environ.get("EMBER_CONCURRENT_PAIRS", "1") != "0"


def run_pair(fa, args_a, fb, args_b):
    """``(fa(*args_a), fb(*args_b))`` (op forwards called with a scratch context), the second
    on a thread of ember's pool while the first runs here, each with single-threaded BLAS;
    in order where there is one thread or no BLAS thread control."""
    from .. import _parallel
    from ..autograd.graph import _ScratchCtx
    if not _parallel.gemm_split_ok() or getattr(_parallel._worker, "in_pool", False):
        return fa(_ScratchCtx(), *args_a), fb(_ScratchCtx(), *args_b)
    from .. import _threads
    get, put = _parallel.blas_controls()
    prev, count = get(), _threads._n[0]
    put(1)
    w = _parallel._worker

    def part(i, _):
        # both ops run as at one thread (no cuts, single-threaded BLAS): the count is what
        # the kernels read, and they compute the same values at any count; a split left
        # inside an op runs inline, not behind the pool
        _threads._n[0] = 1
        was = getattr(w, "in_pool", False)
        w.in_pool = True
        try:
            return fa(_ScratchCtx(), *args_a) if i == 0 else fb(_ScratchCtx(), *args_b)
        finally:
            w.in_pool = was

    try:
        # the first op here, the second on a pool thread (or here too, if none is free first)
        ra, rb = _parallel.run_split(part, [(0, 1), (1, 2)])
    finally:
        _threads._n[0] = count
        put(prev)
    return ra, rb


run_pair.array_tuple = True  # ``_program``: array arguments, a tuple of arrays back


@contextlib.contextmanager
def single_threaded():
    """Run the block as at one thread: ember's thread count 1 (no cuts over the pool) and
    NumPy's OpenBLAS single-threaded, both restored after. ``ember.compile``'s capture runs
    this way: its ops alternate with Python recording work, and a threaded OpenBLAS call's
    worker then spins through the recording after each product (on a 2-core machine shared
    with other jobs a GPT block's capture took 1.0 s of CPU at two threads, 0.4 s at one).
    Every kernel computes the same values at any thread count."""
    from .. import _threads
    ctl = _threads.blas_controls()
    count, prev = _threads._n[0], ctl[0]() if ctl is not None else None
    _threads._n[0] = 1
    if ctl is not None:
        ctl[1](1)
    try:
        yield
    finally:
        _threads._n[0] = count
        if ctl is not None:
            ctl[1](prev)


def _op_class(n):
    from ._program import _op_class as op_class
    return op_class(n)


def _work(n, cls):
    """Multiply-adds of heavy op node ``n`` (estimated from the shapes), else 0."""
    meta = n.meta.get("tensor_meta")
    if cls is None or cls.__name__ not in _HEAVY or meta is None or n.kwargs:
        return 0
    def shape(a):
        m = a.meta.get("tensor_meta") if hasattr(a, "meta") else None
        return tuple(m[0]) if m else None

    def numel(s):
        k = 1
        for d in s:
            k *= d
        return k
    name = cls.__name__
    if name in ("Matmul", "_StackMatmul"):
        a = shape(n.args[0])
        return numel(meta[0]) * a[-1] if a else 0
    # a convolution gradient: one multiply-add per output-gradient element and weight
    # element of its group (ConvInputGrad(g, w, ...), ConvWeightGrad(x, g, w_shape, ...))
    g = shape(n.args[0] if name == "ConvInputGrad" else n.args[1])
    w = shape(n.args[1]) if name == "ConvInputGrad" else tuple(n.args[2])
    return numel(g) * numel(w[1:]) if g and w else 0


def pair_independent(graph, rg):
    """Rewrite pairs of independent heavy op nodes into ``run_pair`` nodes (see the module
    doc); ``rg``: requires-grad map (only nodes needing no record are paired). Returns the
    number of pairs."""
    if not ENABLED:
        return 0
    outputs = set(graph.output_node().all_input_nodes)

    def eligible(n):
        if n.op != "call_function" or rg.get(n, True) or n in outputs:
            return None
        cls = _op_class(n)
        if cls is None or getattr(cls, "view", False) or _work(n, cls) < MIN_WORK:
            return None
        return cls

    pairs = 0
    root = graph._root  # the node list's sentinel: where the walk ends
    a = root._next
    while a is not root:
        nxt = a._next
        cls_a = eligible(a)
        if cls_a is None:
            a = nxt
            continue
        dep = {a}       # nodes after ``a`` that depend on it (within the window)
        between = []    # the nodes walked so far, in order
        b = a._next
        for _ in range(WINDOW):
            if b is root:
                break
            if b.op == "get_attr":
                between.append(b)
                b = b._next
                continue
            if b.op != "call_function" or b.is_impure(False):
                break  # nothing moves across a write
            if any(x in dep for x in b.all_input_nodes):
                dep.add(b)
            elif (cls_b := eligible(b)) is not None:
                # what ``b`` needs from between ``a`` and ``b`` moves before ``a``
                inside = set(between)
                need, stack = set(), list(b.all_input_nodes)
                while stack:
                    x = stack.pop()
                    if x in inside and x not in need:
                        need.add(x)
                        stack.extend(x.all_input_nodes)
                if not any(x in dep or x.is_impure(False) for x in need):
                    nxt = _make_pair(graph, rg, a, cls_a, b, cls_b,
                                     [x for x in between if x in need])
                    pairs += 1
                    break
            between.append(b)
            b = b._next
        a = nxt
    return pairs


def _make_pair(graph, rg, a, cls_a, b, cls_b, moved):
    """Move ``moved`` (in order) before ``a``, replace ``a`` and ``b`` by one ``run_pair``
    node and two getitems; returns the node after the pair."""
    for x in moved:
        a.prepend(x)
    with graph.inserting_before(a):
        pair = graph.call_function(
            run_pair, (cls_a.forward, tuple(a.args), cls_b.forward, tuple(b.args)))
        ga = graph.call_function(operator.getitem, (pair, 0))
        gb = graph.call_function(operator.getitem, (pair, 1))
    for old, new in ((a, ga), (b, gb)):
        new.meta.update(old.meta)
        rg[new] = False
        old.replace_all_uses_with(new)
    rg[pair] = False
    graph.erase_node(b)
    graph.erase_node(a)
    return gb._next
