"""``nn.Parameter``, ``nn.Buffer`` and the lazy ``UninitializedParameter``.

A Parameter is an ember Tensor subclass that shares its data's memory; assigning one to a
Module attribute registers it (see ``Module.__setattr__``).
"""

from __future__ import annotations

import abc

import numpy as np

from .._tensor import Tensor, _make
from .. import _dtype as D

__all__ = ["Parameter", "Buffer", "UninitializedParameter", "UninitializedBuffer",
           "UninitializedTensorMixin",
           "is_lazy"]

_new = object.__new__


class Parameter(Tensor):
    """A Tensor that a Module registers as a parameter (``requires_grad=True`` by default)."""

    _is_param = True

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = _make(np.empty(0, dtype=D.get_default_dtype().np))
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(): data must be a Tensor, got {type(data).__name__}")
        if hasattr(data, "_as_parameter"):  # a DTensor stays one (as PyTorch's subclasses)
            return data._as_parameter(requires_grad)
        p = _new(cls)
        p._data = data._data  # same memory, as PyTorch's ``_make_subclass``
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__; Tensor.__init__ is the legacy constructor

    def __repr__(self, *, tensor_contents=None):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self._data, self._rg, type(self)))


def _rebuild_parameter(arr, rg, cls):
    p = _new(cls)
    p._data = arr
    p._rg = bool(rg)
    return p


class _BufferMeta(type):
    # ``isinstance(t, Buffer)`` is true only for tensors explicitly marked as buffers.
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and getattr(obj, "_is_buffer", False)


class Buffer(metaclass=_BufferMeta):
    """Marks a Tensor as a buffer when assigned to a Module attribute (``nn.Buffer(t)``).

    Returns the tensor itself (detached), tagged with its ``persistent`` flag.
    """

    def __new__(cls, data=None, *, persistent=True):
        if data is None:
            data = _make(np.empty(0, dtype=D.get_default_dtype().np))
        t = _make(data._data)
        t._is_buffer = True
        t.persistent = persistent
        return t


class UninitializedTensorMixin(metaclass=abc.ABCMeta):
    """What PyTorch's uninitialized parameters and buffers share (``isinstance`` checks
    against it find both): a shape not known yet, until ``materialize(shape)``. A virtual
    base (registered below), so that ``materialize`` can still turn the object into a plain
    Parameter in place."""


class UninitializedParameter(Parameter):
    """A parameter whose shape is not known yet (lazy modules); ``materialize`` makes it real."""

    cls_to_become = Parameter

    def __new__(cls, requires_grad=True, device=None, dtype=None):
        p = _new(cls)
        p._data = np.empty(0, dtype=(D.to_dtype(dtype) if dtype is not None
                                     else D.get_default_dtype()).np)
        p._rg = bool(requires_grad)
        return p

    def __init__(self, requires_grad=True, device=None, dtype=None):
        pass

    def materialize(self, shape, device=None, dtype=None):
        """Allocate the data with ``shape`` and turn into an ordinary Parameter, in place."""
        dt = self._data.dtype if dtype is None else D.to_dtype(dtype).np
        self._data = np.empty(tuple(shape), dtype=dt)
        self.__class__ = self.cls_to_become

    @property
    def shape(self):
        raise RuntimeError(
            "Can't access the shape of an uninitialized parameter or buffer. This error usually "
            "happens in `load_state_dict` when trying to load an uninitialized parameter into "
            "an initialized one. Call `forward` to initialize the parameters before accessing "
            "their attributes.")

    def __repr__(self, *, tensor_contents=None):
        return "<UninitializedParameter>"


class UninitializedBuffer(Tensor):
    """A buffer whose shape is not known yet (lazy modules)."""

    cls_to_become = Tensor

    def __new__(cls, requires_grad=False, device=None, dtype=None, persistent=True):
        t = _new(cls)
        t._data = np.empty(0, dtype=(D.to_dtype(dtype) if dtype is not None
                                     else D.get_default_dtype()).np)
        t.persistent = persistent
        return t

    def __init__(self, *args, **kwargs):
        pass

    def materialize(self, shape, device=None, dtype=None):
        dt = self._data.dtype if dtype is None else D.to_dtype(dtype).np
        self._data = np.empty(tuple(shape), dtype=dt)
        self.__class__ = self.cls_to_become


def is_lazy(param):
    """Whether ``param`` is still an uninitialized (lazy) parameter or buffer."""
    return isinstance(param, (UninitializedParameter, UninitializedBuffer))


UninitializedTensorMixin.register(UninitializedParameter)
UninitializedTensorMixin.register(UninitializedBuffer)
