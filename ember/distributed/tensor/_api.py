"""DTensor: a global tensor laid out over a DeviceMesh, one placement per mesh dimension.

Shape of the implementation. A DTensor is an ember Tensor subclass that wraps this rank's
local tensor (``_local``, a plain Tensor) and a spec (mesh, placements, global shape). Its
``_data`` is the local array, so optimizers that update ``p._data`` in place step on the
shards. Autograd runs on the local tensors: every op on DTensors is seen by a dispatch mode
(``_dispatch.py``, hooked into ``Node.apply``'s ``_MODES`` once the first DTensor exists),
which redistributes the inputs as the op's sharding rule requires, runs the op on the local
tensors (recording the ordinary local graph) and wraps the result. Collectives are autograd
Functions whose backward is their adjoint (``_collectives.py``), which makes the local graph's
gradients exact (see that module for the convention on replicated copies).
"""

from __future__ import annotations

import math

import numpy as np

from ..._tensor import Size, Tensor, _make
from ...nn.parameter import Parameter as _Parameter
from . import _collectives as C
from .placement_types import Partial, Placement, Replicate, Shard, _StridedShard

__all__ = ["DTensor", "DTensorSpec", "distribute_tensor", "distribute_module", "ones", "zeros",
           "empty", "full", "rand", "randn"]


def _norm_placements(placements, mesh, ndim):
    if placements is None:
        placements = [Replicate()] * mesh.ndim
    placements = list(placements)
    if len(placements) != mesh.ndim:
        raise ValueError(f"`placements` must have the same length as `device_mesh.ndim`! Found "
                         f"placements length: {len(placements)}, and device_mesh.ndim: "
                         f"{mesh.ndim}.")
    out = []
    for p in placements:
        if not isinstance(p, Placement):
            raise TypeError(f"placements must be Shard, Replicate or Partial, got {p!r}")
        if isinstance(p, Shard):
            d = p.dim
            if not -ndim <= d < max(ndim, 1) or ndim == 0:
                raise IndexError(f"Shard(dim={d}) is out of range for a {ndim}-d tensor")
            if d < 0:
                p = Shard(d + ndim)
        out.append(p)
    return tuple(out)


def _contig_stride(shape):
    st, acc = [], 1
    for s in reversed(shape):
        st.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(st))


class DTensorSpec:
    """What a DTensor is, globally: mesh, placements, shape, stride, dtype."""

    __slots__ = ("mesh", "placements", "shape", "stride", "dtype")

    def __init__(self, mesh, placements, shape, dtype, stride=None):
        self.mesh = mesh
        self.placements = tuple(placements)
        self.shape = tuple(int(s) for s in shape)
        self.stride = tuple(stride) if stride is not None else _contig_stride(self.shape)
        self.dtype = dtype

    def local_shape_and_offset(self, placements=None, upto=None):
        """This rank's shard shape and its offset in the global tensor (mesh dimensions are
        applied in order: the shard of a later mesh dim nests inside an earlier one's)."""
        shape = list(self.shape)
        offset = [0] * len(shape)
        coord = self.mesh.get_coordinate()
        placements = self.placements if placements is None else placements
        for i, p in enumerate(placements[:upto]):
            if isinstance(p, Shard):
                n = self.mesh.size(i)
                off, size = C.chunk_range(shape[p.dim], n, coord[i])
                offset[p.dim] += off
                shape[p.dim] = size
        return tuple(shape), tuple(offset)

    def __repr__(self):
        return (f"DTensorSpec(mesh={self.mesh}, placements={self.placements}, "
                f"shape={self.shape})")


# ---------------------------------------------------------------------- redistribution
def _pgs(mesh, dims):
    return tuple(mesh.get_group(i) for i in dims)


def redistribute_local(x, spec, dst):
    """This rank's local tensor of ``spec``'s value laid out as ``dst`` (differentiable)."""
    mesh = spec.mesh
    cur = list(spec.placements)
    dst = list(dst)
    n = mesh.ndim
    if cur == dst:
        return x

    def level_size(i, d):
        # the size of dim d held before mesh dim i splits it (shards of mesh dims < i apply)
        return spec.local_shape_and_offset(cur, upto=i)[0][d]

    def touched_before(i):
        dims = set()
        for k in range(i):
            if cur[k] != dst[k]:
                for p in (cur[k], dst[k]):
                    if isinstance(p, Shard):
                        dims.add(p.dim)
        return dims

    # Phase A, innermost mesh dim first: gather shards, reduce partials, all_to_all.
    for i in reversed(range(n)):
        c, t = cur[i], dst[i]
        pg = mesh.get_group(i)
        if isinstance(c, Shard):
            if c == t and c.dim not in touched_before(i):
                continue
            if isinstance(t, Shard) and c != t and not (touched_before(i) & {c.dim, t.dim}) \
                    and x.ndim > max(c.dim, t.dim):
                x = C.AllToAll.apply(x, c.dim, t.dim, level_size(i, c.dim), pg)
                cur[i] = t
                continue
            x = C.AllGather.apply(x, c.dim, level_size(i, c.dim), pg)
            cur[i] = Replicate()
        elif isinstance(c, Partial) and c != t:
            if isinstance(t, Shard) and c.reduce_op in ("sum", "avg") and \
                    t.dim not in touched_before(i) and \
                    not any(isinstance(cur[j], Shard) and cur[j].dim == t.dim
                            for j in range(i + 1, n)):
                x = C.ReduceScatter.apply(x, t.dim, pg, c.reduce_op)
                cur[i] = t
            else:
                x = C.AllReduce.apply(x, pg, c.reduce_op)
                cur[i] = Replicate()
    # Phase B, outermost first: split or mark replicated values.
    for i in range(n):
        c, t = cur[i], dst[i]
        if c == t:
            continue
        pg = mesh.get_group(i)
        assert isinstance(c, Replicate), (c, t)
        if isinstance(t, Shard):
            x = C.Chunk.apply(x, t.dim, pg)
        elif isinstance(t, Partial):
            if t.reduce_op == "sum":
                x = C.MaskToFirst.apply(x, pg)
            # avg/max/min of equal copies is the value itself: keep the local copy
        cur[i] = t
    return x


# ---------------------------------------------------------------------- the DTensor class
_READY = []


def _install():
    from . import _dispatch
    _dispatch.install()
    _READY.append(True)


def _wrap(local, spec, cls=None):
    """A DTensor around ``local`` (a plain Tensor) described by ``spec``."""
    if not _READY:
        _install()
    t = object.__new__(cls or DTensor)
    t.__dict__["_local"] = local
    t.__dict__["_spec"] = spec
    return t


def _replicate_dims(placements):
    return [i for i, p in enumerate(placements) if isinstance(p, Replicate)]


class DTensor(Tensor):
    """A distributed tensor: this rank's ``to_local()`` shard of a global value, laid out over
    ``device_mesh`` by ``placements`` (one ``Shard``/``Replicate``/``Partial`` per mesh dim)."""

    def __new__(cls, *args, **kwargs):
        raise TypeError("make DTensors with DTensor.from_local or distribute_tensor")

    def __init__(self, *args, **kwargs):
        pass

    # -- the local array is this tensor's data (optimizers step on shards)
    @property
    def _data(self):
        return self._local._data

    @_data.setter
    def _data(self, value):
        self._local._data = value

    @property
    def _rg(self):
        return self._local._rg

    @_rg.setter
    def _rg(self, value):
        self._local._rg = value

    @property
    def grad_fn(self):
        return self._local.grad_fn

    @grad_fn.setter
    def grad_fn(self, value):
        self._local.grad_fn = value

    @property
    def _output_nr(self):
        return self._local._output_nr

    @property
    def _base(self):
        return self._local._base

    @property
    def _vc(self):
        return self._local._vc

    @_vc.setter
    def _vc(self, value):
        self._local._vc = value

    @property
    def _local_tensor(self):  # PyTorch's attribute name for the local shard
        return self._local

    # -- metadata: the global view
    @property
    def device_mesh(self):
        return self._spec.mesh

    @property
    def placements(self):
        return self._spec.placements

    @property
    def shape(self):
        return Size(self._spec.shape)

    @property
    def ndim(self):
        return len(self._spec.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._spec.shape)
        from ...ops._util import norm_dim
        return self._spec.shape[norm_dim(dim, self.ndim)]

    def dim(self):
        return len(self._spec.shape)

    def numel(self):
        return math.prod(self._spec.shape)

    nelement = numel

    def stride(self, dim=None):
        if dim is None:
            return self._spec.stride
        return self._spec.stride[dim]

    def __len__(self):
        if not self._spec.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._spec.shape[0]

    def __repr__(self, *, tensor_contents=None):
        return (f"DTensor(local_tensor={self._local!r}, device_mesh={self._spec.mesh}, "
                f"placements={self._spec.placements})")

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    # -- conversions
    def to_local(self, *, grad_placements=None):
        """This rank's shard as a plain Tensor (sharing memory). Its gradient is taken as
        laid out by ``grad_placements`` (default: this DTensor's placements); a replicated
        gradient is read from mesh coordinate 0 (every rank is expected to hold the same)."""
        local = _grad_local(self)
        gp = self._spec.placements if grad_placements is None else \
            _norm_placements(grad_placements, self._spec.mesh, self.ndim)
        rdims = _replicate_dims(gp)
        from ...autograd.grad_mode import GradMode
        if local._rg and GradMode.enabled and rdims:
            return C.MaskGrad.apply(local, _pgs(self._spec.mesh, rdims))
        return local.view_as(local) if local._rg and GradMode.enabled else local

    @staticmethod
    def from_local(local_tensor, device_mesh=None, placements=None, *, run_check=False,
                   shape=None, stride=None):
        """The DTensor whose shard on this rank is ``local_tensor``. Give ``shape`` (and
        ``stride``) when shards are uneven; otherwise the global shape assumes even shards.
        ``run_check`` broadcasts replicated values from mesh coordinate 0."""
        if not isinstance(local_tensor, Tensor) or isinstance(local_tensor, DTensor):
            raise TypeError(f"DTensor.from_local expects a plain Tensor, got "
                            f"{type(local_tensor).__name__}")
        mesh = device_mesh if device_mesh is not None else _default_mesh()
        placements = _norm_placements(placements, mesh, local_tensor.ndim)
        if shape is None:
            gshape = list(local_tensor.shape)
            for i, p in enumerate(placements):
                if isinstance(p, Shard):
                    gshape[p.dim] *= mesh.size(i)
        else:
            gshape = [int(s) for s in shape]
            if len(gshape) != local_tensor.ndim:
                raise ValueError(f"DTensor.from_local: shape {tuple(gshape)} has "
                                 f"{len(gshape)} dims, the local tensor {local_tensor.ndim}")
        spec = DTensorSpec(mesh, placements, gshape, local_tensor.dtype, stride)
        want, _ = spec.local_shape_and_offset()
        if tuple(local_tensor.shape) != want:
            raise ValueError(f"DTensor.from_local: the local tensor of shape "
                             f"{tuple(local_tensor.shape)} is not this rank's shard {want} of "
                             f"the global shape {tuple(gshape)} with placements {placements}")
        local = local_tensor
        rdims = _replicate_dims(placements)
        if run_check and rdims:
            from .. import distributed_c10d as c10d
            local = local.detach().clone()
            for i in rdims:
                pg = mesh.get_group(i)
                c10d.broadcast(local, group=pg, group_src=0)
            if local_tensor._rg:
                # the values come from coordinate 0; the gradient still flows to the input
                local = local_tensor + (local - local_tensor).detach()
        from ...autograd.grad_mode import GradMode
        if local._rg and GradMode.enabled:
            local = C.ReduceGrad.apply(local, _pgs(mesh, rdims)) if rdims else \
                local.view_as(local)
        elif local is local_tensor:
            local = local_tensor.detach()
        return _wrap(local, spec)

    def redistribute(self, device_mesh=None, placements=None, *, async_op=False,
                     forward_dtype=None, backward_dtype=None):
        """This value laid out as ``placements`` (differentiable; runs the collectives)."""
        mesh = self._spec.mesh if device_mesh is None else device_mesh
        if mesh != self._spec.mesh:
            raise NotImplementedError("redistribute to a different DeviceMesh is not supported")
        if placements is None:
            raise RuntimeError("placements is needed for redistribute!")
        placements = _norm_placements(placements, mesh, self.ndim)
        local = _grad_local(self)
        if forward_dtype is not None:
            local = local.to(forward_dtype)
        out = redistribute_local(local, self._spec, placements)
        spec = DTensorSpec(mesh, placements, self._spec.shape, out.dtype)
        return _wrap(out, spec)

    def full_tensor(self, *, grad_placements=None):
        """The whole global value as a plain Tensor on every rank (differentiable)."""
        rep = self.redistribute(self._spec.mesh, [Replicate()] * self._spec.mesh.ndim)
        return rep.to_local(grad_placements=grad_placements)

    # -- autograd on the global value
    @property
    def requires_grad(self):
        return self._local._rg

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        self._local.requires_grad_(requires_grad)
        return self

    @property
    def is_leaf(self):
        return self._local.grad_fn is None

    @property
    def grad(self):
        g = self._local._grad
        if g is None:
            return None
        cached = self.__dict__.get("_grad_wrap")
        if cached is not None and cached._local is g:
            return cached
        pl = [Replicate() if isinstance(p, Partial) else p for p in self._spec.placements]
        w = _wrap(g, DTensorSpec(self._spec.mesh, pl, self._spec.shape, g.dtype))
        self.__dict__["_grad_wrap"] = w
        return w

    @grad.setter
    def grad(self, value):
        if value is None:
            self._local._grad = None
            return
        if not isinstance(value, DTensor):
            raise TypeError(f"the grad of a DTensor must be a DTensor or None, got "
                            f"{type(value).__name__}")
        if tuple(value.shape) != self._spec.shape:
            raise RuntimeError(f"attempting to assign a gradient of size '{list(value.shape)}' "
                               f"to a DTensor of size '{list(self._spec.shape)}'")
        pl = [Replicate() if isinstance(p, Partial) else p for p in self._spec.placements]
        if tuple(value.placements) != tuple(pl):
            value = value.redistribute(self._spec.mesh, pl)
        self._local._grad = value._local.detach()

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Backpropagate the global value: the seed is laid out so that each replicated copy
        counts once (it is read from mesh coordinate 0)."""
        spec = self._spec
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            from ...ops import creation
            seed = creation.ones(self._local.shape, dtype=self._local.dtype)
            want = [Replicate() if isinstance(p, Partial) else p for p in spec.placements]
        else:
            if not isinstance(gradient, DTensor):
                raise TypeError(f"the gradient of a DTensor must be a DTensor, got "
                                f"{type(gradient).__name__}")
            want = [Replicate() if isinstance(p, Partial) else p for p in spec.placements]
            seed = gradient.redistribute(spec.mesh, want)._local.detach()
        seed = _as_shares(seed, spec)
        self._local.backward(seed, retain_graph=retain_graph, create_graph=create_graph,
                             inputs=inputs)

    def register_hook(self, hook):
        def local_hook(g):
            out = hook(_wrap(g, DTensorSpec(self._spec.mesh, self._spec.placements,
                                            self._spec.shape, g.dtype)))
            return None if out is None else out._local
        return self._local.register_hook(local_hook)

    def detach(self):
        return _wrap(self._local.detach(), self._spec)

    def _make_like(self, fn, dtype, requires_grad, extra):
        """``zeros_like``/``ones_like``/``empty_like``/``full_like``: a DTensor of the same
        layout (a filled value is whole on every rank, so Partial dims become Replicate)."""
        pl = [Replicate() if isinstance(p, Partial) else p for p in self._spec.placements]
        local = fn(tuple(self._local.shape), *extra, dtype=dtype, requires_grad=requires_grad)
        return _wrap(local, DTensorSpec(self._spec.mesh, pl, self._spec.shape, local.dtype))

    def copy_(self, src, non_blocking=False):
        """Copy ``src`` (a DTensor, or a whole value every rank holds) into this DTensor's
        shards, broadcasting it to this shape."""
        mesh = self._spec.mesh
        if not isinstance(src, DTensor):
            if not isinstance(src, Tensor):
                from ...ops import creation
                src = creation.tensor(src, dtype=self.dtype)
            src = DTensor.from_local(src, mesh, [Replicate()] * mesh.ndim)
        if tuple(src.shape) != self._spec.shape:
            src = src.expand(*self._spec.shape)
        want = tuple(Replicate() if isinstance(p, Partial) and not isinstance(q, Partial)
                     else p for p, q in zip(self._spec.placements, src._spec.placements))
        if any(isinstance(p, Partial) for p in want) and src._spec.placements != want:
            raise NotImplementedError(f"DTensor.copy_ into a Partial DTensor from "
                                      f"{src._spec.placements}")
        local = src.redistribute(mesh, want)._local if src._spec.placements != want else \
            _grad_local(src)
        self._local.copy_(local)
        return self

    @property
    def data(self):
        return _wrap(self._local.detach(), self._spec)

    @data.setter
    def data(self, value):
        if not isinstance(value, DTensor):
            raise TypeError(f"the data of a DTensor must be a DTensor, got "
                            f"{type(value).__name__}")
        self._local._data = value._local._data
        self.__dict__["_spec"] = value._spec

    def _vector_norm(self, p):
        """The ``p``-norm of the whole value (``clip_grad_norm_`` reads it): local norms of
        the shards combined over the sharded mesh dims (replicated copies count once)."""
        from ...nn.utils.clip_grad import _vector_norm
        p = float(p)
        if any(isinstance(q, Partial) for q in self._spec.placements):
            return self.redistribute(self._spec.mesh, [
                Replicate() if isinstance(q, Partial) else q
                for q in self._spec.placements])._vector_norm(p)
        local = float(_vector_norm(self._local._data, p))
        if p not in (math.inf, -math.inf, 0.0):
            local = local ** p
        val = np.array(local, dtype=np.float64)
        op = {math.inf: "max", -math.inf: "min"}.get(p, "sum")
        for i, q in enumerate(self._spec.placements):
            if isinstance(q, Shard):
                val = C.all_reduce_arr(val, self._spec.mesh.get_group(i), op)
        val = float(val)
        return val if p in (math.inf, -math.inf, 0.0) else val ** (1.0 / p)

    # -- scalars read the global value
    def item(self):
        return self.full_tensor().item()

    def tolist(self):
        return self.full_tensor().tolist()

    def numpy(self, *, force=False):
        raise RuntimeError("DTensor.numpy(): a DTensor is distributed; use .full_tensor() or "
                           ".to_local() first")

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    _save_by_reduce = True

    def __reduce_ex__(self, proto):
        # this rank's shard with its layout; the mesh is found again by its layout when
        # unpickled (see device_mesh._unpickle_mesh)
        spec = self._spec
        return (_rebuild_dtensor, (self._local, spec.mesh,
                                   _placement_codes(spec.placements), spec.shape,
                                   spec.stride, self._local._rg,
                                   isinstance(self, _DTensorParameter)))

    def __deepcopy__(self, memo):
        import copy
        local = copy.deepcopy(self._local.detach(), memo) if self.is_leaf else \
            self._local.detach().clone()
        local.requires_grad_(self._local._rg)
        out = _wrap(local, self._spec)
        if isinstance(self, _DTensorParameter):
            out.__class__ = _DTensorParameter
        memo[id(self)] = out
        return out

    # -- nn.Parameter(dtensor) stays a DTensor (ember/nn/parameter.py asks for this)
    def _as_parameter(self, requires_grad=True):
        p = _wrap(self._local.detach(), self._spec, _DTensorParameter)
        if requires_grad:
            p.requires_grad_(True)
        return p


def _placement_codes(placements):
    """Placements as plain data for pickles ("S<dim>", "R", "P<op>")."""
    out = []
    for p in placements:
        if isinstance(p, _StridedShard):
            raise NotImplementedError("pickling a DTensor with a _StridedShard placement")
        out.append(f"S{p.dim}" if isinstance(p, Shard) else "R" if isinstance(p, Replicate)
                   else f"P{p.reduce_op}")
    return tuple(out)


def _rebuild_dtensor(local, mesh, placements, shape, stride, requires_grad, is_param):
    """Unpickling of a DTensor (``DTensor.__reduce_ex__``)."""
    from ..device_mesh import DeviceMesh
    if not isinstance(mesh, DeviceMesh) or len(placements) != mesh.ndim:
        raise TypeError("corrupt DTensor pickle: a DeviceMesh with one placement per mesh dim "
                        "was expected")
    pl = [Shard(int(c[1:])) if c[0] == "S" else Replicate() if c == "R" else Partial(c[1:])
          for c in placements]
    if not isinstance(local, Tensor) or isinstance(local, DTensor):
        raise TypeError(f"corrupt DTensor pickle: local shard is a {type(local).__name__}")
    local = local.detach()
    out = _wrap(local, DTensorSpec(mesh, pl, shape, local.dtype, stride))
    if is_param:
        return _Parameter(out, requires_grad=bool(requires_grad))
    if requires_grad:
        local.requires_grad_(True)
    return out


class _DTensorParameter(DTensor, _Parameter):
    """``nn.Parameter(dtensor)``: a DTensor that modules register as a parameter."""

    def __repr__(self, *, tensor_contents=None):
        return "Parameter containing:\n" + DTensor.__repr__(self)

    __str__ = __repr__


def _as_shares(seed, spec):
    """A whole gradient (as plain tensors hold it) as the shares of the local copies: kept on
    coordinate 0 of replicated mesh dims; a Partial(avg) term gets 1/n of it."""
    rdims = [i for i, p in enumerate(spec.placements) if isinstance(p, Replicate)]
    if rdims and not all(spec.mesh.get_local_rank(i) == 0 for i in rdims):
        seed = seed * 0
    for i, p in enumerate(spec.placements):
        if isinstance(p, Partial) and p.reduce_op == "avg":
            seed = seed / spec.mesh.size(i)
    return seed


def _grad_local(dt):
    """``dt``'s local tensor as ops should read it. A replicated leaf that requires grad gets
    each copy's share of the gradient; an identity node whose backward sums the shares
    makes ``.grad`` the whole gradient on every rank (as PyTorch's DTensor). It is a graph
    node, not a leaf hook, because collectives must run in the same order on every rank: the
    engine orders nodes by creation, while leaves all tie."""
    local = dt._local
    if not local._rg or local.grad_fn is not None:
        return local
    from ...autograd.grad_mode import GradMode
    rdims = _replicate_dims(dt._spec.placements)
    if not rdims or not GradMode.enabled:
        return local
    return C.ReduceGrad.apply(local, _pgs(dt._spec.mesh, rdims))


_DEFAULT_MESH = []


def _default_mesh():
    if not _DEFAULT_MESH:
        from .. import distributed_c10d as c10d
        from ..device_mesh import init_device_mesh
        _DEFAULT_MESH.append(init_device_mesh("cpu", (c10d.get_world_size(),)))
    return _DEFAULT_MESH[0]


# ---------------------------------------------------------------------- distribute_*
def distribute_tensor(tensor, device_mesh=None, placements=None, *, src_data_rank=0):
    """Lay out ``tensor`` (the whole value) over ``device_mesh``: every rank keeps its shard.
    With ``src_data_rank`` (default 0), the value on that rank is the one distributed (it is
    broadcast first); ``None`` trusts every rank to pass the same value."""
    if isinstance(tensor, DTensor):
        raise ValueError("distribute_tensor: the input is already a DTensor; use "
                         "redistribute()")
    if not isinstance(tensor, Tensor):
        raise TypeError(f"distribute_tensor expects a Tensor, got {type(tensor).__name__}")
    mesh = device_mesh if device_mesh is not None else _default_mesh()
    placements = _norm_placements(placements, mesh, tensor.ndim)
    for p in placements:
        if isinstance(p, Partial):
            raise RuntimeError(f"distribute_tensor: placement {p} is not supported; a full "
                               f"tensor can only be distributed as Shard or Replicate")
    rg = tensor.requires_grad
    full = tensor.detach()
    if src_data_rank is not None and mesh.get_coordinate() is not None:
        from .. import distributed_c10d as c10d
        full = full.clone()
        for i in range(mesh.ndim):
            c10d.broadcast(full, group=mesh.get_group(i), group_src=0)
    spec = DTensorSpec(mesh, placements, tuple(tensor.shape), tensor.dtype)
    shape, offset = spec.local_shape_and_offset()
    idx = tuple(slice(o, o + s) for o, s in zip(offset, shape))
    local = _make(np.array(full._data[idx], copy=True))
    if rg:
        local.requires_grad_(True)
    return _wrap(local, spec)


def distribute_module(module, device_mesh=None, partition_fn=None, input_fn=None,
                      output_fn=None):
    """Distribute ``module``'s parameters and buffers: ``partition_fn(name, submodule,
    mesh)`` for each submodule (default: replicate every parameter and buffer), then
    ``input_fn(module, inputs, mesh)``/``output_fn(module, outputs, mesh)`` as forward
    pre/post hooks."""
    from ... import nn
    mesh = device_mesh if device_mesh is not None else _default_mesh()

    def replicate(m):
        for key, p in list(m._parameters.items()):
            if p is not None and not isinstance(p, DTensor):
                m._parameters[key] = nn.Parameter(
                    distribute_tensor(p.detach(), mesh, [Replicate()] * mesh.ndim),
                    requires_grad=p.requires_grad)
        for key, b in list(m._buffers.items()):
            if b is not None and not isinstance(b, DTensor):
                m._buffers[key] = distribute_tensor(b, mesh, [Replicate()] * mesh.ndim)

    for name, sub in module.named_modules():
        if partition_fn is not None:
            partition_fn(name, sub, mesh)
        replicate(sub)
    if input_fn is not None:
        module.register_forward_pre_hook(lambda m, inputs: input_fn(m, inputs, mesh))
    if output_fn is not None:
        module.register_forward_hook(lambda m, inputs, outputs: output_fn(m, outputs, mesh))
    return module


# ---------------------------------------------------------------------- factories
def _factory(make, size, dtype, requires_grad, device_mesh, placements, random=False):
    from ..._tensor import Size as _Size
    if len(size) == 1 and isinstance(size[0], (tuple, list, _Size)):
        size = tuple(size[0])
    shape = tuple(int(s) for s in size)
    mesh = device_mesh if device_mesh is not None else _default_mesh()
    placements = _norm_placements(placements, mesh, len(shape))
    if any(isinstance(p, Partial) for p in placements):
        raise RuntimeError("DTensor factories take Shard or Replicate placements")
    from ... import _dtype as D
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    spec = DTensorSpec(mesh, placements, shape, dt)
    lshape, offset = spec.local_shape_and_offset()
    if random:
        # every rank draws the whole value from the same generator state and keeps its
        # shard, so the result equals a single-process draw (and every rank stays in step)
        full = make(shape, dt)
        idx = tuple(slice(o, o + s) for o, s in zip(offset, lshape))
        local = _make(np.array(full._data[idx], copy=True))
    else:
        local = make(lshape, dt)
    if requires_grad:
        local.requires_grad_(True)
    return _wrap(local, spec)


def ones(*size, dtype=None, layout=None, requires_grad=False, device_mesh=None,
         placements=None):
    """A DTensor of ones of global shape ``size`` laid out by ``placements``."""
    from ...ops import creation
    return _factory(lambda s, d: creation.ones(s, dtype=d), size, dtype, requires_grad,
                    device_mesh, placements)


def zeros(*size, dtype=None, layout=None, requires_grad=False, device_mesh=None,
          placements=None):
    """A DTensor of zeros of global shape ``size`` laid out by ``placements``."""
    from ...ops import creation
    return _factory(lambda s, d: creation.zeros(s, dtype=d), size, dtype, requires_grad,
                    device_mesh, placements)


def empty(*size, dtype=None, layout=None, requires_grad=False, device_mesh=None,
          placements=None):
    """An uninitialised DTensor of global shape ``size`` laid out by ``placements``."""
    from ...ops import creation
    return _factory(lambda s, d: creation.empty(s, dtype=d), size, dtype, requires_grad,
                    device_mesh, placements)


def full(size, fill_value, *, dtype=None, layout=None, requires_grad=False, device_mesh=None,
         placements=None):
    """A DTensor filled with ``fill_value`` of global shape ``size``."""
    from ...ops import creation
    return _factory(lambda s, d: creation.full(s, fill_value, dtype=d), (size,), dtype,
                    requires_grad, device_mesh, placements)


def rand(*size, requires_grad=False, dtype=None, layout=None, device_mesh=None,
         placements=None):
    """A DTensor of U[0, 1) draws; equal to ``ember.rand`` of the whole shape drawn from the
    same seed."""
    from ...ops import random as RND
    return _factory(lambda s, d: RND.rand(*s, dtype=d), size, dtype, requires_grad,
                    device_mesh, placements, random=True)


def randn(*size, requires_grad=False, dtype=None, layout=None, device_mesh=None,
          placements=None):
    """A DTensor of N(0, 1) draws; equal to ``ember.randn`` of the whole shape drawn from the
    same seed."""
    from ...ops import random as RND
    return _factory(lambda s, d: RND.randn(*s, dtype=d), size, dtype, requires_grad,
                    device_mesh, placements, random=True)
