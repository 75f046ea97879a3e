"""Layer 0: devices and the array module (backend) behind each.

A device names a backend; ``cpu`` is NumPy. CUDA would be CuPy (the same op code, another
array module) but no GPU backend is wired in yet, so ``cuda`` devices raise a clear error.
"""

from __future__ import annotations

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


_KNOWN_TYPES = ("cpu", "cuda", "mps", "meta", "xpu")
CPU = device("cpu")


def to_device(d) -> device:
    """Normalise a device argument and check that ember can place tensors there."""
    if d is None or d is CPU:
        return CPU
    if not isinstance(d, device):
        d = device(d)
    if d.type == "cpu":
        return CPU
    raise RuntimeError(
        f"ember has no {d.type} backend on this machine (device '{d}' requested); "
        f"ember.cuda.is_available() is False. Tensors can live on 'cpu' only.")


def array_module(arr):
    """The array module (``xp``) that computes on ``arr``'s device."""
    return np


xp = np  # the CPU backend's array module
