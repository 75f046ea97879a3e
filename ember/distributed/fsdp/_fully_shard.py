"""``fully_shard``: FSDP2 (ZeRO-3) for ember modules.

Algorithm (PyTorch's FSDP2, on MPI):
1. ``fully_shard(module)`` takes the parameters of ``module`` that no inner ``fully_shard``
   already took, and replaces each with a DTensor parameter ``Shard(0)`` over the mesh
   (``torch.chunk`` rows: rank r keeps rows ``[r*c, (r+1)*c)``, c = ceil(rows/N)). The module's
   class becomes ``FSDP<Class>`` (an ``FSDPModule``). Parameters, their gradients and the
   optimizer state therefore take about 1/N of the memory on each rank.
2. Before the module's forward, its parameters are all-gathered (one ``Allgather`` of a flat
   buffer of rows padded to ``c``) and the whole tensors are set as plain attributes of their
   modules (shadowing the registered DTensors, which ``parameters()`` keeps returning, so the
   optimizer only ever sees shards). They come out of one autograd Function, ``_AllGather``,
   whose backward is the adjoint: the whole gradients are reduce-scattered (summed, divided by
   N, as data parallelism averages) into the local shards' ``.grad``.
3. After the forward the whole parameters are dropped (``reshard_after_forward``): tensors that
   autograd saves for backward pass through ``saved_tensors_hooks`` that store a reference to
   the unit instead of the whole parameter, and unpacking in backward gathers them again. The
   root keeps its parameters (backward needs them first). After a unit's gradients are
   reduce-scattered, its whole parameters are dropped again (``reshard_after_backward``).
4. Prefetching: the forward order of the units is recorded; a unit's forward starts the
   all-gather of the next one (non-blocking) and the backward of a unit starts the all-gather of
   the unit before it, so communication overlaps computation where MPI progresses it.
``set_requires_gradient_sync(False)`` accumulates whole gradients locally (no communication)
until a backward with sync on reduce-scatters their sum.

HSDP: on a 2-d mesh ``(replicate, shard)`` the parameters are ``(Replicate(), Shard(0))``
DTensors: gathered within the shard group (mesh dim 1); gradients are reduce-scattered within
it, then all-reduced across the replicate group (mesh dim 0), and divided by every rank's count,
so each group of shards trains as one FSDP replica of data-parallel training.
"""

from __future__ import annotations

import numpy as np

from ... import _dtype as D
from ..._tensor import Tensor, _make
from ...autograd.graph import Function, saved_tensors_hooks
from ...autograd.grad_mode import GradMode

__all__ = ["CPUOffloadPolicy", "FSDPModule", "MixedPrecisionPolicy", "OffloadPolicy",
           "UnshardHandle", "fully_shard"]


class MixedPrecisionPolicy:
    """Dtypes FSDP computes and communicates in: ``param_dtype`` for the gathered parameters
    (and the forward inputs when ``cast_forward_inputs``), ``reduce_dtype`` for the gradient
    reduce-scatter, ``output_dtype`` for the root's outputs. None keeps the parameter's."""

    def __init__(self, param_dtype=None, reduce_dtype=None, output_dtype=None,
                 cast_forward_inputs=True):
        self.param_dtype, self.reduce_dtype = param_dtype, reduce_dtype
        self.output_dtype, self.cast_forward_inputs = output_dtype, cast_forward_inputs

    def __repr__(self):
        return (f"MixedPrecisionPolicy(param_dtype={self.param_dtype}, reduce_dtype="
                f"{self.reduce_dtype}, output_dtype={self.output_dtype}, cast_forward_inputs="
                f"{self.cast_forward_inputs})")


class OffloadPolicy:
    """No offloading (ember's tensors already live in host memory)."""


class CPUOffloadPolicy(OffloadPolicy):
    """Accepted for compatibility: every ember CPU tensor is already in host memory."""

    def __init__(self, pin_memory=True):
        self.pin_memory = pin_memory


class UnshardHandle:
    """What ``unshard(async_op=True)`` returns: ``wait()`` finishes the all-gather."""

    def __init__(self, state):
        self._state = state

    def wait(self):
        self._state._ensure_full()


class _Param:
    """One sharded parameter: where it is registered, its global shape, its padded rows."""

    __slots__ = ("owners", "param", "shape", "rows", "row", "chunk", "local_rows")

    def __init__(self, owners, param, shape, n):
        from ..tensor._collectives import chunk_sizes
        self.owners, self.param, self.shape = owners, param, tuple(shape)
        self.rows = shape[0]
        self.row = int(np.prod(shape[1:], dtype=np.int64))
        sizes, self.chunk = chunk_sizes(self.rows, n)
        self.local_rows = sizes

    @property
    def padded(self):  # elements per rank in the flat buffers
        return self.chunk * self.row


class _Token:
    """A whole parameter saved for backward, by reference (step 3 of the module docstring)."""

    __slots__ = ("state", "index")

    def __init__(self, state, index):
        self.state, self.index = state, index


class _AllGather(Function):
    """``(state, *local shards) -> whole parameters``; backward reduce-scatters."""

    @staticmethod
    def forward(ctx, state, *shards):
        ctx.state = state
        return tuple(_make(a) for a in state._ensure_full())

    @staticmethod
    def backward(ctx, *grads):
        state = ctx.state
        state._prefetch_previous()
        out = state._reduce_scatter([None if g is None else g._data for g in grads])
        if state.reshard_after_backward:
            state.free()
        return (None,) + tuple(out)


class _State:
    """The FSDP state of one ``fully_shard`` unit."""

    def __init__(self, module, mesh, reshard_after_forward, mp_policy):
        self.module, self.mesh = module, mesh
        self.pg = mesh.get_group(mesh.ndim - 1)  # the shard group
        self.comm = self.pg.comm
        self.n, self.rank = self.pg.size(), self.pg.rank()
        # HSDP: the replicate group (the shard's copies on the other replicas), else None
        self.rep = mesh.get_group(0) if mesh.ndim == 2 and mesh.size(0) > 1 else None
        self.reshard_after_forward = reshard_after_forward
        self.reshard_after_backward = True
        self.requires_grad_sync = True
        self.mp = mp_policy or MixedPrecisionPolicy()
        self.params = []
        self.full = None          # the whole parameters' arrays while unsharded
        self.pending = None       # (request, gathered buffers) of a non-blocking all-gather
        self.accum = None         # whole gradients accumulated without sync
        self.is_root = None
        self.root = None
        self.order = None         # on the root: the units in forward order
        self.installed = []
        self.pack_ids = {}
        self._recording = False
        self.full_versions = self.pending_versions = None

    # -- communication
    def _dtype(self, p):
        pd = self.mp.param_dtype
        return D.to_dtype(pd).np if pd is not None else p.param._data.dtype

    def _start_gather(self):
        groups = {}
        for i, p in enumerate(self.params):
            groups.setdefault(self._dtype(p), []).append(i)
        reqs, bufs = [], []
        for dtype, idx in groups.items():
            size = sum(self.params[i].padded for i in idx)
            send = np.zeros(size, dtype)
            o = 0
            for i in idx:
                p = self.params[i]
                loc = p.param._data.reshape(-1)
                send[o:o + loc.size] = loc
                o += p.padded
            recv = np.empty(size * self.n, dtype)
            wire_s, wire_r = _wire(send), _wire(recv)
            reqs.append(self.comm.Iallgather(wire_s, wire_r) if self.n > 1 else None)
            if self.n == 1:
                recv[:] = send
            bufs.append((idx, size, recv, send))
        self.pending = (reqs, bufs)
        self.pending_versions = self._versions()

    def _ensure_full(self):
        """The whole parameters' arrays (gathering them, or finishing a prefetch, first)."""
        if self.full is not None:
            if self._versions() == self.full_versions:
                return self.full
            self.full = None  # the shards changed (an optimizer step): gather again
        if self.pending is not None and self._versions() != self.pending_versions:
            self._wait_pending()
        if self.pending is None:
            self._start_gather()
        reqs, bufs = self._wait_pending()
        full = [None] * len(self.params)
        for idx, size, recv, _ in bufs:
            blocks = recv.reshape(self.n, size)
            o = 0
            for i in idx:
                p = self.params[i]
                rows = blocks[:, o:o + p.padded].reshape(self.n * p.chunk, *p.shape[1:])
                full[i] = np.ascontiguousarray(rows[:p.rows])
                o += p.padded
        self.full = full
        self.full_versions = self.pending_versions
        return full

    def _versions(self):
        return [p.param._version for p in self.params]

    def _wait_pending(self):
        reqs, bufs = self.pending
        self.pending = None
        for r in reqs:
            if r is not None:
                r.Wait()
        return reqs, bufs

    def _reduce_scatter(self, grads):
        """Whole gradients -> this rank's shard of their average over the ranks."""
        if self.accum is not None:
            grads = [a if g is None else (g if a is None else g + a)
                     for g, a in zip(grads, self.accum)]
            self.accum = None
        if not self.requires_grad_sync:
            self.accum = [None if g is None else np.array(g) for g in grads]
            return [None] * len(grads)
        out = [None] * len(grads)
        groups = {}
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is not None and p.param.requires_grad:
                rd = self.mp.reduce_dtype
                dt = D.to_dtype(rd).np if rd is not None else g.dtype
                groups.setdefault(np.dtype(dt), []).append(i)
        for dtype, idx in groups.items():
            size = sum(self.params[i].padded for i in idx)
            red = np.float32 if dtype.itemsize < 4 else dtype  # MPI sums in float32 at least
            send = np.zeros((self.n, size), red)
            o = 0
            for i in idx:
                p = self.params[i]
                g = grads[i].astype(dtype, copy=False).reshape(p.rows, p.row)
                padded = np.zeros((self.n * p.chunk, p.row), red)
                padded[:p.rows] = g
                send[:, o:o + p.padded] = padded.reshape(self.n, p.padded)
                o += p.padded
            recv = np.empty(size, red)
            if self.n > 1:
                self.comm.Reduce_scatter_block(send.reshape(-1), recv)
            else:
                recv[:] = send.reshape(-1)
            if self.rep is not None:  # HSDP: sum the shard over the replicas
                from .. import distributed_c10d as c10d
                self.rep.comm.Allreduce(c10d._mpi().IN_PLACE, recv)
                recv /= self.n * self.rep.size()
            else:
                recv /= self.n
            o = 0
            for i in idx:
                p = self.params[i]
                k = p.local_rows[self.rank]
                local = recv[o:o + k * p.row].reshape((k,) + p.shape[1:])
                out[i] = _make(local.astype(p.param._data.dtype))
                o += p.padded
        return out

    # -- states
    def free(self):
        self.full = None

    def _prefetch_previous(self):
        order = self.root.order if self.root is not None else None
        if not order or self not in order:
            return
        i = order.index(self)
        if i > 0:
            prev = order[i - 1]
            if prev.full is None and prev.pending is None and not prev.is_root:
                prev._start_gather()

    def _prefetch_next(self):
        order = self.root.order if self.root is not None else None
        if not order or self not in order:
            return
        i = order.index(self)
        if i + 1 < len(order):
            nxt = order[i + 1]
            if nxt.full is None and nxt.pending is None:
                nxt._start_gather()

    def install(self, tensors):
        for p, t in zip(self.params, tensors):
            for owner, name in p.owners:
                owner.__dict__[name] = t
        self.installed = list(tensors)

    def uninstall(self):
        for p in self.params:
            for owner, name in p.owners:
                owner.__dict__.pop(name, None)
        self.installed = []

    # -- saved tensors of the forward: whole parameters by reference
    def pack(self, t):
        # ops save the parameter tensor itself, or (array fast paths) its array, which the
        # engine hands here wrapped in a new tensor: match either
        i = self.pack_ids.get(id(t))
        if i is None:
            i = self.pack_ids.get(id(t._data))
        if i is not None and self.installed and (self.installed[i] is t or
                                                 self.installed[i]._data is t._data):
            return _Token(self, i)
        return t

    @staticmethod
    def unpack(x):
        if isinstance(x, _Token):
            return _make(x.state._ensure_full()[x.index])
        return x


def _wire(a):
    """A buffer MPI can move: low-precision floats (bfloat16, float16) travel as raw bytes."""
    if a.dtype.kind == "V" or a.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        return a.view(np.uint8)
    return a


class FSDPModule:
    """The mixin ``fully_shard`` adds to a module's class (``FSDP<Class>``)."""

    def forward(self, *args, **kwargs):
        state = self.__dict__["_fsdp_state"]
        base_forward = super(FSDPModule, self).forward  # noqa: UP008 (the mixin's next class)
        if state.is_root is None:
            _lazy_init(state)
        if state.is_root and state.mp.param_dtype is not None and state.mp.cast_forward_inputs:
            args, kwargs = _cast(args, state.mp.param_dtype), _cast(kwargs, state.mp.param_dtype)
        if state.root is not None and state.root.order is not None and \
                state not in state.root.order and state.root._recording:
            state.root.order.append(state)
        full = state._ensure_full()
        state._prefetch_next()
        locals_ = [p.param._local for p in state.params]
        if GradMode.enabled and any(t._rg for t in locals_):
            tensors = _AllGather.apply(state, *locals_)
            if not isinstance(tensors, tuple):
                tensors = (tensors,)
        else:
            tensors = tuple(_make(a) for a in full)
        state.install(tensors)
        state.pack_ids = {id(t): i for i, t in enumerate(tensors)}
        state.pack_ids.update({id(t._data): i for i, t in enumerate(tensors)})
        try:
            with saved_tensors_hooks(state.pack, _State.unpack):
                out = base_forward(*args, **kwargs)
        finally:
            state.uninstall()
            state.pack_ids = {}
        if state.is_root:
            state._recording = False
            if state.mp.output_dtype is not None:
                out = _cast(out, state.mp.output_dtype)
        if not GradMode.enabled or (state.reshard_after_forward and not state.is_root):
            state.free()  # the root keeps its parameters for backward, which needs them first
        return out

    # -- PyTorch's FSDPModule methods
    def reshard(self):
        """Drop the whole parameters (the module keeps only its shards)."""
        state = self.__dict__["_fsdp_state"]
        state.uninstall()
        if state.pending is not None:
            state._ensure_full()
        state.free()

    def unshard(self, async_op=False):
        """All-gather the parameters now; the module's attributes then hold the whole
        tensors until ``reshard()``. With ``async_op`` returns an ``UnshardHandle``."""
        state = self.__dict__["_fsdp_state"]
        if state.full is None and state.pending is None:
            state._start_gather()
        if async_op:
            return UnshardHandle(state)
        state.install([_make(a) for a in state._ensure_full()])
        return None

    def set_requires_gradient_sync(self, requires_gradient_sync, *, recurse=True):
        """Whether backward reduce-scatters gradients (False: accumulate whole gradients
        locally, e.g. for gradient accumulation without communication)."""
        for s in _states(self, recurse):
            s.requires_grad_sync = bool(requires_gradient_sync)

    def set_reshard_after_backward(self, reshard_after_backward, *, recurse=True):
        """Whether the whole parameters are dropped after their gradients are reduced."""
        for s in _states(self, recurse):
            s.reshard_after_backward = bool(reshard_after_backward)

    def set_reshard_after_forward(self, reshard_after_forward, recurse=True):
        """Whether the whole parameters are dropped after forward (the root never does)."""
        for s in _states(self, recurse):
            s.reshard_after_forward = bool(reshard_after_forward)

    def set_modules_to_forward_prefetch(self, modules):
        raise NotImplementedError("set_modules_to_forward_prefetch: ember prefetches the next "
                                  "unit in the recorded forward order; explicit lists are not "
                                  "supported")

    def set_modules_to_backward_prefetch(self, modules):
        raise NotImplementedError("set_modules_to_backward_prefetch: ember prefetches the "
                                  "previous unit in the recorded forward order; explicit lists "
                                  "are not supported")


def _states(module, recurse):
    mods = module.modules() if recurse else [module]
    return [m.__dict__["_fsdp_state"] for m in mods if isinstance(m, FSDPModule)]


def _cast(obj, dtype):
    if isinstance(obj, Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, tuple):
        return tuple(_cast(o, dtype) for o in obj)
    if isinstance(obj, list):
        return [_cast(o, dtype) for o in obj]
    if isinstance(obj, dict):
        return {k: _cast(v, dtype) for k, v in obj.items()}
    return obj


def _lazy_init(state):
    """The first unit to run forward is the root: it owns the forward order of all units in
    its subtree (recorded during the first forward) and keeps its parameters unsharded."""
    state.is_root = True
    state.root = state
    state.order = []
    state._recording = True
    for m in state.module.modules():
        if isinstance(m, FSDPModule) and m is not state.module:
            s = m.__dict__["_fsdp_state"]
            s.is_root, s.root = False, state


_CLASSES = {}


def _fsdp_class(cls):
    if issubclass(cls, FSDPModule):
        return cls
    new = _CLASSES.get(cls)
    if new is None:
        new = type(f"FSDP{cls.__name__}", (FSDPModule, cls), {"__module__": cls.__module__})
        _CLASSES[cls] = new
    return new


def fully_shard(module, *, mesh=None, reshard_after_forward=True, shard_placement_fn=None,
                mp_policy=None, offload_policy=None, ignored_params=None):
    """Shard ``module``'s parameters (those no inner ``fully_shard`` took) on dim 0 over
    ``mesh`` and make its class ``FSDP<Class>``: a 1-d DeviceMesh (default: all ranks), or
    a 2-d one ``(replicate, shard)`` for HSDP (sharded over dim 1, replicated over dim 0).
    Apply it to each block first, then to the root. Returns ``module``."""
    from ...nn.parameter import Parameter
    from ..tensor import DTensor, Replicate, Shard
    if isinstance(module, (list, tuple)):
        raise NotImplementedError("fully_shard on a list of modules is not supported; apply it "
                                  "to each module")
    if shard_placement_fn is not None:
        raise NotImplementedError("fully_shard(shard_placement_fn=...): ember shards every "
                                  "parameter on dim 0")
    if offload_policy is not None and not isinstance(offload_policy, OffloadPolicy):
        raise TypeError(f"offload_policy must be an OffloadPolicy, got {offload_policy!r}")
    if isinstance(module, FSDPModule):
        raise ValueError(f"fully_shard was already applied to this {type(module).__name__}")
    if mesh is None:
        from ..device_mesh import init_device_mesh
        from .. import distributed_c10d as c10d
        mesh = init_device_mesh("cpu", (c10d.get_world_size(),))
    if mesh.ndim not in (1, 2):
        raise NotImplementedError(f"fully_shard: a {mesh.ndim}-d mesh is not supported; pass "
                                  "a 1-d DeviceMesh (FSDP) or a 2-d one (HSDP: replicate, "
                                  "shard)")
    if isinstance(reshard_after_forward, int) and not isinstance(reshard_after_forward, bool):
        raise NotImplementedError("fully_shard(reshard_after_forward=<int>) (resharding to a "
                                  "smaller world) is not supported; pass True or False")
    ignored = {id(p) for p in (ignored_params or ())}
    state = _State(module, mesh, bool(reshard_after_forward), mp_policy)
    # the parameters of this unit: not inside an inner FSDP module, not already sharded
    skip = set()
    for m in module.modules():
        if m is not module and isinstance(m, FSDPModule):
            skip.update(id(x) for x in m.modules())
    owners = {}
    for m in module.modules():
        if id(m) in skip:
            continue
        for name, p in list(m._parameters.items()):
            if p is None or id(p) in ignored or isinstance(p, DTensor):
                continue
            owners.setdefault(id(p), (p, []))[1].append((m, name))
    n, rank = mesh.size(mesh.ndim - 1), mesh.get_local_rank(mesh.ndim - 1)
    placements = [Shard(0)] if mesh.ndim == 1 else [Replicate(), Shard(0)]
    for p, where in owners.values():
        if p.ndim == 0:
            raise NotImplementedError(f"fully_shard: 0-d parameter {where[0][1]!r} cannot be "
                                      "sharded on dim 0")
        from ..tensor._collectives import chunk_range
        off, size = chunk_range(p.shape[0], n, rank)
        local = _make(np.array(p._data[off:off + size]))  # a copy: the whole tensor goes
        dt = DTensor.from_local(local, mesh, placements, shape=tuple(p.shape))
        sharded = Parameter(dt, requires_grad=p.requires_grad)
        for m, name in where:
            m._parameters[name] = sharded
        state.params.append(_Param(where, sharded, p.shape, n))
    module.__dict__["_fsdp_state"] = state
    module.__class__ = _fsdp_class(type(module))
    return module
