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

    def __array__(self, dtype=None, copy=None):
        # ``ember.asarray(storage)`` sees the bytes without copying (safetensors relies on it)
        return self._data if dtype is None else self._data.astype(dtype)

    def _untyped(self):
        return self

    @classmethod
    def from_file(cls, filename, shared=False, nbytes=0, size=None):
        """The first ``nbytes`` bytes of a file, memory-mapped: ``shared=True`` writes
        through to the file, otherwise writes stay private (copy-on-write)."""
        n = nbytes if size is None else size
        mm = np.memmap(filename, dtype=np.uint8, mode="r+" if shared else "c",
                       shape=(n,) if n else None)
        return cls(mm.reshape(-1).view(np.ndarray) if not isinstance(mm, np.ndarray) else mm)


def untyped_storage(self):
    """The memory block under this tensor (shared with every tensor that views it)."""
    arr = self._data
    block = memory_block(arr)
    if block is None:  # memory NumPy cannot describe as a block: a copy is the honest answer
        block = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    return UntypedStorage(block)


class TypedStorage:
    """A storage seen as elements of one dtype (PyTorch's ``torch.TypedStorage``, what the
    legacy ``Tensor.storage()`` returns): a view of an :class:`UntypedStorage`'s bytes.

    ``TypedStorage(size, dtype=...)``, ``TypedStorage(sequence, dtype=...)`` and
    ``TypedStorage(wrap_storage=untyped, dtype=...)`` build one; the typed classes
    (``FloatStorage``...) fix the dtype."""

    is_sparse = False
    is_cuda = False
    _fixed_dtype = None

    def __init__(self, *args, wrap_storage=None, dtype=None, device=None, _internal=False):
        from . import _dtype as D
        if self._fixed_dtype is not None:
            if dtype is not None and D.to_dtype(dtype) != self._fixed_dtype:
                raise RuntimeError(f"{type(self).__name__}: dtype is fixed to "
                                   f"{self._fixed_dtype}, got dtype={dtype}")
            dtype = self._fixed_dtype
        self.dtype = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
        if device is not None:
            to_device(device)
        np_dt = self.dtype.np
        if wrap_storage is not None:
            if args:
                raise RuntimeError("TypedStorage: no positional arguments with wrap_storage")
            if not isinstance(wrap_storage, UntypedStorage):
                raise TypeError(f"TypedStorage: wrap_storage must be an UntypedStorage, got "
                                f"{type(wrap_storage).__name__}")
            self._untyped_storage = wrap_storage
        elif not args:
            self._untyped_storage = UntypedStorage(0)
        elif len(args) == 1 and isinstance(args[0], int):
            self._untyped_storage = UntypedStorage(args[0] * np_dt.itemsize)
        elif len(args) == 1:
            arr = np.ascontiguousarray(np.asarray(args[0], dtype=np_dt).reshape(-1))
            self._untyped_storage = UntypedStorage(arr.view(np.uint8).reshape(-1))
        else:
            raise TypeError(f"TypedStorage: expected a size, a sequence or wrap_storage, got "
                            f"{len(args)} positional arguments")

    @property
    def _array(self):
        raw = self._untyped_storage._data
        n = raw.size // self.dtype.np.itemsize
        return raw[:n * self.dtype.np.itemsize].view(self.dtype.np)

    @property
    def device(self):
        return CPU

    def untyped(self):
        return self._untyped_storage

    _untyped = untyped

    def size(self) -> int:
        return self._array.size

    __len__ = size

    def nbytes(self) -> int:
        return self._untyped_storage.nbytes()

    def element_size(self) -> int:
        return self.dtype.np.itemsize

    def data_ptr(self) -> int:
        return self._untyped_storage.data_ptr()

    def tolist(self):
        return self._array.tolist()

    def __getitem__(self, i):
        if isinstance(i, slice):
            return type(self)(self._array[i].tolist(), dtype=self.dtype)
        return self._array[i].item()

    def __setitem__(self, i, value):
        self._array[i] = value

    def __iter__(self):
        return iter(self.tolist())

    def fill_(self, value):
        self._array[...] = value
        return self

    def copy_(self, source, non_blocking=False):
        self._array[...] = np.asarray(source._array if isinstance(source, TypedStorage)
                                      else source)
        return self

    def cpu(self):
        return self

    def to(self, device=None, non_blocking=False):
        to_device(device)
        return self

    def pickle_storage_type(self):
        return _TYPED_NAMES.get(self.dtype.name, "UntypedStorage")

    def _new_wrapped_storage(self, untyped_storage):
        return TypedStorage(wrap_storage=untyped_storage, dtype=self.dtype)

    def type(self, dtype=None, non_blocking=False):
        if dtype is None:
            return f"ember.{_TYPED_NAMES.get(self.dtype.name, 'TypedStorage')}"
        raise NotImplementedError("TypedStorage.type(dtype) conversion is not supported")

    def __repr__(self):
        body = "\n".join(f" {v}" for v in self.tolist()[:20])
        more = "\n ..." if self.size() > 20 else ""
        return (f"{body}{more}\n[ember.storage.TypedStorage(dtype={self.dtype}, device=cpu) of "
                f"size {self.size()}]")


# PyTorch's legacy typed storage classes, each a TypedStorage of one dtype
_TYPED_NAMES = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
    "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
    "bool": "BoolStorage", "complex64": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage",
}


def _typed_class(dtype_name, class_name):
    from . import _dtype as D
    return type(class_name, (TypedStorage,), {
        "_fixed_dtype": getattr(D, dtype_name if dtype_name != "bool" else "bool_"),
        "__doc__": f"A TypedStorage of {dtype_name} (PyTorch's ``torch.{class_name}``).",
        "__module__": "ember"})


_TYPED_CLASSES = {}


def typed_storage_classes():
    """``{"FloatStorage": class, ...}``: built on first use (the dtypes load first)."""
    if not _TYPED_CLASSES:
        _TYPED_CLASSES.update({cls: _typed_class(dt, cls) for dt, cls in _TYPED_NAMES.items()})
    return _TYPED_CLASSES


def typed_storage(self):
    """``Tensor.storage()``: the tensor's memory block as a TypedStorage of its dtype."""
    return TypedStorage(wrap_storage=untyped_storage(self), dtype=self.dtype)


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
