"""``ZeroRedundancyOptimizer``: ZeRO stage 1 (optimizer state sharding) over MPI.

Algorithm (PyTorch's, in brief):
1. The parameters of each parameter group are sorted by size, largest first, and dealt out
   greedily: each goes to the rank whose partition is smallest so far (counted over all groups,
   ties to the lowest rank). Every rank computes the same partition.
2. Each rank builds a local ``optimizer_class`` over its own partition only, so the optimizer
   state (Adam's two moments, momentum buffers) of a parameter exists on exactly one rank:
   optimizer-state memory per rank is about 1/N.
3. ``step()`` steps the local optimizer (gradients are expected to be averaged already, e.g.
   by DDP), then every rank broadcasts the parameters it owns, one flat bucket per rank and
   dtype, so all replicas hold the updated model again.
Hyperparameters live in ``param_groups`` (what LR schedulers change) and are copied into the
local optimizer before each step. ``consolidate_state_dict(to)`` gathers every rank's shard
of the state on rank ``to``, where ``state_dict()`` then returns the state in the layout of an
ordinary optimizer over all parameters; ``load_state_dict`` takes that layout on every rank and
keeps its own shard.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ... import _tensor
from ...optim.optimizer import Optimizer
from .. import distributed_c10d as c10d

__all__ = ["ZeroRedundancyOptimizer"]


class ZeroRedundancyOptimizer(Optimizer):
    """Wrap ``optimizer_class`` so that each rank of ``process_group`` keeps and steps the
    state of its partition of ``params`` only (see the module docstring)."""

    def __init__(self, params, optimizer_class, process_group=None,
                 parameters_as_bucket_view=False, overlap_with_ddp=False, **defaults):
        if overlap_with_ddp:
            raise NotImplementedError(
                "ZeroRedundancyOptimizer(overlap_with_ddp=True) (stepping inside DDP's "
                "communication hook) is not implemented in ember; use overlap_with_ddp=False")
        self._pg = c10d._group(process_group)
        self.process_group = process_group
        self.world_size = self._pg.size()
        self.rank = self._pg.rank()
        self.global_rank = self._pg.ranks[self.rank]
        self._optim_constructor = optimizer_class
        self._optim_defaults = defaults
        self.parameters_as_bucket_view = parameters_as_bucket_view
        self._all_state_dicts = None
        self._partition = None
        self.optim = None
        super().__init__(params, defaults)  # global param_groups (calls add_param_group)
        self._build()

    # -------------------------------------------------------------- partition
    def _partition_parameters(self):
        """``[rank][group] -> list of parameters``: PyTorch's greedy size-sorted partition."""
        sizes = [0] * self.world_size
        parts = [[[] for _ in self.param_groups] for _ in range(self.world_size)]
        for gi, group in enumerate(self.param_groups):
            for p in sorted(group["params"], key=lambda t: t.numel(), reverse=True):
                r = int(np.argmin(sizes))
                parts[r][gi].append(p)
                sizes[r] += p.numel()
        return parts

    def _local_groups(self):
        return [dict({k: v for k, v in g.items() if k not in ("params", "param_names")},
                     params=list(mine))
                for g, mine in zip(self.param_groups, self._partition[self.rank])]

    def _build(self):
        self._partition = self._partition_parameters()
        self.optim = self._optim_constructor(self._local_groups(), **self._optim_defaults)
        # buckets: per rank, per dtype, the owned parameters in partition order
        self._buckets = []
        for r in range(self.world_size):
            by_dtype = {}
            for plist in self._partition[r]:
                for p in plist:
                    by_dtype.setdefault(p._data.dtype, []).append(p)
            for dtype, plist in by_dtype.items():
                buf = np.empty(sum(p.numel() for p in plist), dtype)
                if self.parameters_as_bucket_view:
                    o = 0
                    for p in plist:  # the parameter's memory becomes a view of the bucket
                        n = p.numel()
                        buf[o:o + n] = p._data.reshape(-1)
                        p._data = buf[o:o + n].reshape(p._data.shape)
                        o += n
                self._buckets.append((r, plist, buf))

    def add_param_group(self, param_group):
        """Add a group to ``param_groups`` and repartition (every rank must call it)."""
        super().add_param_group(param_group)
        if self.optim is not None:  # after construction: rebuild the local optimizer
            self._build()

    # -------------------------------------------------------------- stepping
    def _sync_hyperparameters(self, src, dst):
        for gs, gd in zip(src, dst):
            for k, v in gs.items():
                if k not in ("params", "param_names"):
                    gd[k] = v

    def step(self, closure=None, **kwargs):
        """Step the local optimizer on this rank's partition, then broadcast every rank's
        updated parameters. Returns the closure's loss, if any."""
        self._sync_hyperparameters(self.param_groups, self.optim.param_groups)
        loss = self.optim.step(closure=closure, **kwargs)
        self._sync_hyperparameters(self.optim.param_groups, self.param_groups)
        self._sync_parameters()
        return loss

    def _sync_parameters(self):
        """Broadcast each rank's parameters from that rank (one flat bucket per rank/dtype)."""
        from ... import from_numpy
        for r, plist, buf in self._buckets:
            if not plist:
                continue
            view = self.parameters_as_bucket_view
            if r == self.rank and not view:
                o = 0
                for p in plist:
                    n = p.numel()
                    buf[o:o + n] = p._data.reshape(-1)
                    o += n
            c10d.broadcast(from_numpy(buf), src=self._pg.ranks[r], group=self.process_group)
            o = 0
            for p in plist:
                n = p.numel()
                if r != self.rank and not view:
                    p._data[...] = buf[o:o + n].reshape(p._data.shape)
                _tensor._bump_version(p)
                o += n

    # -------------------------------------------------------------- state dicts
    def _global_index(self):
        index, i = {}, 0
        for g in self.param_groups:
            for p in g["params"]:
                index.setdefault(id(p), i)
                i += 1
        return index

    def consolidate_state_dict(self, to=0):
        """Gather every rank's shard of the optimizer state on global rank ``to`` (a
        collective: every rank of the group must call it)."""
        local = self.optim.state_dict()
        # tensors travel as arrays (pickled by mpi4py)
        packed = {k: {n: (v.detach().numpy() if isinstance(v, _tensor.Tensor) else v)
                      for n, v in st.items()} for k, st in local["state"].items()}
        every = [None] * self.world_size if self.global_rank == to else None
        c10d.gather_object(packed, every, dst=to, group=self.process_group)
        if self.global_rank != to:
            self._all_state_dicts = None
            return
        from ... import tensor as _as_tensor
        index = self._global_index()
        state = {}
        for r, shard in enumerate(every):
            local_params = [p for plist in self._partition[r] for p in plist]
            for li, st in shard.items():
                p = local_params[li]
                state[index[id(p)]] = {n: (_as_tensor(v) if isinstance(v, np.ndarray) else v)
                                       for n, v in st.items()}
        self._all_state_dicts = state

    def state_dict(self):
        """The whole optimizer state, in an ordinary optimizer's layout (only on the rank that
        ``consolidate_state_dict`` gathered it to)."""
        if self._all_state_dicts is None:
            raise RuntimeError(
                "Optimizer state has not been consolidated on this rank. Please call "
                f"`consolidate_state_dict(to={self.global_rank})` on all ranks beforehand if "
                "you meant to save the global state.")
        index = self._global_index()
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in g["params"]]
            groups.append(packed)
        return {"state": dict(sorted(self._all_state_dicts.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a whole state (``state_dict()``'s layout) on every rank: each keeps the state
        of its own partition and the hyperparameters of every group."""
        Optimizer.load_state_dict(self, state_dict)  # global: checks, casts, hyperparameters
        mine = [p for plist in self._partition[self.rank] for p in plist]
        local = {"state": {li: self.state[p] for li, p in enumerate(mine) if p in self.state},
                 "param_groups": []}
        li = 0
        for g, plist in zip(self.param_groups, self._partition[self.rank]):
            packed = {k: v for k, v in g.items() if k not in ("params", "param_names")}
            packed["params"] = list(range(li, li + len(plist)))
            li += len(plist)
            local["param_groups"].append(packed)
        self.optim.load_state_dict(local)
        self.state = defaultdict(dict)  # only the local optimizer keeps state (ZeRO-1)
        self._all_state_dicts = None
