"""Pipeline schedules: one stage per rank (``ScheduleGPipe``, ``Schedule1F1B``) or several
(``ScheduleInterleaved1F1B``, ``ScheduleLoopedBFS``).

A schedule is, for each rank, an ordered list of actions ``(kind, stage, microbatch)``: a
forward ("F") or a full backward ("B") of one microbatch through one of the rank's stages.
Activations and their gradients travel between stages by non-blocking sends and blocking
receives, so an order is safe exactly when running every rank's list with those rules cannot
wait forever; the multi-stage schedules check that by simulating every rank's list before the
first step.

GPipe runs every microbatch's forward, then every backward: simple, but all activations of a
step are alive at once. 1F1B (PipeDream-flush) runs ``num_stages - stage_index - 1`` warm-up
forwards, then alternates one forward and one backward, then drains the remaining backwards:
at most ``num_stages`` microbatches' activations are alive on a stage.

With several stages per rank, stage ``s`` lives on group rank ``s % group_size`` (the "loop"
placement). Interleaved 1F1B (Narayanan et al., 2021) walks the microbatches in rounds of
``n_microbatches / max(1, n_microbatches // group_size)``: it runs a round's forwards through
one local stage, then the same round through the next local stage, and once warmed up
alternates one forward and one backward (depth first: early microbatches finish first, so
fewer activations are alive). Looped BFS runs every microbatch through the first local stage,
then the next (breadth first), then the backwards in the reverse order.

Every schedule accumulates the parameter gradients of all microbatches, divided by
``n_microbatches`` when ``scale_grads`` (a loss that averages over its batch then gives the
full batch's gradient).
"""

from __future__ import annotations

from ... import autograd

__all__ = ["PipelineScheduleMulti", "PipelineScheduleSingle", "Schedule1F1B", "ScheduleGPipe",
           "ScheduleInterleaved1F1B", "ScheduleLoopedBFS", "get_schedule_class"]


def _split(x, n, what):
    from ..._tensor import Tensor
    if not isinstance(x, Tensor):
        return [x] * n
    if x.shape[0] < n:
        raise ValueError(f"pipeline schedule: {what} has batch size {x.shape[0]}, fewer than "
                         f"n_microbatches={n}")
    return list(x.tensor_split(n, 0))


class _PipelineSchedule:
    """What every schedule shares: splitting the batch, the loss, running this rank's
    actions, scaling the gradients and merging the outputs."""

    def __init__(self, stages, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        if args_chunk_spec is not None or kwargs_chunk_spec is not None or \
                output_merge_spec is not None:
            raise NotImplementedError("pipeline schedules: chunk and merge specs are not "
                                      "supported; inputs and outputs split and merge on dim 0")
        if n_microbatches < 1:
            raise ValueError(f"n_microbatches must be >= 1, got {n_microbatches}")
        self._stages = list(stages)
        self._n_microbatches = n_microbatches
        self._loss_fn = loss_fn
        self.scale_grads = scale_grads
        self._has_backward = loss_fn is not None

    def _actions(self):
        """This rank's ordered actions: ``(kind, stage, microbatch)``, kind "F" or "B"."""
        raise NotImplementedError

    def step(self, *args, target=None, losses=None, return_outputs=True, **kwargs):
        """One training step on a whole batch: the rank of the first stage takes the inputs,
        the rank of the last stage the ``target``; that rank appends each microbatch's loss
        to ``losses`` and gets the merged outputs (the others get None)."""
        if self._has_backward and not autograd.grad_mode.is_grad_enabled():
            raise RuntimeError("step() requires gradients to be enabled for backward "
                               "computation; it should not be used under no_grad()")
        n = self._n_microbatches
        first = next((s for s in self._stages if s.is_first), None)
        last = next((s for s in self._stages if s.is_last), None)
        for st in self._stages:
            st.has_backward = self._has_backward
            st.clear_runtime_states()
        self._args, self._kwargs = [()] * n, [{}] * n
        if first is not None:
            split = [_split(a, n, f"input {i}") for i, a in enumerate(args)]
            self._args = [tuple(s[i] for s in split) for i in range(n)]
            self._kwargs = [{k: _split(v, n, k)[i] for k, v in kwargs.items()}
                            for i in range(n)]
        if last is not None and self._has_backward:
            if target is None:
                raise ValueError("pipeline schedule: the last stage needs target= for loss_fn")
            self._targets = _split(target, n, "target")
        self._losses = []
        try:
            for kind, st, i in self._actions():
                if kind == "F":
                    self._forward(st, i)
                elif self._has_backward:
                    st.backward_one_chunk(i)
        finally:
            for st in self._stages:
                st._wait_sends()
        if self._has_backward and self.scale_grads:
            for st in self._stages:
                st.scale_grads(n)
        if last is None:
            return None
        if losses is not None:
            losses.extend(self._losses)
        if return_outputs:
            from ... import cat
            outs = last.output_chunks
            if outs and hasattr(outs[0], "shape"):
                return cat([o.detach() if self._has_backward else o for o in outs], 0)
            return outs
        return None

    def _forward(self, st, i):
        args = self._args[i] if st.is_first else ()
        kwargs = self._kwargs[i] if st.is_first else {}
        out = st.forward_one_chunk(i, args, kwargs)
        if st.is_last:
            st.output_chunks.append(out)
            if self._has_backward:
                loss = self._loss_fn(out, self._targets[i])
                self._losses.append(loss.detach())
                st._set_loss(i, loss)


class PipelineScheduleSingle(_PipelineSchedule):
    """Base of the schedules that run one stage per rank."""

    def __init__(self, stage, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        super().__init__([stage], n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
                         output_merge_spec, scale_grads)
        self._stage = stage


class ScheduleGPipe(PipelineScheduleSingle):
    """All forwards, then all backwards."""

    def _actions(self):
        st, n = self._stage, self._n_microbatches
        return [("F", st, i) for i in range(n)] + [("B", st, i) for i in range(n)]


class Schedule1F1B(PipelineScheduleSingle):
    """Warm-up forwards, then one forward / one backward in turn, then the last backwards."""

    def _actions(self):
        st, n = self._stage, self._n_microbatches
        warmup = min(n, st.num_stages - st.stage_index - 1)
        out = [("F", st, i) for i in range(warmup)]
        for k in range(n - warmup):
            out += [("F", st, warmup + k), ("B", st, k)]
        return out + [("B", st, k) for k in range(n - warmup, n)]


class PipelineScheduleMulti(_PipelineSchedule):
    """Base of the schedules that run several stages per rank: ``stages`` are this rank's,
    stage ``s`` on group rank ``s % group_size``. Each schedule gives the action order of
    any rank (``_rank_actions``); every rank's order is checked before use (see the module
    docstring)."""

    def __init__(self, stages, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        stages = list(stages)
        if not stages:
            raise ValueError("pipeline schedule: no stages given")
        super().__init__(stages, n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
                         output_merge_spec, scale_grads)
        s0 = stages[0]
        self.pp_group_size = s0.group_size
        self.rank = s0.group_rank
        self.num_stages = s0.num_stages
        for st in stages:
            if st.num_stages != self.num_stages or st._pg is not s0._pg:
                raise ValueError("pipeline schedule: the stages of a rank must belong to one "
                                 "pipeline (same num_stages and group)")
        have = sorted(st.stage_index for st in stages)
        want = list(range(self.rank, self.num_stages, self.pp_group_size))
        if have != want:
            raise ValueError(f"pipeline schedule: group rank {self.rank} of "
                             f"{self.pp_group_size} must hold stages {want} (stage s runs on "
                             f"rank s % group size), got {have}")
        self._by_index = {st.stage_index: st for st in stages}
        self.n_local_stages = len(stages)
        self.pipeline_order = {r: self._rank_actions(r) for r in range(self.pp_group_size)}
        _check_order(self.pipeline_order, self.num_stages, n_microbatches)

    def _rank_actions(self, rank):
        """Rank ``rank``'s order as ``(kind, stage_index, microbatch)``."""
        raise NotImplementedError

    def _actions(self):
        return [(k, self._by_index[s], i) for k, s, i in self.pipeline_order[self.rank]]


class ScheduleLoopedBFS(PipelineScheduleMulti):
    """Breadth first: every microbatch through one local stage before the next; the
    backwards likewise, from the last local stage, microbatches in reverse."""

    def _rank_actions(self, rank):
        local = range(rank, self.num_stages, self.pp_group_size)
        n = self._n_microbatches
        order = [("F", s, i) for s in local for i in range(n)]
        return order + [("B", s, i) for s in reversed(local) for i in reversed(range(n))]


class ScheduleInterleaved1F1B(PipelineScheduleMulti):
    """Interleaved 1F1B (depth first): a round of microbatches through each local stage in
    turn while warming up, then one forward / one backward, then the remaining backwards.
    ``n_microbatches`` must be a multiple of the number of rounds,
    ``max(1, n_microbatches // group size)``."""

    def __init__(self, stages, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        size = list(stages)[0].group_size if stages else 1
        rounds = max(1, n_microbatches // size)
        if n_microbatches % rounds:
            raise ValueError(f"Interleaved 1F1B requires the number of microbatches to be a "
                             f"multiple of the number of rounds ({rounds}), but got "
                             f"{n_microbatches}.")
        self._per_round = n_microbatches // rounds
        super().__init__(stages, n_microbatches, loss_fn, args_chunk_spec, kwargs_chunk_spec,
                         output_merge_spec, scale_grads)

    def _rank_actions(self, rank):
        P, L, n, m = self.pp_group_size, self.n_local_stages, self._n_microbatches, \
            self._per_round
        total = L * n  # forwards (and backwards) on this rank
        # the last rank starts its first backward after a round through all but one local
        # stage; each rank further up the pipe waits two more steps per hop
        warmup = min((L - 1) * m + 2 * (P - 1 - rank), total)

        def forward(k):  # k-th forward: local stage (k // m) % L, microbatch in its round
            return ("F", ((k // m) % L) * P + rank, (k // (m * L)) * m + k % m)

        def backward(k):  # k-th backward: the local stages in reverse
            return ("B", (L - 1 - (k // m) % L) * P + rank, (k // (m * L)) * m + k % m)

        order = [forward(k) for k in range(warmup)]
        for k in range(total - warmup):
            order += [forward(warmup + k), backward(k)]
        return order + [backward(k) for k in range(total - warmup, total)]


def _check_order(orders, num_stages, n):
    """Raise if running each rank's order, with blocking receives and non-blocking sends,
    could wait forever (or misses an action): simulate all ranks together."""
    done, pos = set(), {r: 0 for r in orders}
    want = {(k, s, i) for k in "FB" for s in range(num_stages) for i in range(n)}
    got = [a for o in orders.values() for a in o]
    if len(got) != len(want) or set(got) != want:
        raise RuntimeError("pipeline schedule: the action lists do not run every forward and "
                           "backward exactly once")

    def ready(a):
        k, s, i = a
        if k == "F":
            return s == 0 or ("F", s - 1, i) in done
        return ("F", s, i) in done and (s == num_stages - 1 or ("B", s + 1, i) in done)

    progress = True
    while progress:
        progress = False
        for r, order in orders.items():
            while pos[r] < len(order) and ready(order[pos[r]]):
                done.add(order[pos[r]])
                pos[r] += 1
                progress = True
    stuck = {r: orders[r][pos[r]] for r in orders if pos[r] < len(orders[r])}
    if stuck:
        raise RuntimeError(f"pipeline schedule: the order would wait forever (ranks waiting "
                           f"at {stuck})")


_SCHEDULES = {c.__name__[len("Schedule"):]: c for c in
              (ScheduleGPipe, Schedule1F1B, ScheduleInterleaved1F1B, ScheduleLoopedBFS)}


def get_schedule_class(schedule_name):
    """The schedule class named ``schedule_name`` ("GPipe", "1F1B", "Interleaved1F1B",
    "LoopedBFS"; case-insensitive)."""
    for name, cls in _SCHEDULES.items():
        if name.lower() == str(schedule_name).lower():
            return cls
    if str(schedule_name).lower() in ("interleavedzerobubble", "zbvzerobubble",
                                      "dualpipev"):
        raise NotImplementedError(f"pipeline schedule {schedule_name!r}: zero-bubble "
                                  f"schedules split the weight gradient (dw_builder), which "
                                  f"ember does not support")
    raise ValueError(f"Unknown schedule name '{schedule_name}'. The valid options are "
                     f"{sorted(_SCHEDULES)}")
