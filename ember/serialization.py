"""``ember.save`` / ``ember.load``: PyTorch's own checkpoint format, both ways.

A checkpoint is a zip archive (members stored, not compressed) holding:

- ``<name>/data.pkl``: a pickle (protocol 2) of the object. Each tensor pickles as
  ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
  OrderedDict())`` and each storage as the persistent id
  ``('storage', torch.<Type>Storage, key, 'cpu', numel)``;
- ``<name>/data/<key>``: the raw little-endian bytes of storage ``key``, aligned to 64 bytes
  in the file so that they can be memory-mapped;
- ``<name>/byteorder``, ``<name>/.storage_alignment``, ``<name>/version`` and
  ``<name>/.data/serialization_id``, as PyTorch writes them.

ember writes the pickle with PyTorch's global names (``torch._utils._rebuild_tensor_v2``,
``torch.FloatStorage``...) without importing torch: small stand-in objects emit the GLOBAL
opcodes by name. Loading maps those names back to ember's own functions, so neither direction
needs torch. Tensors that view the same memory are saved once (one storage with offsets and
strides) and share memory again after loading.

Loading is ``weights_only`` by default: a restricted unpickler admits only the globals a
checkpoint needs (tensor rebuilders, dtypes, ``OrderedDict``...) and refuses anything else with
``pickle.UnpicklingError``, so that a file never runs code. ``add_safe_globals`` and
``safe_globals`` extend the list; ``weights_only=False`` is the unsafe opt-in for files you
trust. Saving to a path is atomic: the archive is written to a temporary file in the same
directory, flushed, fsynced and renamed over the target, so a crash leaves the old file intact.
"""

from __future__ import annotations

import _compat_pickle
import collections
import contextlib
import io
import os
import pickle
import secrets
import stat
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import _dtype as D
from ._device import device as _device_cls
from ._storage import UntypedStorage, address, memory_block
from ._tensor import Size, Tensor, _make

__all__ = ["save", "load", "add_safe_globals", "safe_globals", "get_safe_globals",
           "clear_safe_globals", "UntypedStorage"]

# PyTorch's legacy (pre-1.6) format starts with this pickled number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ALIGNMENT = 64
_ZIP_MAGIC = b"PK\x03\x04"

# torch's storage classes and the element type each holds.
_STORAGE_DTYPE = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
_STORAGE_OF_DTYPE = {v: k for k, v in _STORAGE_DTYPE.items() if k != "UntypedStorage"}
# torch storages and dtypes ember cannot hold: loading them says so precisely.
_UNSUPPORTED_STORAGES = ("ComplexHalfStorage", "QInt8Storage", "QUInt8Storage",
                         "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage")


# ============================================================================ global names
class _Global:
    """Pickles as the GLOBAL ``module name`` (a torch name written without importing torch)."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # the pickler only accepts callables as reduce functions
        raise TypeError(f"{self.module}.{self.name} is a name written into checkpoints")


_GLOBALS: dict = {}


def _g(module, name):
    key = (module, name)
    if key not in _GLOBALS:
        _GLOBALS[key] = _Global(module, name)
    return _GLOBALS[key]


class _StorageRef:
    """A storage being saved: pickles as its persistent id."""

    __slots__ = ("pid", "array")

    def __init__(self, key, array):
        name = _STORAGE_OF_DTYPE[D._BY_NP[array.dtype].name]
        self.pid = ("storage", _g("torch", name), key, "cpu", array.size)
        self.array = array


class _DataOf:
    """The plain-tensor part of a Parameter (pickled with ``requires_grad=False``)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor


class _Plan:
    """Where each saved tensor lives: storages shared by views, offsets and strides.

    Tensors viewing the same memory block with the same dtype share one storage covering just
    the bytes they use (not the whole block: a small slice of a large array stays small).
    """

    def __init__(self):
        self.tensors = {}      # id(tensor) -> tensor, in pickling order
        self.layout = {}       # id(tensor) -> (storage ref, offset, size, stride)
        self.storages = []     # storage refs in key order

    def add(self, t):
        self.tensors.setdefault(id(t), t)

    def build(self):
        groups = {}  # memory key -> [lo, hi, [(tensor id, byte offset)]]
        order = []
        for tid, t in self.tensors.items():
            arr = t._data
            dt = D._BY_NP[arr.dtype]
            isz = arr.itemsize
            block = memory_block(arr) if arr.size and dt.np == arr.dtype else None
            if block is not None and all(s >= 0 and s % isz == 0 for s in arr.strides):
                off = address(arr) - address(block)
                hi = off + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) + isz
                key = (address(block), block.size, arr.dtype, off % isz)
                if key not in groups:
                    groups[key] = [off, hi, [], block]
                    order.append(key)
                g = groups[key]
                g[0], g[1] = min(g[0], off), max(g[1], hi)
                g[2].append((tid, off))
            else:
                # Negative strides (which PyTorch cannot express), empty tensors, odd memory:
                # the tensor gets a contiguous copy of its own.
                flat = np.ascontiguousarray(arr, dtype=dt.np).reshape(-1)
                ref = self._new_storage(flat)
                self.layout[tid] = (ref, 0, arr.shape, _contiguous_strides(arr.shape))
        for key in order:
            lo, hi, members, block = groups[key]
            dtype = key[2]
            ref = self._new_storage(block[lo:hi].view(dtype))
            for tid, off in members:
                arr = self.tensors[tid]._data
                self.layout[tid] = (ref, (off - lo) // arr.itemsize, arr.shape,
                                    tuple(s // arr.itemsize for s in arr.strides))

    def _new_storage(self, array):
        ref = _StorageRef(str(len(self.storages)), array)
        self.storages.append(ref)
        return ref


def _contiguous_strides(shape):
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


class _Pickler(pickle._Pickler):
    """Writes torch's names for ember objects.

    The pure-Python pickler is used because the C one checks every global by importing its
    module, and ember must never import torch. Only the small ``data.pkl`` goes through it;
    tensor bytes are written straight from memory.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol, plan, collecting):
        super().__init__(file, protocol)
        self.plan = plan
        self.collecting = collecting  # first pass: only find the tensors

    def persistent_id(self, obj):
        return obj.pid if type(obj) is _StorageRef else None

    def save_torch_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[_Global] = save_torch_global

    def save_dtype(self, obj):
        self.write(pickle.GLOBAL + f"torch\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[D.dtype] = save_dtype

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            if obj._is_param:
                return (_g("torch._utils", "_rebuild_parameter"),
                        (_DataOf(obj), obj._rg, OrderedDict()))
            return self._tensor_reduce(obj, obj._rg)
        t = type(obj)
        if t is _DataOf:
            return self._tensor_reduce(obj.tensor, False)
        if t is _device_cls:
            args = (obj.type,) if obj.index is None else (obj.type, obj.index)
            return (_g("torch", "device"), args)
        if t is Size:
            return (_g("torch", "Size"), (tuple(obj),))
        if t.__name__ == "layout" and t.__module__ == "ember._namespaces":
            return (_g("torch.serialization", "_get_layout"), ("torch." + obj.name,))
        return NotImplemented

    def _tensor_reduce(self, t, requires_grad):
        rebuild = _g("torch._utils", "_rebuild_tensor_v2")
        if self.collecting:
            self.plan.add(t)
            return (rebuild, ())
        ref, offset, size, stride = self.plan.layout[id(t)]
        return (rebuild, (ref, offset, tuple(size), tuple(stride), bool(requires_grad),
                          OrderedDict()))



# ============================================================================ saving
class _NullFile:
    def write(self, data):
        return len(data)


def _pickle_with_plan(obj, protocol):
    """The pickle bytes of ``obj`` and the storages its tensors need (two passes)."""
    plan = _Plan()
    _Pickler(_NullFile(), protocol, plan, collecting=True).dump(obj)
    plan.build()
    buf = io.BytesIO()
    _Pickler(buf, protocol, plan, collecting=False).dump(obj)
    return buf.getvalue(), plan.storages


def _write_archive(fh, prefix, pkl, storages, byteorder_record=True):
    """Write the zip archive torch reads: every member stored and 64-byte aligned."""
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:

        def put(name, data):
            full = f"{prefix}/{name}"
            info = zipfile.ZipInfo(full, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = len(data)
            # zipfile decides on a zip64 local header this way; its extra field comes after
            # ours, so the data starts after both.
            zip64 = len(data) * 1.05 > zipfile.ZIP64_LIMIT
            start = zf.fp.tell() + 30 + len(full.encode("utf-8")) + (20 if zip64 else 0) + 4
            pad = -start % _ALIGNMENT
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            with zf.open(info, "w", force_zip64=zip64) as w:
                w.write(data)

        put("data.pkl", pkl)
        put(".storage_alignment", str(_ALIGNMENT).encode())
        if byteorder_record:
            put("byteorder", sys.byteorder.encode())
        for ref in storages:
            put(f"data/{ref.pid[2]}", memoryview(ref.array.view(np.uint8)).cast("B"))
        put("version", b"3\n")
        put(".data/serialization_id", str(secrets.randbits(128)).zfill(40).encode())


def _archive_name(filename):
    """The folder name inside the archive: the file's name without its extension."""
    stem = os.path.basename(filename).split(".")[0]
    ok = stem and stem.isascii() and stem.isprintable() and "/" not in stem
    return stem if ok else "archive"


def _atomic_write(path, write):
    """Run ``write(fileobj)`` into a temporary file beside ``path``, then rename it over."""
    path = os.path.realpath(path)  # write through a symlink, as an ordinary open would
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):  # keep the mode of the file we replace
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def save(obj, f, pickle_module=None, pickle_protocol=2, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False):
    """Save ``obj`` (tensors, state dicts, nested containers) to ``f`` in PyTorch's format.

    ``f`` is a path, an ``os.PathLike`` or a binary file object. Files written here load with
    ``torch.load(f, weights_only=True)`` and files from ``torch.save`` load with ``ember.load``.
    Saving to a path is atomic: either the whole new checkpoint is there or the old file is.
    """
    if pickle_module is not None and pickle_module is not pickle:
        raise NotImplementedError("ember.save: only the standard pickle module is supported "
                                  f"(got pickle_module={pickle_module!r})")
    if not _use_new_zipfile_serialization:
        raise NotImplementedError("ember.save writes the zip format only; the legacy format "
                                  "(_use_new_zipfile_serialization=False) can be read, not "
                                  "written")
    if not 2 <= pickle_protocol <= pickle.HIGHEST_PROTOCOL:
        raise ValueError(f"ember.save: pickle_protocol must be between 2 and "
                         f"{pickle.HIGHEST_PROTOCOL}, got {pickle_protocol}")
    # Pickle first: an unpicklable object fails here, before any file is touched.
    pkl, storages = _pickle_with_plan(obj, pickle_protocol)
    byteorder = not _disable_byteorder_record
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        _atomic_write(path, lambda fh: _write_archive(fh, _archive_name(path), pkl, storages,
                                                      byteorder))
    elif hasattr(f, "write"):
        _write_archive(f, "archive", pkl, storages, byteorder)
        if hasattr(f, "flush"):
            f.flush()
    else:
        raise TypeError(f"ember.save: f must be a path or a binary file object, got "
                        f"{type(f).__name__}")
