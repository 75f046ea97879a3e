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
import threading
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import _dtype as D
from . import _quantized as _Q
from ._device import device as _device_cls
from ._storage import UntypedStorage, address, memory_block
from ._tensor import (BFloat16Tensor, BoolTensor, ByteTensor, CharTensor, DoubleTensor,
                      FloatTensor, HalfTensor, IntTensor, LongTensor, ShortTensor, Size, Tensor,
                      _make)

_LEGACY_TENSOR_CLASSES = (BFloat16Tensor, BoolTensor, ByteTensor, CharTensor, DoubleTensor,
                          FloatTensor, HalfTensor, IntTensor, LongTensor, ShortTensor)

__all__ = ["save", "load", "add_safe_globals", "safe_globals", "get_safe_globals",
           "clear_safe_globals", "UntypedStorage", "get_unsafe_globals_in_checkpoint",
           "SourceChangeWarning", "mkdtemp", "location_tag", "default_restore_location",
           "normalize_storage_type", "storage_to_tensor_type", "StorageType", "LoadEndianness",
           "get_default_load_endianness", "set_default_load_endianness",
           "check_module_version_greater_or_equal", "validate_cuda_device",
           "validate_hpu_device"]

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
    "ComplexHalfStorage": "complex32",
}
# quantized tensors' storages hold their integers (issue 20); quint4x2/quint2x4 storages hold
# packed bytes, marked on load by a one-field structured dtype (see _rebuild_qtensor)
_QSTORAGE_DTYPE = {"QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
                   "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4"}
_SUBBYTE_NP = {n: np.dtype([(n, np.uint8)]) for n in ("quint4x2", "quint2x4")}
_QSTORAGE_NAME = {v: k for k, v in _QSTORAGE_DTYPE.items()}
# the storage class each dtype is saved with; the others are saved untyped, as PyTorch does
_STORAGE_OF_DTYPE = {v: k for k, v in _STORAGE_DTYPE.items()
                     if k not in ("UntypedStorage", "ComplexHalfStorage")}
# torch storages and dtypes ember cannot hold: loading them says so precisely.
_UNSUPPORTED_STORAGES = ()


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

    __slots__ = ("pid", "array", "untyped")

    def __init__(self, key, array, qname=None):
        name = _STORAGE_OF_DTYPE.get(D._BY_NP[array.dtype].name) if qname is None else qname
        # dtypes without a legacy typed storage (uint16, float8, complex32...) are saved as
        # PyTorch saves them: an UntypedStorage of bytes, rebuilt with _rebuild_tensor_v3
        self.untyped = name is None
        loc = _tag(array) if _PACKAGES else "cpu"  # register_package's taggers, if any
        if self.untyped:
            self.pid = ("storage", _g("torch.storage", "UntypedStorage"), key, loc,
                        array.nbytes)
        else:
            self.pid = ("storage", _g("torch", name), key, loc, array.size)
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
        self.has_quantized = False

    def add(self, t):
        if t.is_quantized:  # its integers, stored as a QInt8Storage & co.
            self.has_quantized = True
            if id(t) not in self.tensors:
                ints = _make(_Q.pack_subbyte(t._q, t.dtype, row_padded=True)
                             if t.dtype.name in _SUBBYTE_NP else t._q)
                ints._qstorage = _QSTORAGE_NAME[t.dtype.name]
                self.tensors[id(t)] = ints
            return
        self.tensors.setdefault(id(t), t)

    def build(self):
        groups = {}  # memory key -> [lo, hi, [(tensor id, byte offset)], block]
        order = []
        for tid, t in self.tensors.items():
            arr = t._data
            dt = D._BY_NP.get(arr.dtype)
            if dt is None:
                raise TypeError(f"ember.save: cannot save a tensor holding NumPy dtype "
                                f"{arr.dtype}")
            isz = arr.itemsize
            block = memory_block(arr) if arr.size and dt.np == arr.dtype else None
            if block is not None and all(s >= 0 and s % isz == 0 for s in arr.strides):
                off = address(arr) - address(block)
                hi = off + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) + isz
                key = (address(block), block.size, arr.dtype, off % isz,
                       getattr(t, "_qstorage", None))
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
                ref = self._new_storage(flat, getattr(t, "_qstorage", None))
                self.layout[tid] = (ref, 0, arr.shape, _contiguous_strides(arr.shape))
        for key in order:
            lo, hi, members, block = groups[key]
            dtype = key[2]
            ref = self._new_storage(block[lo:hi].view(dtype), key[4])
            for tid, off in members:
                arr = self.tensors[tid]._data
                self.layout[tid] = (ref, (off - lo) // arr.itemsize, arr.shape,
                                    tuple(s // arr.itemsize for s in arr.strides))

    def _new_storage(self, array, qname=None):
        ref = _StorageRef(str(len(self.storages)), array, qname)
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

    def __init__(self, file, protocol, plan, collecting, qparams=None):
        super().__init__(file, protocol)
        self.plan = plan
        self.qparams = {} if qparams is None else qparams  # id(qtensor) -> quantizer params
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
    dispatch[_Q.qscheme] = save_dtype  # ember.per_tensor_affine -> torch.per_tensor_affine

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            if type(obj)._save_by_reduce:  # a DTensor: its shard and layout (ember's names)
                return obj.__reduce_ex__(2)
            if obj.is_quantized:
                return self._qtensor_reduce(obj)
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

    def _qtensor_reduce(self, t):
        # PyTorch's form: _rebuild_qtensor(storage, offset, size, stride, quantizer_params,
        # requires_grad, backward_hooks); per-channel scales/zero points are plain tensors
        params = self.qparams.get(id(t))
        if params is None:
            if t._scales is None:
                params = (t.qscheme(), t.q_scale(), t.q_zero_point())
            else:
                # as PyTorch: float-qparams tensors are written as per_channel_affine too
                params = (_Q.per_channel_affine, t.q_per_channel_scales(),
                          t.q_per_channel_zero_points(), t.q_per_channel_axis())
            self.qparams[id(t)] = params
        rebuild = _g("torch._utils", "_rebuild_qtensor")
        if self.collecting:
            self.plan.add(t)
            return (rebuild, (params,))
        ref, offset, size, stride = self.plan.layout[id(t)]
        if t.dtype.name in _SUBBYTE_NP:  # the storage holds the packed bytes of t alone
            size, stride = t.shape, _contiguous_strides(t.shape)
        return (rebuild, (ref, offset, tuple(size), tuple(stride), params, False,
                          OrderedDict()))

    def _tensor_reduce(self, t, requires_grad):
        rebuild = _g("torch._utils", "_rebuild_tensor_v2")
        if self.collecting:
            self.plan.add(t)
            return (rebuild, ())
        ref, offset, size, stride = self.plan.layout[id(t)]
        if ref.untyped:
            return (_g("torch._utils", "_rebuild_tensor_v3"),
                    (ref, offset, tuple(size), tuple(stride), bool(requires_grad),
                     OrderedDict(), t.dtype))
        return (rebuild, (ref, offset, tuple(size), tuple(stride), bool(requires_grad),
                          OrderedDict()))



# ============================================================================ saving
class _NullFile:
    def write(self, data):
        return len(data)


_LEAVES = frozenset({str, bytes, bytearray, int, float, complex, bool, type(None), D.dtype,
                     _device_cls, Size})
_CONTAINERS = frozenset({list, tuple, set, frozenset})


def _collect_tensors(obj, plan):
    """Find the tensors inside plain containers, in pickling order, without pickling.

    Returns False when ``obj`` holds anything else; then a pickling pass must find them.
    """
    stack, seen = [obj], set()
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _LEAVES:
            continue
        if isinstance(x, Tensor):
            if t._save_by_reduce:  # a DTensor holds its shard: a pickling pass finds it
                return False
            plan.add(x)
        elif t is dict or t is OrderedDict:
            if id(x) not in seen:
                seen.add(id(x))
                # An OrderedDict pickles its attributes (a state dict's ``_metadata``) last.
                stack.extend(reversed(list(getattr(x, "__dict__", {}).values())))
                for k, v in reversed(list(x.items())):
                    stack += (v, k)
        elif t in _CONTAINERS:
            if id(x) not in seen:
                seen.add(id(x))
                stack.extend(reversed(list(x)))
        else:
            return False
    return True


def _pickle_with_plan(obj, protocol):
    """The pickle bytes of ``obj`` and the storages its tensors need.

    Storage sizes go into the pickle, and a storage shared by views must cover all of them, so
    every tensor is found before the pickle is written.
    """
    plan = _Plan()
    qparams = {}  # one quantizer-params tuple per quantized tensor, kept across both passes
    if not _collect_tensors(obj, plan):
        plan = _Plan()
        _Pickler(_NullFile(), protocol, plan, collecting=True, qparams=qparams).dump(obj)
    elif plan.has_quantized:
        plan = _Plan()  # quantized tensors hold tensors of their own: a pickling pass finds them
        _Pickler(_NullFile(), protocol, plan, collecting=True, qparams=qparams).dump(obj)
    plan.build()
    buf = io.BytesIO()
    _Pickler(buf, protocol, plan, collecting=False, qparams=qparams).dump(obj)
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
            if _SKIP_DATA[0]:  # skip_data(): the space for the bytes, left empty
                put(f"data/{ref.pid[2]}", bytes(ref.array.nbytes))
                continue
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


# ============================================================================ safe globals
_SAFE_GLOBALS: list = []


def add_safe_globals(safe_globals):
    """Allow these globals (functions, classes, or ``(obj, "module.name")`` pairs) in
    ``weights_only`` loads. Only add what you trust: loading may call them."""
    for entry in safe_globals:
        _global_name(entry)  # reject malformed entries now, not in the middle of a load
        _SAFE_GLOBALS.append(entry)


def get_safe_globals():
    """The globals added with ``add_safe_globals`` (a copy)."""
    return list(_SAFE_GLOBALS)


def clear_safe_globals():
    """Forget every global added with ``add_safe_globals``."""
    _SAFE_GLOBALS.clear()


@contextlib.contextmanager
def safe_globals(safe_globals):
    """Within the ``with`` block, also allow ``safe_globals`` in ``weights_only`` loads."""
    saved = list(_SAFE_GLOBALS)
    add_safe_globals(safe_globals)
    try:
        yield
    finally:
        _SAFE_GLOBALS[:] = saved


def _global_name(entry):
    if isinstance(entry, tuple):
        if len(entry) != 2 or not isinstance(entry[1], str):
            raise TypeError(f"a safe global given as a tuple must be (obj, 'module.name'), got "
                            f"{entry!r}")
        return entry[1], entry[0]
    module = getattr(entry, "__module__", None)
    name = getattr(entry, "__qualname__", None) or getattr(entry, "__name__", None)
    if not module or not name:
        raise TypeError(f"cannot tell the module and name of safe global {entry!r}; pass "
                        "(obj, 'module.name') instead")
    return f"{module}.{name}", entry


# ============================================================================ loading
class _StorageType:
    """What ``torch.FloatStorage`` & co. unpickle to: the element type of a storage."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        qname = _QSTORAGE_DTYPE.get(name)
        self.dtype = (_SUBBYTE_NP[qname] if qname in _SUBBYTE_NP
                      else D._BY_NAME[_STORAGE_DTYPE.get(name) or qname].np)


class _LoadedStorage:
    """A storage read from a checkpoint: a 1-D array of its element type."""

    __slots__ = ("array", "key")

    def __init__(self, array, key):
        self.array, self.key = array, key


def _index(x, what):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise pickle.UnpicklingError(f"ember.load: corrupt checkpoint: {what} must be an "
                                     f"integer, got {type(x).__name__}")
    return int(x)


def _view_of(storage, storage_offset, size, stride):
    """The array a checkpointed tensor views, after checking it lies inside its storage."""
    if not isinstance(storage, _LoadedStorage):
        raise pickle.UnpicklingError(f"ember.load: corrupt checkpoint: a tensor's storage is a "
                                     f"{type(storage).__name__}")
    names = storage.array.dtype.names
    if names and names[0] in _SUBBYTE_NP:  # packed sub-byte values: for _rebuild_qtensor
        name = _QSTORAGE_NAME[names[0]]
        raise NotImplementedError(f"ember.load: a {name} can only hold a quantized tensor's "
                                  "packed values (torch._utils._rebuild_qtensor)")
    offset = _index(storage_offset, "storage_offset")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise RuntimeError(f"ember.load: corrupt checkpoint: a tensor has size {size!r} and "
                           f"stride {stride!r}")
    size = tuple(_index(n, "size") for n in size)
    stride = tuple(_index(s, "stride") for s in stride)
    arr = storage.array
    if offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise RuntimeError(f"ember.load: corrupt checkpoint: negative size, stride or offset "
                           f"(size={size}, stride={stride}, storage_offset={offset})")
    if 0 in size:
        return np.empty(size, dtype=arr.dtype)
    needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if needed > arr.size:
        raise RuntimeError(
            f"ember.load: corrupt checkpoint: a tensor with size={size}, stride={stride}, "
            f"storage_offset={offset} needs {needed} elements, but its storage (record "
            f"data/{storage.key}) holds {arr.size}")
    # A view whose ``base`` is the storage array, so that ember sees the shared memory.
    return np.ndarray(size, arr.dtype, buffer=arr, offset=offset * arr.itemsize,
                      strides=tuple(s * arr.itemsize for s in stride))


# Legacy checkpoints store the bytes after the pickle, so conj/neg bits wait until they are in
# (per thread: loads may run in several threads at once).
_deferred = threading.local()


def _apply_bits(t, metadata):
    # ember has no lazy conjugate/negative bits: the values are materialised.
    if metadata.get("conj"):
        t._data = np.conj(t._data)
    if metadata.get("neg"):
        t._data = np.negative(t._data)


def _finish_tensor(arr, requires_grad, metadata=None):
    t = _make(arr)
    if metadata:
        if not isinstance(metadata, dict) or not set(metadata) <= {"conj", "neg"}:
            raise NotImplementedError(f"ember.load: tensor metadata {metadata!r} is not "
                                      "supported")
        pending = getattr(_deferred, "bits", None)
        if pending is not None:
            pending.append((t, metadata))
        else:
            _apply_bits(t, metadata)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params, requires_grad,
                     backward_hooks):
    """A quantized tensor from PyTorch's checkpoint form (see ``_Pickler._qtensor_reduce``)."""
    names = getattr(getattr(getattr(storage, "array", None), "dtype", None), "names", None)
    if names and names[0] in _SUBBYTE_NP:  # packed bytes: the values from storage_offset on
        qdtype = D._BY_NAME[names[0]]
        shape = tuple(_index(n, "size") for n in size)
        if any(n < 0 for n in shape) or tuple(stride) != tuple(_contiguous_strides(shape)):
            raise NotImplementedError(f"ember.load: a {qdtype} tensor of size {shape} and "
                                      f"stride {tuple(stride)} (only contiguous ones)")
        per = 8 // _Q.SUBBYTE_BITS[qdtype.name]
        off = _index(storage_offset, "storage offset")
        if off % per:
            raise NotImplementedError(f"ember.load: a {qdtype} tensor starting inside a byte")
        arr = _Q.unpack_subbyte(storage.array.view(np.uint8)[off // per:], shape, qdtype)
    else:
        arr = np.array(_view_of(storage, storage_offset, size, stride))  # own memory
        qdtype = {np.dtype(np.int8): D.qint8, np.dtype(np.uint8): D.quint8,
                  np.dtype(np.int32): D.qint32}.get(arr.dtype)
    if qdtype is None or not isinstance(quantizer_params, tuple) or not quantizer_params:
        raise pickle.UnpicklingError("ember.load: corrupt checkpoint (_rebuild_qtensor)")
    scheme = quantizer_params[0]
    if scheme is _Q.per_tensor_affine and len(quantizer_params) == 3:
        _, scale, zp = quantizer_params
        return _Q.QTensor._new(arr, qdtype, scheme, float(scale), int(zp))
    if (scheme in (_Q.per_channel_affine, _Q.per_channel_affine_float_qparams)
            and len(quantizer_params) == 4):
        _, scales, zps, axis = quantizer_params
        scales = np.asarray(scales._data if isinstance(scales, Tensor) else scales,
                            dtype=np.float64).reshape(-1)
        zps = np.asarray(zps._data if isinstance(zps, Tensor) else zps).reshape(-1)
        axis = _index(axis, "axis")
        if not 0 <= axis < arr.ndim or scales.size != arr.shape[axis] or zps.size != scales.size:
            raise ValueError(f"ember.load: _rebuild_qtensor: per-channel axis {axis} and "
                             f"{scales.size} scales / {zps.size} zero points do not fit a "
                             f"tensor of size {tuple(arr.shape)}")
        # PyTorch writes per_channel_affine for float-qparams tensors too: float zero points
        # say which it is
        if zps.dtype.kind == "f":
            scheme = _Q.per_channel_affine_float_qparams
        zps = zps.astype(np.float32 if scheme is _Q.per_channel_affine_float_qparams
                         else np.int64)
        return _Q.QTensor._new(arr, qdtype, scheme, scales=scales, zps=zps, axis=axis)
    raise NotImplementedError(f"ember.load: quantized tensors with qscheme {scheme!r} are not "
                              "supported")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _make(_view_of(storage, storage_offset, size, stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    return _finish_tensor(_view_of(storage, storage_offset, size, stride), requires_grad,
                          metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(storage, _LoadedStorage) or not isinstance(dtype, D.dtype):
        raise pickle.UnpicklingError("ember.load: corrupt checkpoint (_rebuild_tensor_v3)")
    raw = storage.array.view(np.uint8)
    if raw.size % dtype.itemsize:
        raise RuntimeError(f"ember.load: corrupt checkpoint: storage data/{storage.key} has "
                           f"{raw.size} bytes, not a whole number of {dtype} elements")
    typed = _LoadedStorage(raw.view(dtype.np), storage.key)
    return _finish_tensor(_view_of(typed, storage_offset, size, stride), requires_grad,
                          metadata)


def _parameter_class():
    from .nn.parameter import Parameter
    return Parameter


def _set_state(obj, state):
    """Restore Python attributes saved with a tensor; never ember's own (``_data``, methods)."""
    if not state:
        return obj
    if isinstance(state, tuple):  # (__dict__ part, __slots__ part)
        merged = {}
        for part in state:
            merged.update(part or {})
        state = merged
    if not isinstance(state, dict):
        raise pickle.UnpicklingError("ember.load: corrupt checkpoint: tensor state is a "
                                     f"{type(state).__name__}")
    reserved = dir(type(obj))
    for k, v in state.items():
        if not isinstance(k, str) or k in reserved or k in ("_data", "__dict__", "__class__"):
            raise pickle.UnpicklingError(f"ember.load: refusing to set attribute {k!r} of a "
                                         f"{type(obj).__name__} from a checkpoint")
        obj.__dict__[k] = v
    return obj


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("ember.load: corrupt checkpoint: a Parameter's data is a "
                                     f"{type(data).__name__}")
    return _parameter_class()(data, bool(requires_grad))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _set_state(_rebuild_parameter(data, requires_grad, backward_hooks), state)


def _rebuild_from_type_v2(func, new_type, args, state):
    if not isinstance(args, tuple):
        raise pickle.UnpicklingError("ember.load: corrupt checkpoint (_rebuild_from_type_v2)")
    ret = func(*args)
    if new_type is not type(ret):
        if new_type is Tensor and isinstance(ret, Tensor):
            pass
        elif new_type is _ParameterType and isinstance(ret, Tensor):
            ret = _parameter_class()(ret, ret.requires_grad)
        else:
            raise pickle.UnpicklingError(f"ember.load: cannot rebuild a {new_type!r}")
    return _set_state(ret, state)


def _get_layout(name):
    from . import strided
    if name != "torch.strided":
        raise NotImplementedError(f"ember.load: layout {name} is not supported (only "
                                  "torch.strided)")
    return strided


class _TypeMarker:
    """``torch.Tensor`` / ``torch.nn.parameter.Parameter`` as a type argument."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


_ParameterType = _TypeMarker("torch.nn.parameter.Parameter")

# torch names a checkpoint may use, and what ember gives for each.
_TORCH_NAMES = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.serialization._get_layout": _get_layout,
    "torch.Size": Size,
    "torch.device": _device_cls,
    "torch.Tensor": Tensor,
    "torch.nn.parameter.Parameter": _ParameterType,
}
_TORCH_NAMES.update({f"torch.{d.name}": d for d in D.all_dtypes if d.np is not None})
_TORCH_NAMES.update({f"torch.{d.name}": d for d in D._QUANT})
_TORCH_NAMES.update({f"torch.{n}": q for n, q in _Q._QSCHEMES.items()})
_TORCH_NAMES["torch._utils._rebuild_qtensor"] = _rebuild_qtensor


class ScriptObjectState:
    """What a pickled ``torch.ScriptObject`` (a TorchScript class instance, such as the packed
    weights of PyTorch's dynamic quantized RNNs) loads as: its pickled state, kept as data
    (``.state``: ``(fields, qualified class name)``), never run. The modules that know the
    class read it (``ember.ao.nn.quantized.dynamic`` for ``CellParamsBase``)."""

    state = None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        name = self.state[-1] if isinstance(self.state, tuple) and self.state else "?"
        return f"ScriptObjectState({name})"


_TORCH_NAMES["torch.ScriptObject"] = ScriptObjectState
_TORCH_NAMES.update({f"torch.{n}": _StorageType(n) for n in _QSTORAGE_DTYPE})
_TORCH_NAMES.update({f"torch.{n}": _StorageType(n) for n in _STORAGE_DTYPE})
_TORCH_NAMES.update({f"torch.storage.{n}": _StorageType(n) for n in ("UntypedStorage",)})
# the legacy tensor classes (``torch.FloatTensor``...) are on PyTorch's weights-only list too
_TORCH_NAMES.update({f"torch.{c.__name__}": c for c in _LEGACY_TENSOR_CLASSES})

# Known torch names that ember cannot load: each says what it is.
_TORCH_UNSUPPORTED = {
    "torch._utils._rebuild_sparse_tensor": "sparse tensors",
    "torch._utils._rebuild_nested_tensor": "nested tensors",
    "torch._utils._rebuild_meta_tensor_no_storage": "meta tensors",
    "torch._utils._rebuild_wrapper_subclass": "tensor subclasses",
    "torch._utils._rebuild_device_tensor_from_numpy": "device tensors pickled through NumPy",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "tensors of other devices",
}
_TORCH_UNSUPPORTED.update({f"torch.{n}": f"{n} (no such dtype in ember)"
                           for n in _UNSUPPORTED_STORAGES})

# Plain Python globals a checkpoint needs (PyTorch's weights-only list).
_PYTHON_NAMES = {
    "collections.OrderedDict": OrderedDict,
    "collections.Counter": collections.Counter,
    "builtins.set": set,
    "builtins.complex": complex,
    "builtins.bytearray": bytearray,
    "_codecs.encode": __import__("_codecs").encode,
}


def _resolve(module, name):
    """A (module, name) from the pickle, after Python 2 renames; None if not a known name."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    full = f"{module}.{name}"
    if full in _TORCH_NAMES:
        return full, _TORCH_NAMES[full]
    if full in _TORCH_UNSUPPORTED:
        raise NotImplementedError(f"ember.load: the checkpoint holds {_TORCH_UNSUPPORTED[full]}"
                                  f" ({full}), which ember does not support")
    if full.startswith("torch.") and name.endswith("Storage"):
        raise NotImplementedError(f"ember.load: the checkpoint holds a {full}, which ember does "
                                  "not support")
    if full in _PYTHON_NAMES:
        return full, _PYTHON_NAMES[full]
    if full in _EMBER_NAMES:  # written by ember.save for DTensors; imported on first use
        import importlib
        return full, getattr(importlib.import_module(module), name)
    return full, None


# ember's own rebuild functions that ember.save writes (DTensors: the shard, the mesh's
# layout and the placements as plain data; rebuilding runs no collective)
_EMBER_NAMES = {"ember.distributed.device_mesh._unpickle_mesh",
                "ember.distributed.tensor._api._rebuild_dtensor"}


class _WeightsOnlyUnpickler(pickle._Unpickler):
    """Admits only the globals a checkpoint needs, plus those added with add_safe_globals.

    Restricting globals is not enough on its own: the BUILD opcode sets attributes on whatever
    object is on the stack, and could rewrite an allowed function or class (say, the
    ``__defaults__`` of a rebuild function) for every later load. So BUILD is allowed only on
    tensors and dicts (plain attributes) and on instances of classes the user allowed. The
    pure-Python unpickler is used because its opcode table can be changed; ``data.pkl`` is
    small, the tensor bytes never pass through it.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        full, obj = _resolve(module, name)
        if obj is not None:
            return obj
        allowed = dict(_global_name(e) for e in _SAFE_GLOBALS)
        if full in allowed:
            return allowed[full]
        raise pickle.UnpicklingError(
            f"Weights only load failed: the checkpoint needs the global '{full}', which "
            f"ember.load(weights_only=True) does not allow, since loading could run it. If you "
            f"trust this checkpoint, allow it with "
            f"ember.serialization.add_safe_globals([{full}]) or within "
            f"`with ember.serialization.safe_globals([{full}]):`, or load with "
            f"weights_only=False (unsafe: a malicious file can then run any code).")


def _load_build(self):
    inst = self.stack[-2]  # the stack ends with the object, then its state
    if isinstance(inst, (Tensor, dict)):
        _set_state(inst, self.stack.pop())
        return
    if type(inst) is ScriptObjectState:  # state kept as data
        inst.__setstate__(self.stack.pop())
        return
    user_classes = tuple(obj for _, obj in map(_global_name, _SAFE_GLOBALS)
                         if isinstance(obj, type))
    if isinstance(inst, type) or not isinstance(inst, user_classes):
        raise pickle.UnpicklingError(
            f"Weights only load failed: the checkpoint sets the state of a "
            f"{type(inst).__module__}.{type(inst).__qualname__} object, which "
            f"ember.load(weights_only=True) does not allow")
    pickle._Unpickler.load_build(self)


_WeightsOnlyUnpickler.dispatch[pickle.BUILD[0]] = _load_build


class _FullUnpickler(pickle.Unpickler):
    """``weights_only=False``: any global, with torch's names mapped to ember's."""

    def find_class(self, module, name):
        full, obj = _resolve(module, name)
        if obj is not None:
            return obj
        if full.startswith(("torch.", "torchvision.")):
            # a whole model pickled by PyTorch names PyTorch's classes; ember keeps its own
            # at the same paths (torch.nn.modules.linear.Linear -> ember.nn.modules...)
            found = _ember_twin(module, name)
            if found is None:
                raise NotImplementedError(
                    f"ember.load: the checkpoint pickles the PyTorch object {full}, which "
                    f"ember has no counterpart for. Save plain containers of tensors (e.g. "
                    f"model.state_dict()) instead.")
            return found
        return super().find_class(module, name)


def _ember_twin(module, name):
    """ember's object at the path of a torch/torchvision one, or None."""
    import importlib
    root, _, rest = module.partition(".")
    target = ("ember" if root == "torch" else "ember.vision") + ("." + rest if rest else "")
    try:
        obj = importlib.import_module(target)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def _restorer(map_location):
    """``map_location`` as a function (storage, location) -> storage on ember's CPU."""

    def place(storage, location):
        if _PACKAGES and storage is not None:  # register_package's deserializers first
            for _, _, deserializer in _PACKAGES:
                result = deserializer(storage, location)
                if result is not None:
                    return result
        try:
            dev = _device_cls(location)
        except (RuntimeError, TypeError) as e:
            raise RuntimeError(f"ember.load: unknown storage location {location!r}") from e
        if dev.type != "cpu":
            raise RuntimeError(
                f"ember.load: cannot place a storage on '{location}': ember has no "
                f"{dev.type} backend here (ember.cuda.is_available() is False). Pass "
                f"map_location='cpu' to load the checkpoint on the CPU.")
        return storage

    if map_location is None:
        return place
    if isinstance(map_location, (str, bytes, _device_cls)):
        target = map_location.decode() if isinstance(map_location, bytes) else str(map_location)
        place(None, target)  # a non-CPU target fails before anything is read
        return lambda storage, location: place(storage, target)
    if isinstance(map_location, dict):
        return lambda storage, location: place(storage, str(map_location.get(location,
                                                                             location)))
    if callable(map_location):
        def call(storage, location):
            result = map_location(storage, location)
            if result is None:
                return place(storage, location)
            if not isinstance(result, UntypedStorage):
                raise TypeError(f"ember.load: map_location returned a "
                                f"{type(result).__name__}, expected the storage it was given "
                                f"(or None)")
            return result
        return call
    raise TypeError(f"ember.load: map_location must be None, a string, a device, a dict or a "
                    f"callable, got {type(map_location).__name__}")


def _ascii(x):
    return x.decode("ascii") if isinstance(x, bytes) else x


def _check_pid(pid, length):
    if (not isinstance(pid, tuple) or len(pid) != length or _ascii(pid[0]) != "storage"
            or not isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"ember.load: corrupt checkpoint: unexpected persistent "
                                     f"id {pid!r}")
    return pid[1].dtype, str(_ascii(pid[2])), _ascii(pid[3]), _index(pid[4], "storage size")


class _ZipStorages:
    """``persistent_load`` for zip checkpoints: reads (or maps) each storage record once."""

    def __init__(self, zf, fh, prefix, restore, mmap_path):
        self.zf, self.fh, self.prefix = zf, fh, prefix
        self.restore = restore
        self.swap = False  # the file's byte order differs from this machine's
        # MAP_PRIVATE (copy on write, the default) or MAP_SHARED (set_default_mmap_options)
        mode = "r+" if _LOAD_CONFIG["mmap_flags"] == _MAP_SHARED else "c"
        self.mm = np.memmap(mmap_path, dtype=np.uint8, mode=mode) if mmap_path else None
        self.loaded = {}

    def __call__(self, pid):
        dtype, key, location, numel = _check_pid(pid, 5)
        if key in self.loaded:
            st = self.loaded[key]
            if st.array.dtype != dtype:
                raise RuntimeError(f"ember.load: corrupt checkpoint: storage {key} is used with "
                                   f"two element types")
            return st
        if numel < 0:
            raise RuntimeError(f"ember.load: corrupt checkpoint: storage {key} has {numel} "
                               f"elements")
        if _SKIP_DATA[0]:  # skip_data(): the tensors' storages are left unread (zeros)
            raw = np.zeros(numel * dtype.itemsize, dtype=np.uint8)
        else:
            raw = self._record(key, numel * dtype.itemsize)
        raw = self.restore(UntypedStorage(raw), location)._data
        arr = raw.view(dtype)
        if self.swap:
            arr = arr.byteswap()
        st = self.loaded[key] = _LoadedStorage(arr, key)
        return st

    def _record(self, key, nbytes):
        name = f"{self.prefix}data/{key}"
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise RuntimeError(f"ember.load: corrupt checkpoint: storage record {name} is "
                               f"missing") from None
        if info.file_size != nbytes:
            raise RuntimeError(f"ember.load: corrupt checkpoint: storage record {name} holds "
                               f"{info.file_size} bytes, but its tensors need {nbytes}")
        if info.compress_type != zipfile.ZIP_STORED:  # not from torch: read the slow way
            return np.frombuffer(bytearray(self._read(name)), dtype=np.uint8)
        start = self._data_offset(info)
        if self.mm is not None:
            if start + nbytes > self.mm.size:
                raise RuntimeError(f"ember.load: truncated checkpoint: record {name} runs past "
                                   f"the end of the file")
            return self.mm[start:start + nbytes]
        if start + nbytes > self.fh.seek(0, os.SEEK_END):  # before allocating nbytes
            raise RuntimeError(f"ember.load: truncated checkpoint: record {name} runs past "
                               f"the end of the file")
        buf = np.empty(nbytes, dtype=np.uint8)
        self.fh.seek(start)
        if self.fh.readinto(memoryview(buf)) != nbytes:
            raise RuntimeError(f"ember.load: truncated checkpoint: record {name} is cut short")
        # CRC 0: written by torch.save with set_crc32_options(False), which skips the sum
        if info.CRC != 0 and zlib.crc32(buf) != info.CRC:
            raise RuntimeError(f"ember.load: corrupt checkpoint: record {name} fails its "
                               f"checksum")
        return buf

    def _data_offset(self, info):
        header = b""
        if info.header_offset >= 0:
            self.fh.seek(info.header_offset)
            header = self.fh.read(30)
        if len(header) != 30 or header[:4] != _ZIP_MAGIC:
            raise RuntimeError(f"ember.load: corrupt checkpoint: bad local header for "
                               f"{info.filename}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        return info.header_offset + 30 + name_len + extra_len

    def _read(self, name):
        try:
            info = self.zf.getinfo(name)
            if info.CRC == 0 and info.file_size and info.compress_type == zipfile.ZIP_STORED:
                # written without checksums (torch's set_crc32_options(False)): zipfile
                # would reject the record, so read its bytes directly
                self.fh.seek(self._data_offset(info))
                data = self.fh.read(info.file_size)
                if len(data) != info.file_size:
                    raise EOFError(f"record {name} is cut short")
                return data
            return self.zf.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
            raise RuntimeError(f"ember.load: corrupt checkpoint: cannot read {name}: "
                               f"{e}") from e


def _unpickle(unpickler):
    """Run an unpickler, turning the errors a damaged pickle causes into one clear error."""
    try:
        return unpickler.load()
    except (pickle.UnpicklingError, RuntimeError, NotImplementedError):
        raise
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            OverflowError, UnicodeDecodeError, struct.error, MemoryError) as e:
        raise pickle.UnpicklingError(f"ember.load: corrupt checkpoint: the pickle cannot be "
                                     f"read ({type(e).__name__}: {e})") from e


def _load_zip(fh, unpickler_cls, restore, mmap_path, load_args):
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise RuntimeError(f"ember.load: not a valid checkpoint archive (truncated or corrupt "
                           f"zip: {e})") from e
    names = zf.namelist()
    pkls = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl")
                                                    and n.count("/") == 1)]
    if not pkls:
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            raise NotImplementedError("ember.load: this is a TorchScript archive "
                                      "(torch.jit.save), which ember cannot load")
        raise RuntimeError("ember.load: the archive has no data.pkl record; it is not a "
                           "checkpoint")
    prefix = pkls[0][:-len("data.pkl")]
    storages = _ZipStorages(zf, fh, prefix, restore, mmap_path)
    if prefix + "byteorder" in names:
        order = storages._read(prefix + "byteorder").decode("ascii", "replace")
        if order not in ("little", "big"):
            raise RuntimeError(f"ember.load: unknown byte order {order!r} in checkpoint")
        storages.swap = order != sys.byteorder
    elif _load_endianness[0] not in (None, LoadEndianness.NATIVE):
        # no record (old writers): the order set_default_load_endianness chose
        storages.swap = _load_endianness[0].name.lower() != sys.byteorder
    data = storages._read(pkls[0])
    unpickler = unpickler_cls(io.BytesIO(data), **load_args)
    unpickler.persistent_load = storages
    return _unpickle(unpickler)


def _load_legacy(fh, unpickler_cls, restore, load_args):
    """PyTorch's pre-1.6 format: pickled magic, version and system info, the object, the
    storage keys, then each storage as an 8-byte element count and its raw bytes."""
    if _unpickle(unpickler_cls(fh, **load_args)) != _LEGACY_MAGIC:
        raise RuntimeError("ember.load: not a checkpoint: invalid magic number (neither "
                           "PyTorch's zip format nor its legacy format)")
    version = _unpickle(unpickler_cls(fh, **load_args))
    if version != _LEGACY_PROTOCOL:
        raise RuntimeError(f"ember.load: unsupported legacy protocol version {version!r}")
    sys_info = _unpickle(unpickler_cls(fh, **load_args))
    little = isinstance(sys_info, dict) and sys_info.get("little_endian", True)
    roots = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or len(pid) != 6:
            raise pickle.UnpicklingError(f"ember.load: corrupt checkpoint: unexpected "
                                         f"persistent id {pid!r}")
        dtype, key, location, numel = _check_pid(pid[:5], 5)
        view = pid[5]
        if key not in roots:
            raw = np.zeros(numel * dtype.itemsize, dtype=np.uint8)
            raw = restore(UntypedStorage(raw), location)._data
            roots[key] = _LoadedStorage(raw.view(dtype), key)
        st = roots[key]
        if view is None:
            return st
        view_key, offset, size = view
        offset, size = _index(offset, "view offset"), _index(size, "view size")
        if offset < 0 or size < 0 or offset + size > st.array.size:
            raise RuntimeError("ember.load: corrupt checkpoint: storage view out of bounds")
        return _LoadedStorage(st.array[offset:offset + size], str(_ascii(view_key)))

    u = unpickler_cls(fh, **load_args)
    u.persistent_load = persistent_load
    _deferred.bits = deferred = []
    try:
        result = _unpickle(u)
    finally:
        _deferred.bits = None
    keys = _unpickle(unpickler_cls(fh, **load_args))
    if not isinstance(keys, list) or set(map(str, keys)) != set(roots):
        raise RuntimeError("ember.load: corrupt checkpoint: the storage list does not match "
                           "the storages the object uses")
    for key in keys:
        arr = roots[str(key)].array
        count = fh.read(8)
        if len(count) != 8:
            raise RuntimeError("ember.load: truncated checkpoint (legacy storage data)")
        if int.from_bytes(count, "little" if little else "big") != arr.size:
            raise RuntimeError(f"ember.load: corrupt checkpoint: storage {key} size mismatch")
        raw = arr.view(np.uint8)
        if fh.readinto(memoryview(raw)) != raw.size:
            raise RuntimeError("ember.load: truncated checkpoint (legacy storage data)")
        if little != (sys.byteorder == "little"):
            arr.byteswap(inplace=True)
    for t, metadata in deferred:
        _apply_bits(t, metadata)
    return result


_TRUE_VALUES = ("1", "y", "yes", "true")


def _env_flag(*names):
    return any(os.getenv(n, "0").lower() in _TRUE_VALUES for n in names)


def _weights_only_from_env(weights_only):
    """PyTorch's overrides: ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` forces ``weights_only=True``
    (whatever the call says); ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` makes it False where the
    call did not choose. ``EMBER_FORCE_...`` spell the same."""
    force = _env_flag("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "EMBER_FORCE_WEIGHTS_ONLY_LOAD")
    force_no = _env_flag("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "EMBER_FORCE_NO_WEIGHTS_ONLY_LOAD")
    if force and force_no:
        raise RuntimeError("Only one of `TORCH_FORCE_WEIGHTS_ONLY_LOAD` or "
                           "`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` should be set, but both were set.")
    if force:
        return True
    if force_no and weights_only is None:
        import warnings
        warnings.warn("Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected, since "
                      "the `weights_only` argument was not explicitly passed to `ember.load`, "
                      "forcing weights_only=False.", UserWarning, stacklevel=3)
        return False
    return weights_only


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None,
         **pickle_load_args):
    """Load an object saved with ``ember.save`` or ``torch.save``.

    ``weights_only=True`` (the default) admits only tensors, containers and Python
    primitives, plus the globals allowed with ``add_safe_globals``; ``weights_only=False``
    unpickles anything and so can run code from the file: use it only for files you trust.
    ``mmap=True`` maps storages from the file instead of reading them (``f`` must be a path);
    writes to such tensors stay in memory. ``map_location`` may be ``'cpu'``, a device, a dict
    of locations or a callable ``(storage, location)``; ember has no GPU, so CUDA fails.
    """
    weights_only = _weights_only_from_env(weights_only)
    if weights_only is None:  # as PyTorch: an explicit pickle_module means a full unpickle
        weights_only = pickle_module is None
    if pickle_module is not None and pickle_module is not pickle:
        raise NotImplementedError(f"ember.load: only the standard pickle module is supported "
                                  f"(got pickle_module={pickle_module!r})")
    if weights_only and pickle_module is not None:
        raise RuntimeError("ember.load: cannot load safely with weights_only=True when "
                           "pickle_module is given; drop pickle_module")
    unpickler_cls = _WeightsOnlyUnpickler if weights_only else _FullUnpickler
    load_args = {k: pickle_load_args[k] for k in ("encoding", "errors")
                 if k in pickle_load_args}
    if set(pickle_load_args) - set(load_args):
        raise TypeError(f"ember.load: unexpected arguments {sorted(set(pickle_load_args))}")
    restore = _restorer(map_location)
    is_path = isinstance(f, (str, os.PathLike))
    if mmap and not is_path:
        raise ValueError("ember.load: mmap=True needs f to be a file path")
    with contextlib.ExitStack() as stack:
        if is_path:
            fh = stack.enter_context(open(f, "rb"))
        elif hasattr(f, "read"):
            fh = f
            if not (hasattr(f, "seekable") and f.seekable()):
                fh = io.BytesIO(f.read())
        else:
            raise TypeError(f"ember.load: f must be a path or a binary file object, got "
                            f"{type(f).__name__}")
        start = fh.tell()
        magic = fh.read(4)
        fh.seek(start)
        if not magic:
            raise RuntimeError("ember.load: the file is empty")
        if magic == _ZIP_MAGIC:
            return _load_zip(fh, unpickler_cls, restore, os.fspath(f) if mmap else None,
                             load_args)
        if mmap:
            raise RuntimeError("ember.load: mmap=True needs a checkpoint in the zip format; "
                               "this file is in PyTorch's legacy format")
        if magic[:1] != pickle.PROTO:
            raise RuntimeError(f"ember.load: not a checkpoint (file starts with {magic!r}; "
                               f"expected a zip archive or PyTorch's legacy format)")
        return _load_legacy(fh, unpickler_cls, restore, load_args)


# ============================================================================ PyTorch's helpers
class SourceChangeWarning(Warning):
    """PyTorch warns with it when a pickled module's source changed; kept for code that
    filters it (ember pickles no source)."""


@contextlib.contextmanager
def mkdtemp():
    """A temporary directory for the ``with`` block, removed afterwards."""
    import shutil
    import tempfile
    path = tempfile.mkdtemp()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def location_tag(storage):
    """The location string a storage is saved with: the first answer of the taggers given
    to ``register_package``, else ``'cpu'`` (ember's storages live there)."""
    for _, tagger, _ in _PACKAGES:
        loc = tagger(storage)
        if loc:
            return loc
    return "cpu"


def default_restore_location(storage, location):
    """Place a loaded storage: CPU locations keep it; others fail (no GPU backend)."""
    return _restorer(None)(storage, location)


def validate_cuda_device(location):
    """Fails: there is no CUDA device to place a storage on (PyTorch's check)."""
    if location is None or isinstance(location, int):
        location = "cuda" if location is None else f"cuda:{location}"
    _restorer(None)(None, str(location))


def validate_hpu_device(location):
    raise RuntimeError(f"ember.load: cannot place a storage on {location!r}: ember has no HPU "
                       f"backend")


StorageType = _StorageType


def normalize_storage_type(storage_type):
    """The ember storage class of the same name as ``storage_type``."""
    import ember
    return getattr(ember, storage_type.__name__)


def storage_to_tensor_type(storage):
    """The legacy tensor class of a storage's dtype (``FloatStorage`` -> ``FloatTensor``)."""
    import ember
    dtype = getattr(storage, "dtype", D.uint8)
    name = _STORAGE_OF_DTYPE.get(dtype.name, "ByteStorage").replace("Storage", "Tensor")
    return getattr(ember, name)


class LoadEndianness(__import__("enum").Enum):
    """Byte order assumed for checkpoints that do not record theirs."""

    NATIVE = 1
    LITTLE = 2
    BIG = 3


_load_endianness = [None]


def get_default_load_endianness():
    return _load_endianness[0]


def set_default_load_endianness(endianness):
    """Byte order for checkpoints without a ``byteorder`` record (None: native)."""
    if endianness is not None and not isinstance(endianness, LoadEndianness):
        raise TypeError("Invalid argument type in function set_default_load_endianness")
    _load_endianness[0] = endianness


def check_module_version_greater_or_equal(module, req_version_tuple,
                                          error_if_malformed=True):
    """Whether ``module.__version__`` is at least ``req_version_tuple``."""
    version = str(getattr(module, "__version__", "")).split("+")[0]
    try:
        parts = tuple(type(req)(p) for p, req in zip(version.split("."), req_version_tuple))
        return parts >= tuple(req_version_tuple)
    except ValueError as e:
        if error_if_malformed:
            raise RuntimeError(f"'{module.__name__}' module version string is malformed "
                               f"'{version}' and cannot be compared with tuple "
                               f"{req_version_tuple}") from e
        import warnings
        warnings.warn(f"'{module.__name__}' module version string is malformed '{version}' "
                      f"and cannot be compared with tuple {req_version_tuple}", stacklevel=2)
        return True


def get_unsafe_globals_in_checkpoint(f):
    """The globals a checkpoint's pickle names that ``weights_only`` loading would refuse
    (neither on PyTorch's list nor added with ``add_safe_globals``), found by reading the
    pickle's opcodes without running it. Sorted."""
    import pickletools
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            data = fh.read()
    else:
        data = f.read()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        data = zf.read(pkl)
    except (zipfile.BadZipFile, StopIteration):
        raise ValueError("get_unsafe_globals_in_checkpoint: expected a checkpoint in "
                         "PyTorch's zip format") from None
    allowed = dict(_global_name(e) for e in _SAFE_GLOBALS)
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, name = arg.split(" ", 1)
            found.add((module, name))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add((strings[-2], strings[-1]))
        if isinstance(arg, str) and "UNICODE" in op.name:
            strings.append(arg)
    unsafe = set()
    for module, name in found:
        try:
            full, obj = _resolve(module, name)
        except NotImplementedError:
            full, obj = f"{module}.{name}", None
        if obj is None and full not in allowed:
            unsafe.add(full)
    return sorted(unsafe)


# ============================================================================ options
# PyTorch's serialization settings (torch.utils.serialization.config) and hooks.
import mmap as _mmap  # noqa: E402

_MAP_PRIVATE = getattr(_mmap, "MAP_PRIVATE", 2)
_MAP_SHARED = getattr(_mmap, "MAP_SHARED", 1)
_SAVE_CONFIG = {"compute_crc32": True}
_LOAD_CONFIG = {"mmap_flags": _MAP_PRIVATE}
_PACKAGES: list = []  # (priority, tagger, deserializer), sorted by priority
_SKIP_DATA = [False]


def _tag(array):
    return location_tag(UntypedStorage(array.reshape(-1).view(np.uint8)))


def register_package(priority, tagger, deserializer):
    """Register a ``tagger(storage) -> location or None`` used when saving and a
    ``deserializer(storage, location) -> storage or None`` used when loading; they run in
    ``priority`` order (lower first) until one answers, before ember's own CPU handling."""
    _PACKAGES.append((priority, tagger, deserializer))
    _PACKAGES.sort(key=lambda e: e[0])


def get_crc32_options():
    """Whether ``save`` computes the CRC-32 of each record (PyTorch's default: True)."""
    return _SAVE_CONFIG["compute_crc32"]


def set_crc32_options(compute_crc32):
    """Set whether ``save`` computes record checksums. ember's zip writer always stores
    them (a file with checksums reads everywhere); the setting is kept for ``get``. Files
    PyTorch wrote without checksums (CRC 0) load here."""
    _SAVE_CONFIG["compute_crc32"] = bool(compute_crc32)


def get_default_mmap_options():
    """The ``mmap`` flags ``load(..., mmap=True)`` maps with: ``mmap.MAP_PRIVATE`` (writes
    stay in memory) unless set to ``mmap.MAP_SHARED`` (writes go to the file)."""
    return _LOAD_CONFIG["mmap_flags"]


class set_default_mmap_options:  # noqa: N801  (PyTorch's name)
    """Set the ``mmap`` flags of ``load(mmap=True)`` (``mmap.MAP_PRIVATE`` or
    ``mmap.MAP_SHARED``); as a context manager, restored on exit."""

    def __init__(self, flags):
        if flags not in (_MAP_PRIVATE, _MAP_SHARED):
            raise ValueError(f"Invalid argument in function set_default_mmap_options, expected "
                             f"mmap.MAP_PRIVATE or mmap.MAP_SHARED, but got {flags}")
        self.prev = _LOAD_CONFIG["mmap_flags"]
        _LOAD_CONFIG["mmap_flags"] = flags

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        _LOAD_CONFIG["mmap_flags"] = self.prev


class skip_data:  # noqa: N801  (PyTorch's name)
    """Inside, ``save`` writes each storage's space but not its bytes (zeros), and ``load``
    builds the tensors without reading their bytes (zeros), for a second pass that fills
    them. ``materialize_fake_tensors`` concerns PyTorch's FakeTensors; ember has none."""

    def __init__(self, materialize_fake_tensors=False):
        self.materialize_fake_tensors = materialize_fake_tensors

    def __enter__(self):
        self._old = _SKIP_DATA[0]
        _SKIP_DATA[0] = True
        return self

    def __exit__(self, *exc):
        _SKIP_DATA[0] = self._old


__all__ += ["register_package", "get_crc32_options", "set_crc32_options",
            "get_default_mmap_options", "set_default_mmap_options", "skip_data"]
