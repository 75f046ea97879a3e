"""``torch.overrides``: the ``__torch_function__`` protocol's helpers. ember has no
``__torch_function__`` dispatch, so nothing ever has a torch function: the checks answer False
and ``handle_torch_function`` is never reached by correct callers."""

from __future__ import annotations

__all__ = ["get_ignored_functions", "get_overridable_functions", "get_testing_overrides",
           "handle_torch_function", "has_torch_function", "resolve_name", "is_tensor_like",
           "is_tensor_method_or_property", "wrap_torch_function", "enable_reentrant_dispatch",
           "redispatch_function"]


def has_torch_function(relevant_args):
    """False: ember dispatches no ``__torch_function__`` overrides."""
    return False


def has_torch_function_unary(arg):
    return False


def has_torch_function_variadic(*args):
    return False


def handle_torch_function(public_api, relevant_args, *args, **kwargs):
    raise NotImplementedError("ember does not dispatch __torch_function__ overrides "
                              "(has_torch_function() is always False)")


def is_tensor_like(inp):
    """Whether ``inp`` is an ember Tensor (or a subclass)."""
    from ._tensor import Tensor
    return isinstance(inp, Tensor)


def is_tensor_method_or_property(func):
    from ._tensor import Tensor
    return getattr(Tensor, getattr(func, "__name__", ""), None) is func


def resolve_name(f):
    mod = getattr(f, "__module__", None)
    return f"{mod}.{f.__qualname__}" if mod and hasattr(f, "__qualname__") else None


def wrap_torch_function(dispatcher):
    return lambda func: func


def get_ignored_functions():
    return set()


def get_overridable_functions():
    return {}


def get_testing_overrides():
    return {}


def enable_reentrant_dispatch():
    import contextlib
    return contextlib.nullcontext()


def redispatch_function(func, *args, **kwargs):
    return func(*args, **kwargs)


class TorchFunctionMode:
    """Base class of PyTorch's ``__torch_function__`` modes (``with Mode(): ...``).

    ember's public functions are not routed through ``__torch_function__``, so a mode's
    ``__torch_function__`` is never called: entering one changes nothing. Libraries that use a
    mode only to skip work (Lightning's ``_EmptyInit`` skips weight initialisation) then do
    that work as usual, with the same result."""

    def __init__(self):
        self.inner = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @classmethod
    def push(cls, *args, **kwargs):
        return cls(*args, **kwargs)
