"""Layer 1: the Tensor data structure.

A Tensor is a backend array (``_data``) plus autograd metadata. Metadata that most tensors
never set (``grad_fn``, hooks, the view base, the version counter) lives in class-level
defaults, so making a tensor on the fast path costs one object and one attribute.

Views (``view``, slicing, ``transpose`` ...) hold backend views of their base's memory and
share its version counter through ``_base``, so an in-place write through either side is
seen by the other and by autograd's saved-tensor checks.
"""

from __future__ import annotations

import numpy as np

from . import _dtype as D
from ._device import CPU, META
from ._meta import MetaArray

_ndarray = np.ndarray
_BY_NP = D._BY_NP


class Size(tuple):
    """``tensor.shape``: a tuple of ints (``ember.Size``)."""

    __slots__ = ()

    def __repr__(self):
        return f"ember.Size({list(self)})"

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n

    def __getitem__(self, i):
        r = tuple.__getitem__(self, i)
        return Size(r) if isinstance(i, slice) else r

    def __add__(self, other):
        return Size(tuple.__add__(self, tuple(other)))

    def __reduce__(self):
        return (Size, (tuple(self),))


class Tensor:
    """A multi-dimensional array that can record the operations applied to it."""

    # Defaults that instances override only when they differ.
    _rg = False            # requires_grad
    _grad = None           # storage of the ``grad`` property
    grad_fn = None
    _base = None           # the root tensor whose memory this view shares
    _vc = None             # version counter ([int]) shared by a base and its views; lazy
    _output_nr = 0         # which output of grad_fn this is
    _hooks = None          # gradient hooks (leaf: run before accumulation)
    _post_acc_hooks = None
    _accum = None          # this leaf's AccumulateGrad node (made on first use)
    _ngview = None         # "no_grad"/"inference": a view made there of a tensor needing grad
    _retains_grad = False
    _is_param = False
    _save_by_reduce = False  # ember.save pickles it by __reduce_ex__ (DTensor)
    __array_ufunc__ = None  # NumPy defers binary operators to ours
    __array_priority__ = 1000

    def __init__(self, *args, **kwargs):
        # Legacy constructor: ``Tensor(2, 3)`` is an uninitialised float tensor of that shape,
        # ``Tensor([1, 2])`` copies data as the default float dtype.
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        if kwargs:
            raise TypeError(f"Tensor() got unexpected keyword arguments {list(kwargs)}")
        from ._device import target_device
        on_meta = target_device(device) is META
        dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
        if len(args) == 1 and isinstance(args[0], Size):
            args = tuple(args[0])
        if not args:
            arr = np.empty((0,), dtype=dt.np)
        elif len(args) == 1 and not isinstance(args[0], (int, np.integer)):
            src = args[0]
            if isinstance(src, Tensor):
                arr = src._data
            else:
                arr = np.array(src, dtype=dt.np)
        elif all(isinstance(a, (int, np.integer)) for a in args):
            shape = tuple(int(a) for a in args)
            arr = MetaArray(shape, dt.np) if on_meta else np.empty(shape, dtype=dt.np)
        else:
            raise TypeError(f"Tensor(): could not make a tensor from arguments {args!r}")
        if on_meta and type(arr) is not MetaArray:
            arr = MetaArray(arr.shape, arr.dtype)
        self._data = arr

    # ------------------------------------------------------------------ metadata
    @property
    def dtype(self):
        return _BY_NP[self._data.dtype]

    @property
    def shape(self):
        return Size(self._data.shape)

    @property
    def device(self):
        return META if type(self._data) is MetaArray else CPU

    @property
    def layout(self):
        from . import strided
        return strided

    is_cuda = False

    @property
    def is_meta(self):
        return type(self._data) is MetaArray

    is_sparse = False
    is_quantized = False
    is_mkldnn = False
    is_nested = False

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def requires_grad(self):
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` in place (leaves only, floating or complex dtypes only)."""
        requires_grad = bool(requires_grad)
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach().")
            return self
        if requires_grad and self._data.dtype.kind not in "fcV":
            raise RuntimeError(
                f"only Tensors of floating point and complex dtype can require gradients "
                f"(got {self.dtype})")
        self._rg = requires_grad
        return self

    @property
    def grad(self):
        """The gradient accumulated by backward (None until then; leaves only, unless
        ``retain_grad()`` was called)."""
        g = self._grad
        if g is None and self.grad_fn is not None and not self._retains_grad:
            import warnings
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its "
                ".grad attribute won't be populated during autograd.backward(). If you indeed "
                "want the .grad field to be populated for a non-leaf Tensor, use .retain_grad() "
                "on the non-leaf Tensor.", UserWarning, stacklevel=2)
        return g

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad "
                                f"of type {type(value).__name__}")
            # (a sparse gradient has no dense array: its dtype and shape say the same)
            vd = value.dtype.np if value.is_sparse else value._data.dtype
            vs = tuple(value.shape) if value.is_sparse else value._data.shape
            if vd != self._data.dtype:
                raise RuntimeError("assigned grad has data of a different type")
            if vs != self._data.shape:
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(vs)}' to a "
                    f"tensor of size '{list(self._data.shape)}'. Please ensure that the "
                    "gradient and the tensor are the same size")
        self._grad = value

    @property
    def _version(self):
        return _version_counter(self)[0]

    @property
    def data(self):
        # Like PyTorch's ``.data``: same memory, but a separate version counter, so autograd
        # does not see writes through it (``detach()`` is the safe alternative).
        return _make(self._data)

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(value).__name__}")
        if value._data.shape != self._data.shape or value._data.dtype != self._data.dtype:
            self._accum = None  # its recorded shape/dtype no longer hold
        self._data = value._data

    @property
    def retains_grad(self):
        return self._retains_grad

    @property
    def output_nr(self):
        return self._output_nr

    @property
    def _cdata(self):
        return id(self)

    def __hash__(self):
        return id(self)

    def storage_offset(self):
        """Offset, in elements, of this tensor's first element in its storage."""
        if type(self._data) is MetaArray:
            return self._data.offset // self._data.itemsize
        root = self._data
        while isinstance(root.base, np.ndarray):
            root = root.base
        start = self._data.__array_interface__["data"][0]
        return (start - root.__array_interface__["data"][0]) // self._data.itemsize

    def dim_order(self):
        """Dimensions from outermost to innermost in memory (by decreasing stride)."""
        st = self.stride()
        return tuple(sorted(range(self._data.ndim), key=lambda d: -st[d]))

    def is_inference(self):
        return False  # ember makes no inference tensors: inference_mode acts as no_grad

    def new(self, *args, **kwargs):
        """Legacy constructor of this tensor's dtype: ``t.new(2, 3)``, ``t.new([1, 2])``."""
        kwargs.setdefault("dtype", self.dtype)
        return Tensor(*args, **kwargs)

    def ravel(self):
        return self.reshape(-1)

    def __reversed__(self):
        if self._data.ndim == 0:
            return self
        return self.flip(0)

    def __contains__(self, element):
        if not isinstance(element, (Tensor, int, float, bool, complex, np.number)):
            raise RuntimeError(f"Tensor.__contains__ only supports Tensor or scalar, but you "
                               f"passed in a {type(element)}.")
        return bool((self == element).any())

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __repr__(self, *, tensor_contents=None):
        from ._printing import tensor_repr
        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec):
        if self._data.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def __reduce_ex__(self, proto):
        # Plain pickling (DataLoader workers, copy.deepcopy); checkpoints go through ember.save.
        return (_rebuild, (self._data, self._rg, type(self)))

    def __deepcopy__(self, memo):
        if not self.is_leaf:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the "
                "deepcopy protocol at the moment.")
        if id(self) in memo:
            return memo[id(self)]
        new = _make(self._data.copy())
        if type(self) is not Tensor:
            new.__class__ = type(self)
        new._rg = self._rg
        if self.grad is not None:
            import copy
            new.grad = copy.deepcopy(self.grad, memo)
        for k, v in self.__dict__.items():
            if k not in ("_data", "_rg", "_grad", "_base", "_vc", "_accum", "_hooks"):
                import copy
                new.__dict__[k] = copy.deepcopy(v, memo)
        memo[id(self)] = new
        return new


_new = object.__new__


def _make(arr, rg=False, grad_fn=None, cls=Tensor):
    """Wrap a backend array in a Tensor without copying (the fast path's constructor)."""
    t = _new(cls)
    t._data = arr
    if rg:
        t._rg = True
        t.grad_fn = grad_fn
    return t


def _rebuild(arr, rg, cls):
    t = _make(arr, cls=cls)
    if rg:
        t._rg = True
    return t


def _version_counter(t):
    """The version counter shared by ``t`` and every view of the same base (created lazily)."""
    b = t._base
    if b is None:
        b = t
    vc = b._vc
    if vc is None:
        vc = b._vc = [0]
    return vc


def _bump_version(t):
    b = t._base
    if b is None:
        b = t
    vc = b._vc
    if vc is None:
        b._vc = [1]
    else:
        vc[0] += 1


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


class _LegacyTensorType(type):
    """Metaclass of the legacy typed constructors (``ember.FloatTensor`` ...): calling one
    builds a tensor of its dtype, and ``isinstance`` checks the dtype, as in PyTorch."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj._data.dtype == cls.dtype.np

    def __call__(cls, *args, device=None):
        return Tensor(*args, dtype=cls.dtype, device=device)


def _legacy(name, dt):
    return _LegacyTensorType(name, (), {"dtype": dt, "__module__": "ember"})


FloatTensor = _legacy("FloatTensor", D.float32)
DoubleTensor = _legacy("DoubleTensor", D.float64)
HalfTensor = _legacy("HalfTensor", D.float16)
BFloat16Tensor = _legacy("BFloat16Tensor", D.bfloat16)
LongTensor = _legacy("LongTensor", D.int64)
IntTensor = _legacy("IntTensor", D.int32)
ShortTensor = _legacy("ShortTensor", D.int16)
CharTensor = _legacy("CharTensor", D.int8)
ByteTensor = _legacy("ByteTensor", D.uint8)
BoolTensor = _legacy("BoolTensor", D.bool_)
