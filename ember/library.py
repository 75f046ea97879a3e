"""``torch.library``: user-defined operators (``custom_op``) with a fake (shape) function and
an autograd formula, reachable as ``ember.ops.<namespace>.<name>`` as in PyTorch.

ember has one dispatch path and no dispatcher keys, so an operator is its Python function:
calling it runs the registered kernel; ``register_autograd`` wraps it in an
``ember.autograd.Function`` (``setup_context`` then ``backward``), and ``register_fake``'s
function is what capture on the ``meta`` device would call for output shapes."""

from __future__ import annotations

import importlib
import importlib.util
import types

__all__ = ["CustomOpDef", "Library", "custom_op", "define", "impl", "register_autograd",
           "register_fake", "register_kernel"]

_OPS: dict[str, CustomOpDef] = {}


def _namespace(ns):
    """``ember.ops.<ns>``: a plain namespace object hung on the ``ember.ops`` package (the
    operator families there are modules; a library namespace never shares their names)."""
    ops = importlib.import_module("ember.ops")
    if importlib.util.find_spec("ember.ops." + ns) is not None:
        raise ValueError(f"custom_op: namespace {ns!r} is the name of ember's own operator "
                         f"family ember.ops.{ns}; choose another namespace")
    space = getattr(ops, ns, None)
    if space is None:
        space = types.SimpleNamespace()
        setattr(ops, ns, space)
    return space


class CustomOpDef:
    """A custom operator: call it like its function; ``register_fake``, ``register_autograd``
    and ``register_kernel`` attach its other rules."""

    def __init__(self, qualname, fn, mutates_args, schema=None):
        self._qualname = qualname
        self._fn = fn
        self._kernels = {}
        self._fake = None
        self._backward = None
        self._setup_context = None
        self._mutates_args = mutates_args
        self._schema = schema
        self.__name__ = qualname.split("::")[1]
        self.__doc__ = getattr(fn, "__doc__", None)

    def __repr__(self):
        return f"<CustomOpDef({self._qualname})>"

    def register_fake(self, fn=None):
        """Register the shape/dtype function (usable as a decorator)."""
        def reg(f):
            self._fake = f
            return f
        return reg if fn is None else reg(fn)

    def register_kernel(self, device_types, fn=None):
        """Register an implementation for ``device_types`` ("cpu", or a list)."""
        def reg(f):
            for d in ([device_types] if isinstance(device_types, str) or device_types is None
                      else device_types):
                self._kernels[d] = f
            return f
        return reg if fn is None else reg(fn)

    def register_autograd(self, backward, *, setup_context=None):
        """``backward(ctx, *grads) -> grads of the inputs``; ``setup_context(ctx, inputs,
        output)`` saves what backward needs."""
        self._backward = backward
        self._setup_context = setup_context

    def _kernel(self, args):
        from ._tensor import Tensor
        for a in args:
            if isinstance(a, Tensor):
                return self._kernels.get(a.device.type, self._kernels.get(None, self._fn))
        return self._kernels.get(None, self._fn)

    def __call__(self, *args, **kwargs):
        kernel = self._kernel(args)
        if self._backward is None:
            return kernel(*args, **kwargs)
        if kwargs:
            raise NotImplementedError(f"{self._qualname}: keyword arguments to a custom op "
                                      f"with an autograd formula; pass them by position")
        from ._tensor import Tensor
        from .autograd import Function

        op = self

        class _Op(Function):
            @staticmethod
            def forward(*inputs):
                # the kernel is opaque to autograd (as a custom op's is in PyTorch): it sees
                # tensors without history
                return kernel(*[a.detach() if isinstance(a, Tensor) else a for a in inputs])

            @staticmethod
            def setup_context(ctx, inputs, output):
                if op._setup_context is not None:
                    op._setup_context(ctx, inputs, output)

            @staticmethod
            def backward(ctx, *grads):
                out = op._backward(ctx, *grads)
                return out if isinstance(out, tuple) else (out,)

        _Op.__name__ = self.__name__ + "Backward"
        return _Op.apply(*args)


def _split(qualname):
    if "::" not in qualname:
        raise ValueError(f"custom_op: expected a name 'namespace::op', got {qualname!r}")
    return qualname.split("::", 1)


def custom_op(name, fn=None, /, *, mutates_args, device_types=None, schema=None, tags=None):
    """Make ``fn`` the operator ``name`` ("namespace::op"), callable as the returned
    ``CustomOpDef`` and as ``ember.ops.namespace.op``; usable as a decorator."""
    ns, opname = _split(name)

    def reg(f):
        op = CustomOpDef(name, f, mutates_args, schema)
        if device_types is not None:
            op.register_kernel(device_types, f)
        _OPS[name] = op
        setattr(_namespace(ns), opname, op)
        return op
    return reg if fn is None else reg(fn)


def _lookup(op):
    if isinstance(op, CustomOpDef):
        return op
    if isinstance(op, str) and op in _OPS:
        return _OPS[op]
    raise ValueError(f"no custom op {op!r}: define it with ember.library.custom_op first")


def register_fake(op, fn=None, /, *, lib=None, _stacklevel=1):
    """Register ``op``'s fake (shape) function; usable as a decorator."""
    return _lookup(op).register_fake(fn)


def register_autograd(op, backward, /, *, setup_context=None, lib=None):
    """Register ``op``'s backward formula and its ``setup_context``."""
    _lookup(op).register_autograd(backward, setup_context=setup_context)


def register_kernel(op, device_types, fn=None, /, *, lib=None):
    """Register ``op``'s implementation for ``device_types``; usable as a decorator."""
    return _lookup(op).register_kernel(device_types, fn)


class Library:
    """PyTorch's low-level registration object (schemas and per-dispatch-key kernels). ember
    has no schema parser or dispatch keys: use ``custom_op``."""

    def __init__(self, ns, kind, dispatch_key=""):
        self.ns = ns
        self.kind = kind

    def define(self, schema, alias_analysis="", *, tags=()):
        raise NotImplementedError("ember.library.Library.define: ember has no operator schema "
                                  "registry; use ember.library.custom_op('ns::name', fn, "
                                  "mutates_args=())")

    def impl(self, op_name, fn, dispatch_key="", *, with_keyset=False):
        raise NotImplementedError("ember.library.Library.impl: ember has no dispatch keys; use "
                                  "ember.library.custom_op and register_kernel")


def define(qualname, schema, *, lib=None, tags=()):
    """See ``Library.define``."""
    Library(_split(qualname)[0], "FRAGMENT").define(schema)


def impl(qualname, types, func=None, *, lib=None):
    """See ``Library.impl``."""
    Library(_split(qualname)[0], "IMPL").impl(qualname, func)
