"""Storages: the flat block of memory under a tensor (``Tensor.untyped_storage()``).

ember keeps no storage object of its own: a tensor is a NumPy array, and NumPy tracks memory
through each array's ``base`` chain. This module recovers the block that chain ends in, so that
tensors viewing the same memory can be recognised (checkpoints save such memory once) and so
that ``untyped_storage()`` answers PyTorch's questions (``data_ptr``, ``nbytes``) truthfully.
"""

from __future__ import annotations

import numpy as np

from ._device import CPU, to_device


def memory_block(arr):
    """The whole flat uint8 block that ``arr`` views, or None when it cannot be recovered.

    Arrays viewing the same memory get blocks with the same start address and length.
    """
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root.base is None:
        # The root owns its allocation, which is always one contiguous block.
        if not (root.flags.c_contiguous or root.flags.f_contiguous):
            return None
        return root.reshape(-1, order="A").view(np.uint8)
    try:  # memory owned by another object: bytes, bytearray, mmap, memoryview...
        return np.frombuffer(root.base, dtype=np.uint8)
    except (TypeError, ValueError):
        return None


def address(arr) -> int:
    """The address of ``arr``'s first element."""
    return arr.__array_interface__["data"][0]


class UntypedStorage:
    """A flat block of bytes on the CPU (PyTorch's ``torch.UntypedStorage``).

    ``_data`` is a 1-D uint8 array; tensors viewing this memory see writes made through it.
    """

    __slots__ = ("_data",)

    def __init__(self, data=0):
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8 or data.ndim != 1:
                raise TypeError("UntypedStorage wraps a 1-D uint8 array")
            self._data = data
        elif isinstance(data, int):
            self._data = np.zeros(data, dtype=np.uint8)
        else:
            self._data = np.frombuffer(bytearray(data), dtype=np.uint8)

    @property
    def device(self):
        return CPU

    is_cuda = False

    def nbytes(self) -> int:
        return self._data.size

    def size(self) -> int:
        return self._data.size

    __len__ = size

    def element_size(self) -> int:
        return 1

    def data_ptr(self) -> int:
        return address(self._data)

    def cpu(self):
        return self

    def to(self, device=None, non_blocking=False):
        to_device(device)
        return self

    def cuda(self, device=None, non_blocking=False):
        to_device("cuda" if device is None else device)  # raises: there is no CUDA backend

    def tolist(self):
        return self._data.tolist()

    def __getitem__(self, i):
        if isinstance(i, slice):
            return UntypedStorage(self._data[i])
        return int(self._data[i])

    def __repr__(self):
        return f"ember.UntypedStorage(nbytes={self._data.size}, device=cpu)"


def untyped_storage(self):
    """The memory block under this tensor (shared with every tensor that views it)."""
    arr = self._data
    block = memory_block(arr)
    if block is None:  # memory NumPy cannot describe as a block: a copy is the honest answer
        block = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    return UntypedStorage(block)
