"""Process groups and collectives on MPI (PyTorch's ``torch.distributed`` API).

Every process group is an MPI communicator. The default group is ``COMM_WORLD`` of the job that
``mpiexec`` (or ``emberrun``, which runs ``mpiexec``) started, reordered so that each process's
rank is the ``RANK`` it was given. Collectives hand tensors' memory to MPI without copies when
it is contiguous (see ``_buffers``); ``async_op=True`` starts MPI's non-blocking collective and
returns a ``Work`` whose ``wait()`` completes it.

Backends: ``"mpi"``; ``"gloo"`` and ``None`` on CPU are served by MPI as well, so programs written
for torchrun + gloo run unchanged; ``"nccl"`` needs a GPU and is refused.

mpi4py is imported by ``init_process_group``, never by ``import ember`` or
``import ember.distributed``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import timedelta

import numpy as np

from ._buffers import ReduceOp, Staged, is_bfloat16, move_view, mpi_op

logger = logging.getLogger("ember.distributed")

default_pg_timeout = timedelta(minutes=30)

_MPI = None  # the mpi4py.MPI module once a group was initialised
_WORLD = None  # the default ProcessGroup
_GROUP_COUNT = 0
_DEBUG_LEVELS = ("OFF", "INFO", "DETAIL")


def _mpi():
    """mpi4py.MPI, imported on first use with an error naming the extra when missing."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise RuntimeError("ember.distributed needs mpi4py and an MPI library: "
                               "pip install 'ember[distributed]'") from e
        _MPI = MPI
    return _MPI


class Backend(str):
    """A backend name (PyTorch's ``torch.distributed.Backend``): lower-case, validated."""

    UNDEFINED = "undefined"
    GLOO = "gloo"
    NCCL = "nccl"
    UCC = "ucc"
    MPI = "mpi"

    def __new__(cls, name):
        if not isinstance(name, str):
            raise ValueError(f"Backend name must be a string, but got: {name}")
        return super().__new__(cls, name.lower())


def _debug_level():
    level = os.environ.get("EMBER_DISTRIBUTED_DEBUG") or \
        os.environ.get("TORCH_DISTRIBUTED_DEBUG") or "OFF"
    return level.upper()


def get_debug_level():
    """``"OFF"``, ``"INFO"`` or ``"DETAIL"`` from ``EMBER_DISTRIBUTED_DEBUG`` or
    ``TORCH_DISTRIBUTED_DEBUG``; at DETAIL every collective first checks that all ranks pass
    tensors of the same shape and dtype."""
    return _debug_level()


class ProcessGroup:
    """A set of ranks that run collectives together: one MPI communicator.

    ``ranks`` are the members' ranks in the default group, in group-rank order.
    """

    def __init__(self, comm, ranks, backend, name):
        self.comm = comm
        self.ranks = list(ranks)
        self.backend = backend
        self.group_name = name

    def rank(self):
        return self.comm.Get_rank()

    def size(self):
        return self.comm.Get_size()

    def name(self):
        return self.backend

    def __repr__(self):
        return f"ProcessGroup(name={self.group_name!r}, ranks={self.ranks})"


class GroupMember:
    """``GroupMember.WORLD`` is the default group; ``NON_GROUP_MEMBER`` is what ``new_group``
    returns on a rank outside the new group."""

    NON_GROUP_MEMBER = -100

    class _World:
        def __get__(self, obj, owner):
            return _WORLD

    WORLD = _World()


class group:  # noqa: N801  (PyTorch's ``dist.group.WORLD``)
    WORLD = GroupMember._World()


# ----------------------------------------------------------------- initialisation


def is_available():
    """True when mpi4py can be imported (checked without importing it)."""
    from . import is_available as _avail
    return _avail()


def is_mpi_available():
    return is_available()


def is_gloo_available():
    """gloo is served by MPI, so it is available exactly when MPI is."""
    return is_available()


def is_nccl_available():
    return False


def is_ucc_available():
    return False


def is_xccl_available():
    return False


def is_backend_available(backend):
    return str(backend).lower() in ("mpi", "gloo") and is_available()


def is_initialized():
    """Whether the default process group is running."""
    return _WORLD is not None


def is_torchelastic_launched():
    """True inside a worker started by ``emberrun``/``python -m ember.distributed.run``."""
    return os.environ.get("TORCHELASTIC_RUN_ID") is not None


def _env_int(name):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


def _resolve_backend(backend):
    if backend is None:
        return "mpi", True
    b = str(backend).lower()
    if ":" in b:  # "cpu:gloo,cuda:nccl": only the CPU entry matters here
        parts = dict(p.split(":", 1) for p in b.split(","))
        if "cpu" not in parts:
            raise RuntimeError(f"backend {backend!r} names no CPU backend; ember runs on CPU")
        b = parts["cpu"]
    if b == "mpi":
        return "mpi", False
    if b == "gloo":
        return "gloo", True
    if b == "nccl":
        raise RuntimeError("Distributed package doesn't have NCCL built in: the nccl backend "
                           "needs CUDA GPUs; use backend='gloo' or 'mpi' (both run on MPI)")
    raise ValueError(f"Invalid backend: {backend!r}; ember supports 'mpi' and 'gloo' "
                     f"(both run on MPI)")


def _let_output_drain():
    """A moment before MPI_Abort: the launcher forwards each rank's output through a pipe,
    and the abort kills the forwarder too, which now and then dropped the traceback just
    written (seen in CI: the message line of a rank's exception missing)."""
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    time.sleep(0.25)


def _install_abort_hook(comm):
    """Make an uncaught exception on this rank end the whole job (MPI_Abort) after printing
    its traceback, instead of leaving the other ranks blocked in their next collective."""
    previous = sys.excepthook
    if getattr(previous, "_ember_abort", False):
        return

    def hook(etype, value, tb):
        try:
            previous(etype, value, tb)
            rank = os.environ.get("RANK", comm.Get_rank())
            sys.stderr.write(f"[ember.distributed] rank {rank}: uncaught "
                             f"{etype.__name__}; aborting the job\n")
            sys.stderr.flush()
            _let_output_drain()
        finally:
            _mpi().COMM_WORLD.Abort(1)

    hook._ember_abort = True
    sys.excepthook = hook

    # An exception in a thread would otherwise leave the job hanging too.
    prev_thread_hook = threading.excepthook

    def thread_hook(args):
        prev_thread_hook(args)
        _let_output_drain()
        _mpi().COMM_WORLD.Abort(1)

    threading.excepthook = thread_hook


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1,
                       store=None, group_name="", pg_options=None, device_id=None):
    """Start the default process group over the processes of this MPI job.

    The processes must have been started together by ``emberrun`` / ``python -m
    ember.distributed.run`` or by ``mpiexec``: MPI is the rendezvous, so ``init_method``
    (``env://``, ``tcp://``, ``file://``) and ``store`` are accepted and need nothing more.
    ``world_size`` and ``rank`` (or ``WORLD_SIZE``/``RANK``) are checked against the job and
    the ranks are renumbered to match them.
    """
    global _WORLD, _GROUP_COUNT
    if _WORLD is not None:
        raise ValueError("trying to initialize the default process group twice!")
    name, served = _resolve_backend(backend)
    if timeout is not None and not isinstance(timeout, timedelta):
        raise TypeError(f"Expected timeout argument to be of type datetime.timedelta, got "
                        f"{type(timeout).__name__}")
    MPI = _mpi()
    job = MPI.COMM_WORLD
    want_size = world_size if world_size not in (-1, None) else _env_int("WORLD_SIZE")
    want_rank = rank if rank not in (-1, None) else _env_int("RANK")
    if want_size is not None and want_size != job.Get_size():
        if job.Get_size() == 1:
            raise RuntimeError(
                f"init_process_group: world_size is {want_size} but this process was not "
                f"started by MPI with its peers (MPI world size 1). ember's process groups "
                f"run on MPI: start the job with `emberrun --nproc-per-node {want_size} "
                f"script.py` (or `python -m ember.distributed.run`), or `mpiexec -n "
                f"{want_size} python script.py`, or ember.multiprocessing.spawn")
        raise RuntimeError(f"init_process_group: world_size={want_size} but the MPI job has "
                           f"{job.Get_size()} processes")
    if want_rank is not None and not 0 <= want_rank < job.Get_size():
        raise ValueError(f"init_process_group: rank {want_rank} is outside [0, "
                         f"{job.Get_size() - 1}]")
    key = job.Get_rank() if want_rank is None else want_rank
    ranks_seen = job.allgather(key)
    if sorted(ranks_seen) != list(range(job.Get_size())):
        raise RuntimeError(f"init_process_group: the processes' ranks {ranks_seen} are not a "
                           f"permutation of 0..{job.Get_size() - 1}")
    comm = job.Split(0, key)
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    _WORLD = ProcessGroup(comm, range(comm.Get_size()), name, group_name or "0")
    _GROUP_COUNT = 1
    if comm.Get_size() > 1:
        _install_abort_hook(comm)
    if served and comm.Get_rank() == 0:
        logger.info("ember.distributed: backend %r is served by MPI (%s)",
                    backend if backend is not None else "default", name)


def destroy_process_group(group=None):
    """Free ``group`` (or every group, the default one included, when ``group`` is None)."""
    global _WORLD
    if group is None or group is _WORLD:
        if _WORLD is None:
            raise ValueError("Default process group has not been initialized, please make "
                             "sure to call init_process_group.")
        ckpt = sys.modules.get("ember.distributed.checkpoint._fs")
        if ckpt is not None:  # async checkpoint saves still running use the communicators
            ckpt._wait_pending()
        try:
            _WORLD.comm.Free()
        except Exception:  # a communicator the job already tore down
            pass
        _WORLD = None
    elif isinstance(group, ProcessGroup):
        group.comm.Free()


def _world():
    if _WORLD is None:
        raise ValueError("Default process group has not been initialized, please make sure "
                         "to call init_process_group.")
    return _WORLD


def _group(group):
    world = _world()
    if group is None or group is GroupMember.WORLD:
        return world
    return group


def _not_in_group(group):
    return isinstance(group, int) and group == GroupMember.NON_GROUP_MEMBER


def get_rank(group=None):
    """This process's rank in ``group`` (-1 when it is not a member)."""
    if _not_in_group(group):
        return -1
    return _group(group).rank()


def get_world_size(group=None):
    """The number of processes in ``group`` (-1 when this process is not a member)."""
    if _not_in_group(group):
        return -1
    return _group(group).size()


def get_backend(group=None):
    if _not_in_group(group):
        raise ValueError("Invalid process group specified")
    return Backend(_group(group).backend)


def get_process_group_ranks(group):
    """The global ranks of ``group``'s members, in group-rank order."""
    if _not_in_group(group):
        raise ValueError("Invalid process group specified")
    return list(_group(group).ranks)


def get_global_rank(group, group_rank):
    ranks = get_process_group_ranks(group)
    if not 0 <= group_rank < len(ranks):
        raise ValueError(f"Group rank {group_rank} is not part of group {ranks}")
    return ranks[group_rank]


def get_group_rank(group, global_rank):
    ranks = get_process_group_ranks(group)
    if global_rank not in ranks:
        raise ValueError(f"Global rank {global_rank} is not part of group {ranks}")
    return ranks.index(global_rank)


def new_group(ranks=None, timeout=None, backend=None, pg_options=None,
              use_local_synchronization=False, group_desc=None, device_id=None):
    """A new group of the given global ``ranks`` (all ranks when None). Every rank of the
    default group must call it, members or not; non-members get ``GroupMember.NON_GROUP_MEMBER``.
    """
    global _GROUP_COUNT
    world = _world()
    n = world.size()
    ranks = list(range(n)) if ranks is None else sorted(int(r) for r in ranks)
    for r in ranks:
        if not 0 <= r < n:
            raise ValueError(f"new_group: rank {r} is outside the default group's ranks "
                             f"[0, {n - 1}]")
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"new_group: ranks {ranks} contain duplicates")
    me = world.rank()
    MPI = _mpi()
    color = 0 if me in ranks else MPI.UNDEFINED
    comm = world.comm.Split(color, ranks.index(me) if me in ranks else 0)
    _GROUP_COUNT += 1
    if comm == MPI.COMM_NULL:
        return GroupMember.NON_GROUP_MEMBER
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    return ProcessGroup(comm, ranks, backend or world.backend, str(_GROUP_COUNT - 1))


def new_subgroups(group_size=None, group=None, timeout=None, backend=None, pg_options=None,
                  group_desc=None):
    """Split the default group into consecutive subgroups of ``group_size`` ranks;
    returns ``(this rank's subgroup, all subgroups)``."""
    n = get_world_size()
    if group_size is None:
        group_size = 1  # one process per node on CPU: PyTorch uses the GPUs per node
    if group_size <= 0:
        raise ValueError("The arg 'group_size' must be a positive integer")
    if group_size > n:
        raise ValueError(f"The arg 'group_size' ({group_size}) must not exceed the world "
                         f"size ({n})")
    if n % group_size != 0:
        raise ValueError(f"The world size ({n}) must be divisible by 'group_size' "
                         f"({group_size})")
    subgroups, cur = [], None
    for start in range(0, n, group_size):
        ranks = list(range(start, start + group_size))
        g = new_group(ranks, backend=backend)
        subgroups.append(g)
        if get_rank() in ranks:
            cur = g
    return cur, subgroups


def new_subgroups_by_enumeration(ranks_per_subgroup_list, timeout=None, backend=None,
                                 pg_options=None, group_desc=None):
    """Subgroups from explicit rank lists; returns ``(this rank's subgroup, all subgroups)``."""
    subgroups, cur = [], None
    for ranks in ranks_per_subgroup_list:
        g = new_group(ranks, backend=backend)
        subgroups.append(g)
        if get_rank() in ranks:
            cur = g
    return cur, subgroups


# ----------------------------------------------------------------- Work (async handles)


class Work:
    """The handle of an operation started with ``async_op=True``.

    ``wait()`` completes the MPI requests and then copies results into the tensors (staged
    buffers, AVG's division, bfloat16's rounding).
    """

    def __init__(self, requests=(), finish=None, result=None, status=None):
        self._requests = list(requests)
        self._status = [status] if status is not None else None
        self._finish = finish
        self._done = False
        self._result = result
        self._exc = None

    def _complete(self):
        if self._finish is not None:
            fin, self._finish = self._finish, None
            fin()
        self._done = True

    def is_completed(self):
        """True once the operation has finished (polls MPI without blocking)."""
        if self._done:
            return True
        if self._requests and not _mpi().Request.Testall(self._requests, self._status):
            return False
        self._complete()
        return True

    def wait(self, timeout=None):
        """Block until the operation is done; True on success."""
        if self._done:
            return True
        if self._requests:
            if timeout is None:
                _mpi().Request.Waitall(self._requests, self._status)
            else:
                secs = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
                deadline = time.monotonic() + secs
                while not _mpi().Request.Testall(self._requests, self._status):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Work.wait timed out after {secs} s")
                    time.sleep(0.0005)
        self._complete()
        return True

    def is_success(self):
        return self._done and self._exc is None

    def exception(self):
        return self._exc

    def result(self):
        return self._result if self._result is not None else []

    def get_future(self):
        """A ``Future`` completed by this work's ``wait()``; its value is the list of tensors
        the operation wrote (``result()``)."""
        from ..futures import Future

        def waiter():
            self.wait()
            return self.result()
        if self._done:
            fut = Future()
            fut.set_result(self.result())
            return fut
        return Future(_waiter=waiter)

    def synchronize(self):
        self.wait()

    def source_rank(self):
        return self._result


def _done_work(result=None):
    w = Work(result=result)
    w._done = True
    return w


def _run(requests, finish, async_op, result=None):
    """Either return a ``Work`` over ``requests`` or complete them now (and return None)."""
    if async_op:
        return Work(requests, finish, result)
    if requests:
        _mpi().Request.Waitall(requests)
    if finish is not None:
        finish()
    return None


# ----------------------------------------------------------------- checks


def _arr(t, what):
    from .._tensor import Tensor
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: expected an ember Tensor, got {type(t).__name__}")
    return t._data


def _bump(*tensors):
    """Count an in-place write by a collective, as PyTorch's version counter does."""
    from .._tensor import _bump_version
    for t in tensors:
        _bump_version(t)


def _group_rank_of(pg, global_rank, what):
    if global_rank is None:
        return None
    if global_rank not in pg.ranks:
        raise ValueError(f"{what}: global rank {global_rank} is not part of the group "
                         f"{pg.ranks}")
    return pg.ranks.index(global_rank)


def _root(pg, glob, grp, default, what):
    """The group rank of a src/dst given as a global rank (``glob``) or a group rank."""
    if grp is not None:
        if glob is not None:
            raise ValueError(f"{what}: give either the global or the group rank, not both")
        if not 0 <= grp < pg.size():
            raise ValueError(f"{what}: group rank {grp} is outside the group of size "
                             f"{pg.size()}")
        return grp
    if glob is None:
        glob = default
    return _group_rank_of(pg, glob, what)


def _check_same(pg, what, arrays):
    """At debug level DETAIL: all ranks must pass the same shapes and dtypes (or fail)."""
    if _debug_level() != "DETAIL":
        return
    mine = (what, tuple((tuple(a.shape), str(a.dtype)) for a in arrays))
    every = pg.comm.allgather(mine)
    if any(sig != every[0] for sig in every):
        lines = "; ".join(f"rank {pg.ranks[i]}: {op} {sig}" for i, (op, sig) in
                          enumerate(every))
        raise RuntimeError(f"Detected mismatch between collectives on ranks: {lines}")


def _check_count(pg, what, n):
    if _debug_level() != "DETAIL":
        return
    every = pg.comm.allgather((what, n))
    if any(v != every[0] for v in every):
        raise RuntimeError(f"Detected mismatch between collectives on ranks: {every}")


def _warn_not_in_group(op):
    logger.warning("Running %s on a process that is not in the group", op)


def _same_dtype(what, arrays):
    d = arrays[0].dtype
    for a in arrays[1:]:
        if a.dtype != d:
            raise ValueError(f"{what}: tensors must all have dtype {d}, got {a.dtype}")


# ----------------------------------------------------------------- collectives


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` over the group with ``op``, every rank receiving the result in place."""
    if _not_in_group(group):
        return _warn_not_in_group("all_reduce")
    pg = _group(group)
    arr = _arr(tensor, "all_reduce")
    _check_same(pg, "all_reduce", [arr])
    s = Staged(arr, reduce=True)
    mop = mpi_op(_mpi(), op, s.buf.dtype if arr.dtype != np.bool_ else np.bool_)
    n = pg.size() if op is ReduceOp.AVG else None
    _bump(tensor)
    if async_op:
        req = pg.comm.Iallreduce(_mpi().IN_PLACE, s.buf, op=mop)
        return Work([req], lambda: s.finish(n), result=[tensor])
    pg.comm.Allreduce(_mpi().IN_PLACE, s.buf, op=mop)
    s.finish(n)


def all_reduce_coalesced(tensors, op=ReduceOp.SUM, group=None, async_op=False):
    works = [all_reduce(t, op, group, async_op) for t in tensors]
    return works[-1] if async_op and works else None


def broadcast(tensor, src=None, group=None, async_op=False, group_src=None):
    """Copy ``tensor`` of rank ``src`` (a global rank) into ``tensor`` on every rank."""
    if _not_in_group(group):
        return _warn_not_in_group("broadcast")
    pg = _group(group)
    root = _root(pg, src, group_src, 0 if src is None and group_src is None else None,
                 "broadcast")
    arr = _arr(tensor, "broadcast")
    _check_same(pg, "broadcast", [arr])
    s = Staged(arr)
    _bump(tensor)
    if async_op:
        return Work([pg.comm.Ibcast(s.buf, root=root)], s.finish, result=[tensor])
    pg.comm.Bcast(s.buf, root=root)
    s.finish()


def reduce(tensor, dst=None, op=ReduceOp.SUM, group=None, async_op=False, group_dst=None):
    """Reduce ``tensor`` over the group into ``tensor`` on rank ``dst`` (others unchanged)."""
    if _not_in_group(group):
        return _warn_not_in_group("reduce")
    pg = _group(group)
    root = _root(pg, dst, group_dst, 0 if dst is None and group_dst is None else None,
                 "reduce")
    arr = _arr(tensor, "reduce")
    _check_same(pg, "reduce", [arr])
    s = Staged(arr, reduce=True)
    mop = mpi_op(_mpi(), op, s.buf.dtype if arr.dtype != np.bool_ else np.bool_)
    me = pg.rank()
    MPI = _mpi()
    if me == root:
        send, n = MPI.IN_PLACE, (pg.size() if op is ReduceOp.AVG else None)
        finish = lambda: s.finish(n)  # noqa: E731
        _bump(tensor)
    else:
        send, finish = s.buf, None
    if async_op:
        return Work([pg.comm.Ireduce(send, s.buf if me == root else None, op=mop, root=root)],
                    finish)
    pg.comm.Reduce(send, s.buf if me == root else None, op=mop, root=root)
    if finish:
        finish()


def _concat_out(outs, like):
    """One contiguous receive buffer for a list of outputs, and a finish that splits it."""
    stage = np.empty((len(outs),) + like.shape, like.dtype)

    def finish():
        for i, o in enumerate(outs):
            o._data[...] = stage[i]
        _bump(*outs)
    return stage, finish


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Every rank's ``tensor`` into ``tensor_list[r]`` on every rank."""
    if _not_in_group(group):
        return _warn_not_in_group("all_gather")
    pg = _group(group)
    arr = _arr(tensor, "all_gather")
    outs = list(tensor_list)
    if len(outs) != pg.size():
        raise ValueError(f"all_gather: tensor_list has {len(outs)} tensors, the group has "
                         f"{pg.size()} ranks")
    for o in outs:
        oa = _arr(o, "all_gather")
        if oa.shape != arr.shape or oa.dtype != arr.dtype:
            return _all_gather_uneven(pg, outs, arr, async_op)
    _check_same(pg, "all_gather", [arr])
    stage, finish = _concat_out(outs, arr)
    send = move_view(np.ascontiguousarray(arr).reshape(-1))
    recv = move_view(stage.reshape(-1))
    return _run([pg.comm.Iallgather(send, recv)], finish, async_op)


def _all_gather_uneven(pg, outs, arr, async_op):
    """all_gather whose outputs differ in shape (PyTorch allows it when numels match)."""
    sizes = [o._data.size for o in outs]
    if any(o._data.dtype != arr.dtype for o in outs):
        raise ValueError(f"all_gather: output dtypes {[str(o._data.dtype) for o in outs]} "
                         f"differ from the input's {arr.dtype}")
    if sizes[pg.rank()] != arr.size:
        raise ValueError(f"all_gather: tensor_list[{pg.rank()}] has {sizes[pg.rank()]} "
                         f"elements, the input has {arr.size}")
    stage = np.empty(sum(sizes), arr.dtype)
    offsets = np.cumsum([0] + sizes[:-1]).tolist()

    def finish():
        for o, off, n in zip(outs, offsets, sizes):
            o._data[...] = stage[off:off + n].reshape(o._data.shape)
        _bump(*outs)
    send = move_view(np.ascontiguousarray(arr).reshape(-1))
    req = pg.comm.Iallgatherv(send, [move_view(stage), (sizes, offsets)])
    return _run([req], finish, async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Every rank's ``input_tensor`` concatenated along dim 0 (or stacked) into
    ``output_tensor``, whose numel must be ``world_size * input.numel()``."""
    if _not_in_group(group):
        return _warn_not_in_group("all_gather_into_tensor")
    pg = _group(group)
    out, inp = _arr(output_tensor, "all_gather_into_tensor"), _arr(input_tensor,
                                                                   "all_gather_into_tensor")
    if out.dtype != inp.dtype:
        raise ValueError(f"all_gather_into_tensor: output dtype {out.dtype} != input dtype "
                         f"{inp.dtype}")
    if out.size != inp.size * pg.size():
        raise ValueError(f"all_gather_into_tensor: output has {out.size} elements, expected "
                         f"world_size ({pg.size()}) x input numel ({inp.size}) = "
                         f"{inp.size * pg.size()} (output shape {tuple(out.shape)}, input "
                         f"shape {tuple(inp.shape)})")
    _check_same(pg, "all_gather_into_tensor", [inp])
    s = Staged(out, fill=False)
    send = move_view(np.ascontiguousarray(inp).reshape(-1))
    _bump(output_tensor)
    return _run([pg.comm.Iallgather(send, s.buf)], s.finish, async_op)


_all_gather_base = all_gather_into_tensor


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input`` (``world_size`` equal chunks along its flat order) over the group;
    rank r receives chunk r in ``output``."""
    if _not_in_group(group):
        return _warn_not_in_group("reduce_scatter_tensor")
    pg = _group(group)
    out, inp = _arr(output, "reduce_scatter_tensor"), _arr(input, "reduce_scatter_tensor")
    if out.dtype != inp.dtype:
        raise ValueError(f"reduce_scatter_tensor: output dtype {out.dtype} != input dtype "
                         f"{inp.dtype}")
    if inp.size != out.size * pg.size():
        raise ValueError(f"reduce_scatter_tensor: input has {inp.size} elements, expected "
                         f"world_size ({pg.size()}) x output numel ({out.size}) (input shape "
                         f"{tuple(inp.shape)}, output shape {tuple(out.shape)})")
    _check_same(pg, "reduce_scatter_tensor", [inp])
    sin = Staged(np.ascontiguousarray(inp).copy() if is_bfloat16(inp.dtype) else inp,
                 reduce=True)
    sout = Staged(out, reduce=True, fill=False)
    mop = mpi_op(_mpi(), op, sin.buf.dtype if inp.dtype != np.bool_ else np.bool_)
    n = pg.size() if op is ReduceOp.AVG else None
    _bump(output)
    req = pg.comm.Ireduce_scatter_block(sin.buf, sout.buf, op=mop)
    return _run([req], lambda: sout.finish(n), async_op)


_reduce_scatter_base = reduce_scatter_tensor


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input_list[r]`` over the group into ``output`` on rank r."""
    if _not_in_group(group):
        return _warn_not_in_group("reduce_scatter")
    pg = _group(group)
    out = _arr(output, "reduce_scatter")
    ins = [_arr(t, "reduce_scatter") for t in input_list]
    if len(ins) != pg.size():
        raise ValueError(f"reduce_scatter: input_list has {len(ins)} tensors, the group has "
                         f"{pg.size()} ranks")
    for i, a in enumerate(ins):
        if a.shape != out.shape or a.dtype != out.dtype:
            raise ValueError(f"reduce_scatter: input_list[{i}] has shape {tuple(a.shape)} "
                             f"dtype {a.dtype}; output has shape {tuple(out.shape)} dtype "
                             f"{out.dtype}")
    _check_same(pg, "reduce_scatter", ins)
    flat = np.stack(ins) if ins else np.empty(0, out.dtype)
    sin = Staged(flat, reduce=True)
    sout = Staged(out, reduce=True, fill=False)
    mop = mpi_op(_mpi(), op, sin.buf.dtype if out.dtype != np.bool_ else np.bool_)
    n = pg.size() if op is ReduceOp.AVG else None
    _bump(output)
    req = pg.comm.Ireduce_scatter_block(sin.buf, sout.buf, op=mop)
    return _run([req], lambda: sout.finish(n), async_op)


def gather(tensor, gather_list=None, dst=None, group=None, async_op=False, group_dst=None):
    """Every rank's ``tensor`` into ``gather_list`` on rank ``dst`` (only there)."""
    if _not_in_group(group):
        return _warn_not_in_group("gather")
    pg = _group(group)
    root = _root(pg, dst, group_dst, 0 if dst is None and group_dst is None else None,
                 "gather")
    arr = _arr(tensor, "gather")
    me = pg.rank()
    if me == root:
        if gather_list is None or len(gather_list) != pg.size():
            raise ValueError(f"gather: the destination rank needs a gather_list of "
                             f"{pg.size()} tensors, got "
                             f"{None if gather_list is None else len(gather_list)}")
        for i, g in enumerate(gather_list):
            ga = _arr(g, "gather")
            if ga.shape != arr.shape or ga.dtype != arr.dtype:
                raise ValueError(f"gather: gather_list[{i}] has shape {tuple(ga.shape)} dtype "
                                 f"{ga.dtype}; the input has shape {tuple(arr.shape)} dtype "
                                 f"{arr.dtype}")
    elif gather_list:
        raise ValueError("gather: gather_list must be empty or None on non-destination ranks")
    _check_same(pg, "gather", [arr])
    send = move_view(np.ascontiguousarray(arr).reshape(-1))
    if me == root:
        stage, finish = _concat_out(list(gather_list), arr)
        req = pg.comm.Igather(send, move_view(stage.reshape(-1)), root=root)
    else:
        finish = None
        req = pg.comm.Igather(send, None, root=root)
    return _run([req], finish, async_op)


def scatter(tensor, scatter_list=None, src=None, group=None, async_op=False, group_src=None):
    """``scatter_list[r]`` of rank ``src`` into ``tensor`` on rank r."""
    if _not_in_group(group):
        return _warn_not_in_group("scatter")
    pg = _group(group)
    root = _root(pg, src, group_src, 0 if src is None and group_src is None else None,
                 "scatter")
    arr = _arr(tensor, "scatter")
    me = pg.rank()
    if me == root:
        if scatter_list is None or len(scatter_list) != pg.size():
            raise ValueError(f"scatter: the source rank needs a scatter_list of {pg.size()} "
                             f"tensors, got "
                             f"{None if scatter_list is None else len(scatter_list)}")
        ins = [_arr(t, "scatter") for t in scatter_list]
        for i, a in enumerate(ins):
            if a.shape != arr.shape or a.dtype != arr.dtype:
                raise ValueError(f"scatter: scatter_list[{i}] has shape {tuple(a.shape)} dtype "
                                 f"{a.dtype}; the output has shape {tuple(arr.shape)} dtype "
                                 f"{arr.dtype}")
        send = move_view(np.stack(ins).reshape(-1))
    else:
        if scatter_list:
            raise ValueError("scatter: scatter_list must be empty or None on non-source ranks")
        send = None
    _check_same(pg, "scatter", [arr])
    s = Staged(arr, fill=False)
    _bump(tensor)
    return _run([pg.comm.Iscatter(send, s.buf, root=root)], s.finish, async_op)


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None,
                      group=None, async_op=False):
    """Split ``input`` along dim 0 (evenly, or by ``input_split_sizes``), send chunk r to rank
    r, and concatenate what arrives into ``output`` (split by ``output_split_sizes``)."""
    if _not_in_group(group):
        return _warn_not_in_group("all_to_all_single")
    pg = _group(group)
    n = pg.size()
    out, inp = _arr(output, "all_to_all_single"), _arr(input, "all_to_all_single")
    if out.dtype != inp.dtype:
        raise ValueError(f"all_to_all_single: output dtype {out.dtype} != input dtype "
                         f"{inp.dtype}")

    def counts(arr, splits, what):
        rows = arr.shape[0] if arr.ndim else 1
        row = arr.size // rows if rows else 0
        if not splits:
            if rows % n:
                raise ValueError(f"all_to_all_single: {what} dim 0 ({rows}) is not divisible "
                                 f"by the world size ({n})")
            splits = [rows // n] * n
        if len(splits) != n or sum(splits) != rows:
            raise ValueError(f"all_to_all_single: {what} split sizes {list(splits)} must be "
                             f"{n} numbers summing to dim 0 ({rows})")
        c = [int(s) * row for s in splits]
        return c, np.cumsum([0] + c[:-1]).tolist()

    sc, sd = counts(inp, input_split_sizes, "input")
    rc, rd = counts(out, output_split_sizes, "output")
    _check_count(pg, "all_to_all_single dtype", str(inp.dtype))
    send = move_view(np.ascontiguousarray(inp).reshape(-1))
    s = Staged(out, fill=False)
    _bump(output)
    req = pg.comm.Ialltoallv([send, (sc, sd)], [s.buf, (rc, rd)])
    return _run([req], s.finish, async_op)


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """``input_tensor_list[r]`` goes to rank r; ``output_tensor_list[r]`` comes from rank r."""
    if _not_in_group(group):
        return _warn_not_in_group("all_to_all")
    pg = _group(group)
    n = pg.size()
    ins = [_arr(t, "all_to_all") for t in input_tensor_list]
    outs = list(output_tensor_list)
    if len(ins) != n or len(outs) != n:
        raise ValueError(f"all_to_all: expected {n} input and {n} output tensors, got "
                         f"{len(ins)} and {len(outs)}")
    _same_dtype("all_to_all", ins + [o._data for o in outs])
    sc = [a.size for a in ins]
    rc = [o._data.size for o in outs]
    send = move_view(np.concatenate([a.reshape(-1) for a in ins]) if ins else
                     np.empty(0, np.uint8))
    dt = ins[0].dtype
    stage = np.empty(sum(rc), dt)
    rd = np.cumsum([0] + rc[:-1]).tolist()

    def finish():
        for o, off, c in zip(outs, rd, rc):
            o._data[...] = stage[off:off + c].reshape(o._data.shape)
        _bump(*outs)
    req = pg.comm.Ialltoallv([send, (sc, np.cumsum([0] + sc[:-1]).tolist())],
                             [move_view(stage), (rc, rd)])
    return _run([req], finish, async_op)


def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank of the group has reached this call."""
    if _not_in_group(group):
        return _warn_not_in_group("barrier")
    pg = _group(group)
    return _run([pg.comm.Ibarrier()], None, async_op)


def monitored_barrier(group=None, timeout=None, wait_all_ranks=False):
    """A barrier that fails (on rank 0, naming the missing ranks) instead of waiting forever.

    Every other rank reports to rank 0, which releases them once all have arrived.
    """
    if _not_in_group(group):
        return _warn_not_in_group("monitored_barrier")
    pg = _group(group)
    secs = (timeout or default_pg_timeout)
    secs = secs.total_seconds() if isinstance(secs, timedelta) else float(secs)
    deadline = time.monotonic() + secs
    tag = 31000
    comm, me, n = pg.comm, pg.rank(), pg.size()
    token = np.zeros(1, np.int8)
    if me == 0:
        bufs = {r: np.zeros(1, np.int8) for r in range(1, n)}
        reqs = {r: comm.Irecv(bufs[r], source=r, tag=tag) for r in range(1, n)}
        while True:
            missing = [r for r, q in reqs.items() if not q.Test()]
            if not missing:
                break
            if time.monotonic() > deadline:
                for q in reqs.values():
                    q.Cancel()
                shown = missing if wait_all_ranks else missing[:1]
                raise RuntimeError(f"Rank{'s' if len(shown) > 1 else ''} "
                                   f"{', '.join(str(pg.ranks[r]) for r in shown)} failed to "
                                   f"pass monitoredBarrier in {secs} s")
            time.sleep(0.001)
        for r in range(1, n):
            comm.Send(token, dest=r, tag=tag + 1)
    else:
        comm.Send(token, dest=0, tag=tag)
        req = comm.Irecv(token, source=0, tag=tag + 1)
        while not req.Test():
            if time.monotonic() > deadline:
                req.Cancel()
                raise RuntimeError(f"monitored_barrier: rank 0 did not release rank "
                                   f"{pg.ranks[me]} within {secs} s")
            time.sleep(0.001)


# ----------------------------------------------------------------- point to point


def _peer(pg, rank, group_rank, what):
    r = _root(pg, rank, group_rank, None, what)
    if r is None:
        raise ValueError(f"{what}: a peer rank is required")
    return r


def isend(tensor, dst=None, group=None, tag=0, group_dst=None):
    """Start sending ``tensor`` to rank ``dst``; returns a ``Work``."""
    if _not_in_group(group):
        return _warn_not_in_group("isend")
    pg = _group(group)
    peer = _peer(pg, dst, group_dst, "isend")
    if peer == pg.rank():
        raise ValueError("Invalid destination rank: it should not be the same as the rank of "
                         "the current process.")
    buf = move_view(np.ascontiguousarray(_arr(tensor, "isend")).reshape(-1))
    return Work([pg.comm.Isend(buf, dest=peer, tag=tag)])


def send(tensor, dst=None, group=None, tag=0, group_dst=None):
    """Send ``tensor`` to rank ``dst`` (blocking)."""
    w = isend(tensor, dst, group, tag, group_dst)
    if w is not None:
        w.wait()


def irecv(tensor, src=None, group=None, tag=0, group_src=None):
    """Start receiving into ``tensor`` from rank ``src`` (any rank when None)."""
    if _not_in_group(group):
        return _warn_not_in_group("irecv")
    pg = _group(group)
    MPI = _mpi()
    peer = MPI.ANY_SOURCE if src is None and group_src is None else \
        _peer(pg, src, group_src, "irecv")
    s = Staged(_arr(tensor, "irecv"), fill=False)
    status = MPI.Status()
    work = Work([pg.comm.Irecv(s.buf, source=peer, tag=tag)], status=status)

    def finish():
        s.finish()
        _bump(tensor)
        work._result = pg.ranks[status.Get_source()]
    work._finish = finish
    return work


def recv(tensor, src=None, group=None, tag=0, group_src=None):
    """Receive into ``tensor`` from rank ``src`` (any rank when None); returns the sender."""
    w = irecv(tensor, src, group, tag, group_src)
    if w is None:
        return -1
    w.wait()
    return w._result


class P2POp:
    """One send or receive for ``batch_isend_irecv``: ``op`` is ``isend`` or ``irecv``."""

    def __init__(self, op, tensor, peer=None, group=None, tag=0, group_peer=None):
        if op not in (isend, irecv):
            raise ValueError("Invalid ``op``. Expected ``op`` to be of type "
                             "``torch.distributed.isend`` or ``torch.distributed.irecv``.")
        self.op, self.tensor, self.peer, self.group, self.tag = op, tensor, peer, group, tag
        self.group_peer = group_peer


def batch_isend_irecv(p2p_op_list):
    """Start every op of the list; returns their ``Work``s."""
    if not p2p_op_list:
        raise ValueError("batch_isend_irecv: expected a non-empty list of P2POp")
    for p in p2p_op_list:
        if not isinstance(p, P2POp):
            raise TypeError("batch_isend_irecv: every element must be a P2POp")
    return [p.op(p.tensor, p.peer, p.group, p.tag, p.group_peer) for p in p2p_op_list]


# ----------------------------------------------------------------- object collectives


def broadcast_object_list(object_list, src=None, group=None, device=None, group_src=None):
    """Replace ``object_list``'s items on every rank with those of rank ``src`` (pickled)."""
    if _not_in_group(group):
        return _warn_not_in_group("broadcast_object_list")
    pg = _group(group)
    root = _root(pg, src, group_src, 0 if src is None and group_src is None else None,
                 "broadcast_object_list")
    got = pg.comm.bcast(list(object_list) if pg.rank() == root else None, root=root)
    if len(got) != len(object_list):
        raise ValueError(f"broadcast_object_list: the source sent {len(got)} objects, this "
                         f"rank's list has {len(object_list)}")
    object_list[:] = got


def all_gather_object(object_list, obj, group=None):
    """Every rank's ``obj`` into ``object_list[r]`` on every rank."""
    if _not_in_group(group):
        return _warn_not_in_group("all_gather_object")
    pg = _group(group)
    if len(object_list) != pg.size():
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} slots, the "
                         f"group has {pg.size()} ranks")
    object_list[:] = pg.comm.allgather(obj)


def gather_object(obj, object_gather_list=None, dst=None, group=None, group_dst=None):
    """Every rank's ``obj`` into ``object_gather_list`` on rank ``dst``."""
    if _not_in_group(group):
        return _warn_not_in_group("gather_object")
    pg = _group(group)
    root = _root(pg, dst, group_dst, 0 if dst is None and group_dst is None else None,
                 "gather_object")
    if pg.rank() == root and (object_gather_list is None or
                              len(object_gather_list) != pg.size()):
        raise ValueError(f"gather_object: the destination needs an object_gather_list of "
                         f"{pg.size()} slots")
    got = pg.comm.gather(obj, root=root)
    if pg.rank() == root:
        object_gather_list[:] = got


def scatter_object_list(scatter_object_output_list, scatter_object_input_list=None, src=None,
                        group=None, group_src=None):
    """``scatter_object_input_list[r]`` of rank ``src`` into
    ``scatter_object_output_list[0]`` on rank r."""
    if _not_in_group(group):
        return _warn_not_in_group("scatter_object_list")
    pg = _group(group)
    root = _root(pg, src, group_src, 0 if src is None and group_src is None else None,
                 "scatter_object_list")
    if not isinstance(scatter_object_output_list, list) or not scatter_object_output_list:
        raise ValueError("Expected argument scatter_object_output_list to be a list of size "
                         "at least 1.")
    if pg.rank() == root and (scatter_object_input_list is None or
                              len(scatter_object_input_list) != pg.size()):
        raise ValueError(f"scatter_object_list: the source needs {pg.size()} input objects")
    scatter_object_output_list[0] = pg.comm.scatter(
        list(scatter_object_input_list) if pg.rank() == root else None, root=root)


def send_object_list(object_list, dst=None, group=None, device=None, group_dst=None):
    pg = _group(group)
    pg.comm.send(list(object_list), dest=_peer(pg, dst, group_dst, "send_object_list"))


def recv_object_list(object_list, src=None, group=None, device=None, group_src=None):
    pg = _group(group)
    MPI = _mpi()
    status = MPI.Status()
    peer = MPI.ANY_SOURCE if src is None and group_src is None else \
        _peer(pg, src, group_src, "recv_object_list")
    got = pg.comm.recv(source=peer, status=status)
    object_list[:len(got)] = got
    return pg.ranks[status.Get_source()]
