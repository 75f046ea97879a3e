"""``grad_fn._saved_<name>`` and ``grad_fn._raw_saved_<name>``: a graph node's saved values
under the names PyTorch gives them, for the common ops.

``_saved_<name>`` is the saved value (version-checked, as backward would read it);
``_raw_saved_<name>`` is a :class:`SavedTensor` whose ``register_hooks(pack, unpack)`` packs
the saved tensor now and unpacks it whenever it is read (PyTorch's per-tensor form of
``saved_tensors_hooks``).
"""

from __future__ import annotations

from .._tensor import Tensor, _make

# node name -> PyTorch's name for each entry of ``node._saved``, in order (None: not exposed,
# PyTorch does not save it under a name)
SAVED_NAMES = {
    "MulBackward0": ("self", "other"),
    "DivBackward0": ("self", "other"),
    "MmBackward0": ("self", "mat2"),
    "BmmBackward0": ("self", "mat2"),
    "PowBackward0": ("self", "exponent", None),
    "PowBackward1": ("self", "exponent", "result"),
    "ExpBackward0": ("result",),
    "Exp2Backward0": ("result",),
    "TanhBackward0": ("result",),
    "SigmoidBackward0": ("result",),
    "ReluBackward0": ("result",),
    "SqrtBackward0": ("result",),
    "RsqrtBackward0": ("result",),
    "SoftmaxBackward0": ("result",),
    "LogSoftmaxBackward0": ("result",),
    "LogBackward0": ("self",),
    "Log2Backward0": ("self",),
    "Log10Backward0": ("self",),
    "Log1pBackward0": ("self",),
    "SinBackward0": ("self",),
    "CosBackward0": ("self",),
    "TanBackward0": ("result",),
    "AbsBackward0": ("self",),
    "SgnBackward0": ("self",),
    "GeluBackward0": ("self",),
    "ReciprocalBackward0": ("result",),
    "ErfBackward0": ("self",),
    "AtanBackward0": ("self",),
    "AsinBackward0": ("self",),
    "AcosBackward0": ("self",),
    "SinhBackward0": ("self",),
    "CoshBackward0": ("self",),
    "Atan2Backward0": ("self", "other"),
    "MaximumBackward0": ("self", "other"),
    "MinimumBackward0": ("self", "other"),
    "HypotBackward0": ("self", "other"),
}


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _index_tensor(a):
    from .._tensor import _make
    return _make(a)


# node name -> {PyTorch's name: how to read it from the node} for saved values that are not
# tensors (dims, sizes, flags) and for tensors the forward keeps as arrays (indices)
SAVED_VALUES = {
    "SumBackward1": {"dim": lambda n: tuple(n.axis)},
    "SoftmaxBackward0": {"dim": lambda n: n.dim},
    "LogSoftmaxBackward0": {"dim": lambda n: n.dim},
    "TransposeBackward0": {
        "dim0": lambda n: [i for i, d in enumerate(n.dims) if i != d][0],
        "dim1": lambda n: [i for i, d in enumerate(n.dims) if i != d][-1]},
    "PermuteBackward0": {"dims": lambda n: tuple(n.dims)},
    "ViewBackward0": {"self_sym_sizes": lambda n: tuple(n.shape)},
    "CatBackward0": {"dim": lambda n: n.dim},
    "MeanBackward0": {"self_sym_sizes": lambda n: tuple(n.shape),
                      "self_sym_numel": lambda n: _numel(n.shape)},
    "MeanBackward1": {"dim": lambda n: tuple(n.axis), "keepdim": lambda n: n.keepdim,
                      "self_sym_sizes": lambda n: tuple(n.shape),
                      "self_sym_numel": lambda n: _numel(n.shape)},
    "SqueezeBackward1": {"self_sym_sizes": lambda n: tuple(n.shape)},
    "ExpandBackward0": {"self_sym_sizes": lambda n: tuple(n.shape)},
    "MaxBackward0": {"dim": lambda n: n.dim, "keepdim": lambda n: n.keepdim,
                     "self_sym_sizes": lambda n: tuple(n.shape),
                     "indices": lambda n: _index_tensor(n.idx)},
    "MinBackward0": {"dim": lambda n: n.dim, "keepdim": lambda n: n.keepdim,
                     "self_sym_sizes": lambda n: tuple(n.shape),
                     "indices": lambda n: _index_tensor(n.idx)},
    "GatherBackward0": {"dim": lambda n: n.dim, "index": lambda n: _index_tensor(n.index),
                        "sparse_grad": lambda n: False},
    "LeakyReluBackward0": {"negative_slope": lambda n: n.params[0]},
}


class SavedTensor:
    """One saved value of a graph node (``grad_fn._raw_saved_<name>``)."""

    __slots__ = ("_node", "_index")

    def __init__(self, node, index):
        self._node, self._index = node, index

    def _entry(self):
        saved = self._node._saved
        if saved is None:
            from .graph import _FREED_MSG
            raise RuntimeError(_FREED_MSG)
        return saved[self._index]

    def register_hooks(self, pack_hook, unpack_hook):
        """Pack the saved tensor with ``pack_hook`` now; every later read (backward, or
        ``_saved_<name>``) gets ``unpack_hook(packed)``."""
        from .graph import _Packed
        if not (callable(pack_hook) and callable(unpack_hook)):
            raise TypeError("register_hooks expects two callables (pack_hook, unpack_hook)")
        t, vc, version = self._entry()
        if type(t) is _Packed:
            raise RuntimeError("SavedTensor hooks have already been set on this saved tensor")
        if not isinstance(t, Tensor):
            t = _make(t, True, self._node)  # a saved output, rebuilt as the output tensor
        self._node._saved[self._index] = (_Packed(pack_hook(t), unpack_hook), vc, version)

    def __repr__(self):
        return f"<SavedTensor of {self._node.name()}>"


def saved_attribute(node, attr):
    """``node._saved_<name>`` / ``node._raw_saved_<name>``; AttributeError if the node has
    no saved value of that name."""
    raw = attr.startswith("_raw_saved_")
    name = attr[len("_raw_saved_"):] if raw else attr[len("_saved_"):]
    getter = SAVED_VALUES.get(node.name(), {}).get(name)
    if getter is not None and not raw:
        try:
            return getter(node)
        except (AttributeError, IndexError, TypeError):
            pass  # this node's forward kept it differently: no such saved value
    names = SAVED_NAMES.get(node.name())
    if names is None or name not in names:
        raise AttributeError(f"'{node.name()}' object has no attribute '{attr}'")
    index = names.index(name)
    if raw:
        return SavedTensor(node, index)
    values = node._saved_values(False)
    return values[index]
