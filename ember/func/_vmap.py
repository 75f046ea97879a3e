"""``vmap``'s machinery: batched tensors, vmap levels and batching rules.

A ``BatchedTensor`` is what a function under ``vmap`` sees: a tensor of the *logical* shape
(one example) whose *physical* value (``_value``, an ordinary Tensor or a BatchedTensor of an
outer level) holds the whole batch in dimension 0. Its ``_data`` is a zero-stride stand-in of
the logical shape and dtype, so every metadata read (shape, size, dim, dtype) is the logical
one, while every op reaches the vmap level on the dispatch path (``forward_ad``'s transform
stack), which moves the batch dimension through the op:

* elementwise ops: batch dims to the front, logical dims right-aligned, then broadcasting;
* ops with ``dim`` arguments (reductions, softmax, cumulative ops, cat/stack, norms): the
  dims shifted past the batch dim;
* views: the batch size prepended to the shape, dims shifted;
* matmul/linear: NumPy's broadcasting batch dims; conv and pooling: the batch folded into N
  (or, for per-example weights, into the groups); losses: per-example reduction;
* anything else: a Python loop over the batch, with PyTorch's performance warning.

Autograd stays physical: a graph recorded under vmap is recorded on the physical tensors, so
``grad`` of a vmapped function needs nothing special, and ``grad`` under vmap differentiates
the physical batch (see ``ember.func.grad``).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._tensor import Tensor
from ..autograd.forward_ad import _iter_tensors

_ndarray = np.ndarray


class _Stand(np.ndarray):
    """The stand-in array of a BatchedTensor: right shape and dtype, no values to compute
    with. NumPy math on it raises instead of silently computing on zeros."""

    def __array_ufunc__(self, *args, **kwargs):
        raise RuntimeError(_VALUE_MSG)

    def __array_function__(self, func, types, args, kwargs):
        if func in (np.shape, np.ndim, np.size, np.result_type, np.may_share_memory):
            return super().__array_function__(func, types, args, kwargs)
        raise RuntimeError(_VALUE_MSG)


_VALUE_MSG = ("vmap: an operation read the values of a batched tensor outside ember's dispatch "
              "(NumPy code on .data or .numpy(), .item(), data-dependent Python control flow); "
              "this is not supported inside vmap")


def _stand_in(shape, dtype):
    return np.broadcast_to(np.zeros((), dtype), tuple(shape)).view(_Stand)


class BatchedTensor(Tensor):
    """A tensor under ``vmap``: logical shape outside, the whole batch inside."""

    __array_priority__ = 1001

    def __repr__(self):
        return f"BatchedTensor(lvl={self._level.id}, bdim=0, value=\n{self._value!r}\n)"

    __str__ = __repr__

    def item(self):
        raise RuntimeError("vmap: It looks like you're calling .item() on a Tensor. We don't "
                           "support vmap over calling .item() on a Tensor, please try to rewrite "
                           "what you're doing with other operations.")

    def tolist(self):
        raise RuntimeError(_VALUE_MSG)

    def numpy(self, *, force=False):
        raise RuntimeError(_VALUE_MSG)

    def __bool__(self):
        raise RuntimeError("vmap: It looks like you're attempting to use a Tensor in some "
                           "data-dependent control flow. We don't support that yet, please "
                           "shout over at https://github.com/pytorch/functorch/issues/257 .")

    __float__ = __int__ = __index__ = item

    @property
    def requires_grad(self):
        return self._value.requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        raise RuntimeError("vmap: requires_grad cannot be set on a batched tensor; use "
                           "ember.func.grad inside vmap instead")

    def requires_grad_(self, requires_grad=True):
        raise RuntimeError("vmap: requires_grad_ cannot be called on a batched tensor; use "
                           "ember.func.grad inside vmap instead")

    def detach(self):
        return wrap(self._value.detach(), self._level)

    def backward(self, *args, **kwargs):
        raise RuntimeError("vmap: backward() is not supported inside vmap; use "
                           "ember.func.grad or ember.func.vjp")


def wrap(value, level):
    """The BatchedTensor at ``level`` whose physical value is ``value`` (batch dim 0)."""
    t = object.__new__(BatchedTensor)
    t._data = _stand_in(value._data.shape[1:], value._data.dtype)
    t._value = value
    t._level = level
    return t


def is_batched_at(x, level):
    return type(x) is BatchedTensor and x._level is level


# ---------------------------------------------------------------------- the vmap level
class VmapLevel:
    """One ``vmap`` level of the transform stack (see ``forward_ad``)."""

    kind = "vmap"

    def __init__(self, size, randomness):
        self.size = size
        self.randomness = randomness
        self.excluded = 0

    def claims(self, args, kwargs):
        for a in _iter_tensors(args, kwargs):
            if type(a) is BatchedTensor and a._level is self:
                return True
        return False

    def process(self, cls, args, kwargs):
        rule = _RULES.get(cls)
        if rule is not None:
            out = rule(self, cls, args, kwargs)
            if out is not NotImplemented:
                return out
        return _loop(self, cls, args, kwargs)

    def process_inplace(self, cls, target, args, kwargs, run):
        """``target.op_(*args)`` under vmap: the batched out-of-place result is written into
        the target's physical value. A batched argument written into an unbatched target
        raises PyTorch's error (the target cannot hold a batch)."""
        if not (type(target) is BatchedTensor and target._level is self):
            # PyTorch's error: the batch of an argument cannot be written into the target
            shapes = [tuple(a.shape) for a in _iter_tensors(args, kwargs)]
            bshape = [self.size] + list(np.broadcast_shapes(tuple(target.shape), *shapes))
            raise RuntimeError(f"output with shape {list(target.shape)} doesn't match the "
                               f"broadcast shape {bshape} (vmap: an in-place "
                               f"{cls.__name__} writes a batched value into an unbatched "
                               "tensor; use the out-of-place op)")
        # computed from a copy of the old value: a graph that saved it stays valid after the
        # write (the copy_ below is recorded, so gradients reach the old value through it)
        old = wrap(target._value.clone(), self)
        out = self.process(cls, (old,) + args, kwargs)
        target._value.copy_(self.expand(out))
        return target

    def draw_each(self, fn, args, kwargs):
        """``randomness="different"``: run a random function (or random op) once per example,
        each drawing its own numbers, and batch the results. Batched arguments (``rand_like``
        of a batched tensor, the target of ``uniform_``) are taken an example at a time."""
        from .. import _random, stack
        from ..ops import random as R
        if self.randomness == "error":
            from . import _ERROR_MODE_MSG
            raise RuntimeError(_ERROR_MODE_MSG)
        if self.randomness == "same":
            return self._draw_once(fn, args, kwargs)
        gen = _random.default_generator
        R._PER_EXAMPLE.remove(self)
        proxy, gen._rng = gen._rng, self.rng  # the draws below are the real ones
        self.excluded += 1
        in_place = True
        try:
            outs = []
            for b in range(self.size):
                picked = [_pick(self, a, b) for a in args]
                outs.append(fn(*picked, **{k: _pick(self, v, b) for k, v in kwargs.items()}))
                in_place = in_place and bool(picked) and outs[-1] is picked[0]
        finally:
            self.excluded -= 1
            gen._rng = proxy
            R._PER_EXAMPLE.append(self)
        if in_place and type(args[0]) is BatchedTensor:
            return args[0]  # an in-place filler wrote into each example of its target
        first = outs[0]
        if isinstance(first, tuple):
            return tuple(self.wrap(stack([o[i] for o in outs])) if isinstance(first[i], Tensor)
                         else first[i] for i in range(len(first)))
        return self.wrap(stack(outs)) if isinstance(first, Tensor) else first

    def _draw_once(self, fn, args, kwargs):
        """``randomness="same"``: one draw serves every example. A random function of shapes
        only (``rand``, ``rand_like`` of a batched tensor) draws once at the logical shape;
        an in-place filler fills one example and copies it to the others; a random function
        of batched values (``bernoulli(p)``) raises PyTorch's error."""
        def batched(a):
            if type(a) is BatchedTensor and a._level is self:
                return True
            return type(a) in (tuple, list) and any(batched(x) for x in a)
        from ..ops import random as R
        R._PER_EXAMPLE.remove(self)  # ``fn`` runs once, as an enclosing level would have it
        if not any(batched(a) for a in args) and not any(batched(v) for v in kwargs.values()):
            try:
                return fn(*args, **kwargs)
            finally:
                R._PER_EXAMPLE.append(self)
        self.excluded += 1
        try:
            picked = [_pick(self, a, 0) for a in args]
            out = fn(*picked, **{k: _pick(self, v, 0) for k, v in kwargs.items()})
            if picked and out is picked[0] and type(args[0]) is BatchedTensor:
                for b in range(1, self.size):  # an in-place filler: the same values for all
                    _pick(self, args[0], b).copy_(out)
                return args[0]
            if getattr(fn, "__name__", "").endswith("_like"):
                return out  # drawn at the logical shape, shared by the whole batch
        finally:
            self.excluded -= 1
            R._PER_EXAMPLE.append(self)
        raise RuntimeError("Vmap does not currently support same randomness with a batched "
                           "tensor input. Please file an issue with functorch")

    # helpers for rules
    def unwrap(self, a):
        """(physical value, batched?) of an argument."""
        if type(a) is BatchedTensor and a._level is self:
            return a._value, True
        return a, False

    def expand(self, a):
        """The physical value of ``a``, batched (an unbatched tensor is expanded)."""
        v, b = self.unwrap(a)
        if b:
            return v
        return v.unsqueeze(0).expand((self.size,) + tuple(v.shape))

    def wrap(self, out):
        if isinstance(out, tuple):
            return tuple(self.wrap(o) for o in out)
        if isinstance(out, list):
            return [self.wrap(o) for o in out]
        if isinstance(out, Tensor):
            return wrap(out, self)
        return out


_WARNED = set()


def _pick(level, a, b):
    """Example ``b`` of an argument batched at ``level`` (lists and tuples looked into)."""
    if type(a) is BatchedTensor and a._level is level:
        return a._value[b]
    if type(a) in (tuple, list):
        return type(a)(_pick(level, x, b) for x in a)
    return a


def _loop(level, cls, args, kwargs):
    """No batching rule: run the op once per example and stack the results."""
    if cls not in _WARNED:
        _WARNED.add(cls)
        warnings.warn(f"There is a performance drop because we have not yet implemented the "
                      f"batching rule for {cls.__name__}. Please file us an issue on GitHub so "
                      "that we can prioritize its implementation.", UserWarning, stacklevel=4)
    from .. import stack

    def pick(a, b):
        return _pick(level, a, b)
    outs = []
    for b in range(level.size):
        outs.append(cls.apply(*[pick(a, b) for a in args],
                              **{k: pick(v, b) for k, v in kwargs.items()}))
    first = outs[0]
    if isinstance(first, tuple):
        return tuple(level.wrap(stack([o[i] for o in outs])) if isinstance(first[i], Tensor)
                     else first[i] for i in range(len(first)))
    if isinstance(first, Tensor):
        return level.wrap(stack(outs))
    return first


# ---------------------------------------------------------------------- rules
_RULES: dict = {}


def _logical_ndim(a):
    return a._data.ndim


def rule_elementwise(level, cls, args, kwargs):
    """Pointwise in every tensor argument: batch to the front, logical dims right-aligned."""
    n = max((_logical_ndim(a) for a in args if isinstance(a, Tensor)), default=0)
    new = []
    for a in args:
        if type(a) in (tuple, list) and any(isinstance(x, Tensor) for x in a):
            return NotImplemented
        v, b = level.unwrap(a)
        if b:
            k = _logical_ndim(a)
            if k < n:
                v = v.reshape((level.size,) + (1,) * (n - k) + tuple(a.shape))
        new.append(v)
    for v in kwargs.values():
        if isinstance(v, Tensor):
            return NotImplemented
    return level.wrap(cls.apply(*new, **kwargs))


def _shift(d, n):
    """A logical dim (possibly negative) as a physical one."""
    if n == 0:
        if d not in (0, -1):
            raise IndexError(f"Dimension out of range (expected to be in range of [-1, 0], but "
                             f"got {d})")
        return None
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return d % n + 1


def _dims_rule(pos, none_means_all=True, one_tensor=True):
    """A rule for ops whose argument ``pos`` is a dim, a tuple of dims or None (all)."""
    def rule(level, cls, args, kwargs):
        a = args[0]
        v, b = level.unwrap(a)
        if not b or (one_tensor and any(level.unwrap(x)[1] for x in args[1:])):
            return NotImplemented
        n = _logical_ndim(a)
        args = list(args)
        args[0] = v
        if pos >= len(args):  # the dim given by keyword, or left at its default (None)
            name = next((k for k in ("axis", "dim", "dims") if k in kwargs), None)
            kwargs = dict(kwargs)
            args += [kwargs.pop(name) if name else None]
            if pos >= len(args):
                return NotImplemented
        d = args[pos]
        if d is None:
            if not none_means_all:
                return NotImplemented
            args[pos] = tuple(range(1, n + 1)) if n else ()
            if n == 0:
                return NotImplemented
        elif isinstance(d, (int, np.integer)):
            s = _shift(int(d), n)
            if s is None:
                return NotImplemented
            args[pos] = s
        elif isinstance(d, (tuple, list)):
            ds = [_shift(int(x), n) for x in d]
            if any(x is None for x in ds):
                return NotImplemented
            args[pos] = type(d)(ds)
        else:
            return NotImplemented
        return level.wrap(cls.apply(*args, **kwargs))
    return rule


def rule_leading_batch(level, cls, args, kwargs):
    """Ops that treat leading dims as batch dims (linear algebra on the last two dims)."""
    v, b = level.unwrap(args[0])
    if not b or any(isinstance(a, Tensor) for a in args[1:]) or kwargs:
        return NotImplemented
    return level.wrap(cls.apply(v, *args[1:]))


def rule_diagonal(level, cls, args, kwargs):
    a, offset, d1, d2 = args
    v, b = level.unwrap(a)
    if not b:
        return NotImplemented
    n = _logical_ndim(a)
    return level.wrap(cls.apply(v, offset, _shift(d1, n), _shift(d2, n), **kwargs))


def rule_view(level, cls, args, kwargs):
    """View/Reshape(a, shape): the batch size prepended."""
    a, shape = args[0], args[1]
    v, b = level.unwrap(a)
    if not b:
        return NotImplemented
    return level.wrap(cls.apply(v, (level.size,) + tuple(shape), *args[2:], **kwargs))


def rule_expand(level, cls, args, kwargs):
    a, shape = args[0], tuple(args[1])
    v, b = level.unwrap(a)
    if not b:
        return NotImplemented
    k = _logical_ndim(a)
    if len(shape) > k:
        v = v.reshape((level.size,) + (1,) * (len(shape) - k) + tuple(a.shape))
    return level.wrap(cls.apply(v, (level.size,) + shape, **kwargs))


def rule_permute(level, cls, args, kwargs):
    a, dims = args[0], args[1]
    v, b = level.unwrap(a)
    if not b:
        return NotImplemented
    n = _logical_ndim(a)
    return level.wrap(cls.apply(v, (0,) + tuple(_shift(d, n) for d in dims), **kwargs))


def rule_repeat(level, cls, args, kwargs):
    a, reps = args[0], tuple(args[1])
    v, b = level.unwrap(a)
    if not b:
        return NotImplemented
    k = _logical_ndim(a)
    if len(reps) > k:
        v = v.reshape((level.size,) + (1,) * (len(reps) - k) + tuple(a.shape))
    return level.wrap(cls.apply(v, (1,) + reps, **kwargs))


def rule_join(level, cls, args, kwargs):
    """Cat/Stack(dim, *tensors): unbatched members expanded, the dim shifted."""
    dim, ts = args[0], args[1:]
    n = max(_logical_ndim(t) for t in ts)
    if cls.__name__ == "Stack":
        s = int(dim) % (n + 1) + 1
    else:
        if n == 0:
            return NotImplemented
        s = _shift(int(dim), n)
    vs = []
    for t in ts:
        if cls.__name__ == "Cat" and _logical_ndim(t) != n:  # legacy empty 1-d members
            return NotImplemented
        vs.append(level.expand(t))
    return level.wrap(cls.apply(s, *vs, **kwargs))


def rule_index(level, cls, args, kwargs):
    """Basic indexing (ints, slices, None, Ellipsis): a full slice for the batch dim."""
    a, idx = args[0], args[1]
    v, b = level.unwrap(a)
    if not b:
        return NotImplemented
    items = idx if type(idx) is tuple else (idx,)
    for it in items:
        if not (it is None or it is Ellipsis or isinstance(it, (slice, int, np.integer))) or \
                isinstance(it, bool):
            return NotImplemented
    return level.wrap(cls.apply(v, (slice(None),) + items, *args[2:], **kwargs))


def _pad_after_batch(v, extra):
    """(B, *s) -> (B, 1, ..., 1, *s) with ``extra`` ones: aligns logical batch dims."""
    if extra <= 0:
        return v
    return v.reshape((v.shape[0],) + (1,) * extra + tuple(v.shape[1:]))


def _basic_index(idx):
    items = idx if type(idx) is tuple else (idx,)
    for it in items:
        if not (it is None or it is Ellipsis or isinstance(it, (slice, int, np.integer))) or \
                isinstance(it, bool):
            return None
    return items


def rule_index_add_zeros(level, cls, args, kwargs):
    """getitem's backward, zeros(shape)[idx] = g: basic indices take a full slice first."""
    g, shape, idx = args
    vg, b = level.unwrap(g)
    items = _basic_index(idx)
    if not b or items is None:
        return NotImplemented
    return level.wrap(cls.apply(vg, (level.size,) + tuple(shape), (slice(None),) + items))


def rule_gather(level, cls, args, kwargs):
    """Gather(a, dim, index): both batched (the index needs a's rank), the dim shifted."""
    a, dim, index = args
    n = _logical_ndim(a)
    if n == 0:
        return NotImplemented
    if type(index) is _ndarray:  # an index the op took as an array: broadcast it
        index = np.broadcast_to(index, (level.size,) + index.shape)
    else:
        index = level.expand(index)
    return level.wrap(cls.apply(level.expand(a), _shift(int(dim), n), index, **kwargs))


def rule_matmul(level, cls, args, kwargs):
    """matmul's broadcasting batch dims serve the vmap batch, once vectors are made
    matrices and the logical batch dims are aligned after it."""
    a, b = args
    va, ba = level.unwrap(a)
    vb, bb = level.unwrap(b)
    na, nb = _logical_ndim(a), _logical_ndim(b)
    if na == 0 or nb == 0:
        return NotImplemented
    if ba and not bb and (na >= 2 or nb <= 2):
        # (B, ..., n, k) @ b, or a batch of vectors against a vector or a matrix
        return level.wrap(cls.apply(_pad_after_batch(va, nb - na) if na >= 2 else va, vb))
    if bb and not ba and nb >= 2:
        return level.wrap(cls.apply(va, _pad_after_batch(vb, na - nb) if na >= 2 else vb))
    # general case: both as batched matrices of one rank, then drop the vector dims
    va = level.expand(a)
    vb = level.expand(b)
    if na == 1:
        va = va.unsqueeze(1)
    if nb == 1:
        vb = vb.unsqueeze(2)
    ma, mb = max(na, 2), max(nb, 2)
    out = cls.apply(_pad_after_batch(va, mb - ma), _pad_after_batch(vb, ma - mb))
    if nb == 1:
        out = out.squeeze(-1)
    if na == 1:
        out = out.squeeze(-2 if nb != 1 else -1)
    return level.wrap(out)


def rule_linear(level, cls, args, kwargs):
    x, w, b = args
    if not level.unwrap(w)[1] and not (b is not None and level.unwrap(b)[1]):
        vx, bx = level.unwrap(x)
        if _logical_ndim(x) == 0:
            return NotImplemented
        return level.wrap(cls.apply(vx, w, b))
    from .. import matmul
    out = matmul(x, w.transpose(-1, -2))  # re-dispatched: each op at this level
    return out + b if b is not None else out


def rule_conv(level, cls, args, kwargs):
    x, w, bias, stride, pads, dilation, groups = args
    B = level.size
    vx, bx = level.unwrap(x)
    vw, bw = level.unwrap(w)
    vb, bb = level.unwrap(bias) if bias is not None else (None, False)
    nsp = _logical_ndim(w) - 2
    if _logical_ndim(x) != nsp + 2:
        return NotImplemented
    if bb and not bw:
        out = cls.apply(x, w, None, stride, pads, dilation, groups)
        return out + bias.reshape((-1,) + (1,) * nsp)
    if not bw:  # fold the batch into N
        N = x.shape[0]
        out = cls.apply(vx.reshape((B * N,) + tuple(x.shape[1:])), w, bias, stride, pads,
                        dilation, groups)
        return level.wrap(out.reshape((B, N) + tuple(out.shape[1:])))
    # per-example weights: fold the batch into the channels and the groups
    vx = level.expand(x)
    N, C = x.shape[0], x.shape[1]
    O = w.shape[0]
    xx = vx.movedim(0, 1).reshape((N, B * C) + tuple(x.shape[2:]))
    ww = vw.reshape((B * O,) + tuple(w.shape[1:]))
    bbias = None
    if bias is not None:
        bbias = level.expand(bias).reshape((B * O,))
    out = cls.apply(xx, ww, bbias, stride, pads, dilation, groups * B)
    out = out.reshape((N, B, O) + tuple(out.shape[2:])).movedim(1, 0)
    return level.wrap(out)


def _pool_rule(nsp_of):
    def rule(level, cls, args, kwargs):
        x = args[0]
        vx, bx = level.unwrap(x)
        if not bx or any(level.unwrap(a)[1] for a in args[1:]):
            return NotImplemented
        nsp = nsp_of(args)
        k = _logical_ndim(x)
        if k == nsp + 1:  # (C, *spatial): the batch is N
            return level.wrap(cls.apply(vx, *args[1:], **kwargs))
        if k != nsp + 2:
            return NotImplemented
        B, N = level.size, x.shape[0]
        out = cls.apply(vx.reshape((B * N,) + tuple(x.shape[1:])), *args[1:], **kwargs)

        def back(o):
            if not isinstance(o, Tensor):
                return o
            return level.wrap(o.reshape((B, N) + tuple(o.shape[1:])))
        return tuple(back(o) for o in out) if isinstance(out, tuple) else back(out)
    return rule


def rule_loss(level, cls, args, kwargs):
    """NllLoss/CrossEntropy(x, target, weight, reduction, ignore_index): per example."""
    x, target, weight, reduction, ignore_index = args
    if weight is not None and level.unwrap(weight)[1]:
        return NotImplemented
    k = _logical_ndim(x)
    B = level.size
    vx, vt = level.expand(x), level.expand(target)
    if k == 1:  # one sample (C,): the batch is N
        out = cls.apply(vx, vt, weight, "none", ignore_index)
        return level.wrap(out)  # a 0-d loss per example, whatever the reduction
    N = x.shape[0]
    flat_x = vx.reshape((B * N,) + tuple(x.shape[1:]))
    flat_t = vt.reshape((B * N,) + tuple(target.shape[1:]))
    loss = cls.apply(flat_x, flat_t, weight, "none", ignore_index)
    loss = loss.reshape((B, N) + tuple(loss.shape[1:]))
    if reduction == "none":
        return level.wrap(loss)
    dims = tuple(range(1, loss.dim()))
    total = loss.sum(dims)
    if reduction == "sum":
        return level.wrap(total)
    if vt.dtype.is_floating_point:  # class probabilities: the mean over N
        return level.wrap(total / N)
    w = (vt != ignore_index).to(loss.dtype)
    if weight is not None:
        safe = vt.clamp(0, weight.shape[0] - 1)
        w = w * weight[safe]
    return level.wrap(total / w.sum(dims))


def rule_normalize(level, cls, args, kwargs):
    x, w, b, axes, eps = args
    vx, bx = level.unwrap(x)
    if not bx or (w is not None and level.unwrap(w)[1]) or \
            (b is not None and level.unwrap(b)[1]):
        return NotImplemented
    n = _logical_ndim(x)
    return level.wrap(cls.apply(vx, w, b, tuple(_shift(a, n) for a in axes), eps, **kwargs))


def _register():
    from ..ops import conv, elementwise, indexing, linalg, nn, reduction, shape
    from ..autograd.graph import Node
    skip = {"Fill", "Imag", "Real", "ViewAsReal"}
    for name in dir(elementwise):
        obj = getattr(elementwise, name)
        if isinstance(obj, type) and issubclass(obj, Node) and obj is not Node and \
                obj.__module__ == elementwise.__name__ and name not in skip:
            _RULES[obj] = rule_elementwise
    for name in ("Gelu", "Silu", "Softplus", "Elu", "LeakyRelu", "Hardtanh", "LogSigmoid"):
        _RULES[getattr(nn, name)] = rule_elementwise
    # linear algebra on the trailing matrix dims: leading dims are batch dims already
    for name in ("Cholesky", "Det", "Inv", "Eigh", "EigvalsH", "QR", "SVD", "SVDVals", "Slogdet",
                 "Pinv", "MatrixExp", "LU", "Eig"):
        _RULES[getattr(linalg, name)] = rule_leading_batch
    _RULES[reduction.MaxAll] = _RULES[reduction.MinAll] = _dims_rule(1)
    _RULES[shape.Diagonal] = rule_diagonal
    for name in ("Clone", "Contiguous", "Tril", "Triu"):
        _RULES[getattr(shape, name)] = rule_elementwise  # one tensor, no dim arguments
    for cls, pos in [(reduction.Sum, 1), (reduction.Mean, 1), (reduction.Prod, 1),
                     (reduction.Amax, 1), (reduction.Amin, 1), (reduction.Var, 1),
                     (reduction.Std, 1), (reduction.Logsumexp, 1), (reduction.All, 1),
                     (reduction.Any, 1), (linalg.VectorNorm, 2)]:
        _RULES[cls] = _dims_rule(pos)
    for cls, pos in [(reduction.MaxDim, 1), (reduction.MinDim, 1), (reduction.Argmax, 1),
                     (reduction.Cumsum, 1), (reduction.Cumprod, 1), (reduction.Logcumsumexp, 1),
                     (nn.Softmax, 1), (nn.LogSoftmax, 1), (shape.Split, 2), (shape.Unbind, 1),
                     (shape.Narrow, 1), (shape.Flip, 1), (shape.Unfold, 1),
                     (indexing.IndexSelect, 1)]:
        _RULES[cls] = _dims_rule(pos, none_means_all=False)
    _RULES[shape.View] = _RULES[shape.Reshape] = rule_view
    _RULES[shape.Expand] = rule_expand
    _RULES[shape.Permute] = rule_permute
    _RULES[shape.Repeat] = rule_repeat
    _RULES[shape.Cat] = _RULES[shape.Stack] = rule_join
    _RULES[indexing.Index] = rule_index
    _RULES[indexing.Gather] = rule_gather
    _RULES[indexing.IndexAddZeros] = rule_index_add_zeros
    _RULES[linalg.Matmul] = rule_matmul
    _RULES[nn.Linear] = rule_linear
    _RULES[nn.NllLoss] = _RULES[nn.CrossEntropy] = rule_loss
    _RULES[nn.Normalize] = rule_normalize
    _RULES[conv.ConvNd] = rule_conv
    _RULES[conv.MaxPoolNd] = _pool_rule(lambda args: len(args[1]))
    _RULES[conv.AvgPoolNd] = _pool_rule(lambda args: len(args[1]))
    _RULES[conv.AdaptiveMaxPool] = _pool_rule(lambda args: len(args[1]))
    _RULES[conv.ConstantPad] = _pad_rule


def _pad_rule(level, cls, args, kwargs):
    x, pads, value = args
    vx, bx = level.unwrap(x)
    if not bx or not isinstance(pads, (tuple, list)):
        return NotImplemented
    # pads pair up from the last dim backwards (F.pad's layout) or per dim: only the former
    # is length-independent; anything else loops
    if len(pads) and isinstance(pads[0], (tuple, list)):
        if len(pads) != _logical_ndim(x):
            return NotImplemented
        return level.wrap(cls.apply(vx, ((0, 0),) + tuple(pads), value))
    return level.wrap(cls.apply(vx, pads, value))


_register()


def rules_summary():
    """The op classes with a batching rule (the rest loop over the batch)."""
    return sorted(c.__name__ for c in _RULES)
