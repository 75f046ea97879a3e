"""The DTensor dispatch mode: every op that receives a DTensor runs its sharding rule.

Installed into ``Node.apply``'s ``_MODES`` when the first DTensor is made (so programs that
never make one pay nothing). An op without a rule redistributes its DTensor arguments to
``Replicate`` (every rank then holds whole values), runs on them and returns a replicated
DTensor: correct, at the cost of the gathers. In-place ops without a rule raise
NotImplementedError naming the op, since writing a whole value into a shard would be wrong.
"""

from __future__ import annotations

import warnings

from ..._tensor import Tensor
from ...autograd import graph
from ._api import DTensor, DTensorSpec, _wrap
from .placement_types import Replicate

_RULES = {}          # op class -> rule(cls, args, kwargs) returning the result
_INPLACE_RULES = {}  # op class -> rule(cls, target, args, kwargs)
_WARNED = set()


def register(*classes):
    def deco(fn):
        for c in classes:
            _RULES[c] = fn
        return fn
    return deco


def _has_dtensor(args, kwargs):
    for a in args:
        if isinstance(a, DTensor):
            return True
        if type(a) in (list, tuple):
            for b in a:
                if isinstance(b, DTensor):
                    return True
    for a in kwargs.values():
        if isinstance(a, DTensor):
            return True
    return False


def _find_mesh(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, DTensor):
            return a._spec.mesh
        if type(a) in (list, tuple):
            for b in a:
                if isinstance(b, DTensor):
                    return b._spec.mesh
    return None


def _rule_for(cls):
    for c in cls.__mro__:
        r = _RULES.get(c)
        if r is not None:
            return r
    return None


class DTensorMode:
    """The mode object in ``_MODES`` (see ``ember/autograd/graph.py``)."""

    def on_op(self, cls, args, kwargs, run):
        if not _has_dtensor(args, kwargs):
            return run()
        rule = _rule_for(cls)
        if rule is not None:
            out = rule(cls, args, kwargs)
            if out is not NotImplemented:
                return out
        return fallback(cls, args, kwargs)

    def on_inplace(self, cls, target, args, kwargs, run):
        if not isinstance(target, DTensor) and not _has_dtensor(args, kwargs):
            return run()
        if not isinstance(target, DTensor):
            raise RuntimeError(f"in-place {_op_name(cls)}: cannot write a DTensor result into "
                               f"a plain Tensor")
        rule = _INPLACE_RULES.get(cls) or _inplace_elementwise
        return rule(cls, target, args, kwargs)


def _op_name(cls):
    return getattr(cls, "__name__", str(cls))


def _replicate_all(a):
    if isinstance(a, DTensor):
        mesh = a._spec.mesh
        if all(isinstance(p, Replicate) for p in a._spec.placements):
            return a._local
        return a.redistribute(mesh, [Replicate()] * mesh.ndim)._local
    if type(a) in (list, tuple):
        return type(a)(_replicate_all(b) for b in a)
    return a


def _wrap_replicated(out, mesh):
    if isinstance(out, Tensor) and not isinstance(out, DTensor):
        spec = DTensorSpec(mesh, [Replicate()] * mesh.ndim, tuple(out.shape), out.dtype)
        return _wrap(out, spec)
    if type(out) in (list, tuple):
        return type(out)(_wrap_replicated(o, mesh) for o in out)
    return out


def fallback(cls, args, kwargs):
    """No rule: run on whole (replicated) values and return a replicated result."""
    name = _op_name(cls)
    if name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(f"DTensor: op {name} has no sharding rule; its DTensor inputs are "
                      f"redistributed to Replicate (all-gathered) and it runs on whole values",
                      stacklevel=3)
    mesh = _find_mesh(args, kwargs)
    largs = [_replicate_all(a) for a in args]
    lkw = {k: _replicate_all(v) for k, v in kwargs.items()}
    return _wrap_replicated(cls.apply(*largs, **lkw), mesh)


def _inplace_elementwise(cls, target, args, kwargs):
    from . import _rules
    return _rules.inplace_pointwise(cls, target, args, kwargs)


_MODE = DTensorMode()


def install():
    if _MODE not in graph._MODES:
        graph._MODES.append(_MODE)
        from . import _rules  # noqa: F401  (registers the sharding rules)
