"""``ember.compiler``: PyTorch's ``torch.compiler`` namespace over ember's compiler.

``ember.compile(fn)`` captures ``fn`` at the dispatch level (forward, backward, optimizer
steps) into an ``ember.fx`` graph per specialisation, guards every replay and, with the
default backend (``"inductor"``), runs fused elementwise regions as generated C kernels (see
``ember.compiler._codegen``). Backends: ``"inductor"`` (C kernels; NumPy kernels when no C
compiler exists), ``"numpy"`` (NumPy kernels), ``"aot_eager"`` (the captured graph replayed op
by op), ``"eager"`` (the function as is).
"""

from __future__ import annotations

import functools

from ..export import _capture
from ._core import _COMPILING, _DISABLED, _GraphBreak

__all__ = ["reset", "disable", "is_compiling", "is_dynamo_compiling", "allow_in_graph",
           "cudagraph_mark_step_begin", "list_backends"]


def reset():
    """Forget every compiled function's captured graphs (they recompile on their next call)
    and the in-process kernel table (the disk cache stays)."""
    from . import _codegen
    from ._core import _ALL
    for c in list(_ALL):
        c.reset()
    _codegen._LOADED.clear()


def is_compiling():
    """True while ``ember.compile`` captures a function."""
    return _COMPILING[0] > 0


is_dynamo_compiling = is_compiling


def list_backends(exclude_tags=()):
    """The backend names ``ember.compile`` accepts."""
    return ["aot_eager", "eager", "inductor", "numpy"]


def cudagraph_mark_step_begin():
    """CUDA graphs' step marker: there are none on CPU, so nothing to do."""


def disable(fn=None, recursive=True, *, reason=None):
    """Run ``fn`` eagerly, never compiled. Called while a compiled function is being
    captured, it abandons that capture (the enclosing function then runs eagerly), since
    the capture would otherwise record ``fn``'s ops. Usable as ``@disable`` or
    ``@disable(reason=...)``."""
    if fn is None:
        return functools.partial(disable, recursive=recursive, reason=reason)
    inner = getattr(fn, "fn", fn)  # a CompiledFunction: its original

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        if _COMPILING[0] and _capture._ACTIVE:
            raise _GraphBreak(f"called {getattr(inner, '__qualname__', inner)!s}, marked "
                              f"ember.compiler.disable" + (f" ({reason})" if reason else ""))
        _DISABLED[0] += 1
        try:
            return inner(*args, **kwargs)
        finally:
            _DISABLED[0] -= 1
    wrapper._ember_compile_disabled = True
    return wrapper


def allow_in_graph(fn):
    """Record calls to ``fn`` inside a compiled function as one graph node that calls ``fn``
    at replay (its ops are not captured one by one). ``fn`` must return tensors computed
    only from its arguments; its ops' backward cannot be captured (use it in forward or
    inference code)."""
    from ..autograd import graph as _dispatch

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        mode = _capture._ACTIVE[-1] if _capture._ACTIVE else None
        if mode is None:
            return fn(*args, **kwargs)
        fx_args, fx_kwargs = mode.arg(args), mode.arg(kwargs)
        mode._sync_grad_mode()
        _capture._ACTIVE.pop()
        _dispatch._MODES.remove(mode)
        mode.in_op += 1  # random draws inside fn belong to fn
        try:
            out = fn(*args, **kwargs)
        finally:
            mode.in_op -= 1
            _dispatch._MODES.append(mode)
            _capture._ACTIVE.append(mode)
        node = mode.graph.call_function(fn, fx_args, fx_kwargs)
        mode._bind_outputs(out, node, mode._depends((fx_args, fx_kwargs)))
        return out
    return wrapper
