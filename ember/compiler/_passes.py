"""Graph passes run on a captured graph before code generation.

Each pass is a plain loop over ``graph.nodes`` that edits the graph in place and returns how
many nodes it changed. Their order in ``optimize``: constant folding, common-subexpression
elimination, dead-code elimination (the first two leave dead nodes behind).

What makes a node safe to touch (the rules every pass shares):

* *pure*: a ``call_function`` node that is not impure (``Node.is_impure``: in-place writes,
  gradient and optimizer updates, grad-mode switches, graph breaks, random draws);
* *not aliased by a write*: no in-place node writes into its value or into a view of it
  (``mutated_aliases``), since folding or merging it would let the write reach the other uses;
* *not an output*: two outputs that eager returns as distinct tensors stay distinct.
"""

from __future__ import annotations

import operator
import os

import numpy as np

from .._tensor import Tensor
from ..autograd import graph as _dispatch
from ..export import _capture

__all__ = ["optimize", "constant_fold", "cse", "dce", "mutated_aliases", "is_pure",
           "group_optimizer_steps", "optimizer_group_step", "fuse_matmul_epilogues",
           "keep_conv_columns", "keep_pool_indices", "fuse_conv_relu",
           "split_stacked_matmuls"]


def is_pure(n):
    """Whether ``n`` only computes a value (see the module doc)."""
    return n.op == "call_function" and not n.is_impure(True)


def _is_view(n):
    cls = getattr(n.target, "__self__", None)
    return n.target is operator.getitem or bool(isinstance(cls, type) and
                                                getattr(cls, "view", False))


def mutated_aliases(graph):
    """Nodes whose value may be written in place after it is computed: targets of in-place
    nodes and of ``set_grad`` (the stored gradient is accumulated into later), with every
    node they are views of and every view taken of them."""
    roots = []
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        t = n.target
        if getattr(t, "op", None) is not None and _capture._INPLACE.get(t.op) is t:
            roots.append(n.args[0])
        elif t is _capture.set_grad:
            roots.append(n.args[1])
        elif t is _capture.accumulate_grad:
            roots.append(n)  # the grad it returns is accumulated into by later steps
    from ..fx import Node
    out, stack = set(), [r for r in roots if isinstance(r, Node)]
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        if _is_view(n) and n.args and isinstance(n.args[0], Node):
            stack.append(n.args[0])         # the base a view writes through to
        stack.extend(u for u in n.users if _is_view(u))  # views that see the write
    return out


def _outputs(graph):
    from ..fx import Node, map_arg
    found = set()
    map_arg(graph.output_node().args, lambda a: found.add(a) or a)
    return {a for a in found if isinstance(a, Node)}


# ---------------------------------------------------------------------- constant folding
def constant_fold(graph, attrs, foldable):
    """Evaluate pure nodes whose inputs are all constants once, now, and replace each by a
    new constant (``get_attr`` of ``_folded_constantN`` in ``attrs``). ``foldable(name)``
    says whether ``get_attr`` target ``name`` is a constant that never changes (not a
    parameter, buffer or optimizer state, which replays update)."""
    from ..autograd.grad_mode import no_grad
    from ..fx import map_arg
    skip = mutated_aliases(graph) | _outputs(graph)
    const = {}   # node -> value
    for n in graph.nodes:
        if n.op == "get_attr" and n not in skip and foldable(n.target):
            v = attrs.get(n.target)
            if isinstance(v, Tensor) and not v.requires_grad:
                const[n] = v
    changed = 0
    for n in list(graph.nodes):
        if not is_pure(n) or n in skip or n.target is _capture.sym_size:
            continue
        ins = n.all_input_nodes
        if not all(a in const for a in ins):
            continue
        if not ins and not _creates_tensor(n):
            continue
        try:
            with no_grad():
                v = n.target(*map_arg(n.args, const.__getitem__),
                             **map_arg(n.kwargs, const.__getitem__))
        except Exception:  # noqa: BLE001 - an op that fails now fails at replay too
            continue
        if not isinstance(v, Tensor):
            continue
        name = f"_folded_constant{sum(1 for k in attrs if k.startswith('_folded_constant'))}"
        attrs[name] = v
        with graph.inserting_before(n):
            new = graph.get_attr(name)
        new.meta.update(n.meta)
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        const[new] = v
        changed += 1
    return changed


def _creates_tensor(n):
    """An op with no tensor inputs (``arange``, ``full``): foldable when it is an op class."""
    cls = getattr(n.target, "__self__", None)
    return isinstance(cls, type)


# ---------------------------------------------------------------------- CSE
def _key(a):
    from ..fx import Node
    if isinstance(a, Node):
        return ("node", a)
    if isinstance(a, (list, tuple)):
        return (type(a).__name__,) + tuple(_key(x) for x in a)
    if isinstance(a, dict):
        return ("dict",) + tuple(sorted((k, _key(v)) for k, v in a.items()))
    if isinstance(a, slice):
        return ("slice", _key(a.start), _key(a.stop), _key(a.step))
    if isinstance(a, float):
        return ("float", a.hex())  # 0.0 and -0.0 differ; nan equals itself here
    return (type(a).__name__, a)


def cse(graph):
    """Merge pure nodes that compute the same function of the same arguments."""
    skip = mutated_aliases(graph) | _outputs(graph)
    seen, changed = {}, 0
    for n in list(graph.nodes):
        if n.op == "call_function" and not is_pure(n):
            seen.clear()  # a write or an update: values computed after it may differ
            continue
        if n.op != "call_function" or n in skip:
            continue
        try:
            k = (n.target, _key(n.args), _key(n.kwargs))
            hash(k)
        except TypeError:  # an unhashable literal argument
            continue
        first = seen.get(k)
        if first is None:
            seen[k] = n
            continue
        n.replace_all_uses_with(first)
        graph.erase_node(n)
        changed += 1
    return changed


# ---------------------------------------------------------------------- DCE
def dce(graph):
    """Remove pure nodes whose values nothing uses (impure ones always stay)."""
    before = len(graph.nodes)
    graph.eliminate_dead_code()
    for n in list(graph.nodes):  # constants nothing reads any more
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
    return before - len(graph.nodes)


def optimize(graph, attrs, foldable):
    """Run the passes in order; returns ``{pass name: nodes changed}``."""
    stats = {"constant_fold": constant_fold(graph, attrs, foldable), "cse": cse(graph)}
    stats["dce"] = dce(graph)
    graph.lint()
    return stats


# ---------------------------------------------------------------------- lowering rewrites
def optimizer_group_step(opt, group_index):
    """Graph node: one optimizer's update of one parameter group, as its ``step`` does it
    (the multi-tensor path over flat buffers where the optimizer has one)."""
    from ..autograd.grad_mode import no_grad
    from ._optim import group_step
    group = opt.param_groups[group_index]
    with no_grad():
        opt._prepare(group)
        if not group_step(opt, group):  # SGD/Adam as one C loop, else eager's own update
            opt._step_group(group_index, group)


optimizer_group_step._fx_impure = True


def group_optimizer_steps(graph):
    """Replace each run of per-parameter ``optimizer_param_step`` nodes that covers a whole
    parameter group by one ``optimizer_group_step`` (eager's own update path, one call
    instead of one per parameter). Returns how many runs were replaced."""
    nodes = list(graph.nodes)
    changed, i = 0, 0
    while i < len(nodes):
        n = nodes[i]
        if n.op != "call_function" or n.target is not _capture.optimizer_param_step:
            i += 1
            continue
        opt_node, gi = n.args[0], n.args[1]
        run = []
        while i < len(nodes) and nodes[i].op == "call_function" and \
                nodes[i].target is _capture.optimizer_param_step and \
                nodes[i].args[0] is opt_node and nodes[i].args[1] == gi:
            run.append(nodes[i])
            i += 1
        params = [r.args[2] for r in run]
        if len(set(params)) != len(params):
            continue
        with graph.inserting_before(run[0]):
            new = graph.call_function(optimizer_group_step, (opt_node, gi))
        new.meta["params"] = params
        for r in run:
            r.replace_all_uses_with(r.args[2])
            graph.erase_node(r)
        changed += 1
    return changed


class _LinearRelu(_dispatch.Node):
    """``relu(x @ w.T + b)`` with the activation applied in place on the GEMM's result (a
    matmul epilogue: no second array, no second pass). Used only where no autograd record
    is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b):
        from ..ops.nn import Linear
        y = Linear.forward(ctx, x, w, b)
        return np.maximum(y, 0, out=y)


class _LinearC(_dispatch.Node):
    """``x @ w.T + b`` as one C call: the bias written first, the GEMM adding onto it
    (``_linear.linear_act``); eager's ``Linear.forward`` where that path does not serve.
    Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b):
        from ._linear import linear_act
        y = linear_act(x, w, b)
        if y is None:
            from ..ops.nn import Linear
            y = Linear.forward(ctx, x, w, b)
        return y


class _LinearReluC(_dispatch.Node):
    """``_LinearC`` with ReLU applied in the same C call. Used only where no autograd record
    is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b):
        from ._linear import linear_act
        y = linear_act(x, w, b, relu=True)
        return _LinearRelu.forward(ctx, x, w, b) if y is None else y


def fuse_matmul_epilogues(graph, rg, use_c=False):
    """``Relu(Linear(x, w, b))`` where the Linear's value has no other use and neither needs
    an autograd record becomes one ``_LinearRelu`` node. With ``use_c`` (the C backend, a
    CBLAS found: ``_linear.available``) these become ``_LinearReluC`` and every other
    ``Linear`` with a bias that needs no record ``_LinearC`` (the bias added by the GEMM
    itself). Returns how many nodes changed."""
    from ..fx import Node
    changed = 0
    if use_c:
        from . import _linear
        use_c = _linear.available()
    for n in list(graph.nodes):
        env = _lowerable(n, ("Relu", ("@lin", ("Linear", "?x", "?w", "?b"))), rg)
        lin = env and env["@lin"]
        if not env or rg.get(lin, True) or len(lin.users) != 1:
            continue
        with graph.inserting_before(n):
            c = use_c and isinstance(lin.args[2], Node)  # a bias to write first
            new = graph.call_function((_LinearReluC if c else _LinearRelu).apply, lin.args)
        new.meta.update(n.meta)
        rg[new] = False
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        graph.erase_node(lin)
        changed += 1
    if use_c:
        for n in graph.nodes:
            env = _lowerable(n, ("Linear", "?x", "?w", "?b"), rg)
            if env and isinstance(env["?b"], Node) and _float_meta(n):
                n.target = _LinearC.apply
                changed += 1
    return changed


def share_permuted_copies(graph, rg):
    """A permuted value (``Permute``: a strided view) read by two or more of the consumers
    that copy it into rows (a C Linear's input, a ``Reshape`` to fewer dims: a multi-head
    attention's input feeds both its in-projection and that projection's weight gradient)
    is made contiguous once, by a ``Contiguous`` node that they read instead: one copy, not
    one each. The same values. ``EMBER_SHARE_COPIES=0`` leaves the graph as it is (for
    comparisons). Returns how many."""
    if os.environ.get("EMBER_SHARE_COPIES", "1") == "0":
        return 0
    copiers = ("_LinearC", "_LinearReluC", "Reshape")
    changed = 0
    for n in list(graph.nodes):
        if _cls_name(n) != "Permute" or rg.get(n, True) or not _float_meta(n):
            continue
        users = [u for u in n.users if _cls_name(u) in copiers and u.args and
                 u.args[0] is n and not rg.get(u, True)]
        if len(users) < 2:
            continue
        with graph.inserting_after(n):
            c = graph.call_function(_dispatch_op("Contiguous"), (n,))
        c.meta.update(n.meta)
        shape, dtype = n.meta["tensor_meta"][:2]
        strides, k = [], 1
        for d in reversed(tuple(shape)):
            strides.insert(0, k)
            k *= d
        c.meta["tensor_meta"] = (tuple(shape), dtype, tuple(strides))
        rg[c] = False
        for u in users:
            u.args = (c,) + tuple(u.args[1:])
        changed += 1
    return changed


class _ConvKeepCols(_dispatch.Node):
    """``ConvNd`` that also returns what its weight gradient can reuse (the im2col columns
    or the Winograd input tiles, None when larger than eager's cache limit): eager keeps them
    on the forward's ctx, a captured backward recomputes them; this node restores eager's
    saving inside a compiled step. Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b, stride, pads, dilation, groups):
        from ..ops import conv
        out, cols = conv._conv_array(x, w, b, stride, pads, dilation, groups, True)
        if cols is None or cols[1].nbytes > conv._COLS_CACHE_BYTES:
            cols = None
        return out, cols


class _ConvKeepColsRelu(_dispatch.Node):
    """``_ConvKeepCols`` with ``relu`` applied in place on the convolution's result (an
    epilogue: no second array). Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b, stride, pads, dilation, groups):
        out, cols = _ConvKeepCols.forward(ctx, x, w, b, stride, pads, dilation, groups)
        return np.maximum(out, 0, out=out), cols


class _ConvRelu(_dispatch.Node):
    """``relu(conv(x, w) + b)`` with the activation applied in place on the convolution's
    result. Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b, stride, pads, dilation, groups):
        from ..ops.conv import ConvNd
        out = ConvNd.forward(ctx, x, w, b, stride, pads, dilation, groups)
        return np.maximum(out, 0, out=out)


def fuse_conv_relu(graph, rg):
    """``Relu`` of a convolution's value that nothing else uses (``ConvNd``, or the output of
    ``_ConvKeepCols``), neither needing an autograd record, becomes the convolution's
    epilogue. Run after ``keep_conv_columns``. Returns how many."""
    changed = 0
    for n in list(graph.nodes):
        env = _lowerable(n, ("Relu", "?a"), rg)
        a = env and env["?a"]
        if not env or not hasattr(a, "users") or len(a.users) != 1 or rg.get(a, True):
            continue
        meta = a.meta.get("tensor_meta")
        if meta is None or str(meta[1]).replace("ember.", "") not in ("float32", "float64"):
            continue
        if a.target is operator.getitem and a.args[1] == 0 and \
                getattr(getattr(a.args[0], "target", None), "__self__", None) is _ConvKeepCols:
            a.args[0].target = _ConvKeepColsRelu.apply
            n.replace_all_uses_with(a)
            graph.erase_node(n)
        elif match(a, ("ConvNd",) + ("?",) * 7, {}):
            with graph.inserting_before(n):
                new = graph.call_function(_ConvRelu.apply, a.args)
            new.meta.update(n.meta)
            rg[new] = False
            n.replace_all_uses_with(new)
            graph.erase_node(n)
            graph.erase_node(a)
        else:
            continue
        changed += 1
    return changed


def keep_conv_columns(graph, rg):
    """Pair each ``ConvNd`` with the ``ConvWeightGrad`` of the same input and geometry and
    hand the forward's columns to it (see ``_ConvKeepCols``). Returns how many."""
    from ..ops.conv import ConvNd, ConvWeightGrad
    convs = {}
    for n in graph.nodes:
        if n.op == "call_function" and getattr(n.target, "__self__", None) is ConvNd and \
                not n.kwargs and len(n.args) == 7 and not rg.get(n, True):
            convs.setdefault((n.args[0], n.args[3:]), n)
    changed = 0
    for n in list(graph.nodes):
        if n.op != "call_function" or getattr(n.target, "__self__", None) is not ConvWeightGrad \
                or n.kwargs or len(n.args) not in (7, 8) or rg.get(n, True) or \
                (len(n.args) == 8 and n.args[7] is not None):
            continue
        conv = convs.pop((n.args[0], tuple(n.args[3:7])), None)
        if conv is None or tuple(conv.args[1].meta.get("tensor_meta", ((),))[0]) != \
                tuple(n.args[2]):
            continue
        with graph.inserting_before(conv):
            pair = graph.call_function(_ConvKeepCols.apply, conv.args)
            out = graph.call_function(operator.getitem, (pair, 0))
            cols = graph.call_function(operator.getitem, (pair, 1))
        out.meta.update(conv.meta)
        cols.meta["opaque"] = True
        rg[pair] = rg[out] = rg[cols] = False
        conv.replace_all_uses_with(out)
        graph.erase_node(conv)
        n.args = tuple(n.args[:7]) + (cols,)
        changed += 1
    return changed


class _MaxPoolKeepIdx(_dispatch.Node):
    """``MaxPoolNd`` that also returns each window's argmax (int64 flat indices per plane,
    from the one C pass eager's recording forward makes; None where that kernel does not
    serve): eager's backward scatters the gradient there, a captured backward recomputes the
    window maxima from the input (``MaxPoolGrad``: about a third of a CIFAR-CNN step).
    Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, ks, st, dl, pads, osz):
        from ..ops import _conv_c, conv
        from .. import _memory_format as _mf
        pads, osz = conv._pool_geometry(x.shape[2:], ks, st, dl, pads, osz)
        if x.ndim == 4 and _conv_c.available(x.dtype) and not _mf.is_channels_last(x):
            return _conv_c.maxpool2d(x, ks, st, tuple(lo for lo, _ in pads), dl, osz, True)
        return conv.MaxPoolNd.forward(ctx, x, ks, st, dl, pads, osz, False), None


class _MaxPoolGradIdx(_dispatch.Node):
    """Max pooling's input gradient from the forward's argmax indices (eager's backward:
    one scatter), or recomputed as ``MaxPoolGrad`` does where there are none."""

    differentiable = False

    @staticmethod
    def forward(ctx, g, x, flat, geom):
        from ..ops import conv
        if flat is None:
            return conv.MaxPoolGrad.forward(ctx, g, x, None, geom)
        return conv.ScatterPlanes.forward(ctx, g, flat, tuple(x.shape), True)


def keep_pool_indices(graph, rg):
    """Pair each ``MaxPoolNd`` with the ``MaxPoolGrad`` of the same input and geometry: the
    forward keeps its argmax indices and the gradient scatters at them, as eager does (see
    ``_MaxPoolKeepIdx``). Returns how many."""
    from ..ops.conv import _pool_geometry
    pools = {}
    for n in graph.nodes:
        if _lowerable(n, ("MaxPoolNd",) + ("?",) * 6 + (False,), rg) is not None:
            ks, st, dl, pads, osz = n.args[1:6]
            shape = getattr(n.args[0], "meta", {}).get("tensor_meta")
            if isinstance(osz, str) and shape is None:
                continue
            if isinstance(osz, str):  # the output size as its rule: resolve for the input
                pads, osz = _pool_geometry(tuple(shape[0])[2:], ks, st, dl, pads, osz)
            pools.setdefault((n.args[0], _key((ks, st, dl, pads, osz))), n)
    changed = 0
    for n in list(graph.nodes):
        env = _lowerable(n, ("MaxPoolGrad", "?g", "?x", None, "?geom"), rg)
        if env is None or type(env["?geom"]) is not tuple or len(env["?geom"]) != 5:
            continue
        pool = pools.pop((n.args[1], _key(n.args[3])), None)
        if pool is None:
            continue
        with graph.inserting_before(pool):
            pair = graph.call_function(_MaxPoolKeepIdx.apply, tuple(pool.args[:6]))
            out = graph.call_function(operator.getitem, (pair, 0))
            flat = graph.call_function(operator.getitem, (pair, 1))
        out.meta.update(pool.meta)
        flat.meta["opaque"] = True
        rg[pair] = rg[out] = rg[flat] = False
        pool.replace_all_uses_with(out)
        graph.erase_node(pool)
        with graph.inserting_before(n):
            grad = graph.call_function(_MaxPoolGradIdx.apply, (n.args[0], n.args[1], flat,
                                                                n.args[3]))
        grad.meta.update(n.meta)
        rg[grad] = False
        n.replace_all_uses_with(grad)
        graph.erase_node(n)
        changed += 1
    return changed


class _StackMatmul(_dispatch.Node):
    """``Matmul`` of two 3-d stacks with one batch size (an attention's scores and weighted
    values, captured as composed ops): NumPy runs one small GEMM per matrix, each below the
    BLAS's threading threshold, so the whole stack ran on one core. Here blocks of the batch
    run on ember's thread pool, as eager's fused attention does; every matrix is the same
    GEMM call, so the bits are NumPy's at any thread count. Used only where no autograd
    record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, a, b):
        from .. import _parallel
        from ..ops.linalg import Matmul
        if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or \
                a.shape[2] != b.shape[1] or a.dtype != b.dtype or a.dtype.kind != "f":
            return Matmul.forward(ctx, a, b)
        n = a.shape[0]
        k = _parallel.threads_for(n * a.shape[1] * b.shape[2], _parallel.MIN_SIZE_HEAVY)
        if k <= 1 or n < 2:
            return np.matmul(a, b)
        out = np.empty((n, a.shape[1], b.shape[2]), a.dtype)

        def part(s, e):
            np.matmul(a[s:e], b[s:e], out=out[s:e])
        _parallel.run_split(part, _parallel._bounds(n, min(k, n)))
        return out


def split_stacked_matmuls(graph, rg):
    """``Matmul`` of two 3-d float stacks of one batch size becomes ``_StackMatmul`` (the
    batch split over ember's threads). Returns how many."""
    changed = 0
    for n in list(graph.nodes):
        if _lowerable(n, ("Matmul", "?a", "?b"), rg) is None:
            continue
        metas = [getattr(a, "meta", {}).get("tensor_meta") for a in n.args]
        if any(m is None or len(m[0]) != 3 for m in metas) or \
                metas[0][0][0] != metas[1][0][0] or metas[0][0][0] < 2:
            continue
        with graph.inserting_before(n):
            new = graph.call_function(_StackMatmul.apply, n.args)
        new.meta.update(n.meta)
        rg[new] = False
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        changed += 1
    return changed


# ---------------------------------------------------------------------- node patterns
def _cls_name(n):
    """The class name of the ember op whose ``apply`` node ``n`` calls (None otherwise: a
    user's ``autograd.Function`` named like an ember op is not that op)."""
    cls = getattr(getattr(n, "target", None), "__self__", None)
    if getattr(n, "op", None) == "call_function" and isinstance(cls, type) and \
            getattr(n.target, "__name__", "") == "apply" and cls.__module__.startswith("ember."):
        return cls.__name__
    return None


_COMMUTATIVE = ("Add", "Mul")


def match(n, pat, env):
    """Match node ``n`` against pattern ``pat``, binding names into ``env`` (a dict, left as
    it was on failure). A pattern is

    * ``"?name"``: anything (a name met again must be the same node or an equal value);
      ``"?"`` alone: anything, bound nowhere;
    * ``(op, *argument patterns)``: a call of ember op class ``op`` (a name, or a frozenset
      of names) with those positional arguments and no keyword arguments (``Add`` and
      ``Mul`` also with their two arguments swapped);
    * ``("@name", pattern)``: ``pattern``, the node it matched bound to ``"@name"``; a bare
      ``"@name"`` then matches that node only;
    * a literal or a tuple of patterns: an equal value.
    """
    from ..fx import Node
    if type(pat) is str and pat[:1] == "@":
        return env.get(pat) is n
    if pat == "?":
        return True
    if type(pat) is str and pat[:1] == "?":
        if pat in env:
            seen = env[pat]
            return seen is n if isinstance(seen, Node) or isinstance(n, Node) else \
                type(seen) is type(n) and seen == n
        env[pat] = n
        return True
    head = pat[0] if type(pat) is tuple and pat else None
    if type(head) is str and head[:1] == "@":
        if head in env:
            return env[head] is n
        trial = dict(env)
        if not match(n, pat[1], trial):
            return False
        env.update(trial)
        env[head] = n
        return True
    if type(head) is frozenset or (type(head) is str and head[:1] not in ("?", "@")):
        name = _cls_name(n)
        if name is None or name not in (head if type(head) is frozenset else (head,)) or \
                n.kwargs or len(n.args) != len(pat) - 1:
            return False
        orders = [n.args]
        if name in _COMMUTATIVE and len(n.args) == 2:
            orders.append(n.args[::-1])
        for args in orders:
            trial = dict(env)
            if all(match(a, p, trial) for a, p in zip(args, pat[1:])):
                env.update(trial)
                return True
        return False
    if isinstance(n, Node):
        return False
    if type(pat) in (tuple, list):
        return type(n) is type(pat) and len(n) == len(pat) and \
            all(match(a, p, env) for a, p in zip(n, pat))
    return type(n) is type(pat) and n == pat


def _lowerable(n, pat, rg):
    """The names ``n`` binds matching ``pat`` where ``n`` needs no autograd record (the
    lowerings replace such nodes only), else None."""
    env = {}
    return env if not rg.get(n, True) and match(n, pat, env) else None


def _find(nodes, pat, env):
    """The first of ``nodes`` matching ``pat`` (``env`` updated), or None."""
    for n in nodes:
        trial = dict(env)
        if match(n, pat, trial):
            env.update(trial)
            return n
    return None


def _replace_grads(graph, rg, order, target, args, olds):
    """A node ``target(*args)`` returning one gradient per entry of ``olds`` (the composed
    gradient nodes it replaces, None where not wanted), put before the first of them
    (``order``: node positions); their uses move to its items."""
    first = min((o for o in olds if o is not None), key=order.__getitem__)
    with graph.inserting_before(first):
        node = graph.call_function(target, args)
        items = [graph.call_function(operator.getitem, (node, i)) for i in range(len(olds))]
    rg[node] = False
    for item, old in zip(items, olds):
        rg[item] = False
        if old is not None:
            item.meta.update(old.meta)
            old.replace_all_uses_with(item)
    return node


def _item(graph, n, i):
    """A ``getitem(n, i)`` node: an existing one, else one made right after ``n``."""
    for u in n.users:
        if u.target is operator.getitem and u.args[0] is n and u.args[1] == i:
            return u
    with graph.inserting_after(n):
        return graph.call_function(operator.getitem, (n, i))


# ---------------------------------------------------------------------- normalisation
class _NormalizeKeep(_dispatch.Node):
    """``Normalize`` that also returns the ``1/std`` its forward computed (eager keeps it on
    the ctx for its one-pass backward; a captured backward recomputes the statistics from
    the input with several reductions): ``(y, mean, var, rstd)``. A layer norm over the
    last dimension runs ``_layernorm``'s C kernel. Used only where no autograd record is
    needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, w, b, axes, eps):
        from ._layernorm import forward
        done = forward(x, w, b, axes, eps)  # a layer norm: ``_layernorm``'s C kernel
        if done is not None:
            return done
        from ..ops.nn import Normalize
        y, mean, var = Normalize.forward(ctx, x, w, b, axes, eps)
        return y, mean, var, ctx.rstd


class _NormalizeGrad(_dispatch.Node):
    """The gradients of ``Normalize`` as eager's backward computes them on arrays (the C
    layer-norm kernel or the NumPy rows formula: ``ops.nn._normalize_grad_np``; a layer
    norm over the last dimension: ``_layernorm``'s kernel) from the forward's mean and
    ``1/std``: ``(gx, gw, gb)``, gw and gb summed to ``shapes`` (None
    where ``need`` says not needed). ``res``: an array added to gx (a residual branch's
    gradient, ``fuse_residual_adds``). Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, g, x, w, mean, rstd, axes, need, shapes, res=None):
        from ._layernorm import backward
        out = backward(g, x, w, mean, rstd, axes, need, res)  # a layer norm: ``_layernorm``
        if out is None:
            from ..ops.nn import _normalize_grad_np
            ctx.needs_input_grad, ctx.axes, ctx.mean, ctx.rstd = need, axes, mean, rstd
            got = iter(_normalize_grad_np(g, x, w, ctx))
            out = [next(got) if k else None for k in need]
            if res is not None:  # ``fuse_residual_adds``: the Add it took in
                out[0] = out[0] + res
        else:
            out = list(out)
        for i in (1, 2):
            a, shape = out[i], shapes[i - 1]
            if a is None:
                continue
            if a.shape == x.shape:  # the full product: summed as eager's engine does
                lead = tuple(d for d in range(x.ndim) if shape[d] == 1 and x.shape[d] != 1)
                a = a.sum(axis=lead, keepdims=True) if lead else a
            out[i] = np.ascontiguousarray(a.reshape(shape), dtype=x.dtype)
        return tuple(out)


# Normalize.backward as a captured graph holds it: the statistics recomputed from x, then
# rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)), gxhat = g * w (or g)
_XC = ("@xc", ("Sub", "?x", ("Mean", "?x", "?axes", True, None)))
_RSTD = ("@rstd", ("Rsqrt", ("Add", ("Mean", ("Mul", _XC, _XC), "?axes", True, None), "?eps")))
_XHAT = ("@xhat", ("Mul", _XC, _RSTD))


def _ln_grad(gxhat):
    return ("Mul", _RSTD, ("Sub", ("Sub", gxhat, ("Mean", gxhat, "?axes", True, None)),
                           ("Mul", _XHAT, ("Mean", ("Mul", gxhat, _XHAT), "?axes", True,
                                           None))))


_LN_GRAD = (_ln_grad(("@gxhat", ("Mul", "?g", "?w"))), _ln_grad("?g"))


def _sum_over(n, dims):
    """A user of ``n`` computing ``Sum(n, dims, True, None)`` (the engine's reduction of a
    broadcast gradient), or None."""
    for u in n.users:
        if _cls_name(u) == "Sum" and len(u.args) == 4 and not u.kwargs and \
                u.args[0] is n and u.args[2] is True and u.args[3] is None and \
                type(u.args[1]) in (tuple, list) and tuple(u.args[1]) == dims and \
                u.meta.get("tensor_meta") is not None:
            return u
    return None


def fuse_normalize_backward(graph, rg):
    """Each ``Normalize`` whose backward the graph holds as composed ops (the statistics
    recomputed, see ``_LN_GRAD``) gets eager's one-pass backward: the forward becomes
    ``_NormalizeKeep`` (its mean and 1/std kept) and the input gradient, with the weight and
    bias gradients reduced next to it, one ``_NormalizeGrad``. Run before ``fuse``.
    Returns how many."""
    from ..fx import Node
    norms = {}
    for n in graph.nodes:
        if _cls_name(n) == "Normalize" and len(n.args) == 5 and not n.kwargs and \
                not rg.get(n, True) and isinstance(n.args[0], Node):
            norms.setdefault(n.args[0], []).append(n)
    if not norms:
        return 0
    order = {n: i for i, n in enumerate(graph.nodes)}
    changed, done = 0, set()
    for n in list(graph.nodes):
        if _cls_name(n) != "Mul" or rg.get(n, True):
            continue
        for pat in _LN_GRAD:
            env = {}
            if match(n, pat, env):
                break
        else:
            continue
        x, axes, g = env["?x"], env["?axes"], env["?g"]
        fwd = next((f for f in norms.get(x, ()) if f not in done and f.args[3] == axes and
                    f.args[4] == env["?eps"] and f.args[1] is env.get("?w")), None)
        xm, gm = x.meta.get("tensor_meta"), getattr(g, "meta", {}).get("tensor_meta")
        if fwd is None or xm is None or gm is None or tuple(gm[0]) != tuple(xm[0]) or \
                type(axes) not in (tuple, list):
            continue
        nd = len(xm[0])
        lead = tuple(d for d in range(nd) if d not in {a % nd for a in axes})
        # gw: g * xhat summed over the lead dims; gb: g summed over them
        gw = gb = None
        if fwd.args[1] is not None and lead:
            prod = _find(list(env["@xhat"].users), ("Mul", "?g", "@xhat"), dict(env))
            gw = None if prod is None else _sum_over(prod, lead)
        if fwd.args[2] is not None and lead:
            gb = _sum_over(g, lead)
        done.add(fwd)
        fwd.target = _NormalizeKeep.apply
        mean, rstd = _item(graph, fwd, 1), _item(graph, fwd, 3)
        shapes = tuple(None if m is None else tuple(m.meta["tensor_meta"][0]) for m in (gw, gb))
        _replace_grads(graph, rg, order, _NormalizeGrad.apply, (
            g, x, fwd.args[1], mean, rstd, tuple(axes), (True, gw is not None, gb is not None),
            shapes), (n, gw, gb))
        rg[mean] = rg[rstd] = False
        changed += 1
    if changed:
        dce(graph)
    return changed


class _AddNormalizeKeep(_dispatch.Node):
    """``_NormalizeKeep`` of ``a + b`` that also returns the sum: ``(y, mean, var, rstd,
    a + b)``, the sum and the norm made in one pass over each row (``_layernorm.add_forward``;
    else an Add, then ``_NormalizeKeep``). Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, a, b, w, bias, axes, eps):
        from ._layernorm import add_forward
        done = add_forward(a, b, w, bias, axes, eps)
        if done is not None:
            return done
        h = np.add(a, b)
        return _NormalizeKeep.forward(ctx, h, w, bias, axes, eps) + (h,)


def fuse_residual_adds(graph, rg):
    """The residual adds of a pre-norm block, folded into the layer norms beside them (run
    after ``fuse_normalize_backward``, before ``fuse``):

    * ``_NormalizeKeep(Add(a, b), ...)`` where a and b have the same shape (no broadcast)
      becomes ``_AddNormalizeKeep(a, b, ...)``; the sum's other users read its fifth value;
    * ``Add(r, _NormalizeGrad(...)[0])`` (either order; the gradient used only there, same
      shapes) becomes that ``_NormalizeGrad`` with ``res=r``: the residual branch's gradient
      added by the kernel that writes gx.

    The same roundings as the separate ops. ``EMBER_RESIDUAL_ADDS=0`` leaves the graph as it
    is (for comparisons). Returns how many adds were folded."""
    from ..fx import Node
    if os.environ.get("EMBER_RESIDUAL_ADDS", "1") == "0":
        return 0
    changed = 0
    for n in list(graph.nodes):
        if _cls_name(n) != "_NormalizeKeep" or rg.get(n, True):
            continue
        add = n.args[0]
        if not isinstance(add, Node) or _cls_name(add) != "Add" or add.kwargs or \
                len(add.args) != 2 or rg.get(add, True):
            continue
        a, b = add.args
        metas = [getattr(v, "meta", {}).get("tensor_meta") for v in (a, b, add)]
        if any(m is None for m in metas) or len({tuple(m[0]) for m in metas}) != 1 or \
                len({str(m[1]) for m in metas}) != 1 or not _float_meta(add):
            continue
        with graph.inserting_before(n):
            fused = graph.call_function(_AddNormalizeKeep.apply, (a, b) + tuple(n.args[1:]))
            h = graph.call_function(operator.getitem, (fused, 4))
        h.meta.update(add.meta)
        n.replace_all_uses_with(fused)
        add.replace_all_uses_with(h)
        graph.erase_node(n)
        graph.erase_node(add)
        rg[fused] = rg[h] = False
        changed += 1
    for n in list(graph.nodes):
        if _cls_name(n) != "Add" or n.kwargs or len(n.args) != 2 or rg.get(n, True):
            continue
        for i in (0, 1):
            gi, other = n.args[i], n.args[1 - i]
            if not isinstance(gi, Node) or gi.target is not operator.getitem or \
                    gi.args[1] != 0 or len(gi.users) != 1 or not isinstance(other, Node):
                continue
            grad = gi.args[0]
            if _cls_name(grad) != "_NormalizeGrad" or len(grad.args) != 8 or grad.kwargs:
                continue
            metas = [getattr(v, "meta", {}).get("tensor_meta") for v in (gi, other, n)]
            if any(m is None for m in metas) or len({tuple(m[0]) for m in metas}) != 1 or \
                    len({str(m[1]) for m in metas}) != 1:
                continue
            order = {x: k for k, x in enumerate(graph.nodes)}
            if order.get(other, len(order)) > order[grad]:
                continue  # the residual gradient is made after the norm's
            grad.args = grad.args + (other,)
            n.replace_all_uses_with(gi)
            gi.meta.update(n.meta)
            graph.erase_node(n)
            changed += 1
            break
    return changed


# ---------------------------------------------------------------------- attention
class _Attention(_dispatch.Node):
    """``softmax(q @ k^T * scale + mask) @ v`` over (B, L, D) stacks as eager's fused
    attention runs it (``ops.nn._attn_fwd_np``: blocks of the batch over the cores, the C
    softmax rows): ``(out, weights)``, the weights kept for the backward. Used only where
    no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        from ..ops.nn import _attn_fwd_np
        if mask is not None and mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        return _attn_fwd_np(q, k, v, mask, scale)


class _AttentionGrad(_dispatch.Node):
    """``(gq, gk, gv)`` of ``_Attention`` from its weights, as eager's fused backward
    (``ops.nn._attn_bwd_np``); None where ``need`` says not needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, g, q, k, v, w, scale, need):
        from ..ops.nn import _attn_bwd_np
        return _attn_bwd_np(g, q, k, v, w, scale, need)


_T12 = (0, 2, 1)
# the attention of multi_head_attention_forward / scaled_dot_product_attention as captured
_SCORES = ("Matmul", ("@qs", ("Mul", "?q", "?scale")), ("@kt", ("Permute", "?k", _T12)))
_ATTN_W = (("Softmax", ("Add", _SCORES, "?mask"), "?dim"), ("Softmax", _SCORES, "?dim"))
# Softmax.backward of the weights' gradient (g @ v^T), then the two products and the scale
_ATTN_DS = ("Sub", ("@gyw", ("Mul", ("Matmul", "?go", ("Permute", "?v", _T12)), "@w")),
            ("Mul", "@w", ("Sum", "@gyw", "?sdim", True, None)))
_ATTN_GQ = ("Mul", ("Matmul", "@ds", ("Permute", "@kt", _T12)), "?scale")
_ATTN_GK = ("Permute", ("Matmul", ("Permute", "@qs", _T12), "@ds"), _T12)
_ATTN_GV = ("Matmul", ("Permute", "@w", _T12), "?go")


def _users2(n):
    """The users of ``n``'s users (where a pattern rooted two ops after ``n`` may sit)."""
    return [u for m in n.users for u in m.users]


def _float_meta(n, ndim=None):
    m = getattr(n, "meta", {}).get("tensor_meta")
    return m is not None and str(m[1]).replace("ember.", "") in ("float32", "float64") and \
        (ndim is None or len(m[0]) == ndim)


def fuse_attention(graph, rg):
    """Each attention captured as composed ops (see ``_ATTN_W``) over 3-d float stacks
    becomes eager's fused kernels: ``_Attention`` for the forward and, where the graph holds
    its backward (``_ATTN_DS``), ``_AttentionGrad`` for the three input gradients. Run before
    ``fuse``. Returns how many."""
    from ..fx import Node
    changed = 0
    for w in list(graph.nodes):
        if _cls_name(w) != "Softmax" or rg.get(w, True) or not _float_meta(w, 3):
            continue
        env = {"@w": w}
        if not any(match(w, p, env) for p in _ATTN_W):
            continue
        q, k, mask, scale = env["?q"], env["?k"], env.get("?mask"), env["?scale"]
        if env["?dim"] not in (2, -1) or type(scale) not in (int, float) or \
                not all(_float_meta(a, 3) for a in (q, k)) or \
                (mask is not None and not (_float_meta(mask) and
                                           len(mask.meta["tensor_meta"][0]) in (2, 3))):
            continue
        outs = [u for u in w.users if match(u, ("Matmul", "@w", "?v"), dict(env))]
        if len(outs) != 1:
            continue
        out = outs[0]
        match(out, ("Matmul", "@w", "?v"), env)
        v = env["?v"]
        if not _float_meta(v, 3):
            continue
        dt = {str(a.meta["tensor_meta"][1]) for a in (q, k, v, w)}
        (B, L, D), (Bk, S, Dk), (Bv, Sv, _) = (tuple(a.meta["tensor_meta"][0])
                                               for a in (q, k, v))
        if len(dt) != 1 or (Bk, Bv, Dk, Sv) != (B, B, D, S) or \
                any(rg.get(a, True) for a in (q, k, v) if isinstance(a, Node)):
            continue
        with graph.inserting_before(out):
            att = graph.call_function(_Attention.apply, (q, k, v, mask, float(scale)))
            o, wk = (graph.call_function(operator.getitem, (att, i)) for i in (0, 1))
        o.meta.update(out.meta)
        wk.meta.update(w.meta)
        rg[att] = rg[o] = rg[wk] = False
        # the backward: the weights' gradient through the softmax, then the products
        ds = _find(_users2(w), ("@ds", _ATTN_DS), env)
        grads = [None, None, None]
        if ds is not None and env["?v"] is v and env["?sdim"] in ((2,), (-1,), 2, -1):
            grads = [_find(_users2(ds), _ATTN_GQ, dict(env)),
                     _find(_users2(ds), _ATTN_GK, dict(env)),
                     _find(_users2(w), _ATTN_GV, dict(env))]
        out.replace_all_uses_with(o)
        w.replace_all_uses_with(wk)
        if any(gr is not None for gr in grads):
            order = {n: i for i, n in enumerate(graph.nodes)}
            _replace_grads(graph, rg, order, _AttentionGrad.apply, (
                env["?go"], q, k, v, wk, float(scale), tuple(gr is not None for gr in grads)),
                grads)
        changed += 1
    if changed:
        dce(graph)
    return changed


# ---------------------------------------------------------------------- GELU
class _GeluKeep(_dispatch.Node):
    """Exact ``Gelu`` as eager's recording forward runs it (the C kernel writes the
    derivative beside the value): ``(y, state)``, the state (what eager's ctx keeps) handed
    to ``_GeluGrad``. Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, approximate):
        from ..ops.nn import Gelu
        state = Gelu()  # a Node, so that the forward keeps what its backward reads
        return Gelu.forward(state, x, approximate), state


class _GeluGrad(_dispatch.Node):
    """``Gelu``'s input gradient from the forward's state (eager's array backward: one
    multiply by the kept derivative)."""

    differentiable = False

    @staticmethod
    def forward(ctx, g, x, state):
        from ..ops.nn import _gelu_bwd_np
        return _gelu_bwd_np(g, x, state)


def _gelu_grad_pattern():
    from ..ops.nn import _INV_SQRT_2PI, _SQRT_HALF
    cdf = ("Mul", ("Add", ("Erf", ("Mul", "?x", _SQRT_HALF)), 1), 0.5)
    d = ("Add", cdf, ("Mul", ("Mul", "?x", ("Exp", ("Mul", ("Mul", "?x", -0.5), "?x"))),
                      _INV_SQRT_2PI))
    return ("Mul", "?g", d)  # Gelu.backward as a captured graph holds it


def fuse_gelu_backward(graph, rg):
    """Each exact ``Gelu`` whose backward the graph holds as composed ops (erf and exp
    recomputed: ``_gelu_grad_pattern``) takes eager's kernels: ``_GeluKeep`` computes the
    value and the derivative in one pass, ``_GeluGrad`` multiplies. Run before ``fuse``.
    Returns how many."""
    gelus = {}
    for n in graph.nodes:
        if _cls_name(n) == "Gelu" and n.args[1:] == ("none",) and not n.kwargs and \
                not rg.get(n, True) and _float_meta(n):
            gelus.setdefault(n.args[0], n)
    if not gelus:
        return 0
    pat, changed = _gelu_grad_pattern(), 0
    for n in list(graph.nodes):
        if _cls_name(n) != "Mul" or rg.get(n, True):
            continue
        env = {}
        if not match(n, pat, env) or env["?x"] not in gelus:
            continue
        x, g = env["?x"], env["?g"]
        fwd = gelus.pop(x)
        if getattr(g, "meta", {}).get("tensor_meta", (None,))[0] != \
                x.meta.get("tensor_meta", (0,))[0]:
            continue
        with graph.inserting_before(fwd):
            keep = graph.call_function(_GeluKeep.apply, fwd.args)
            y = graph.call_function(operator.getitem, (keep, 0))
            state = graph.call_function(operator.getitem, (keep, 1))
        y.meta.update(fwd.meta)
        state.meta["opaque"] = True
        fwd.replace_all_uses_with(y)
        graph.erase_node(fwd)
        with graph.inserting_before(n):
            grad = graph.call_function(_GeluGrad.apply, (g, x, state))
        grad.meta.update(n.meta)
        n.replace_all_uses_with(grad)
        for m in (keep, y, state, grad):
            rg[m] = False
        changed += 1
    if changed:
        dce(graph)
    return changed


class _PackedAttention(_dispatch.Node):
    """Self-attention from the packed in-projection ``qkv`` (L, N, 3E) to the heads' merged
    output (L, N, E): ``(out, weights)``. With a mask that skips a quarter of the scores or
    more (causal) the C kernel of ``_attention``; else as eager's ``PackedSelfAttention``
    runs it (the heads strided views, no split or merge copies). Used only where no
    autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, qkv, mask, heads, scale):
        from ._attention import packed_forward
        done = packed_forward(qkv, mask, heads, scale)  # the C kernel (``_attention``)
        if done is not None:
            return done
        from ..ops.nn import PackedSelfAttention
        if mask is not None and mask.ndim == 3:
            mask = mask[0]
        out = PackedSelfAttention.forward(ctx, qkv, mask, heads, scale)
        return out, ctx.w


class _PackedAttentionGrad(_dispatch.Node):
    """The gradient of ``qkv`` (L, N, 3E), written in place of its three heads' parts
    (``_attention``'s C kernel where the forward's took it, else eager's
    ``PackedSelfAttention.array_backward``), from the output's gradient (any shape of
    L x N x E elements), the forward's weights and its mask."""

    differentiable = False

    @staticmethod
    def forward(ctx, g, qkv, w, heads, scale, mask=None):
        from ._attention import packed_backward
        done = packed_backward(g, qkv, w, heads, scale, mask)  # C (``_attention``)
        if done is not None:
            return done
        import types
        from ..ops.nn import PackedSelfAttention
        L, N, E3 = qkv.shape
        state = types.SimpleNamespace(saved_arrays=(qkv,), heads=heads, w=w, scale=scale)
        return PackedSelfAttention.array_backward(state, g.reshape(L, N, E3 // 3))[0]


def _head_split(n):
    """``(qkv, i, (L, NH, hd))`` where ``n`` is head block ``i`` of a packed projection:
    ``Permute(Reshape(Split(qkv, [E, E, E], 2)[i], (L, NH, hd)), (1, 0, 2))``; else None."""
    env = {}
    if not match(n, ("Permute", ("Reshape", "?part", "?shape"), (1, 0, 2)), env):
        return None
    part = env["?part"]
    if getattr(part, "target", None) is not operator.getitem or \
            _cls_name(part.args[0]) != "Split":
        return None
    split = part.args[0]
    qkv, sizes, dim = (split.args + (None, None))[:3]
    meta = getattr(qkv, "meta", {}).get("tensor_meta")
    if meta is None or len(meta[0]) != 3 or dim not in (2, -1) or split.kwargs:
        return None
    L, N, E3 = meta[0]
    E = E3 // 3
    if sizes not in ([E] * 3, (E,) * 3, E) or E3 % 3:
        return None
    shape = tuple(env["?shape"]) if type(env["?shape"]) in (tuple, list) else ()
    if len(shape) != 3 or any(type(d) is not int for d in shape) or shape[0] != L or \
            shape[1] % max(N, 1) or shape[1] * shape[2] != N * E:
        return None
    return qkv, part.args[1], shape


def _merge_of(n):
    """``(item, permute, reshape)`` where ``n`` (a head-stacked (NH, L, hd) value, a
    ``getitem``) is only merged back as ``Reshape(Permute(n, (1, 0, 2)), (L, N, E))``."""
    if len(n.users) != 1:
        return None
    (p,) = n.users
    if not match(p, ("Permute", "?a", (1, 0, 2)), {"?a": n}) or len(p.users) != 1:
        return None
    (r,) = p.users
    return (n, p, r) if _cls_name(r) == "Reshape" and r.args[0] is p else None


def fuse_packed_attention(graph, rg):
    """An ``_Attention`` whose q, k and v are the head blocks of one packed projection
    (``_head_split``: multi-head self-attention) and whose output is only merged back
    becomes ``_PackedAttention`` on the projection itself; where its gradient is
    ``_AttentionGrad`` merged and concatenated back, ``_PackedAttentionGrad`` writes the
    projection's gradient directly. No head split or merge copies. Run after
    ``fuse_attention``. Returns how many."""
    changed = 0
    for a in list(graph.nodes):
        if _cls_name(a) != "_Attention":
            continue
        q, k, v, mask, scale = a.args
        heads = [_head_split(t) for t in (q, k, v)]
        if any(h is None for h in heads) or len({id(h[0]) for h in heads}) != 1 or \
                [h[1] for h in heads] != [0, 1, 2] or len({h[2] for h in heads}) != 1:
            continue
        qkv, (L, NH, hd) = heads[0][0], heads[0][2]
        n_heads = NH // qkv.meta["tensor_meta"][0][1]
        if mask is not None and tuple(mask.meta["tensor_meta"][0])[-2:] != (L, L):
            continue
        items = {u.args[1]: u for u in a.users if u.target is operator.getitem}
        o, w = items.get(0), items.get(1)
        merged = _merge_of(o) if o is not None else None
        grads = [u for u in (w.users if w is not None else ())]
        if merged is None or len(a.users) != len(items) or \
                any(_cls_name(u) != "_AttentionGrad" or u.args[4] is not w for u in grads):
            continue
        # the backward: the output's gradient split into heads, the three gradients merged
        # and concatenated back into the projection's layout
        packs = []
        for gn in grads:
            go = _head_split_of_grad(gn.args[0], (L, NH, hd))
            gitems = {u.args[1]: u for u in gn.users if u.target is operator.getitem}
            merges = [_merge_of(gitems[i]) if i in gitems else None for i in range(3)]
            cats = {id(next(iter(m[2].users), None)) for m in merges if m is not None}
            if go is None or any(m is None or len(m[2].users) != 1 for m in merges) or \
                    len(cats) != 1:
                packs = None
                break
            cat = next(iter(merges[0][2].users))
            if _cls_name(cat) != "Cat" or cat.kwargs or \
                    tuple(cat.args) not in ((2, *[m[2] for m in merges]),
                                            (-1, *[m[2] for m in merges])):
                packs = None
                break
            packs.append((go, cat))
        if packs is None:
            continue
        with graph.inserting_before(a):
            pa = graph.call_function(_PackedAttention.apply, (qkv, mask, n_heads, scale))
            out, wp = (graph.call_function(operator.getitem, (pa, i)) for i in (0, 1))
        _, _, reshape = merged
        with graph.inserting_before(reshape):
            new = graph.call_function(_dispatch_op("Reshape"), (out, reshape.args[1]))
        new.meta.update(reshape.meta)
        reshape.replace_all_uses_with(new)
        for go, cat in packs:
            with graph.inserting_before(cat):
                gq = graph.call_function(_PackedAttentionGrad.apply,
                                         (go, qkv, wp, n_heads, scale, mask))
            gq.meta.update(cat.meta)
            cat.replace_all_uses_with(gq)
            rg[gq] = False
        for m in (pa, out, wp, new):
            rg[m] = False
        changed += 1
    if changed:
        dce(graph)
    return changed


def _head_split_of_grad(n, shape):
    """The gradient ``g`` where ``n`` is ``Permute(Reshape(g, shape), (1, 0, 2))`` (the
    output's gradient split into heads); else None."""
    env = {"?shape": shape}
    if not match(n, ("Permute", ("Reshape", "?g", "?s"), (1, 0, 2)), env) or \
            type(env["?s"]) not in (tuple, list) or tuple(env["?s"]) != shape:
        return None
    return env["?g"]


def _dispatch_op(name):
    from ..ops import shape
    return getattr(shape, name).apply


# ---------------------------------------------------------------------- softmax rows
class _RowSoftmax(_dispatch.Node):
    """``Softmax`` over the last dimension with the C row kernel of eager's attention
    (``ops._nn_c.attn_softmax``: max, exp and sum in one sweep per row; blocks of rows over
    the cores) instead of NumPy's five passes (a cross-entropy's backward). Small, other-dim
    or non-float inputs take ``Softmax`` itself. Used only where no autograd record is
    needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, dim):
        from .. import _parallel
        from ..ops import _nn_c
        from ..ops.nn import Softmax
        if type(x) is not np.ndarray or x.ndim == 0 or dim % x.ndim != x.ndim - 1 or \
                x.size < _nn_c.MIN_SIZE or not x.shape[-1] or not _nn_c.available(x.dtype):
            return Softmax.forward(ctx, x, dim)
        out = np.array(x, order="C", copy=True)
        rows = out.reshape(-1, 1, x.shape[-1])
        k = _parallel.threads_for(out.size, _parallel.MIN_SIZE_HEAVY)
        _parallel.run_split(lambda b0, b1: _nn_c.attn_softmax(rows, b0, b1, 1.0, None),
                            _parallel._bounds(rows.shape[0], min(k, rows.shape[0])))
        return out


def lower_row_softmax(graph, rg):
    """``Softmax`` of a float value over its last dimension becomes ``_RowSoftmax``.
    Returns how many softmaxes run as C rows: those, and the ones inside the cross-entropy
    gradients of ``fuse_cross_entropy_backward`` (``_CrossEntropyGrad``)."""
    changed = sum(1 for n in graph.nodes if _cls_name(n) == "_CrossEntropyGrad")
    for n in list(graph.nodes):
        env = _lowerable(n, ("Softmax", "?x", "?dim"), rg)
        if env is None or not _float_meta(n) or type(env["?dim"]) is not int or \
                env["?dim"] % max(len(n.meta["tensor_meta"][0]), 1) != \
                len(n.meta["tensor_meta"][0]) - 1:
            continue
        n.target = _RowSoftmax.apply
        changed += 1
    return changed


# ---------------------------------------------------------------------- embedding backward
def lower_scatter_rows(graph, rg, use_c=False):
    """With ``use_c`` (the C backend), ``IndexAddZeros`` (an embedding's backward: gradient
    rows added into a zero table) becomes ``_scatter._IndexAddRows`` (one C loop instead of
    eager's argsort and ``reduceat``). ``EMBER_SCATTER_C=0`` leaves them (for comparisons).
    Returns how many."""
    if not use_c or os.environ.get("EMBER_SCATTER_C", "1") == "0":
        return 0
    from ._scatter import _IndexAddRows
    changed = 0
    for n in graph.nodes:
        env = _lowerable(n, ("IndexAddZeros", "?g", "?shape", "?idx"), rg)
        if env is None or not _float_meta(n) or type(env["?idx"]) is not tuple or \
                len(env["?idx"]) != 1:
            continue
        n.target = _IndexAddRows.apply
        changed += 1
    return changed


# ---------------------------------------------------------------------- cross-entropy
def _ce_grad_pattern():
    # the row weights: valid / count where the target counts, 0 where it is ignored (also
    # when every target is: no 0/0 there)
    w = ("@w", ("View", ("Where", ("@ne", ("Ne", "?t", "?ii")),
                         ("Div", ("@w0", ("ToDtype", "@ne", "?dt")), ("Sum", "@w0")), "?zero"),
                "?wshape"))
    hot = ("Eq", "?cls", ("View", ("Mul", "?t", "@ne"), "?sshape"))
    # CrossEntropy.backward as a captured graph holds it ('mean', no class weights)
    return ("Mul", ("Sub", ("Mul", ("@p", ("Softmax", "?x", "?dim")), w),
                    ("Where", hot, "@w", "?zero")), "?g")


def fuse_cross_entropy_backward(graph, rg, use_c=False):
    """With ``use_c`` (the C backend), each cross-entropy gradient over (N, C) float logits
    that the graph holds as composed ops (``_ce_grad_pattern``: the 'mean' reduction, no
    class weights) becomes one ``_crossentropy._CrossEntropyGrad`` node (one C pass per row
    instead of eight small ops, a softmax and a fused kernel). Run before ``fuse``.
    ``EMBER_CE_GRAD_C=0`` leaves them (for comparisons). Returns how many."""
    if not use_c or os.environ.get("EMBER_CE_GRAD_C", "1") == "0":
        return 0
    from ._crossentropy import _CrossEntropyGrad
    pat, changed = _ce_grad_pattern(), 0
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    for n in nodes:
        if _cls_name(n) != "Mul" or rg.get(n, True):
            continue
        env = {}
        if not match(n, pat, env):
            continue
        x, t, g, cls = env["?x"], env["?t"], env["?g"], env["?cls"]
        xm, tm = (getattr(a, "meta", {}).get("tensor_meta") for a in (x, t))
        gm, cm = (getattr(a, "meta", {}).get("tensor_meta") for a in (g, cls))
        if not _float_meta(x, 2) or tm is None or gm is None or cm is None or \
                type(env["?ii"]) is not int or env["?dim"] not in (1, -1):
            continue
        N, C = tuple(xm[0])
        kinds = [str(m[1]).replace("ember.", "") for m in (tm, cm)]
        if tuple(tm[0]) != (N,) or not all(k.startswith(("int", "uint")) for k in kinds) or \
                tuple(gm[0]) != () or str(gm[1]) != str(xm[1]) or \
                int(np.prod(cm[0], dtype=np.int64)) != C or tuple(cm[0])[-1:] != (C,) or \
                tuple(env["?wshape"]) != (N, 1) or tuple(env["?sshape"]) != (N, 1) or \
                str(env["?dt"]).replace("ember.", "") != str(xm[1]).replace("ember.", "") or \
                not (type(env["?zero"]) in (int, float) and env["?zero"] == 0):
            continue
        first = min(pos[env["@p"]], pos[env["@ne"]])
        if any(not is_pure(m) for m in nodes[first:pos[n]] if m.op == "call_function"):
            continue  # a write between the reads and the gradient would be reordered
        with graph.inserting_before(n):
            new = graph.call_function(_CrossEntropyGrad.apply, (x, t, env["?ii"], cls, g))
        new.meta.update(n.meta)
        rg[new] = False
        n.replace_all_uses_with(new)
        changed += 1
    if changed:
        dce(graph)
    return changed
