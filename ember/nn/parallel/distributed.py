"""``DistributedDataParallel``: one model replica per process, gradients averaged over MPI.

Algorithm (PyTorch's, in brief):
1. At construction, rank 0's parameters and buffers are broadcast to every rank, and the
   parameters that require grad are split into buckets in *reverse* registration order (the
   order backward usually produces their gradients): the first bucket holds up to 1 MB, the
   others up to ``bucket_cap_mb``; a bucket holds one dtype.
2. Each parameter gets a post-accumulate-grad hook. When every parameter of a bucket has its
   gradient, the bucket's gradients are copied into one flat buffer and its all-reduce starts
   (``Iallreduce``, non-blocking) while backward goes on with the rest of the graph. Buckets
   start in index order on every rank, since MPI matches collectives by order.
3. When the last bucket has started, DDP waits for all of them and writes the averaged
   gradients back into ``.grad``.
``no_sync()`` skips steps 2-3 (gradients accumulate locally, the next synchronised backward
reduces the sum). With ``find_unused_parameters=True`` the forward's autograd graph is walked
to find parameters that will get no gradient on this rank: they count as ready (zeros), and
a parameter no rank used keeps ``.grad`` as it was (None), as in PyTorch. Without it, a
parameter that never gets a gradient raises PyTorch's "Expected to have finished reduction"
error at the next forward.
A communication hook (``register_comm_hook``) replaces the averaging of step 2:
``hook(state, GradBucket) -> Future`` of the bucket's reduced flat gradient.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ...distributed.algorithms.join import Joinable, _JoinConfig
from ..modules.module import Module

__all__ = ["DistributedDataParallel", "GradBucket"]

_FIRST_BUCKET_BYTES = 1024 * 1024


class GradBucket:
    """One bucket of gradients as a communication hook sees it: ``buffer()`` is the flat
    gradient (a 1-D tensor), ``gradients()`` views of it shaped as ``parameters()``."""

    def __init__(self, index, buffer, params, offsets, is_last):
        self._index, self._buffer, self._params = index, buffer, params
        self._offsets, self._is_last = offsets, is_last

    def index(self):
        return self._index

    def buffer(self):
        return self._buffer

    def gradients(self):
        return [self._buffer[o:o + p.numel()].view(p.shape)
                for p, o in zip(self._params, self._offsets)]

    def parameters(self):
        return list(self._params)

    def is_last(self):
        return self._is_last

    def set_buffer(self, tensor):
        self._buffer = tensor


class _Bucket:
    __slots__ = ("index", "params", "slots", "offsets", "numel", "buffer", "pending", "fut",
                 "sparse")

    def __init__(self, index, params, slots, sparse=False):
        self.index, self.params, self.slots = index, params, slots
        self.sparse = sparse  # one parameter whose gradient is sparse (Embedding(sparse=True))
        self.offsets = np.cumsum([0] + [p.numel() for p in params[:-1]]).tolist()
        self.numel = sum(p.numel() for p in params)
        self.buffer = None
        self.pending = len(params)
        self.fut = None


class _Done:
    """A finished result in the future's shape (``wait()``)."""

    def __init__(self, value):
        self.value = value

    def wait(self):
        return self.value


def _tensors_in(obj, out):
    from ..._tensor import Tensor
    if isinstance(obj, Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors_in(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors_in(o, out)
    return out


def _leaves_reached(outputs):
    """ids of the leaf tensors the autograd graph of ``outputs`` reaches."""
    seen, stack, leaves = set(), [], set()
    for t in _tensors_in(outputs, []):
        if t.grad_fn is not None:
            stack.append(t.grad_fn)
        elif t.requires_grad:
            leaves.add(id(t))
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "_variable_ref", None)
        if var is not None:
            leaf = var()
            if leaf is not None:
                leaves.add(id(leaf))
        for nxt, _ in node.next_functions or ():
            if nxt is not None and id(nxt) not in seen:
                stack.append(nxt)
    return leaves


class DistributedDataParallel(Module, Joinable):
    """Data parallelism over the ranks of a process group (see the module docstring)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, process_group=None, bucket_cap_mb=None,
                 find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False,
                 delay_all_reduce_named_params=None, param_to_hook_all_reduce=None,
                 mixed_precision=None, device_mesh=None, skip_all_reduce_unused_params=False):
        super().__init__()
        from ... import distributed as dist
        from ...distributed import distributed_c10d as c10d
        c10d._world()  # a clear error when no process group runs
        if device_ids not in (None, []) or output_device is not None:
            raise ValueError(
                f"DistributedDataParallel device_ids and output_device arguments only work "
                f"with single-device/multiple-device GPU modules or CPU modules, but got "
                f"device_ids {device_ids}, output_device {output_device}, and module "
                f"parameters on cpu (ember runs on CPU: leave both None).")
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't "
                               "have any parameter that requires a gradient.")
        self.module = module
        self.process_group = process_group if process_group is not None else dist.group.WORLD
        self.dim = dim
        self.device_ids = None
        self.output_device = None
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.static_graph = static_graph
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb)
                                    * 1024 * 1024)
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self._join_config = _JoinConfig.construct_disabled_join_config()
        self._join_divide_initial = True
        self._join_active = None
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._comm_hook = None
        self._comm_state = None
        self._sync_module_states()
        self._build_buckets()
        self._iteration_open = False
        self._ready = [False] * len(self._params)
        self._handles = [p.register_post_accumulate_grad_hook(self._make_hook(i))
                         for i, p in enumerate(self._params)]

    # -------------------------------------------------------------- construction
    def _group(self):
        from ...distributed import distributed_c10d as c10d
        return None if self.process_group is c10d.GroupMember.WORLD else self.process_group

    def _broadcast_coalesced(self, tensors, src_rank=0):
        """Broadcast ``tensors`` from rank ``src_rank`` of the group, one flat message per
        dtype."""
        from ... import distributed as dist
        from ...ops.creation import from_numpy
        src = dist.get_global_rank(self.process_group, src_rank) if self._group() else \
            src_rank
        by_dtype = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = from_numpy(np.concatenate([t._data.reshape(-1) for t in group]))
            dist.broadcast(flat, src=src, group=self._group())
            off = 0
            for t in group:
                n = t._data.size
                t._data[...] = flat._data[off:off + n].reshape(t._data.shape)
                off += n

    def _sync_module_states(self):
        states = [p for p in self.module.parameters()] + list(self.module.buffers())
        if states:
            self._broadcast_coalesced(states)

    def _sparse_params(self):
        """Ids of the parameters whose gradients are sparse: the weights of embeddings made
        with ``sparse=True`` (each gets a bucket of its own, as in PyTorch)."""
        from ..modules.sparse import Embedding, EmbeddingBag
        return {id(m.weight) for m in self.module.modules()
                if isinstance(m, (Embedding, EmbeddingBag)) and m.sparse}

    def _build_buckets(self):
        order = list(range(len(self._params)))[::-1]
        sparse = self._sparse_params()
        buckets, cur, size, cap = [], [], 0, min(_FIRST_BUCKET_BYTES, self.bucket_bytes_cap)
        for i in order:
            p = self._params[i]
            if id(p) in sparse:
                buckets.append(("sparse", i))
                continue
            nbytes = p._data.nbytes
            if cur and (size + nbytes > cap or p.dtype != self._params[cur[0]].dtype):
                buckets.append(cur)
                cur, size, cap = [], 0, self.bucket_bytes_cap
            cur.append(i)
            size += nbytes
        if cur:
            buckets.append(cur)
        self._buckets = [_Bucket(k, [self._params[b[1]]], [b[1]], True) if b[0] == "sparse"
                         else _Bucket(k, [self._params[i] for i in b], b)
                         for k, b in enumerate(buckets)]
        self._bucket_of = {}
        for b in self._buckets:
            for i in b.slots:
                self._bucket_of[i] = b

    # -------------------------------------------------------------- the iteration
    def _make_hook(self, i):
        def hook(param):
            if self.require_backward_grad_sync and self._iteration_open:
                if self._next_bucket:
                    self._poke()
                self._mark_ready(i)
        return hook

    def _poke(self):
        # MPI advances non-blocking collectives only inside MPI calls (no progress thread, so
        # as not to spin a core of its own): a cheap probe from each gradient hook keeps the
        # buckets already started moving while backward computes the next ones.
        from ...distributed import distributed_c10d as c10d
        c10d._mpi().COMM_WORLD.Iprobe()

    def _mark_ready(self, i):
        if self._ready[i]:
            raise RuntimeError(
                f"Expected to mark a variable ready only once. Parameter "
                f"{self._names[i]} received its gradient twice in one iteration (a second "
                f"backward through the same forward, or a reentrant backward). With no_sync "
                f"or one backward per forward this does not happen.")
        self._ready[i] = True
        bucket = self._bucket_of[i]
        bucket.pending -= 1
        if bucket.pending == 0:
            self._launch_ready()

    def _launch_ready(self):
        # Start buckets strictly in index order: every rank must issue MPI's collectives in
        # the same order, whatever order its gradients arrive in.
        while self._next_bucket < len(self._buckets) and \
                self._buckets[self._next_bucket].pending == 0:
            self._launch(self._buckets[self._next_bucket])
            self._next_bucket += 1
        if self._next_bucket == len(self._buckets):
            self._finalize()

    def _launch(self, bucket):
        if bucket.sparse:
            bucket.fut = self._sparse_allreduce(bucket.params[0])
            return
        from ...ops.creation import from_numpy
        from ...distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        first = bucket.params[0]
        flat = np.empty(bucket.numel, first._data.dtype)
        for p, off in zip(bucket.params, bucket.offsets):
            g = p.grad
            n = p._data.size
            if g is None:
                flat[off:off + n] = 0
            else:
                flat[off:off + n] = g._data.reshape(-1)
        bucket.buffer = from_numpy(flat)
        gb = GradBucket(bucket.index, bucket.buffer, bucket.params, bucket.offsets,
                        bucket.index == len(self._buckets) - 1)
        if self._comm_hook is None:
            bucket.fut = allreduce_hook(self.process_group, gb)
        else:
            bucket.fut = self._comm_hook(self._comm_state, gb)

    def _sparse_allreduce(self, p):
        """The sum over the ranks of ``p``'s sparse gradient: every rank's entries side by
        side (uncoalesced, in rank order), as PyTorch's sparse all-reduce; divided by the
        world size in ``_finalize``. Blocking (the entries' count differs between ranks)."""
        from ... import distributed as dist
        from ...sparse import _new_sparse
        from ...ops.creation import from_numpy
        if self._comm_hook is not None:
            raise NotImplementedError("DistributedDataParallel: a communication hook with a "
                                      "sparse gradient (Embedding(sparse=True)) is not "
                                      "supported")
        g = p.grad
        if g is not None and not g.is_sparse:
            name = next(n for n, q in zip(self._names, self._params) if q is p)
            raise RuntimeError(f"DistributedDataParallel: {name} was expected to get a sparse "
                               f"gradient, got a dense one")
        width = p._data.shape[1:]
        mine = (np.zeros((1, 0), np.int64), np.zeros((0,) + width, p._data.dtype)) \
            if g is None else (g._idx, np.asarray(g._vals._data))
        parts = [None] * dist.get_world_size(self._group())
        dist.all_gather_object(parts, mine, group=self._group())
        idx = np.concatenate([i for i, _ in parts], axis=1)
        vals = np.concatenate([v for _, v in parts], axis=0)
        return _Done(_new_sparse(idx, from_numpy(vals), tuple(p.shape), idx.shape[1] <= 1))

    def _finalize(self):
        from ... import distributed as dist
        from ...ops.creation import from_numpy
        used = None
        if self.find_unused_parameters:
            mask = from_numpy(np.array(self._used, dtype=np.int32))
            dist.all_reduce(mask, group=self._group())
            used = mask._data > 0
        scale = 1.0
        if self._join_config.enable and not self._join_divide_initial and self._join_active:
            # averaged over the ranks that took part, not over the initial world
            scale = dist.get_world_size(self._group()) / self._join_active
        for bucket in self._buckets:
            result = bucket.fut.wait()
            bucket.fut = None
            if bucket.sparse:
                i, p = bucket.slots[0], bucket.params[0]
                if used is None or used[i]:
                    world = dist.get_world_size(self._group())
                    p.grad = result * (scale / world)
                continue
            flat = result._data.reshape(-1)
            if flat.dtype != bucket.params[0]._data.dtype:
                raise RuntimeError(f"DDP communication hook returned a {flat.dtype} bucket; "
                                   f"the parameters are {bucket.params[0]._data.dtype}")
            for i, p, off in zip(bucket.slots, bucket.params, bucket.offsets):
                if used is not None and not used[i]:
                    continue  # no rank used it: its grad stays as it was, as in PyTorch
                n = p._data.size
                view = flat[off:off + n].reshape(p._data.shape)
                if scale != 1.0:
                    view = view * scale
                if self.gradient_as_bucket_view:
                    p.grad = from_numpy(view)
                elif p.grad is None:
                    p.grad = from_numpy(view.copy())
                else:
                    p.grad._data[...] = view
        self._iteration_open = False

    def _open_iteration(self):
        if self._iteration_open and any(self._ready):
            missing = [(i, n) for i, n in enumerate(self._names) if not self._ready[i]]
            self._iteration_open = False
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting "
                "a new one. This error indicates that your module has parameters that were "
                "not used in producing loss. You can enable unused parameter detection by "
                "passing the keyword argument `find_unused_parameters=True` to "
                "`ember.nn.parallel.DistributedDataParallel`, and by making sure all "
                "`forward` function outputs participate in calculating loss. Parameters "
                f"which did not receive grad for rank {self._rank()}: "
                f"{', '.join(n for _, n in missing)}. Parameter indices which did not "
                f"receive grad for rank {self._rank()}: "
                f"{' '.join(str(i) for i, _ in missing)}")
        self._ready = [False] * len(self._params)
        for b in self._buckets:
            b.pending = len(b.params)
            b.fut = None
        self._next_bucket = 0
        self._used = [True] * len(self._params)
        self._iteration_open = True

    def _rank(self):
        from ... import distributed as dist
        return dist.get_rank(self._group())

    def forward(self, *inputs, **kwargs):
        from ...autograd.grad_mode import is_grad_enabled
        from ...distributed.algorithms.join import Join
        joining = self._join_config.enable
        if joining:
            self._join_active = Join.notify_join_context(self)
        sync = self.require_backward_grad_sync and is_grad_enabled() and self.training
        if sync:
            self._open_iteration()
        if self.broadcast_buffers and self.require_forward_param_sync:
            buffers = list(self.module.buffers())
            if buffers:
                # under join, rank 0 may have stopped: the highest rank still training sends
                src = _highest_rank(self._group(), self._rank()) if joining else 0
                self._broadcast_coalesced(buffers, src)
        out = self.module(*inputs, **kwargs)
        if sync and self.find_unused_parameters:
            reached = _leaves_reached(out)
            for i, p in enumerate(self._params):
                if id(p) not in reached:
                    self._used[i] = False
                    self._mark_ready(i)
        return out

    # -------------------------------------------------------------- public API
    @contextlib.contextmanager
    def no_sync(self):
        """Within this context, backward accumulates gradients locally without communication;
        the first synchronised backward afterwards reduces the accumulated sum."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def register_comm_hook(self, state, hook):
        """Replace the gradient averaging: ``hook(state, bucket)`` returns a ``Future`` of the
        bucket's reduced flat gradient. Call once, before the first forward."""
        if self._comm_hook is not None:
            raise RuntimeError("register_comm_hook or register_builtin_comm_hook can only be "
                               "called once.")
        if not callable(hook):
            raise TypeError("Communication hook must be callable.")
        self._comm_hook, self._comm_state = hook, state

    def _set_static_graph(self):
        self.static_graph = True

    # -------------------------------------------------------------- uneven inputs (Join)
    def join(self, divide_by_initial_world_size=True, enable=True,
             throw_on_early_termination=False):
        """A context manager for training with different numbers of batches per rank: a rank
        that runs out keeps answering the others' collectives with zero gradients until all
        have finished (``ember.distributed.algorithms.Join``). Gradients are averaged over
        the initial world size, or over the ranks still training when
        ``divide_by_initial_world_size=False``."""
        from ...distributed.algorithms.join import Join
        return Join([self], enable, throw_on_early_termination,
                    divide_by_initial_world_size=divide_by_initial_world_size)

    def join_hook(self, **kwargs):
        self._join_divide_initial = kwargs.get("divide_by_initial_world_size", True)
        return _DDPJoinHook(self)

    @property
    def join_device(self):
        from ..._device import CPU
        return CPU

    @property
    def join_process_group(self):
        return self.process_group


def _highest_rank(group, rank):
    from ...distributed.algorithms.join import _all_reduce_int
    from ...distributed import distributed_c10d as c10d
    return _all_reduce_int(rank, group, c10d.ReduceOp.MAX)


class _DDPJoinHook:
    """A joined rank's side of a DDP iteration: the same collectives, in the same order, with
    nothing to contribute (zero gradients); at the end, the last rank's model for all."""

    def __init__(self, ddp):
        self.ddp = ddp

    def main_hook(self):
        from ... import distributed as dist
        from ...ops.creation import from_numpy
        from ...distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        ddp = self.ddp
        if ddp.broadcast_buffers and ddp.require_forward_param_sync:
            buffers = list(ddp.module.buffers())
            if buffers:
                ddp._broadcast_coalesced(buffers, _highest_rank(ddp._group(), -1))
        if not ddp.require_backward_grad_sync:
            return
        futs = []
        for bucket in ddp._buckets:
            zero = from_numpy(np.zeros(bucket.numel, bucket.params[0]._data.dtype))
            gb = GradBucket(bucket.index, zero, bucket.params, bucket.offsets,
                            bucket.index == len(ddp._buckets) - 1)
            futs.append(allreduce_hook(ddp.process_group, gb) if ddp._comm_hook is None
                        else ddp._comm_hook(ddp._comm_state, gb))
        if ddp.find_unused_parameters:
            mask = from_numpy(np.zeros(len(ddp._params), dtype=np.int32))
            dist.all_reduce(mask, group=ddp._group())
        for f in futs:
            f.wait()

    def post_hook(self, is_last_joiner):
        ddp = self.ddp
        src = _highest_rank(ddp._group(), ddp._rank() if is_last_joiner else -1)
        states = list(ddp.module.parameters()) + list(ddp.module.buffers())
        if states:
            ddp._broadcast_coalesced(states, src)
