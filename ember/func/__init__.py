"""``ember.func``: composable function transforms (PyTorch's ``torch.func``).

``grad``, ``grad_and_value``, ``vjp``, ``jvp``, ``linearize``, ``jacrev``, ``jacfwd``,
``hessian``, ``vmap``, ``functional_call``, ``stack_module_state`` and
``replace_all_batch_norm_modules_``, with PyTorch's signatures.

How they are built:
* ``vmap`` is a level of the transform stack on the dispatch path (``ember.func._vmap``):
  batching rules move a batch dimension through each op; ops without a rule loop.
* ``jvp`` is forward-mode AD (``ember.autograd.forward_ad``); ``jacfwd`` is ``vmap`` of it.
* ``grad``/``vjp`` record the ordinary (physical) autograd graph and take its gradient;
  under ``vmap``, inputs are differentiated per example: an input not batched at an active
  vmap level is expanded along it first, so the gradient keeps one slice per example.
  ``jacrev`` is ``vmap`` of ``vjp``: the backward ops run batched over the cotangents.
Arguments and outputs may be pytrees (nested tuples, lists and dicts of tensors).
"""

from __future__ import annotations

import functools

from .._tensor import Tensor
from ..autograd import forward_ad as _fad
from ..autograd.grad_mode import GradMode, enable_grad
from ..nn.utils.stateless import functional_call
from ._vmap import BatchedTensor, VmapLevel, wrap as _wrap

__all__ = ["grad", "grad_and_value", "vjp", "jvp", "linearize", "jacrev", "jacfwd", "hessian",
           "vmap", "functional_call", "stack_module_state", "replace_all_batch_norm_modules_"]


# ---------------------------------------------------------------------- pytrees
def tree_flatten(tree):
    """(leaves, spec) for nested tuples/lists/dicts; anything else is a leaf."""
    if isinstance(tree, (tuple, list)):
        leaves, specs = [], []
        for x in tree:
            lv, sp = tree_flatten(x)
            leaves += lv
            specs.append(sp)
        kind = type(tree) if type(tree) in (tuple, list) else tuple
        return leaves, (kind, specs, getattr(tree, "_fields", None) and type(tree))
    if isinstance(tree, dict):
        leaves, specs = [], []
        keys = list(tree)
        for k in keys:
            lv, sp = tree_flatten(tree[k])
            leaves += lv
            specs.append(sp)
        return leaves, (dict, specs, keys)
    return [tree], None


def tree_unflatten(leaves, spec):
    it = iter(leaves)

    def build(sp):
        if sp is None:
            return next(it)
        kind, subs, extra = sp
        if kind is dict:
            return {k: build(s) for k, s in zip(extra, subs)}
        items = [build(s) for s in subs]
        if extra is not None:  # a named tuple
            return extra(*items)
        return kind(items)
    return build(spec)


def _tree_map(fn, tree):
    leaves, spec = tree_flatten(tree)
    return tree_unflatten([fn(x) for x in leaves], spec)


# ---------------------------------------------------------------------- levels and physics
def _vmap_levels():
    return [lv for lv in _fad.active_levels() if lv.kind == "vmap"]


def _peel(x):
    """(physical tensor, [levels it is batched at, outermost first])."""
    levels = []
    while type(x) is BatchedTensor:
        levels.append(x._level)
        x = x._value
    return x, levels[::-1]


def _rewrap(p, levels):
    for lv in levels:
        p = _wrap(p, lv)
    return p


def _batch_all(x, levels):
    """The physical value of ``x`` batched at every level in ``levels`` (by id order), missing
    levels expanded; returns the physical tensor."""
    p, have = _peel(x)
    order = sorted(levels, key=lambda lv: lv.id)
    have_ids = {lv.id for lv in have}
    for i, lv in enumerate(order):
        if lv.id not in have_ids:
            p = p.unsqueeze(i)
            shape = list(p.shape)
            shape[i] = lv.size
            p = p.expand(tuple(shape))
    return p, order


def _needed_levels(trees):
    """The active vmap levels at which some leaf of ``trees`` is batched, by id."""
    active = _vmap_levels()
    if not active:
        return []
    found = set()
    for tree in trees:
        for x in tree_flatten(tree)[0]:
            if type(x) is BatchedTensor:
                found.update(lv.id for lv in _peel(x)[1])
    return [lv for lv in active if lv.id in found]


def _out_levels(tree):
    ids = set()
    for x in tree_flatten(tree)[0]:
        if type(x) is BatchedTensor:
            ids.update(lv.id for lv in _peel(x)[1])
    return ids


def _canon(x):
    """``x`` with its wrappers in canonical order (innermost = lowest level id)."""
    if type(x) is not BatchedTensor:
        return x
    wrappers = []
    p = x
    while type(p) is BatchedTensor:
        wrappers.append(p._level)
        p = p._value
    wrappers = wrappers[::-1]  # innermost first: the physical dims in this order
    order = sorted(range(len(wrappers)), key=lambda i: wrappers[i].id)
    if order != list(range(len(wrappers))):
        p = p.permute(tuple(order) + tuple(range(len(wrappers), p.dim())))
    for i in order:
        p = _wrap(p, wrappers[i])
    return p


_GRAD_DEPTH = [0]


def _needs_graph(*trees):
    """Whether a transform must record its own backward: an outer transform or a caller
    differentiating through it (or forward mode) will use it."""
    if _GRAD_DEPTH[0] > 0 or _fad._CURRENT[0] is not None:
        return True
    if not GradMode.enabled:
        return False
    for tree in trees:
        for x in tree_flatten(tree)[0]:
            if isinstance(x, Tensor) and x.requires_grad:
                return True
    return False


def _prep_input(x, levels, keep):
    """A differentiable stand-in for input ``x``: (logical input, physical grad target)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"Expected the argument to differentiate to be a Tensor, got "
                        f"{type(x).__name__}")
    p, order = _batch_all(x, levels)
    # an input expanded along a vmap level is copied: per-example values in their own memory
    # (NumPy's matmul takes a slow loop on zero-stride operands)
    dense = not p.is_contiguous()
    if keep and p.requires_grad:
        p = p.view_as(p)  # an alias: the caller's graph stays connected
        if dense:
            p = p.contiguous()
    else:
        was = p
        p = p.detach()
        if dense:
            p = p.contiguous()
        if _fad._CURRENT[0] is not None:  # keep the tangent of a dual input (jvp of grad)
            t = _fad._CURRENT[0].get(was)
            if t is not None:
                p = _fad.make_dual(p, t)
        if not p.requires_grad:
            p.requires_grad_(True)
        else:
            p = p.view_as(p)
    if p._data.dtype.kind not in "fc":
        raise RuntimeError("only Tensors of floating point dtype can require gradients")
    return _rewrap(p, order), p, order


def _physical_grads(outs, targets, cotangents, keep):
    """Gradients of physical ``outs`` with respect to physical ``targets``."""
    from ..autograd import grad as _grad
    live = [(o, c) for o, c in zip(outs, cotangents) if o.requires_grad]
    if not live:
        return [None] * len(targets)
    create = keep or any(type(c) is not Tensor for _, c in live)
    return list(_grad([o for o, _ in live], targets, [c for _, c in live],
                      create_graph=create, retain_graph=True, allow_unused=True))


def _finish(g, target, order, keep):
    from .. import zeros_like
    if g is None:
        g = zeros_like(target)
    if not keep:
        g = _detach_physical(g)
    return _canon(_rewrap(g, order))


def _detach_physical(x):
    p, levels = _peel(x)
    if not p.requires_grad:
        return x
    return _rewrap(p.detach(), levels)


def _argnums_tuple(argnums, n):
    if isinstance(argnums, int):
        if not -n <= argnums < n:
            raise RuntimeError(f"Got argnums={argnums}, but only {n} positional inputs")
        return (argnums % n,), True
    if isinstance(argnums, tuple) and argnums:
        for a in argnums:
            if not isinstance(a, int):
                raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {argnums}")
            if not -n <= a < n:
                raise RuntimeError(f"Got argnums={argnums}, but only {n} positional inputs")
        return tuple(a % n for a in argnums), False
    raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {argnums}")


# ---------------------------------------------------------------------- grad, vjp
def grad_and_value(func, argnums=0, has_aux=False):
    """``func``'s gradient with respect to the ``argnums`` inputs, and its value."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nums, single = _argnums_tuple(argnums, len(args))
        keep = _needs_graph([args[i] for i in nums])
        levels = _needed_levels([args, kwargs])
        res = _grad_once(args, kwargs, nums, single, keep, levels)
        if res is None:  # the output is batched where no argument is (a closure): again,
            res = _grad_once(args, kwargs, nums, single, keep, _vmap_levels())  # per example
        return res

    def _grad_once(args, kwargs, nums, single, keep, levels):
        args = list(args)
        prepared = {}
        _GRAD_DEPTH[0] += 1
        try:
            with enable_grad():
                for i in nums:
                    leaves, spec = tree_flatten(args[i])
                    preps = [_prep_input(x, levels, keep) for x in leaves]
                    prepared[i] = (preps, spec)
                    args[i] = tree_unflatten([p[0] for p in preps], spec)
                out = func(*args, **kwargs)
                aux = None
                if has_aux:
                    if not (isinstance(out, tuple) and len(out) == 2):
                        raise RuntimeError("grad_and_value(f)(*args): output of function f "
                                           "should be a tuple: (output, aux) if has_aux is True")
                    out, aux = out
                if not isinstance(out, Tensor):
                    raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return "
                                       f"a Tensor, got {type(out).__name__}")
                if out.dim() != 0:
                    raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return "
                                       f"a scalar Tensor, got tensor with {out.dim()} dims. "
                                       "Maybe you wanted to use the vjp or jacrev APIs instead?")
                if not _out_levels(out) <= {lv.id for lv in levels}:
                    return None
                po, _ = _batch_all(out, levels)
                from .. import ones_like
                targets = [p[1] for i in nums for p in prepared[i][0]]
                gs = _physical_grads([po], targets, [ones_like(po)], keep)
        finally:
            _GRAD_DEPTH[0] -= 1
        it = iter(gs)
        results = []
        for i in nums:
            preps, spec = prepared[i]
            results.append(tree_unflatten([_finish(next(it), p[1], p[2], keep) for p in preps],
                                          spec))
        g = results[0] if single else tuple(results)
        value = out if keep else _detach_tree(out)
        if has_aux:
            return g, (value, _detach_tree(aux) if not keep else aux)
        return g, value
    return wrapper


def _detach_tree(tree):
    def det(x):
        if isinstance(x, Tensor) and type(x) is Tensor and x.requires_grad:
            return x.detach()
        return x
    return _tree_map(det, tree)


def grad(func, argnums=0, has_aux=False):
    """The gradient of a scalar ``func`` with respect to its ``argnums`` inputs."""
    gv = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        g, value = gv(*args, **kwargs)
        if has_aux:
            return g, value[1]
        return g
    return wrapper


def vjp(func, *primals, has_aux=False):
    """``(func(*primals), vjp_fn)``; ``vjp_fn(cotangents)`` returns one gradient per primal."""
    keep = _needs_graph(primals)
    leaves, spec = tree_flatten(primals)
    levels = _needed_levels([primals])
    for attempt in range(2):
        _GRAD_DEPTH[0] += 1
        try:
            with enable_grad():
                preps = [_prep_input(x, levels, True) for x in leaves]
                out = func(*tree_unflatten([p[0] for p in preps], spec))
        finally:
            _GRAD_DEPTH[0] -= 1
        if _out_levels(out) <= {lv.id for lv in levels}:
            break
        levels = _vmap_levels()  # batched through a closure: again, per example
    aux = None
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise RuntimeError("vjp(f, *primals): output of function f should be a tuple: "
                               "(output, aux) if has_aux is True")
        out, aux = out
    out_leaves, out_spec = tree_flatten(out)
    for o in out_leaves:
        if not isinstance(o, Tensor):
            raise RuntimeError(f"vjp(f, *primals): Expected f to be a function that has "
                               f"non-empty output and all outputs are Tensors, got "
                               f"{type(o).__name__}")

    def vjp_fn(*cotangents):
        cts = cotangents[0] if len(cotangents) == 1 and out_spec is None else cotangents
        if out_spec is not None and len(cotangents) == 1:
            cts = cotangents[0]
        ct_leaves, _ = tree_flatten(cts)
        if len(ct_leaves) != len(out_leaves):
            raise RuntimeError(f"Expected pytree structure of cotangents to be the same as "
                               f"pytree structure of outputs to the function ({len(out_leaves)} "
                               f"leaves, got {len(ct_leaves)})")
        cur = _vmap_levels()
        inner = [lv for lv in cur if lv not in levels]  # levels opened since (jacrev's vmap)
        pos, pcs = [], []
        for o, c in zip(out_leaves, ct_leaves):
            if tuple(c.shape) != tuple(o.shape):
                raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of "
                                   f"{tuple(c.shape)} and output[0] has a shape of "
                                   f"{tuple(o.shape)}.")
            po, _ = _batch_all(o, levels)
            pc = _physical_cotangent(c, levels, inner)
            pos.append(po)
            pcs.append(pc)
        keep_now = keep or _needs_graph(cts)
        with enable_grad():
            gs = _physical_grads(pos, [p[1] for p in preps], pcs, True)
        res = []
        for g, p in zip(gs, preps):
            res.append(_finish(g, p[1], p[2], keep_now))
        return tree_unflatten(res, spec)

    value = out if keep else _detach_tree(out)
    if has_aux:
        return value, vjp_fn, aux
    return value, vjp_fn


def _physical_cotangent(c, levels, inner):
    """A cotangent in the physical layout of the primal levels, with the levels opened since
    (higher ids, e.g. jacrev's vmap over cotangents) kept as BatchedTensor wrappers."""
    if not levels:
        return c
    # peel every wrapper, batch at all primal levels, then rewrap the inner levels over the
    # physical primal layout: dims are ordered by level id, so inner levels come after
    have_inner = [lv for lv in _peel(c)[1] if lv in inner]
    full, order = _batch_all(c, levels + have_inner)
    # move the inner levels' dims to the front (lowest id first) and wrap them back
    inner_pos = [i for i, lv in enumerate(order) if lv in have_inner]
    perm = inner_pos + [i for i in range(full.dim()) if i not in inner_pos]
    full = full.permute(tuple(perm)) if inner_pos else full
    res = full
    for lv in sorted(have_inner, key=lambda lv: lv.id):
        res = _wrap(res, lv)
    return res


# ---------------------------------------------------------------------- jvp, linearize
def jvp(func, primals, tangents, *, strict=False, has_aux=False):
    """``(func(*primals), J @ tangents)`` in one forward-mode pass."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise RuntimeError("jvp(f, primals, tangents): Expected primals and tangents to be "
                           "tuples")
    p_leaves, spec = tree_flatten(tuple(primals))
    t_leaves, t_spec = tree_flatten(tuple(tangents))
    if len(p_leaves) != len(t_leaves):
        raise RuntimeError("jvp(f, primals, tangents): Expected primals and tangents to have "
                           "the same python structure")
    for p, t in zip(p_leaves, t_leaves):
        if tuple(p.shape) != tuple(t.shape):
            raise RuntimeError(f"jvp(f, primals, tangents): Expected primals and tangents to "
                               f"have the same shape, got {tuple(p.shape)} and "
                               f"{tuple(t.shape)}")
    keep = _needs_graph(primals, tangents)
    outer = _fad._CURRENT[0]
    if outer is not None:
        # ember has one dual level (as PyTorch's forward_ad): a jvp inside a jvp uses the
        # double-vjp trick through reverse mode instead
        return _jvp_by_vjp(func, primals, tangents, has_aux)
    with _fad.dual_level():
        duals = [_fad.make_dual(p, t) for p, t in zip(p_leaves, t_leaves)]
        out = func(*tree_unflatten(duals, spec))
        aux = None
        if has_aux:
            out, aux = out
        o_leaves, o_spec = tree_flatten(out)
        prim, tans = [], []
        for o in o_leaves:
            up = _fad.unpack_dual(o)
            prim.append(up.primal)
            if up.tangent is None:
                from .. import zeros_like
                tans.append(zeros_like(o))
            else:
                tans.append(up.tangent)
    if not keep:
        prim = [_detach_physical(x) for x in prim]
        tans = [_detach_physical(x) for x in tans]
    res = tree_unflatten(prim, o_spec), tree_unflatten(tans, o_spec)
    if has_aux:
        return res[0], res[1], aux
    return res


def _jvp_by_vjp(func, primals, tangents, has_aux):
    """J t as d/du <vjp(u), t>: for a jvp nested in another one."""
    from .. import zeros_like
    if has_aux:
        out, vjp_fn, aux = vjp(func, *primals, has_aux=True)
    else:
        out, vjp_fn = vjp(func, *primals)
    o_leaves, o_spec = tree_flatten(out)
    with enable_grad():
        us = [zeros_like(o).requires_grad_(True) for o in o_leaves]
        gs = vjp_fn(tree_unflatten(us, o_spec))
        g_leaves = tree_flatten(gs)[0]
        t_leaves = tree_flatten(tuple(tangents))[0]
        pairs = [(g, t) for g, t in zip(g_leaves, t_leaves) if g.requires_grad]
        from ..autograd import grad as _grad
        jv = _grad([g for g, _ in pairs], us, [t for _, t in pairs], create_graph=True,
                   allow_unused=True) if pairs else [None] * len(us)
    jv = [zeros_like(o) if j is None else j for j, o in zip(jv, o_leaves)]
    res = out, tree_unflatten(jv, o_spec)
    return (res[0], res[1], aux) if has_aux else res


def linearize(func, *primals):
    """``(func(*primals), jvp_fn)``: ``jvp_fn(*tangents)`` evaluates the jvp at ``primals``."""
    out = func(*primals)

    def jvp_fn(*tangents):
        return jvp(func, primals, tangents)[1]
    return out, jvp_fn


# ---------------------------------------------------------------------- Jacobians
def _basis(o_leaves):
    """One-hot cotangents/tangents for every element of ``o_leaves``, stacked: (N, *shape)."""
    from .. import eye, zeros
    total = sum(o.numel() for o in o_leaves)
    dtype = o_leaves[0].dtype if o_leaves else None
    I = eye(total, dtype=dtype)
    out, start = [], 0
    for o in o_leaves:
        n = o.numel()
        if n:
            out.append(I[:, start:start + n].reshape((total,) + tuple(o.shape)))
        else:
            out.append(zeros((total,) + tuple(o.shape), dtype=o.dtype))
        start += n
    return out, total


def jacrev(func, argnums=0, *, has_aux=False, chunk_size=None, _preallocate_and_copy=False):
    """The Jacobian by reverse mode: ``vmap`` of ``vjp`` over the output's basis."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nums, single = _argnums_tuple(argnums, len(args))

        def f(*diff):
            a = list(args)
            for i, d in zip(nums, diff):
                a[i] = d
            return func(*a, **kwargs)
        res = vjp(f, *[args[i] for i in nums], has_aux=has_aux)
        out, vjp_fn = res[0], res[1]
        o_leaves, o_spec = tree_flatten(out)
        basis, total = _basis(o_leaves)
        grads = vmap(vjp_fn, chunk_size=chunk_size)(tree_unflatten(basis, o_spec)) \
            if total else None
        # grads: per primal, a tree of (total, *input shape); split rows per output
        in_trees = [args[i] for i in nums]
        per_out = []
        start = 0
        for o in o_leaves:
            n = o.numel()
            per_in = []
            for k, tree in enumerate(in_trees):
                leaves, spec = tree_flatten(tree)
                g_leaves = tree_flatten(grads[k])[0] if grads is not None else None
                js = []
                for j, x in enumerate(leaves):
                    if g_leaves is None:
                        from .. import zeros
                        js.append(zeros(tuple(o.shape) + tuple(x.shape), dtype=x.dtype))
                    else:
                        js.append(g_leaves[j][start:start + n].reshape(
                            tuple(o.shape) + tuple(x.shape)))
                per_in.append(tree_unflatten(js, spec))
            per_out.append(per_in[0] if single else tuple(per_in))
            start += n
        jac = tree_unflatten(per_out, o_spec)
        if has_aux:
            return jac, res[2]
        return jac
    return wrapper


def jacfwd(func, argnums=0, has_aux=False, *, randomness="error"):
    """The Jacobian by forward mode: ``vmap`` of ``jvp`` over the inputs' basis."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nums, single = _argnums_tuple(argnums, len(args))
        primals = [args[i] for i in nums]
        p_leaves, p_spec = tree_flatten(tuple(primals))
        basis, total = _basis(p_leaves)

        def f(*diff):
            a = list(args)
            for i, d in zip(nums, tree_unflatten(list(diff), p_spec)):
                a[i] = d
            return func(*a, **kwargs)

        def push(*ts):
            r = jvp(f, tuple(p_leaves), tuple(ts), has_aux=has_aux)
            return (r[1], r[0]) + ((r[2],) if has_aux else ())
        res = vmap(push, randomness=randomness, out_dims=(0, None) + ((None,) if has_aux
                                                                       else ()))(*basis)
        tans, out = res[0], res[1]
        o_leaves, o_spec = tree_flatten(out)
        t_leaves = tree_flatten(tans)[0]
        per_out = []
        for o, t in zip(o_leaves, t_leaves):
            # t: (total, *out shape) -> per input leaf (*out shape, *input shape)
            js = []
            start = 0
            for x in p_leaves:
                n = x.numel()
                block = t[start:start + n]
                block = block.reshape((n,) + tuple(o.shape)).movedim(0, -1)
                js.append(block.reshape(tuple(o.shape) + tuple(x.shape)))
                start += n
            trees = tree_unflatten(js, p_spec)
            per_out.append(trees[0] if single else tuple(trees))
        jac = tree_unflatten(per_out, o_spec)
        if has_aux:
            return jac, res[2]
        return jac
    return wrapper


def hessian(func, argnums=0):
    """The Hessian: ``jacfwd(jacrev(func))`` (forward over reverse)."""
    return jacfwd(jacrev(func, argnums), argnums)


# ---------------------------------------------------------------------- vmap
def _dims_for(in_dims, args):
    if isinstance(in_dims, int) or in_dims is None:
        return [in_dims] * len(args)
    if not isinstance(in_dims, (tuple, list)) or len(in_dims) != len(args):
        raise ValueError(f"vmap(f, in_dims={in_dims}, ...)(<inputs>): in_dims is not "
                         f"compatible with the structure of `inputs`. in_dims has structure "
                         f"{in_dims} but inputs has {len(args)} elements")
    return list(in_dims)


def _broadcast_dims(d, arg):
    """Per-leaf dims of one argument: an int/None for all its leaves, or a matching tree."""
    leaves, spec = tree_flatten(arg)
    if d is None or isinstance(d, int):
        return leaves, [d] * len(leaves), spec
    d_leaves, _ = tree_flatten(d)
    if len(d_leaves) != len(leaves):
        raise ValueError(f"vmap: in_dims {d} does not match the structure of its input")
    return leaves, d_leaves, spec


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """Map ``func`` over a batch dimension of its inputs (PyTorch's ``torch.func.vmap``)."""
    if randomness not in ("error", "different", "same"):
        raise RuntimeError(f"Only allowed values for randomness are 'error', 'different', or "
                           f"'same'. Got {randomness}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"vmap: chunk_size should be None or greater than 0. (got "
                         f"{chunk_size})")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        dims = _dims_for(in_dims, args)
        flat, flat_dims, specs = [], [], []
        for a, d in zip(args, dims):
            leaves, ds, spec = _broadcast_dims(d, a)
            flat.append(leaves)
            flat_dims.append(ds)
            specs.append(spec)
        size = None
        sizes = []
        for leaves, ds in zip(flat, flat_dims):
            for x, d in zip(leaves, ds):
                if d is None:
                    continue
                if not isinstance(x, Tensor):
                    raise ValueError(f"vmap: Got in_dim={d} for an input but the input is of "
                                     f"type {type(x).__name__}. We cannot vmap over non-Tensor "
                                     "arguments, please use None as the respective in_dim")
                if not -x.dim() <= d < max(x.dim(), 1) or x.dim() == 0:
                    raise ValueError(f"vmap: Got in_dim={d} for some input, but that input is "
                                     f"a Tensor of dimensionality {x.dim()} so expected in_dim "
                                     f"to satisfy -{x.dim()} <= in_dim < {x.dim()}.")
                sizes.append(x.shape[d])
        if not sizes:
            raise ValueError("vmap: at least one input must be batched (in_dims all None)")
        if len(set(sizes)) != 1:
            raise ValueError(f"vmap: Expected all tensors to have the same size in the mapped "
                             f"dimension, got sizes {sizes} for the mapped dimension")
        size = sizes[0]
        if chunk_size is not None and chunk_size < size:
            return _chunked(wrapper_one, flat, flat_dims, specs, size, chunk_size, kwargs)
        return wrapper_one(flat, flat_dims, specs, size, kwargs)

    def wrapper_one(flat, flat_dims, specs, size, kwargs):
        level = _fad.push_level(VmapLevel(size, randomness))
        guard = _RandomGuard(randomness, level)
        try:
            args = []
            for leaves, ds, spec in zip(flat, flat_dims, specs):
                new = [_wrap(x.movedim(d, 0) if d != 0 else x, level) if d is not None else x
                       for x, d in zip(leaves, ds)]
                args.append(tree_unflatten(new, spec))
            with guard:
                out = func(*args, **kwargs)
        finally:
            _fad.pop_level(level)
        return _unwrap_out(out, level, out_dims, size)

    return wrapper


class _RandomGuard:
    """vmap's ``randomness`` for draws from the default generator (PyTorch's semantics):
    "error" refuses them; "same" lets one draw serve the whole batch (ember's random
    functions draw at the logical shape); "different" draws per example: the random
    functions and random ops are run once per example by the vmap level
    (``VmapLevel.draw_each``), and any other draw raises rather than silently sharing."""

    def __init__(self, randomness, level=None):
        self.randomness = randomness
        self.level = level

    def __enter__(self):
        from .. import _random
        from ..ops import random as R
        self.gen = _random.default_generator
        self.saved = self.gen._rng
        if self.randomness != "same":
            self.gen._rng = _NoDraws(self.saved, self.randomness)
        if self.level is not None:
            # "error" levels too: a random function refuses before it reads a batched input;
            # "same" levels draw once (``VmapLevel._draw_once``)
            self.level.rng = self.saved
            R._PER_EXAMPLE.append(self.level)

    def __exit__(self, *exc):
        from ..ops import random as R
        if self.level in R._PER_EXAMPLE:
            R._PER_EXAMPLE.remove(self.level)
        if isinstance(self.gen._rng, _NoDraws):
            self.gen._rng = self.saved
        return False


_ERROR_MODE_MSG = ("vmap: called random operation while in randomness error mode. Please either "
                   "use the 'same' or 'different' randomness flags on vmap or perform the "
                   "randomness operation out of vmap")


class _NoDraws:
    def __init__(self, rng, randomness):
        self._rng, self._randomness = rng, randomness

    def __getattr__(self, name):
        if name == "bit_generator":
            return self._rng.bit_generator
        if self._randomness == "error":
            raise RuntimeError(_ERROR_MODE_MSG)
        raise NotImplementedError(
            "vmap(randomness='different'): this random operation draws outside ember's "
            "per-example random functions (rand, randn, randint, randperm, normal, bernoulli, "
            "multinomial, poisson, the *_like forms, the in-place fillers, dropout); draw the "
            "random numbers outside vmap and pass them in batched, or use randomness='same'")


def _chunked(run, flat, flat_dims, specs, size, chunk, kwargs):
    from .. import cat
    outs = []
    for s in range(0, size, chunk):
        n = min(chunk, size - s)
        sub = [[x.narrow(d, s, n) if d is not None else x for x, d in zip(leaves, ds)]
               for leaves, ds in zip(flat, flat_dims)]
        outs.append(run(sub, flat_dims, specs, n, kwargs))
    first_leaves, spec = tree_flatten(outs[0])
    # out_dims are applied per chunk; the chunks join along them
    per = [tree_flatten(o)[0] for o in outs]
    joined = []
    for i in range(len(first_leaves)):
        joined.append(cat([p[i] for p in per], dim=0) if isinstance(first_leaves[i], Tensor)
                      else first_leaves[i])
    return tree_unflatten(joined, spec)


def _out_dims_per_leaf(out, out_dims):
    """One out_dim per output leaf: an int/None for all, or a tree matching the output
    whose entries may stand for whole subtrees (PyTorch's prefix matching)."""
    leaves = tree_flatten(out)[0]
    if out_dims is None or isinstance(out_dims, int):
        return [out_dims] * len(leaves)
    if isinstance(out, (tuple, list)) and isinstance(out_dims, (tuple, list)) and \
            len(out) == len(out_dims):
        ods = []
        for o, d in zip(out, out_dims):
            ods += _out_dims_per_leaf(o, d)
        return ods
    if isinstance(out, dict) and isinstance(out_dims, dict) and set(out) == set(out_dims):
        ods = []
        for k in out:
            ods += _out_dims_per_leaf(out[k], out_dims[k])
        return ods
    if not isinstance(out, (tuple, list, dict)) and isinstance(out_dims, (tuple, list)) and \
            len(out_dims) == 1:
        return _out_dims_per_leaf(out, out_dims[0])
    raise ValueError(f"vmap: out_dims={out_dims} is not compatible with the structure of the "
                     "outputs")


def _unwrap_out(out, level, out_dims, size):
    leaves, spec = tree_flatten(out)
    ods = _out_dims_per_leaf(out, out_dims)
    res = []
    for x, d in zip(leaves, ods):
        if not isinstance(x, Tensor):
            if d is None:
                res.append(x)
                continue
            raise ValueError(f"vmap: the function must only return Tensors, got type "
                             f"{type(x)}. Did you mean to set out_dims= to None for output?")
        batched = type(x) is BatchedTensor and x._level is level
        if d is None:
            if batched:
                raise ValueError("vmap: Returning a batched tensor with out_dims=None is not "
                                 "supported: the output varies across the batch")
            res.append(x)
            continue
        if batched:
            v = x._value
        else:
            v = x.unsqueeze(0).expand((size,) + tuple(x.shape))
        n = v.dim()
        dd = d % n if -n <= d < n else d
        res.append(v.movedim(0, dd) if dd != 0 else v)
    return tree_unflatten(res, spec)


# ---------------------------------------------------------------------- modules
def stack_module_state(models):
    """``(params, buffers)``: each model's parameters and buffers stacked along a new dim 0,
    ready for ``vmap(functional_call(...))`` over an ensemble."""
    from .. import stack
    models = list(models)
    if not models:
        raise RuntimeError("stack_module_state: Expected at least one model, got 0.")
    if not all(m.training == models[0].training for m in models):
        raise RuntimeError("stack_module_state: Expected all models to have the same training/"
                           "eval mode.")
    names = [n for n, _ in models[0].named_parameters()]
    params = {}
    for n in names:
        ps = [dict(m.named_parameters())[n] for m in models]
        st = stack([p.detach() for p in ps])
        if ps[0].requires_grad:
            st.requires_grad_(True)
        params[n] = st
    buffers = {n: stack([dict(m.named_buffers())[n] for m in models])
               for n, _ in models[0].named_buffers()}
    return params, buffers


def replace_all_batch_norm_modules_(root):
    """Make every batch norm of ``root`` stop tracking running stats (in place), so that it
    can run under ``vmap``; returns ``root``."""
    from ..nn.modules.batchnorm import _BatchNorm
    for m in root.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
            m.track_running_stats = False
    return root
