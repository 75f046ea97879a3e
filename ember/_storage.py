"""Storages: the flat block of memory under a tensor (``Tensor.untyped_storage()``).

ember keeps no storage object of its own: a tensor is a NumPy array, and NumPy tracks memory
through each array's ``base`` chain. This module recovers the block that chain ends in, so that
tensors viewing the same memory can be recognised (checkpoints save such memory once) and so
that ``untyped_storage()`` answers PyTorch's questions (``data_ptr``, ``nbytes``) truthfully.
"""

from __future__ import annotations

import functools

import numpy as np

from ._device import CPU, cpu_only, to_device


def memory_block(arr):
    """The whole flat uint8 block that ``arr`` views, or None when it cannot be recovered.

    Arrays viewing the same memory get blocks with the same start address and length.
    """
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root.base is not None:
        try:  # memory owned by another object: bytes, bytearray, mmap, memoryview...
            return np.frombuffer(root.base, dtype=np.uint8)
        except (TypeError, ValueError, BufferError):
            pass  # an owner without the buffer protocol: every view descends from ``root``
    if not (root.flags.c_contiguous or root.flags.f_contiguous):
        return None
    return root.reshape(-1, order="A").view(np.uint8)


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
        cpu_only(device, "TypedStorage.to")
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


# ---------------------------------------------------------------------------- DLPack
# NumPy exchanges every ember dtype over DLPack except bfloat16, which it does not know. A
# bfloat16 array travels as uint16 with the capsule's type code rewritten (kDLUInt <->
# kDLBfloat); the memory, its owner and its deleter stay NumPy's or the producer's.
_DL_UINT, _DL_BFLOAT = 1, 4


@functools.cache
def _capsule_api():
    import ctypes
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    return ctypes, get_name, get_pointer


def _dl_dtype(capsule):
    """The (code, bits) bytes of the DLTensor inside a DLPack capsule."""
    ctypes, get_name, get_pointer = _capsule_api()
    name = get_name(capsule)
    if name not in (b"dltensor", b"dltensor_versioned"):
        raise BufferError(f"not an unused DLPack capsule (name {name!r})")
    # DLManagedTensorVersioned puts version, manager_ctx, deleter and flags (32 bytes) first;
    # in DLTensor the dtype follows data (8), device (8) and ndim (4).
    base = get_pointer(capsule, name) + (32 if name == b"dltensor_versioned" else 0)
    code = ctypes.c_uint8.from_address(base + 20)
    bits = ctypes.c_uint8.from_address(base + 21)
    return code, bits


def dlpack_capsule(arr, **kwargs):
    """``arr.__dlpack__(**kwargs)``, bfloat16 included."""
    from ._dtype import _BF16
    if _BF16 is None or arr.dtype != _BF16:
        return arr.__dlpack__(**kwargs)
    capsule = arr.view(np.uint16).__dlpack__(**kwargs)
    code, _ = _dl_dtype(capsule)
    code.value = _DL_BFLOAT
    return capsule


class _Bf16Producer:
    """Wraps a DLPack producer so NumPy accepts its bfloat16 tensors as uint16."""

    def __init__(self, ext):
        self.ext = ext
        self.bf16 = False

    def __dlpack_device__(self):
        return self.ext.__dlpack_device__()

    def __dlpack__(self, **kwargs):
        capsule = self.ext.__dlpack__(**kwargs)
        code, bits = _dl_dtype(capsule)
        if code.value == _DL_BFLOAT and bits.value == 16:
            code.value = _DL_UINT
            self.bf16 = True
        return capsule


def array_from_dlpack(ext):
    """A NumPy array sharing memory with a DLPack producer (a torch tensor, an array...)."""
    from ._dtype import _BF16
    if isinstance(ext, np.ndarray) or not hasattr(ext, "__dlpack__"):
        return np.from_dlpack(ext)
    producer = _Bf16Producer(ext)
    arr = np.from_dlpack(producer)
    if producer.bf16:
        if _BF16 is None:
            raise TypeError("a bfloat16 DLPack tensor needs the ml_dtypes package")
        arr = arr.view(_BF16)
    return arr
