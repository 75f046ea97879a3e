"""Layer 0: devices and the array module (backend) behind each.

A device names a backend; ``cpu`` is NumPy. ``meta`` is ``ember._meta.MetaArray`` (shapes,
dtypes and strides, no data): NumPy hands its calls to that array type, so the same op code
serves both. CUDA would be CuPy (the same op code, another array module) but no GPU backend is
wired in yet, so ``cuda`` devices raise a clear error.

The default device of factory functions is thread-local: ``ember.set_default_device`` sets it
and ``with ember.device("meta"):`` sets it for a block.
"""

from __future__ import annotations

import threading

import numpy as np


class device:
    """``ember.device('cpu')``, ``ember.device('cpu:0')``, ``ember.device('cpu', 0)``."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if isinstance(type, int) and index is None:  # a bare ordinal means a CUDA device
            type, index = "cuda", type
        if not isinstance(type, str):
            raise TypeError(f"device() expected a string or int, got {type.__class__.__name__}")
        if ":" in type:
            if index is not None:
                raise RuntimeError(f"type (string) must not include an index because index was "
                                   f"passed explicitly: {type}")
            type, _, idx = type.partition(":")
            try:
                index = int(idx)
            except ValueError:
                raise RuntimeError(f"Invalid device string: '{type}:{idx}'") from None
        if type not in _KNOWN_TYPES:
            raise RuntimeError(
                f"Expected one of cpu, cuda, mps, meta, xpu device type at start of device "
                f"string: {type}")
        if index is not None and index < 0:
            raise RuntimeError(f"Device index must not be negative, got {index}")
        self.type, self.index = type, index

    def __repr__(self):
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (self.type, self.index))

    # ``with ember.device("meta"):`` makes it the default device of factory functions in the
    # block (PyTorch's semantics); the previous default comes back on exit, nesting included.
    def __enter__(self):
        stack = _default_stack()
        stack.append(_STATE.default)
        _STATE.default = to_device(self)
        return self

    def __exit__(self, *exc):
        _STATE.default = _default_stack().pop()
        return False


_KNOWN_TYPES = ("cpu", "cuda", "mps", "meta", "xpu")
CPU = device("cpu")
META = device("meta")


class _DefaultDevice(threading.local):
    default = None  # None means cpu; kept None so the common case is one attribute read


_STATE = _DefaultDevice()


def _default_stack():
    stack = getattr(_STATE, "stack", None)
    if stack is None:
        stack = _STATE.stack = []
    return stack


def default_device() -> device:
    """The device factory functions use when given none (thread-local; cpu unless set)."""
    d = _STATE.default
    return CPU if d is None else d


def set_default_device(d):
    """Make ``d`` the default device of factory functions in this thread (None: cpu)."""
    d = None if d is None else to_device(d)
    _STATE.default = None if d is CPU else d


def to_device(d) -> device:
    """Normalise a device argument and check that ember can place tensors there."""
    if d is None or d is CPU:
        return CPU
    if d is META:
        return META
    if not isinstance(d, device):
        d = device(d)
    if d.type == "cpu":
        return CPU
    if d.type == "meta":
        return META
    raise RuntimeError(
        f"ember has no {d.type} backend on this machine (device '{d}' requested); "
        f"ember.cuda.is_available() is False. Tensors can live on 'cpu' only.")


def cpu_only(d, what) -> device:
    """``to_device`` for functions that build CPU tensors only: a meta device is refused
    with a clear error rather than silently ignored."""
    d = to_device(d)
    if d is META:
        raise NotImplementedError(f"{what}: the meta device is not supported yet")
    return d


def target_device(d) -> device:
    """The device a factory function places its result on: ``d``, else the default device."""
    if d is None:
        d = _STATE.default
        return CPU if d is None else d
    return to_device(d)


def device_of(arr) -> device:
    """The device of a backend array."""
    from ._meta import MetaArray
    return META if type(arr) is MetaArray else CPU


def array_module(arr):
    """The array module (``xp``) that computes on ``arr``'s device."""
    return np


xp = np  # the CPU backend's array module
