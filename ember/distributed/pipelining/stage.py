"""``PipelineStage``: one stage of a pipeline on one rank, with its point-to-point traffic.

Each microbatch ``i`` runs ``forward_one_chunk(i)``: the first stage takes the microbatch of
the inputs, the others receive the previous stage's outputs (arrays, pickled through MPI) and
make them leaves that require grad; the outputs go to the next stage with a non-blocking send.
``backward_one_chunk(i)`` runs backward from the loss (last stage) or from the output gradients
received from the next stage, and sends the gradients of its inputs to the previous stage.
Sends never block; a schedule orders the receives so that none waits forever (see
``schedules``). With several stages per rank, stage ``s`` runs on group rank
``s % group_size``; a message's tag names its microbatch, receiving stage and direction.
"""

from __future__ import annotations

from ..._tensor import Tensor
from .. import distributed_c10d as c10d

__all__ = ["PipelineStage"]

# message directions: forward activations and backward gradients
_FWD, _BWD = 0, 1


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


class PipelineStage:
    """Stage ``stage_index`` of ``num_stages``: ``submodule`` runs on group rank
    ``stage_index % group size`` of ``group`` (the default group when None); with more stages
    than ranks, each rank builds its stages ``rank, rank + size, ...`` and runs them with a
    multi-stage schedule (``ScheduleInterleaved1F1B``, ``ScheduleLoopedBFS``)."""

    def __init__(self, submodule, stage_index, num_stages, device=None, input_args=None,
                 output_args=None, group=None, dw_builder=None):
        if dw_builder is not None:
            raise NotImplementedError("PipelineStage(dw_builder=...): split weight-gradient "
                                      "schedules are not supported in ember")
        if not 0 <= stage_index < num_stages:
            raise ValueError(f"PipelineStage: stage_index {stage_index} is outside "
                             f"[0, {num_stages})")
        self.submod = submodule
        self.stage_index = stage_index
        self.num_stages = num_stages
        self.device = device
        self.group = group
        self._pg = c10d._group(group)
        size = self.group_size = self._pg.size()
        self.group_rank = self._pg.rank()
        if num_stages % size:
            raise ValueError(f"PipelineStage: {num_stages} stages cannot be spread evenly over "
                             f"the group's {size} ranks (stage s runs on rank s % {size})")
        if self.group_rank != stage_index % size:
            raise ValueError(f"PipelineStage: stage {stage_index} must be built on group rank "
                             f"{stage_index % size}, not on rank {self.group_rank}")
        self.has_backward = True
        self.clear_runtime_states()

    @property
    def is_first(self):
        return self.stage_index == 0

    @property
    def is_last(self):
        return self.stage_index == self.num_stages - 1

    def clear_runtime_states(self):
        self._saved = {}          # microbatch -> (input leaves, outputs or loss)
        self._sends = []          # pending non-blocking sends
        self.output_chunks = []

    # -- communication
    def _tag(self, chunk_id, to_stage, direction):
        tag = (chunk_id * self.num_stages + to_stage) * 2 + direction
        if tag > _tag_limit(self._pg.comm):
            raise ValueError(f"PipelineStage: microbatch {chunk_id} of {self.num_stages} "
                             f"stages needs MPI tag {tag}, above this MPI's limit "
                             f"{_tag_limit(self._pg.comm)}: use fewer microbatches")
        return tag

    def _send(self, payload, to_stage, direction, chunk_id):
        dest = to_stage % self.group_size
        tag = self._tag(chunk_id, to_stage, direction)
        self._sends.append(self._pg.comm.isend(payload, dest=dest, tag=tag))

    def _recv(self, from_stage, direction, chunk_id):
        tag = self._tag(chunk_id, self.stage_index, direction)
        return self._pg.comm.recv(source=from_stage % self.group_size, tag=tag)

    def _wait_sends(self):
        for r in self._sends:
            r.wait()
        self._sends = []

    # -- one microbatch
    def forward_one_chunk(self, chunk_id, args=(), kwargs=None):
        """Run this stage on microbatch ``chunk_id``; returns its outputs (a tuple)."""
        from ... import from_numpy
        if self.is_first:
            inputs = tuple(args)
        else:
            received = self._recv(self.stage_index - 1, _FWD, chunk_id)
            inputs = []
            for a in received:
                if a is None or not hasattr(a, "dtype"):
                    inputs.append(a)
                    continue
                t = from_numpy(a)
                if self.has_backward and a.dtype.kind in "fc":
                    t.requires_grad_(True)
                inputs.append(t)
            inputs = tuple(inputs)
        out = self.submod(*inputs, **(kwargs or {}))
        outs = _as_tuple(out)
        if not self.is_last:
            payload = tuple(o.detach().numpy() if isinstance(o, Tensor) else o for o in outs)
            self._send(payload, self.stage_index + 1, _FWD, chunk_id)
        self._saved[chunk_id] = [inputs, outs]
        return out

    def _set_loss(self, chunk_id, loss):
        self._saved[chunk_id][1] = (loss,)

    def backward_one_chunk(self, chunk_id):
        """Backward of microbatch ``chunk_id`` (from its loss on the last stage, else from the
        gradients the next stage sends), then the input gradients go to the previous stage."""
        from ... import autograd, from_numpy
        inputs, outs = self._saved.pop(chunk_id)
        if self.is_last:
            roots = [o for o in outs if isinstance(o, Tensor) and o.requires_grad]
            grads = None
        else:
            received = self._recv(self.stage_index + 1, _BWD, chunk_id)
            roots, grads = [], []
            for o, g in zip(outs, received):
                if isinstance(o, Tensor) and o.requires_grad and g is not None:
                    roots.append(o)
                    grads.append(from_numpy(g))
        if roots:
            autograd.backward(roots, grads)
        if not self.is_first:
            payload = tuple(x.grad.numpy() if isinstance(x, Tensor) and x.grad is not None
                            else None for x in inputs)
            self._send(payload, self.stage_index - 1, _BWD, chunk_id)

    def scale_grads(self, grad_scale_factor):
        """Divide this stage's parameter gradients by ``grad_scale_factor`` (the number of
        microbatches when the loss averages, so that the sum over microbatches is a mean)."""
        if grad_scale_factor != 1:
            for p in self.submod.parameters():
                if p.grad is not None:
                    p.grad.div_(grad_scale_factor)


_TAG_LIMITS = {}


def _tag_limit(comm):
    """The largest tag this MPI accepts (MPI guarantees at least 32767)."""
    key = id(comm)
    if key not in _TAG_LIMITS:
        from .. import distributed_c10d as c10d
        ub = comm.Get_attr(c10d._mpi().TAG_UB)
        _TAG_LIMITS[key] = int(ub) if ub else 32767
    return _TAG_LIMITS[key]
