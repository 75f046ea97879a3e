"""Layer 3: bind ops to Tensor methods and operators, from explicit tables.

Each op family's section lists ``method name -> function``; a function's first argument is
the tensor. Adding a Tensor method means one line here.
"""

from __future__ import annotations

import builtins

import numpy as np

from . import _dtype as D, _storage
from ._device import CPU, META, to_device
from ._meta import NO_DATA, MetaArray
from ._tensor import Size, Tensor, _bump_version, _LegacyTensorType, _make
from .autograd import elision, engine
from ._hooks import add_hook
from .autograd.graph import Node, named
from .autograd import graph as _graph
from .ops import creation, elementwise as E, indexing as I, linalg as L, random as R
from .ops import reduction as Rd, shape as S, sorting as So
from .ops import nn as NN


# ---------------------------------------------------------------------- conversions
class ToDtype(Node):
    @staticmethod
    def forward(ctx, a, dt):
        ctx.src = a.dtype
        return D.cast_array(a, dt)

    @staticmethod
    def backward(ctx, g):
        src = ctx.src
        if src.kind not in "fcV":
            return None, None
        if src.kind != "c" and g._data.dtype.kind == "c":
            g = g.real
        return g.to(D._BY_NP[src]), None


def _parse_to(args, kwargs):
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {list(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dtype = a.dtype
        elif isinstance(a, D.dtype):
            dtype = a
        elif isinstance(a, (str, CPU.__class__)) or a is None:
            if isinstance(a, str) and a in D._BY_NAME:
                dtype = D._BY_NAME[a]
            else:
                device = a
        elif isinstance(a, bool):
            pass  # non_blocking / copy given positionally
        elif isinstance(a, int):
            device = a
        else:
            dtype = D.to_dtype(a)
    return dtype, device, copy


class ToDevice(Node):
    """A copy to another device: cpu -> meta keeps the metadata and drops the data."""

    crosses_devices = True

    @staticmethod
    def forward(ctx, a, dev):
        if dev is not META:
            raise NotImplementedError(NO_DATA)
        ctx.src = CPU if type(a) is not MetaArray else META
        return MetaArray(a.shape, a.dtype)

    @staticmethod
    def backward(ctx, g):
        return g.to(ctx.src), None


def to(self, *args, **kwargs):
    """``to(dtype)``, ``to(device)``, ``to(other)``, ``to(device, dtype)``, ``memory_format=``;
    a no-op returns self."""
    fmt = kwargs.get("memory_format")
    if fmt is not None and fmt.name != "preserve_format":
        out = to(self, *args, **{k: v for k, v in kwargs.items() if k != "memory_format"})
        return out.contiguous(memory_format=fmt)
    dtype, device, copy = _parse_to(args, dict(kwargs))
    if device is not None:
        dev = to_device(device)
        if dev is not self.device:
            self = named(ToDevice.apply(self, dev), "ToCopyBackward0")
            copy = False
    if dtype is None or dtype.np == self._data.dtype:
        return self.clone() if copy else self
    return ToDtype.apply(self, dtype.np)


def _caster(dt):
    def cast(self, memory_format=None):
        return to(self, dt)
    return cast


def type_(self, dtype=None, non_blocking=False, **kw):
    if dtype is None:
        return "torch." + _LEGACY_NAMES.get(self.dtype.name, "Tensor")
    if isinstance(dtype, _LegacyTensorType):  # t.type(ember.DoubleTensor)
        return to(self, dtype.dtype)
    if isinstance(dtype, str) and dtype.endswith("Tensor"):
        name = dtype.split(".")[-1]
        inv = {v: k for k, v in _LEGACY_NAMES.items()}
        return to(self, D._BY_NAME[inv[name]])
    return to(self, D.to_dtype(dtype))


_LEGACY_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
                 "bfloat16": "BFloat16Tensor", "int64": "LongTensor", "int32": "IntTensor",
                 "int16": "ShortTensor", "int8": "CharTensor", "uint8": "ByteTensor",
                 "bool": "BoolTensor", "complex64": "ComplexFloatTensor",
                 "complex128": "ComplexDoubleTensor"}


def numpy(self, *, force=False):
    """The tensor's memory as a NumPy array (shared, not copied)."""
    if type(self._data) is MetaArray:
        raise TypeError("can't convert meta device type tensor to numpy. Use Tensor.cpu() to "
                        "copy the tensor to host memory first.")
    if self._rg and not force:
        raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                           "tensor.detach().numpy() instead.")
    return self._data


def item(self):
    if type(self._data) is MetaArray and self._data.size == 1:
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")
    if self._data.size != 1:
        raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to "
                           "Scalar")
    return self._data.reshape(-1)[0].item()


def tolist(self):
    return self._data.tolist()


def _scalar_conv(pyfn, name):
    def conv(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               "to Scalar")
        return pyfn(item(self))
    conv.__name__ = name
    return conv


def __bool__(self):
    if type(self._data) is MetaArray:
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")
    n = self._data.size
    if n != 1:
        if n == 0:
            raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    return builtins.bool(self._data.reshape(-1)[0])


def __index__(self):
    if self._data.dtype.kind not in "biu" or self._data.size != 1:
        raise TypeError("only integer tensors of a single element can be converted to an index")
    return int(item(self))


def __iter__(self):
    if self._data.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return iter(S.unbind(self, 0)) if self._rg else iter([_view_row(self, i)
                                                          for i in builtins.range(len(self))])


def _view_row(self, i):
    t = _make(self._data[i])
    t._base = self._base if self._base is not None else self
    return t


def __array__(self, dtype=None, copy=None):
    arr = numpy(self)  # refuses tensors that require grad, as PyTorch's does
    if dtype is not None and arr.dtype != dtype:
        return arr.astype(dtype)
    return arr.copy() if copy else arr


def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    if self._rg:
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
    kwargs = {k: v for k, v in (("max_version", max_version), ("dl_device", dl_device),
                                ("copy", copy)) if v is not None}
    return _storage.dlpack_capsule(self._data, **kwargs)


def __dlpack_device__(self):
    return self._data.__dlpack_device__()


def stride(self, dim=None):
    """Strides in elements (PyTorch's convention), not bytes."""
    item_size = self._data.itemsize
    st = tuple(s // item_size for s in self._data.strides)
    if self._data.size <= 1:  # NumPy reports odd strides for 0/1-sized dims
        st = tuple(_contiguous_strides(self._data.shape))
    if dim is None:
        return st
    from .ops._util import norm_dim
    return st[norm_dim(dim, self._data.ndim)]


def _contiguous_strides(shape):
    st, acc = [], 1
    for s in reversed(shape):
        st.append(acc)
        acc *= builtins.max(s, 1)
    return reversed(st)


def is_contiguous(self, memory_format=None):
    if memory_format is None or type(self._data) is not np.ndarray:
        return builtins.bool(self._data.flags.c_contiguous)
    from ._memory_format import is_contiguous_as
    return is_contiguous_as(self._data, memory_format)


def size(self, dim=None):
    if dim is None:
        return Size(self._data.shape)
    from .ops._util import norm_dim
    return self._data.shape[norm_dim(dim, self._data.ndim)]


def data_ptr(self):
    if type(self._data) is MetaArray:
        return 0  # as PyTorch's meta tensors: no memory
    return self._data.__array_interface__["data"][0]


def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False, **kw):
    return creation.tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad,
                           device=device or self.device)


def _new_factory(fn):
    def new(self, *size, dtype=None, device=None, requires_grad=False, **kw):
        return fn(*size, dtype=dtype or self.dtype, requires_grad=requires_grad,
                  device=device or self.device)
    return new


def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False, **kw):
    return creation.full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad,
                         device=device or self.device)


# ---------------------------------------------------------------------- autograd methods
def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate this tensor's gradient into the leaves' ``.grad`` (they add up across calls)."""
    engine.backward(self, gradient, retain_graph, create_graph, inputs=inputs)


def register_hook(self, hook):
    """``hook(grad)`` runs when this tensor's gradient is computed; it may return a new one."""
    if not self._rg:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if self.grad_fn is None:
        if self._hooks is None:
            self._hooks = {}
        return add_hook(self._hooks, hook)
    node = self.grad_fn
    if node._tensor_hooks is None:
        node._tensor_hooks = {}
    return add_hook(node._tensor_hooks.setdefault(self._output_nr, {}), hook)


def register_post_accumulate_grad_hook(self, hook):
    if self.grad_fn is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    if self._post_acc_hooks is None:
        self._post_acc_hooks = {}
    return add_hook(self._post_acc_hooks, hook)


def retain_grad(self):
    """Keep this non-leaf tensor's ``.grad`` after backward."""
    if not self._rg:
        raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
    if self.grad_fn is None or self._retains_grad:
        return
    import weakref
    ref = weakref.ref(self)

    def hook(g):
        t = ref()
        if t is not None:
            gd = g.detach()
            t.grad = _make(gd._data.copy()) if t.grad is None else t.grad + gd
    node = self.grad_fn  # the engine runs this key after the other hooks of the tensor
    if node._tensor_hooks is None:
        node._tensor_hooks = {}
    node._tensor_hooks.setdefault(self._output_nr, {})["retain_grad"] = hook
    self._retains_grad = True


def detach_(self):
    if self._base is not None and self._base._rg:
        raise RuntimeError("Can't detach views in-place. Use detach() instead.")
    self.grad_fn = None
    self._rg = False
    self._output_nr = 0
    return self


def zero_(self):
    return _fill_(self, 0)


def fill_(self, value):
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor "
                               f"with {value.ndim} dimensions.")
        if value._rg or self._rg:
            return E.apply_inplace(E.Fill, self, value)
        value = value.item()
    return _fill_(self, value)


def _fill_(self, value):
    from .autograd.grad_mode import GradMode
    if GradMode.enabled and self._rg or _graph._MODES:  # active modes see the write
        return E.apply_inplace(E.Fill, self, value)
    self._data[...] = value
    _bump_version(self)
    return self


class _Copy(Node):
    @staticmethod
    def forward(ctx, dst, src):
        ctx.src_shape = src.shape
        return np.broadcast_to(src, dst.shape).astype(dst.dtype) if src.shape != dst.shape else \
            src.astype(dst.dtype)

    @staticmethod
    def backward(ctx, g):
        return None, g


def copy_(self, src, non_blocking=False):
    """Copy ``src`` (broadcast, cast) into this tensor in place."""
    if type(self) is not Tensor and type(self).copy_ is not copy_:
        return self.copy_(src, non_blocking)  # a subclass's own (a DTensor copies shards)
    from .autograd.grad_mode import GradMode
    if not isinstance(src, Tensor):
        src = creation.tensor(src)
    if GradMode.enabled and (self._rg or src._rg) or _graph._MODES:  # modes see the write
        return E.apply_inplace(_Copy, self, src)
    try:
        np.copyto(self._data, np.broadcast_to(src._data, self._data.shape), casting="unsafe")
    except ValueError:
        raise RuntimeError(f"The size of tensor a ({list(self.shape)}) must match the size of "
                           f"tensor b ({list(src.shape)})") from None
    _bump_version(self)
    return self


def set_(self, source=None, *args):
    self._data = source._data
    self._base = source._base if source._base is not None else source
    return self


def resize_(self, *sizes):
    from .ops._util import shape_arg
    shape = shape_arg(sizes)
    n = 1
    for s in shape:
        n *= s
    flat = self._data.reshape(-1)
    if flat.size >= n:
        self._data = flat[:n].reshape(shape)
    else:
        new = np.zeros(n, dtype=self._data.dtype)
        new[:flat.size] = flat
        self._data = new.reshape(shape)
    return self


def element_size(self):
    return self._data.itemsize


def dim(self):
    return self._data.ndim


def numel(self):
    return self._data.size


def cpu(self, memory_format=None):
    if type(self._data) is MetaArray:
        raise NotImplementedError(NO_DATA)
    return self


def cuda(self, device=None, non_blocking=False, memory_format=None):
    to_device("cuda" if device is None else device if not isinstance(device, int)
              else f"cuda:{device}")


def is_floating_point(self):
    return self._data.dtype.kind == "f" or self._data.dtype == D._BF16


def is_complex(self):
    return self._data.dtype.kind == "c"


def is_signed(self):
    return self.dtype.is_signed


def get_device(self):
    return -1


def pin_memory(self, device=None):
    return self


def is_pinned(self, device=None):
    return False


def share_memory_(self):
    """Move this tensor's data to shared memory (see ``ember.multiprocessing``)."""
    from .multiprocessing import _shared
    return _shared.share_memory_(self)


def is_shared(self):
    from .multiprocessing import _shared
    return _shared.is_shared(self)


def _op(cls):
    """An operator bound straight to its op's dispatch (no keyword handling to pass); the
    arithmetic ones first try to reuse a temporary operand's array (``autograd.elision``)."""
    apply = _graph.apply_binary
    ufunc = {E.Add: np.add, E.Sub: np.subtract, E.Mul: np.multiply,
             E.Div: np.true_divide}.get(cls)
    if ufunc is None:
        def operator(self, other):
            return apply(cls, self, other)
        return operator
    binary, min_size = elision.binary, elision.MIN_SIZE

    def arithmetic(self, other):
        if self._data.size >= min_size:
            r = binary(self, other, ufunc, "binary")
            if r is not None:
                return r
        return apply(cls, self, other)
    return arithmetic


def _calibrate_elision():
    n = elision.MIN_SIZE

    def temporaries():
        _make(np.zeros(n)) * _make(np.zeros(n))
        E.tanh(_make(np.zeros(n)))

    def variables():
        a = _make(np.zeros(n))
        b = _make(np.zeros(n))
        a * b
        E.tanh(a)
    elision.calibrate(temporaries, variables)


def _rsub(self, other):
    return E.sub(other, self)


def _rpow(self, other):
    return E.pow(other, self)


def _rdiv(self, other):
    return E.div(other, self)


def _rfloordiv(self, other):
    return E.floor_divide(other, self)


def _rmod(self, other):
    return E.remainder(other, self)


def _rmatmul(self, other):
    return L.matmul(other, self)


def _iop(name):
    fn = E.INPLACE[name]

    def iop(self, other):
        return fn(self, other)
    return iop


def _ifloordiv(self, other):
    return E.INPLACE["floor_divide_"](self, other)


def _eq(self, other):
    if other is None or not isinstance(other, (Tensor, int, float, bool, complex, np.number)):
        return False
    return E.eq(self, other)


def _ne(self, other):
    if other is None or not isinstance(other, (Tensor, int, float, bool, complex, np.number)):
        return True
    return E.ne(self, other)


def _invert(self):
    if self._data.dtype == np.bool_:
        return E.logical_not(self)
    return E.bitwise_not(self)


def _and(self, other):
    # bitwise on bool arrays is logical; bool & int promotes to the int (PyTorch's rule)
    return E.bitwise_and(self, other)


def _or(self, other):
    # bitwise on bool arrays is logical; bool & int promotes to the int (PyTorch's rule)
    return E.bitwise_or(self, other)


def _xor(self, other):
    # bitwise on bool arrays is logical; bool & int promotes to the int (PyTorch's rule)
    return E.bitwise_xor(self, other)


def _T(self):
    nd = self._data.ndim
    return S.permute(self, tuple(builtins.range(nd - 1, -1, -1)))


def _mT(self):
    if self._data.ndim < 2:
        raise RuntimeError("tensor.mT is only supported on matrices or batches of matrices. "
                           f"Got {self._data.ndim}-D tensor.")
    return S.transpose(self, -2, -1)


def _mH(self):
    return _mT(self).conj()


def _view(self, *shape, dtype=None):
    if dtype is not None:  # ``t.view(dtype=...)``, the keyword spelling of ``t.view(dtype)``
        if shape:
            raise TypeError("view() takes either a shape or dtype=, not both")
        return S.view(self, dtype)
    return S.view(self, *shape)


def _expand(self, *sizes):
    return S.expand(self, *sizes)


def _squeeze_(self, dim=None):
    return S.rebind_inplace_view(self, S.squeeze(self, dim))


def _unsqueeze_(self, dim):
    return S.rebind_inplace_view(self, S.unsqueeze(self, dim))


def _t_(self):
    return S.rebind_inplace_view(self, S.t(self))


def _transpose_(self, d0, d1):
    return S.rebind_inplace_view(self, S.transpose(self, d0, d1))


def _write_back(self, r):
    """An in-place method composed of out-of-place ops: write ``r`` into ``self``."""
    return copy_(self, r) if not (self._rg or r._rg) else E.apply_inplace(_Copy, self, r)


def masked_fill_(self, mask, value):
    return _write_back(self, I.masked_fill(self, mask, value))


def _resize_as_(self, other, *, memory_format=None):
    return resize_(self, *other.shape)


def _new_empty_strided(self, size, stride, *, dtype=None, layout=None, device=None,
                       requires_grad=False, pin_memory=False):
    # ember's tensors are row-major: the strides PyTorch would honour are not kept
    return creation.empty(tuple(size), dtype=dtype or self.dtype, device=device,
                          requires_grad=requires_grad)


def _geqrf(self):
    from .linalg import geqrf
    return geqrf(self)


def _orgqr(self, tau):
    from .linalg import orgqr
    return orgqr(self, tau)


def _ormqr(self, tau, other, left=True, transpose=False):
    from .linalg import ormqr
    return ormqr(self, tau, other, left, transpose)


def _stft(self, *args, **kwargs):
    from ._spectral import stft
    return stft(self, *args, **kwargs)


def _istft(self, *args, **kwargs):
    from ._spectral import istft
    return istft(self, *args, **kwargs)


def _renorm_(self, p, dim, maxnorm):
    return _write_back(self, Rd.renorm(self, p, dim, maxnorm))


def _conj_physical_(self):
    return _write_back(self, E.conj_physical(self))


def index_put_(self, indices, values, accumulate=False):
    idx = I.convert_index(tuple(indices))
    if not isinstance(values, Tensor):
        values = creation.tensor(values, dtype=self.dtype)
    return E.apply_inplace(I.IndexPut, self, values, idx, accumulate)


def index_put(self, indices, values, accumulate=False):
    return index_put_(self.clone(), indices, values, accumulate)


def _apply_(self, fn):
    flat = self._data.reshape(-1)
    for i in builtins.range(flat.size):
        flat[i] = fn(flat[i].item())
    _bump_version(self)
    return self


def _map_(self, other, fn):
    a, b = np.broadcast_arrays(self._data, other._data)
    for idx in np.ndindex(a.shape):
        self._data[idx] = fn(a[idx].item(), b[idx].item())
    return self


def _sparse_method(name):
    # Sparse-layout methods of dense tensors live in ember/sparse.py, loaded on first use.
    def method(self, *args, **kwargs):
        from . import sparse
        return sparse.DENSE_METHODS[name](self, *args, **kwargs)
    method.__name__ = name
    return method


_SPARSE_METHODS = ("to_sparse", "to_sparse_coo", "to_dense", "coalesce", "is_coalesced", "_nnz",
                   "_values", "_indices", "values", "indices", "sparse_dim", "dense_dim",
                   "to_sparse_csr", "to_sparse_csc", "to_sparse_bsr", "to_sparse_bsc")
_SPARSE_METHODS += ("crow_indices", "col_indices", "ccol_indices", "row_indices")


# ====================================================================== the table
METHODS = {
    # conversions and metadata
    "to": to, "type": type_, "numpy": numpy, "item": item, "tolist": tolist,
    "float": _caster(D.float32), "double": _caster(D.float64), "half": _caster(D.float16),
    "bfloat16": _caster(D.bfloat16), "int": _caster(D.int32), "long": _caster(D.int64),
    "short": _caster(D.int16), "char": _caster(D.int8), "byte": _caster(D.uint8),
    "bool": _caster(D.bool_), "cfloat": _caster(D.complex64), "cdouble": _caster(D.complex128),
    "type_as": lambda self, other: to(self, other.dtype),
    "stride": stride, "is_contiguous": is_contiguous, "size": size, "data_ptr": data_ptr,
    "element_size": element_size, "dim": dim, "ndimension": dim, "numel": numel,
    "nelement": numel, "cpu": cpu, "cuda": cuda, "is_floating_point": is_floating_point,
    "is_complex": is_complex, "is_signed": is_signed, "get_device": get_device,
    "pin_memory": pin_memory, "is_pinned": is_pinned, "share_memory_": share_memory_,
    "is_shared": is_shared, "untyped_storage": _storage.untyped_storage,
    "new_tensor": new_tensor, "new_zeros": _new_factory(creation.zeros),
    "new_ones": _new_factory(creation.ones), "new_empty": _new_factory(creation.empty),
    "new_full": new_full, "apply_": _apply_, "map_": _map_,
    "__bool__": __bool__, "__index__": __index__, "__iter__": __iter__,
    "__array__": __array__, "__dlpack__": __dlpack__, "__dlpack_device__": __dlpack_device__,
    "__int__": _scalar_conv(int, "__int__"), "__float__": _scalar_conv(float, "__float__"),
    "__complex__": _scalar_conv(complex, "__complex__"),
    # autograd
    "backward": backward, "register_hook": register_hook,
    "register_post_accumulate_grad_hook": register_post_accumulate_grad_hook,
    "retain_grad": retain_grad, "detach": S.detach, "detach_": detach_,
    # in-place basics
    "zero_": zero_, "fill_": fill_, "copy_": copy_, "set_": set_, "resize_": resize_,
    "masked_fill_": masked_fill_, "index_put_": index_put_, "index_put": index_put,
    # operators
    "__add__": _op(E.Add), "__radd__": _op(E.Add), "__sub__": _op(E.Sub),
    "__rsub__": _rsub, "__mul__": _op(E.Mul), "__rmul__": _op(E.Mul),
    "__truediv__": _op(E.Div), "__rtruediv__": _rdiv,
    "__floordiv__": E.floor_divide, "__rfloordiv__": _rfloordiv, "__mod__": E.remainder,
    "__rmod__": _rmod, "__pow__": E.pow, "__rpow__": _rpow, "__matmul__": L.matmul,
    "__rmatmul__": _rmatmul, "__neg__": E.neg, "__pos__": E.positive, "__abs__": E.abs,
    "__invert__": _invert, "__and__": _and, "__rand__": _and, "__or__": _or, "__ror__": _or,
    "__xor__": _xor, "__rxor__": _xor, "__lshift__": E.bitwise_left_shift,
    "__rshift__": E.bitwise_right_shift,
    "__eq__": _eq, "__ne__": _ne, "__lt__": E.lt, "__le__": E.le, "__gt__": E.gt,
    "__ge__": E.ge, "__iadd__": _iop("add_"), "__isub__": _iop("sub_"),
    "__imul__": _iop("mul_"), "__itruediv__": _iop("div_"), "__ifloordiv__": _ifloordiv,
    "__imod__": _iop("remainder_"), "__ipow__": _iop("pow_"), "__iand__": _iop("bitwise_and_"),
    "__ior__": _iop("bitwise_or_"), "__ixor__": _iop("bitwise_xor_"),
    "__getitem__": I.getitem, "__setitem__": I.setitem,
    # elementwise
    "add": E.add, "sub": E.sub, "subtract": E.sub, "mul": E.mul, "multiply": E.mul,
    "div": E.div, "divide": E.div, "true_divide": E.true_divide,
    "floor_divide": E.floor_divide, "remainder": E.remainder, "fmod": E.fmod, "pow": E.pow,
    "neg": E.neg, "negative": E.neg, "abs": E.abs, "absolute": E.abs, "sign": E.sign,
    "sgn": E.sgn, "exp": E.exp, "exp2": E.exp2, "expm1": E.expm1, "log": E.log,
    "log2": E.log2, "log10": E.log10, "log1p": E.log1p, "sqrt": E.sqrt, "rsqrt": E.rsqrt,
    "square": E.square, "reciprocal": E.reciprocal, "sin": E.sin, "cos": E.cos, "tan": E.tan,
    "asin": E.asin, "acos": E.acos, "atan": E.atan, "arcsin": E.asin, "arccos": E.acos,
    "arctan": E.atan, "atan2": E.atan2, "arctan2": E.atan2, "sinh": E.sinh, "cosh": E.cosh,
    "tanh": E.tanh, "asinh": E.asinh, "acosh": E.acosh, "atanh": E.atanh,
    "arcsinh": E.asinh, "arccosh": E.acosh, "arctanh": E.atanh, "sigmoid": E.sigmoid,
    "logit": E.logit, "erf": E.erf, "erfc": E.erfc, "erfinv": E.erfinv, "relu": E.relu,
    "floor": E.floor, "ceil": E.ceil, "round": E.round, "trunc": E.trunc, "fix": E.trunc,
    "frac": E.frac, "clamp": E.clamp, "clip": E.clamp, "clamp_min": E.clamp_min,
    "clamp_max": E.clamp_max, "maximum": E.maximum, "minimum": E.minimum,
    "where": lambda self, condition, y: E.where(condition, self, y), "lerp": E.lerp,
    "addcmul": E.addcmul, "addcdiv": E.addcdiv, "hypot": E.hypot, "logaddexp": E.logaddexp,
    "logaddexp2": E.logaddexp2, "nan_to_num": E.nan_to_num, "eq": E.eq, "ne": E.ne,
    "lt": E.lt, "le": E.le, "gt": E.gt, "ge": E.ge, "greater": E.gt, "greater_equal": E.ge,
    "less": E.lt, "less_equal": E.le, "not_equal": E.ne, "isclose": E.isclose,
    "allclose": E.allclose, "equal": E.equal, "isnan": E.isnan, "isinf": E.isinf,
    "isfinite": E.isfinite, "isposinf": E.isposinf, "isneginf": E.isneginf, "isreal": E.isreal,
    "logical_and": E.logical_and, "logical_or": E.logical_or, "logical_xor": E.logical_xor,
    "logical_not": E.logical_not, "bitwise_and": E.bitwise_and, "bitwise_or": E.bitwise_or,
    "bitwise_xor": E.bitwise_xor, "bitwise_not": E.bitwise_not,
    "bitwise_left_shift": E.bitwise_left_shift, "bitwise_right_shift": E.bitwise_right_shift,
    "conj": E.conj, "conj_physical": E.conj_physical, "conj_physical_": _conj_physical_,
    "repeat_interleave": S.repeat_interleave, "sum_to_size": S.sum_to_size, "cov": Rd.cov,
    "corrcoef": Rd.corrcoef, "dist": Rd.dist, "renorm": Rd.renorm, "renorm_": _renorm_,
    "__rdiv__": _rdiv, "stft": _stft, "istft": _istft, "resize_as_": _resize_as_,
    "new_empty_strided": _new_empty_strided, "igamma": E.igamma, "igammac": E.igammac,
    "geqrf": _geqrf, "orgqr": _orgqr, "ormqr": _ormqr,
    "resolve_conj": lambda self: self, "resolve_neg": lambda self: self,
    "positive": E.positive,
    # reductions
    "sum": Rd.sum, "nansum": Rd.nansum, "mean": Rd.mean, "nanmean": Rd.nanmean,
    "prod": Rd.prod, "amax": Rd.amax, "amin": Rd.amin, "aminmax": Rd.aminmax, "max": Rd.max,
    "min": Rd.min, "argmax": Rd.argmax, "argmin": Rd.argmin, "var": Rd.var, "std": Rd.std,
    "logsumexp": Rd.logsumexp, "norm": Rd.norm, "all": Rd.all, "any": Rd.any,
    "softmax": NN.softmax, "log_softmax": NN.log_softmax,
    "cumsum": Rd.cumsum, "cumprod": Rd.cumprod, "count_nonzero": Rd.count_nonzero,
    "logcumsumexp": Rd.logcumsumexp, "cummax": Rd.cummax, "cummin": Rd.cummin,
    # special functions and other math
    "lgamma": E.lgamma, "digamma": E.digamma, "polygamma": lambda self, n: E.polygamma(n, self),
    "mvlgamma": E.mvlgamma, "i0": E.i0, "xlogy": E.xlogy, "sinc": E.sinc,
    "copysign": E.copysign, "nextafter": E.nextafter, "ldexp": E.ldexp, "frexp": E.frexp,
    "signbit": E.signbit, "heaviside": E.heaviside, "gcd": E.gcd, "lcm": E.lcm,
    "float_power": E.float_power, "deg2rad": E.deg2rad, "rad2deg": E.rad2deg,
    "angle": E.angle, "fmax": E.fmax, "fmin": E.fmin,
    # shape
    "view": _view, "view_as": lambda self, other: S.view(self, other.shape),
    "reshape": S.reshape, "reshape_as": lambda self, other: S.reshape(self, other.shape),
    "flatten": S.flatten, "unflatten": S.unflatten, "squeeze": S.squeeze,
    "unsqueeze": S.unsqueeze, "squeeze_": _squeeze_, "unsqueeze_": _unsqueeze_,
    "permute": S.permute, "transpose": S.transpose, "swapaxes": S.transpose,
    "swapdims": S.transpose, "transpose_": _transpose_, "t_": _t_, "movedim": S.movedim,
    "moveaxis": S.movedim, "t": S.t, "adjoint": S.adjoint, "expand": _expand,
    "expand_as": S.expand_as, "broadcast_to": S.broadcast_to, "repeat": S.repeat,
    "tile": S.tile, "split": S.split, "chunk": S.chunk, "unbind": S.unbind,
    "narrow": S.narrow, "flip": S.flip, "fliplr": lambda self: S.flip(self, 1),
    "flipud": lambda self: S.flip(self, 0), "roll": S.roll, "tril": S.tril, "triu": S.triu,
    "diag": S.diag, "diagonal": S.diagonal, "contiguous": S.contiguous, "clone": S.clone,
    # indexing
    "index_select": I.index_select, "gather": I.gather, "masked_fill": I.masked_fill,
    "nonzero": I.nonzero, "take_along_dim": I.take_along_dim,
    "index_add": I.index_add, "index_copy": I.index_copy, "index_fill": I.index_fill,
    "scatter": I.scatter, "scatter_add": I.scatter_add, "scatter_reduce": I.scatter_reduce,
    "masked_select": I.masked_select, "masked_scatter": I.masked_scatter, "take": I.take,
    "put": I.put, "argwhere": I.argwhere, "select": I.select, "select_scatter": I.select_scatter,
    "slice_scatter": I.slice_scatter, "diagonal_scatter": I.diagonal_scatter,
    "unique": I.unique, "unique_consecutive": I.unique_consecutive, "bincount": I.bincount,
    "histc": I.histc, **I.INPLACE, "index_reduce": I.index_reduce,
    "histogram": I.histogram, "diagflat": S.diagflat, "narrow_copy": S.narrow_copy,
    "diag_embed": S.diag_embed, "diff": S.diff, "tensor_split": S.tensor_split,
    "split_with_sizes": S.split_with_sizes, "hsplit": S.hsplit, "vsplit": S.vsplit,
    "dsplit": S.dsplit, "unfold": S.unfold, "as_strided": S.as_strided, "rot90": S.rot90,
    # sorting
    "sort": So.sort, "argsort": So.argsort, "msort": So.msort, "topk": So.topk,
    "kthvalue": So.kthvalue, "median": So.median, "nanmedian": So.nanmedian, "mode": So.mode,
    "quantile": So.quantile, "nanquantile": So.nanquantile,
    # linalg
    "matmul": L.matmul, "mm": L.mm, "bmm": L.bmm, "mv": L.mv, "dot": L.dot, "vdot": L.vdot,
    "inner": L.inner, "outer": L.outer, "ger": L.outer, "addmm": L.addmm,
    "baddbmm": L.baddbmm, "addbmm": L.addbmm, "addmv": L.addmv, "addr": L.addr,
    "trace": L.trace, "kron": L.kron, "cross": L.cross, "det": L.det, "logdet": L.logdet,
    "slogdet": L.slogdet, "inverse": L.inverse, "pinverse": L.pinverse,
    "matrix_power": L.matrix_power, "matrix_exp": L.matrix_exp, "cholesky": L.cholesky,
    "qr": L.qr, "svd": L.svd, "cholesky_solve": L.cholesky_solve,
    "cholesky_inverse": L.cholesky_inverse, "triangular_solve": L.triangular_solve, **L.INPLACE,
    "tril_": S.tril_, "triu_": S.triu_, "fill_diagonal_": S.fill_diagonal_,
    "swapaxes_": _transpose_, "swapdims_": _transpose_, "lu": L.lu, "lu_solve": L.lu_solve,
    # random in-place fillers
    **R.INPLACE,
    # in-place elementwise
    **E.INPLACE,
    # sparse layout (ember/sparse.py)
    **{name: _sparse_method(name) for name in _SPARSE_METHODS},
}

PROPERTIES = {
    "T": _T, "mT": _mT, "H": lambda self: _T(self).conj(), "mH": _mH,
    "real": E.real, "imag": E.imag, "itemsize": element_size,
    "nbytes": lambda self: self._data.nbytes,
}


def install():
    for name, fn in METHODS.items():
        setattr(Tensor, name, fn)
    for name, fn in PROPERTIES.items():
        setattr(Tensor, name, property(fn))
    _calibrate_elision()
