"""Layer 2: the backward engine.

Iterative, never recursive. Every node carries a sequence number from its creation, and a
node's inputs always exist before it, so visiting the reachable nodes in decreasing sequence
order is a topological order: each node runs once, after every node that feeds it a gradient.
Leaves' ``AccumulateGrad`` sinks have sequence -1 and run last.

Per node: gradients arriving for each of its outputs are summed in a buffer; tensor hooks
run on them; the node's backward returns one gradient per input; the engine sums each into
the next node's buffer, first undoing broadcasting (``sum_to_shape``) and casting to the
input's dtype, as PyTorch's engine does in ``validate_outputs``.

Two modes. With ``create_graph`` the buffers hold Tensors and every node runs its
``backward`` (ember ops, recorded, so the result can be differentiated again). Without it
(the common case) the buffers hold backend arrays: nodes that define ``array_backward`` run
that formula on arrays directly, the others get their gradients wrapped as Tensors, and
hooks and ``.grad`` always see Tensors. This skips a dispatch per backward op (measured:
tiny forward+backward graphs 1.6-1.9x -> 0.8-1.05x of PyTorch's time).
"""

from __future__ import annotations

import operator

import numpy as np

from .._meta import MetaArray
from .._tensor import Tensor, _make
from .graph import (_FREED_MSG, AccumulateGrad, Function, Node, _accumulator, _anomaly_enabled,
                    _anomaly_nan)
from .graph import capturing_backward
from .grad_mode import GradMode


# The active ``ember.profiler`` session, if any (it reports each backward node evaluated).
_PROFILER: list = [None]
_LOW_PRECISION = frozenset((np.dtype(np.float16), np.dtype("bfloat16")))


def _root_node(t):
    if t.grad_fn is not None:
        return t.grad_fn, t._output_nr
    return _accumulator(t), 0


def _sum_to(g, shape):
    from ..ops._util import sum_to_shape
    return sum_to_shape(g, shape)


def _collect(roots):
    seen = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        for e in n.next_functions:
            if e[0] is not None and e[0] not in seen:
                stack.append(e[0])
    return sorted(seen, key=_seq_key, reverse=True)


_seq_key = operator.attrgetter("_seq")


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None,
                 allow_unused=True, accumulate=True):
    """Run backward from ``tensors``; return the gradients of ``inputs`` when not accumulating.

    ``accumulate=True``: leaves (or just ``inputs``, if given) accumulate into ``.grad``.
    ``accumulate=False`` (``autograd.grad``): nothing is accumulated; the gradients flowing
    into ``inputs`` are returned.
    """
    roots = []
    buffers = {}
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        if not t._rg:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have "
                               "a grad_fn")
        node, nr = _root_node(t)
        roots.append(node)
        buf = buffers.get(node)
        if buf is None:
            buf = buffers[node] = [None] * _n_out(node)
        buf[nr] = g if buf[nr] is None else buf[nr] + g
    order = _collect(roots)

    # Targets: where gradients are captured (autograd.grad / backward(inputs=...)).
    targets = None
    needed = None
    if inputs is not None:
        targets = {}
        for i, t in enumerate(inputs):
            if t.grad_fn is not None:
                key = (t.grad_fn, t._output_nr)
            else:
                node = t._accum
                if node is None:
                    continue  # never used in a graph
                key = (node, 0)
            targets.setdefault(key, []).append(i)
        target_nodes = {k[0] for k in targets}
        needed = set()
        for n in reversed(order):  # increasing sequence: inputs before users
            if n in target_nodes or any(e[0] is not None and e[0] in needed
                                        for e in n.next_functions):
                needed.add(n)
    captured = [None] * (len(inputs) if inputs is not None else 0)

    handed = set()  # ids of arrays already stored as some leaf's .grad in this pass
    root_ids = {id(g._data) for g in grad_tensors}
    # Array mode (nothing records the backward): buffers hold backend arrays, nodes with an
    # ``array_backward`` run it directly, others see their gradients wrapped as Tensors.
    # A capture mode on the dispatch path must see the backward as ops: Tensor formulas in
    # their recorded form (functions of saved inputs, not of arrays kept on the ctx). Other
    # modes (profiler, autocast, forward AD, vmap) leave the backward as it runs eagerly.
    capturing = capturing_backward()
    raw = not create_graph and not capturing
    if raw:
        for buf in buffers.values():
            for i, g in enumerate(buf):
                if g is not None:
                    buf[i] = g._data
    wrap = _wrap if raw else _same
    prev = GradMode.enabled
    GradMode.enabled = bool(create_graph) or capturing
    _FINAL_CALLBACKS.append([])  # queue_callback's list for this backward
    try:
        for node in order:
            buf = buffers.pop(node, None)
            if buf is None:
                continue
            if needed is not None and node not in needed:
                continue
            if node._tensor_hooks:  # hooks on the tensors this node produced
                _tensor_hooks(node, buf, raw)
            is_leaf = type(node) is AccumulateGrad
            leaf = node._variable_ref() if is_leaf else None
            if leaf is not None and leaf._hooks:
                # a leaf's hooks run before capture too (autograd.grad sees their result)
                g = wrap(buf[0])
                for h in list(leaf._hooks.values()):
                    r = h(g)
                    if r is not None:
                        g = r
                buf[0] = g._data if raw and not g.is_sparse else g
            if node._pre_hooks:
                for h in list(node._pre_hooks.values()):
                    r = h(tuple(wrap(g) for g in buf))
                    if r is not None:
                        buf = [_unwrap(g) if raw else g for g in _hook_tuple(r)]
            if targets is not None:
                for nr in range(len(buf)):
                    idx = targets.get((node, nr))
                    if idx is not None:
                        for i in idx:
                            captured[i] = wrap(buf[nr])
                if not accumulate:
                    if is_leaf:
                        continue
                elif not is_leaf and any(
                        (node, nr) in targets for nr in range(len(buf))):
                    # backward(inputs=[non_leaf]): populate its .grad
                    for nr in range(len(buf)):
                        for i in targets.get((node, nr), ()):
                            _store_grad(inputs[i], wrap(buf[nr]), create_graph, handed, root_ids)
            if is_leaf:
                _accumulate(leaf, buf[0], raw, create_graph, handed, root_ids)
                if node._hooks:
                    for h in list(node._hooks.values()):
                        h((), tuple(wrap(g) for g in buf))
                continue
            post_hooks = node._hooks  # read first: a backward without retain_graph frees them
            if _PROFILER[0] is None:
                if _anomaly_enabled[0]:
                    grads_in = _call_backward_traced(node, buf, retain_graph, raw)
                else:
                    grads_in = _call_backward(node, buf, retain_graph, raw)
            else:  # a profiler is on: it times the node under PyTorch's event name
                grads_in = _PROFILER[0].backward_node(node, _call_backward, buf, retain_graph,
                                                      raw)
            if post_hooks:
                for h in list(post_hooks.values()):
                    r = h(tuple(wrap(g) for g in grads_in), tuple(wrap(g) for g in buf))
                    if r is not None:
                        grads_in = _hook_tuple(r)
            meta = node._in_meta
            # (a backward returning fewer gradients than inputs leaves the rest None)
            for k, (edge, g) in enumerate(zip(node.next_functions, grads_in)):
                nxt, nr = edge
                if nxt is None or g is None:
                    continue
                if needed is not None and nxt not in needed:
                    continue
                shape, dt = meta[k]
                if raw:
                    if type(g) is not _ndarray:
                        if isinstance(g, Tensor) and g.is_sparse:
                            _push_sparse(buffers, nxt, nr, g, shape, raw)
                            continue
                        g = _unwrap(g)
                    if g.shape != shape:
                        g = _sum_to_array(g, shape, node, k)
                    gd = g.dtype
                    if gd is not dt and gd != dt and dt.kind in "fcV":
                        # a complex gradient reaching a real input keeps its real part
                        g = (g.real if g.dtype.kind == "c" and dt.kind != "c" else g).astype(dt)
                    if _anomaly_nan[0]:
                        _check_nan(node, k, g)
                else:
                    if not isinstance(g, Tensor):
                        g = _make(np.asarray(g))
                    if g.is_sparse:
                        _push_sparse(buffers, nxt, nr, g, shape, raw)
                        continue
                    if g._data.shape != shape:
                        g = _sum_to(g, shape)
                        if g._data.shape != shape:
                            _bad_shape(node, k, g._data.shape, shape)
                    if g._data.dtype != dt:
                        g = g.to(_dt(dt)) if dt.kind in "fcV" else g
                    if _anomaly_nan[0]:
                        _check_nan(node, k, g._data)
                b = buffers.get(nxt)
                if b is None:
                    om = nxt._out_meta  # _n_out, inlined (once per edge)
                    b = buffers[nxt] = [None] if om is None else [None] * len(om)
                old = b[nr]
                b[nr] = g if old is None else \
                    old + g if type(old) is type(g) else _add_grads(old, g, raw)
        callbacks = _FINAL_CALLBACKS[-1]
        while callbacks:  # a callback may queue another; each runs once, in order
            callbacks.pop(0)()
    finally:
        GradMode.enabled = prev
        _FINAL_CALLBACKS.pop()
    return captured


# Callbacks to run when the current backward pass ends (queue_callback), one list per
# running backward (a hook may start another).
_FINAL_CALLBACKS: list = []


def queue_callback(callback):
    """Run ``callback()`` once the backward pass now running has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``)."""
    if not _FINAL_CALLBACKS:
        raise RuntimeError("Final callbacks can only be installed during backward pass.")
    _FINAL_CALLBACKS[-1].append(callback)


_ndarray = np.ndarray


def _wrap(g):
    if g is None or isinstance(g, Tensor):
        return g
    return _make(g if type(g) is _ndarray or type(g) is MetaArray else np.asarray(g))


def _same(g):
    return g


def _unwrap(g):
    """A gradient returned by a hook or a Tensor backward, as an array."""
    if g is None:
        return None
    if isinstance(g, Tensor):
        return g._data
    return g if type(g) is MetaArray else np.asarray(g)


def _push_sparse(buffers, nxt, nr, g, shape, raw):
    """Add a sparse gradient (``Embedding(sparse=True)``) into ``nxt``'s buffer as it is:
    sparse while every gradient there is sparse, dense once a dense one joins."""
    if tuple(g.shape) != tuple(shape):
        raise RuntimeError(f"a sparse gradient of shape {list(g.shape)} reached an input of "
                           f"shape {list(shape)}")
    if type(nxt) is not AccumulateGrad:  # an op's backward takes dense gradients
        g = g.to_dense()
        g = g._data if raw else g
    b = buffers.get(nxt)
    if b is None:
        om = nxt._out_meta
        b = buffers[nxt] = [None] if om is None else [None] * len(om)
    old = b[nr]
    b[nr] = g if old is None else old + g if type(old) is type(g) and not g.is_sparse else \
        _add_grads(old, g, raw)


def _add_grads(old, g, raw):
    """``old + g`` where one (or both) is a sparse COO gradient."""
    sparse_old, sparse_g = getattr(old, "is_sparse", False), getattr(g, "is_sparse", False)
    if not (sparse_old or sparse_g):  # two dense gradients of different types
        return old + g
    if sparse_old and sparse_g:
        return _cat_sparse(old, g)
    s, d = (old, g) if sparse_old else (g, old)
    if raw:  # d is an array: a new dense array with the sparse entries added
        out = np.array(d, copy=True)
        _scatter_add(out, s)
        return out
    return d + s.to_dense()


def _cat_sparse(a, b):
    """Uncoalesced sum of two sparse gradients: their entries side by side (as PyTorch's
    accumulation of sparse gradients)."""
    from ..sparse import _new_sparse
    from ..ops.shape import cat
    return _new_sparse(np.concatenate([a._idx, b._idx], axis=1), cat([a._vals, b._vals]),
                       a._size, False)


def _scatter_add(out, s):
    """``out`` (a dense array) += the sparse tensor ``s``, entry by entry in order."""
    from ..sparse import _flat_index
    nd = s._idx.shape[0]
    flat = out.reshape((-1,) + out.shape[nd:])
    np.add.at(flat, _flat_index(s._idx, s._size), s._vals._data.astype(out.dtype, copy=False))


def _tensor_hooks(node, buf, raw):
    for nr, hooks in node._tensor_hooks.items():
        g = buf[nr]
        if g is None:
            continue
        if raw:
            g = _make(g)
        for key, h in list(hooks.items()):
            if key != "retain_grad":
                r = h(g)
                if r is not None:
                    g = r
        keep = hooks.get("retain_grad")
        if keep is not None:  # as in PyTorch: .grad sees every hook's result
            keep(g)
        buf[nr] = g._data if raw else g


def _bad_shape(node, k, got, shape):
    raise RuntimeError(
        f"Function {node.name()} returned an invalid gradient at index {k} - got {list(got)} "
        f"but expected shape compatible with {list(shape)}")


def _sum_to_array(g, shape, node, k):
    from ..ops._util import sum_array_to_shape
    g = sum_array_to_shape(g, shape)
    if g.shape != shape:
        _bad_shape(node, k, g.shape, shape)
    return g


def _hook_tuple(r):
    if not isinstance(r, tuple):
        raise TypeError(f"expected tuple, but hook returned '{type(r).__name__}'")
    return r


def _dt(npdt):
    from .._dtype import _BY_NP
    return _BY_NP[npdt]


def _n_out(node):
    om = node._out_meta
    return 1 if om is None else len(om)


def _widen(g):
    return g.astype(np.float32) if g is not None and g.dtype in _LOW_PRECISION else g


def _call_backward(node, buf, retain_graph, raw):
    if node._released:
        raise RuntimeError(_FREED_MSG)
    if len(buf) > 1 and any(g is None for g in buf):  # a single output always has a grad
        om = node._out_meta
        if node._materialize is not False and om is not None:
            like = next(g for g in buf if g is not None)  # zeros on the device of the others
            like = like._data if isinstance(like, Tensor) else like
            buf = [g if g is not None else (_zeros(om[i], raw, like) if om[i] is not None
                                            else None) for i, g in enumerate(buf)]
    cls = type(node)
    if raw:
        if cls._raw:
            for g in buf:
                if g is not None and g.dtype.itemsize == 2 and g.dtype in _LOW_PRECISION:
                    # a built-in backward on bfloat16/float16 gradients computes in float32
                    # and is rounded once, at the edge, to its input's dtype: what PyTorch's
                    # kernels do (float32 "opmath"); NumPy's half-precision arithmetic would
                    # round after every step (and its GEMMs are slow)
                    buf = [_widen(g) for g in buf]
                    break
        fn = cls.array_backward
        if fn is not None:
            out = fn(node, *buf)
        else:
            out = cls.backward(node, *[None if g is None else _make(g) for g in buf])
    else:
        out = cls.backward(node, *buf)
    if type(out) is not tuple:
        out = tuple(out) if isinstance(out, list) else (out,)
    n_in = len(node.next_functions)
    if len(out) != n_in and isinstance(node, Function):
        # PyTorch allows trailing extra Nones only
        if len(out) < n_in or any(g is not None for g in out[n_in:]):
            raise RuntimeError(f"function {node.name()} returned an incorrect number of "
                               f"gradients (expected {n_in}, got {len(out)})")
        out = out[:n_in]
    if not retain_graph:
        node._saved = None
        d = node.__dict__
        if d:  # ctx attributes go with the saved tensors; reading one later is an error
            meta = d.get("_metadata")
            name = d.get("_node_name")
            freed = tuple(k for k in d if k != "_out_meta")
            out_meta = d.get("_out_meta")
            d.clear()
            d["_freed_names"] = freed
            if meta is not None:
                d["_metadata"] = meta
            if name is not None:
                d["_node_name"] = name
            if out_meta is not None:
                d["_out_meta"] = out_meta
        node._released = True
    return out


def _zeros(meta, raw, like=None):
    z = np.zeros(meta[0], meta[1]) if type(like) is not MetaArray else \
        MetaArray(meta[0], meta[1])
    return z if raw else _make(z)


def _print_forward_trace(node):
    trace = getattr(node, "_anomaly_trace", None)
    if trace:
        import sys
        sys.stderr.write("Traceback of forward call that caused the error:\n" + "".join(trace))


def _check_nan(node, k, g):
    if np.isnan(g).any():
        _print_forward_trace(node)
        raise RuntimeError(f"Function '{node.name()}' returned nan values in its {k}th output.")


def _call_backward_traced(node, buf, retain_graph, raw):
    """``_call_backward`` in anomaly mode: an error in a node's backward first prints the
    traceback of the forward call that made the node (as PyTorch's anomaly mode does)."""
    try:
        return _call_backward(node, buf, retain_graph, raw)
    except Exception:
        _print_forward_trace(node)
        raise


def _owned(g, handed, root_ids):
    a = g._data
    return a.flags.owndata and a.flags.writeable and id(a) not in handed and id(a) not in root_ids


def _store_grad(t, g, create_graph, handed, root_ids):
    if g.is_sparse or (t._grad is not None and t._grad.is_sparse):
        _store_sparse_grad(t, g, create_graph)
        return
    if not create_graph:
        g = g.detach() if g._rg else g
        if not _owned(g, handed, root_ids):
            g = _make(g._data.copy())
        handed.add(id(g._data))
    # ``_grad``: the engine's grads already have the tensor's shape and dtype
    old = t._grad
    if old is None:
        t._grad = g
    elif create_graph or old._rg:
        t._grad = old + g
    else:
        old._data += g._data


def _store_sparse_grad(t, g, create_graph):
    """PyTorch's accumulation when a sparse gradient is involved: a sparse ``.grad`` while
    every gradient so far was sparse (entries appended, uncoalesced); dense + sparse gives
    a dense ``.grad``."""
    old = t._grad
    if not create_graph:
        g = g.detach()
    if old is None:
        t._grad = g
    elif old.is_sparse and g.is_sparse:
        t._grad = _cat_sparse(old, g)
    elif g.is_sparse and not create_graph and not old._rg:
        _scatter_add(old._data, g)  # into the dense .grad, in place (as dense += dense)
    else:
        t._grad = (old.to_dense() if old.is_sparse else old) + \
            (g.to_dense() if g.is_sparse else g)


def _accumulate(t, g, raw, create_graph, handed, root_ids):
    if t is None or not t._rg:  # the leaf is gone (or no longer requires grad)
        return
    _store_grad(t, _make(g) if raw and not isinstance(g, Tensor) else g, create_graph, handed,
                root_ids)
    if t._post_acc_hooks:
        for h in list(t._post_acc_hooks.values()):
            h(t)


def _make_grads(tensors, grad_tensors):
    out = []
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        if g is None:
            if t._rg:
                if t._data.size != 1:
                    raise RuntimeError("grad can be implicitly created only for scalar outputs")
                if t._data.dtype.kind not in "fV":
                    raise RuntimeError("grad can be implicitly created only for real scalar "
                                       f"outputs but got {t.dtype}")
                g = _make(np.ones(t._data.shape, t._data.dtype, like=t._data))
        elif not isinstance(g, Tensor):
            from .. import tensor as _tensor
            g = _tensor(g, dtype=t.dtype)
        elif g._data.shape != t._data.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                               f"{g.shape} and output[{i}] has a shape of {t.shape}.")
        out.append(g)
    return out


def _as_tuple(x):
    if x is None:
        return None
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
             inputs=None):
    """Accumulate into leaves' ``.grad`` the gradients of ``tensors`` (PyTorch's
    ``autograd.backward``). Gradients accumulate across calls; zero them between steps."""
    tensors = _as_tuple(tensors)
    if grad_tensors is None:
        grad_tensors = grad_variables
    grad_tensors = _as_tuple(grad_tensors) or (None,) * len(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    inputs = _as_tuple(inputs)
    if inputs is not None and len(inputs) == 0:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    grads = _make_grads(tensors, grad_tensors)
    run_backward(tensors, grads, retain_graph, create_graph, inputs=inputs, accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """Return the gradients of ``outputs`` with respect to ``inputs`` (nothing accumulates)."""
    if is_grads_batched:
        return _batched_grad(outputs, inputs, grad_outputs, retain_graph, create_graph,
                             allow_unused, materialize_grads)
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    for t in inputs:
        if not t._rg:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grad_outputs = _as_tuple(grad_outputs) or (None,) * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    grads = _make_grads(outputs, grad_outputs)
    res = run_backward(outputs, grads, retain_graph, create_graph, inputs=inputs,
                       accumulate=False)
    out = []
    for t, g in zip(inputs, res):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    "One of the differentiated Tensors appears to not have been used in the "
                    "graph. Set allow_unused=True if this is the desired behavior.")
            if materialize_grads:
                from .. import zeros_like
                g = zeros_like(t)
        elif not create_graph and g._rg:
            g = g.detach()
        out.append(g)
    return tuple(out)


def _batched_grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
                  materialize_grads):
    """``grad(..., is_grads_batched=True)``: one backward per slice of the grad_outputs'
    leading dimension (PyTorch vmaps this; the results are the same), stacked."""
    from .. import stack
    gos = _as_tuple(grad_outputs)
    if gos is None or any(g is None for g in gos):
        raise RuntimeError("is_grads_batched=True requires grad_outputs for every output")
    n = gos[0].shape[0]
    if retain_graph is None:
        retain_graph = create_graph
    per = []
    for b in range(n):
        per.append(grad(outputs, inputs, tuple(g[b] for g in gos),
                        retain_graph=retain_graph or b < n - 1, create_graph=create_graph,
                        allow_unused=allow_unused, materialize_grads=materialize_grads))
    return tuple(None if col[0] is None else stack(col) for col in zip(*per))


__all__ = ["backward", "grad", "run_backward", "Node"]
