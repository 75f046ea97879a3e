"""``ember.autograd.functional``: jacobian, hessian, vjp, jvp, hvp, vhp, built on ``grad``
(jvp uses the double-backward trick, so it needs only reverse mode)."""

from __future__ import annotations

from .._tensor import Tensor
from .engine import grad as _grad
from .grad_mode import enable_grad


def _tup(x):
    return (x,) if isinstance(x, Tensor) else tuple(x)


def _prep(inputs, create_graph):
    return tuple(x.detach().requires_grad_(True) if not create_graph or not x._rg else x
                 for x in _tup(inputs))


def _zeros_if_none(gs, like, strict=False, who="The output of the user-provided function",
                   what="input"):
    """Replace missing gradients by zeros; ``strict`` refuses them, as PyTorch's does."""
    from .. import zeros_like
    if strict:
        for i, g in enumerate(gs):
            if g is None:
                raise RuntimeError(f"{who} is independent of {what} {i}. This is not allowed "
                                   "in strict mode.")
    return tuple(zeros_like(x) if g is None else g for g, x in zip(gs, like))


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(outputs, v^T J)."""
    single = isinstance(inputs, Tensor)
    with enable_grad():
        ins = _prep(inputs, create_graph)
        out = func(*ins)
        outs = _tup(out)
        if v is None:
            if any(o.numel() != 1 for o in outs):
                raise RuntimeError("The vector v can only be None if the user-provided function "
                                   "returns a single Tensor with a single element.")
        vs = _tup(v) if v is not None else (None,) * len(outs)
        used = [(o, vv) for o, vv in zip(outs, vs) if o.requires_grad]
        gs = _grad([o for o, _ in used], ins, [vv for _, vv in used],
                   create_graph=create_graph, allow_unused=True) if used else (None,) * len(ins)
    gs = _zeros_if_none(gs, ins, strict)
    res_out = out if create_graph else _detach(out)
    return res_out, (gs[0] if single else gs)


def _detach(x):
    if isinstance(x, Tensor):
        return x.detach()
    return tuple(o.detach() for o in x)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(outputs, J v) in one forward-mode pass (``forward_ad``); inside an open dual level,
    by the double-backward trick (two reverse passes) instead."""
    from . import forward_ad as fwAD
    if fwAD._CURRENT[0] is None:
        return _jvp_forward(func, inputs, v, create_graph, strict)
    return _jvp_double_backward(func, inputs, v, create_graph, strict)


def _default_v(ins, v, who="input to the user-provided function"):
    if v is not None:
        vs = _tup(v)
        if len(vs) != len(ins):
            raise RuntimeError(f"The given v should contain a single Tensor per input, got "
                               f"{len(vs)} for {len(ins)} inputs")
        for x, t in zip(ins, vs):
            if tuple(t.shape) != tuple(x.shape):
                raise RuntimeError(f"Mismatch in shape: v has a shape of {tuple(t.shape)} and "
                                   f"the {who} has a shape of {tuple(x.shape)}.")
        return vs
    if any(x.numel() != 1 for x in ins):
        raise RuntimeError("The vector v can only be None if the input to the user-provided "
                           "function is a single Tensor with a single element.")
    from .. import ones_like
    return tuple(ones_like(x) for x in ins)


def _jvp_forward(func, inputs, v, create_graph, strict):
    from . import forward_ad as fwAD
    from .. import zeros_like
    ins = _prep(inputs, create_graph) if create_graph else tuple(x.detach()
                                                                for x in _tup(inputs))
    vs = _default_v(ins, v)
    with fwAD.dual_level():
        out = func(*[fwAD.make_dual(x, t) for x, t in zip(ins, vs)])
        outs = _tup(out)
        prims, tans = [], []
        for i, o in enumerate(outs):
            p, t = fwAD.unpack_dual(o)
            if t is None:
                if strict:
                    raise RuntimeError(f"The output of the user-provided function is "
                                       f"independent of input {i}. This is not allowed in "
                                       "strict mode.")
                t = zeros_like(o)
            prims.append(p if create_graph else p.detach())
            tans.append(t if create_graph else t.detach())
    if isinstance(out, Tensor):
        return prims[0], tans[0]
    return tuple(prims), tuple(tans)


def _jvp_double_backward(func, inputs, v=None, create_graph=False, strict=False):
    """(outputs, J v), via two reverse passes."""
    from .. import zeros_like
    with enable_grad():
        ins = _prep(inputs, create_graph)
        out = func(*ins)
        outs = _tup(out)
        if v is None:
            if any(x.numel() != 1 for x in ins):
                raise RuntimeError("The vector v can only be None if the input to the "
                                   "user-provided function is a single Tensor with a single "
                                   "element.")
            from .. import ones_like
            v = tuple(ones_like(x) for x in ins)
        us = tuple(zeros_like(o).requires_grad_(True) for o in outs)
        used = [(o, u) for o, u in zip(outs, us) if o.requires_grad]
        gs = _grad([o for o, _ in used], ins, [u for _, u in used], create_graph=True,
                   allow_unused=True) if used else (None,) * len(ins)
        pairs = [(g, vv) for g, vv in zip(gs, _tup(v)) if g is not None]
        if pairs:
            jv = _grad([g for g, _ in pairs], us, [vv for _, vv in pairs],
                       create_graph=create_graph, allow_unused=True)
        else:
            jv = (None,) * len(us)
    jv = _zeros_if_none(jv, outs, strict, "The gradient with respect to the input", "output")
    res_out = out if create_graph else _detach(out)
    return res_out, (jv[0] if isinstance(out, Tensor) else jv)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy="reverse-mode"):
    """Jacobian of ``func`` at ``inputs``; nested tuples follow PyTorch's layout.

    ``strategy="forward-mode"`` (with ``vectorize=True``, as PyTorch requires) builds it from
    forward-mode jvps, one per input element (cheaper than reverse mode when the inputs are
    fewer than the outputs)."""
    from .. import stack, zeros
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode". '
                         f'Hint: If your strategy is "{strategy}", you can use it directly.')
    if strategy == "forward-mode":
        if not vectorize:
            raise ValueError("torch.autograd.functional.jacobian: `strategy=\"forward-mode\"` "
                             "requires `vectorize=True`.")
        if create_graph:
            raise NotImplementedError("torch.autograd.functional.jacobian: `create_graph=True` "
                                      "and `strategy=\"forward-mode\"` are not supported "
                                      "together (yet).")
        return _jacobian_forward(func, inputs, strict)
    single_in = isinstance(inputs, Tensor)
    with enable_grad():
        ins = _prep(inputs, create_graph)
        out = func(*ins)
        single_out = isinstance(out, Tensor)
        outs = _tup(out)
        result = []
        for oi, o in enumerate(outs):
            rows = []
            flat = o.reshape(-1)
            for k in range(flat.numel()):
                if o.requires_grad:
                    gs = _grad(flat[k], ins, retain_graph=True, create_graph=create_graph,
                               allow_unused=True)
                else:  # an output computed without the inputs: its rows are zero
                    gs = (None,) * len(ins)
                rows.append(_zeros_if_none(gs, ins, strict, f"Output {oi} of the user-provided "
                                           "function"))
            per_in = []
            for j, x in enumerate(ins):
                if rows:
                    J = stack([r[j].reshape(-1) for r in rows]).reshape(
                        tuple(o.shape) + tuple(x.shape))
                else:
                    J = zeros(tuple(o.shape) + tuple(x.shape), dtype=x.dtype)
                per_in.append(J if create_graph else J.detach())
            result.append(per_in[0] if single_in else tuple(per_in))
    return result[0] if single_out else tuple(result)


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False,
            outer_jacobian_strategy="reverse-mode"):
    """Hessian of a scalar ``func``."""
    single = isinstance(inputs, Tensor)

    def grad_fn(*xs):
        with enable_grad():
            out = func(*xs)
            gs = _grad(out, xs, create_graph=True, allow_unused=True)
        gs = _zeros_if_none(gs, xs, strict)
        if strict:
            _check_second_order(gs)
        return gs[0] if single else gs
    return jacobian(grad_fn, inputs, create_graph=create_graph, strict=strict)


def _check_second_order(gs):
    for i, g in enumerate(gs):
        if not g.requires_grad:
            raise RuntimeError(
                "While computing the hessian, found that the jacobian of the user-provided "
                f"function with respect to input {i} is independent of the input. This is not "
                "allowed in strict mode. You should ensure that your function is twice "
                "differentiable and that the jacobian depends on the inputs (this would be "
                "violated by a linear function for example).")


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a scalar ``func``: forward over reverse (the tangent of the
    gradient along ``v``); equal to ``vhp`` since H is symmetric."""
    from . import forward_ad as fwAD
    if fwAD._CURRENT[0] is not None or strict:
        return vhp(func, inputs, v, create_graph, strict)
    from .. import zeros_like
    single = isinstance(inputs, Tensor)
    ins = _prep(inputs, True)
    vs = _default_v(ins, v)
    with fwAD.dual_level(), enable_grad():
        duals = [fwAD.make_dual(x, t) for x, t in zip(ins, vs)]
        out = func(*duals)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise RuntimeError("The function given to hvp should return a single Tensor "
                               "containing a single element")
        gs = _grad(out, duals, create_graph=True, allow_unused=True)
        hv = []
        for g, x in zip(gs, ins):
            t = fwAD.unpack_dual(g).tangent if g is not None else None
            t = zeros_like(x) if t is None else t
            hv.append(t if create_graph else t.detach())
        res_out = fwAD.unpack_dual(out).primal
    res_out = res_out if create_graph else res_out.detach()
    return res_out, (hv[0] if single else tuple(hv))


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a scalar ``func``."""
    single = isinstance(inputs, Tensor)
    with enable_grad():
        ins = _prep(inputs, True)
        out = func(*ins)
        gs = _grad(out, ins, create_graph=True, allow_unused=True)
        if strict:
            _check_second_order(_zeros_if_none(gs, ins, strict))
        pairs = [(g, vv) for g, vv in zip(gs, _tup(v)) if g is not None and g.requires_grad]
        hv = _grad([g for g, _ in pairs], ins, [vv for _, vv in pairs],
                   create_graph=create_graph, allow_unused=True) if pairs else (None,) * len(ins)
    hv = _zeros_if_none(hv, ins, strict)
    res_out = out if create_graph else out.detach()
    return res_out, (hv[0] if single else hv)


def _jacobian_forward(func, inputs, strict):
    """The Jacobian column by column: one forward-mode jvp per input element."""
    from .. import stack, zeros, zeros_like
    from . import forward_ad as fwAD
    single_in = isinstance(inputs, Tensor)
    ins = tuple(x.detach() for x in _tup(inputs))
    cols = [[] for _ in ins]  # per input: per element, the tuple of output tangents
    out = None
    for j, x in enumerate(ins):
        for k in range(x.numel()):
            e = zeros_like(x).reshape(-1)
            e[k] = 1
            with fwAD.dual_level():
                duals = [fwAD.make_dual(y, e.reshape(x.shape)) if i == j else y
                         for i, y in enumerate(ins)]
                out = func(*duals)
                outs = _tup(out)
                ts = []
                for oi, o in enumerate(outs):
                    p, t = fwAD.unpack_dual(o)
                    if t is None:
                        if strict:
                            raise RuntimeError(f"Output {oi} of the user-provided function is "
                                               f"independent of input {j}. This is not allowed "
                                               "in strict mode.")
                        t = zeros_like(p)
                    ts.append(t.detach())
            cols[j].append(ts)
    if out is None:
        out = func(*ins)
    outs = _tup(out)
    result = []
    for oi, o in enumerate(outs):
        per_in = []
        for j, x in enumerate(ins):
            if cols[j]:
                J = stack([c[oi].reshape(-1) for c in cols[j]], dim=-1)
                J = J.reshape(tuple(o.shape) + tuple(x.shape))
            else:
                J = zeros(tuple(o.shape) + tuple(x.shape), dtype=x.dtype)
            per_in.append(J)
        result.append(per_in[0] if single_in else tuple(per_in))
    return result[0] if isinstance(out, Tensor) else tuple(result)
