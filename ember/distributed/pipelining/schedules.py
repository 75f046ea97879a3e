"""Pipeline schedules for one stage per rank: ``ScheduleGPipe`` and ``Schedule1F1B``.

GPipe runs every microbatch's forward, then every backward: simple, but all activations of a
step are alive at once. 1F1B (PipeDream-flush) runs ``num_stages - stage_index - 1`` warm-up
forwards, then alternates one forward and one backward, then drains the remaining backwards:
at most ``num_stages`` microbatches' activations are alive on a stage. Both accumulate the
parameter gradients of all microbatches, divided by ``n_microbatches`` when ``scale_grads``
(a loss that averages over its batch then gives the full batch's gradient).
"""

from __future__ import annotations

from ... import autograd

__all__ = ["PipelineScheduleSingle", "Schedule1F1B", "ScheduleGPipe"]


def _split(x, n, what):
    from ..._tensor import Tensor
    if not isinstance(x, Tensor):
        return [x] * n
    if x.shape[0] < n:
        raise ValueError(f"pipeline schedule: {what} has batch size {x.shape[0]}, fewer than "
                         f"n_microbatches={n}")
    return list(x.tensor_split(n, 0))


class PipelineScheduleSingle:
    """Base of the schedules that run one stage per rank."""

    def __init__(self, stage, n_microbatches, loss_fn=None, args_chunk_spec=None,
                 kwargs_chunk_spec=None, output_merge_spec=None, scale_grads=True):
        if args_chunk_spec is not None or kwargs_chunk_spec is not None or \
                output_merge_spec is not None:
            raise NotImplementedError("pipeline schedules: chunk and merge specs are not "
                                      "supported; inputs and outputs split and merge on dim 0")
        if n_microbatches < 1:
            raise ValueError(f"n_microbatches must be >= 1, got {n_microbatches}")
        self._stage = stage
        self._n_microbatches = n_microbatches
        self._loss_fn = loss_fn
        self.scale_grads = scale_grads
        self._has_backward = loss_fn is not None

    def step(self, *args, target=None, losses=None, return_outputs=True, **kwargs):
        """One training step on a whole batch: the first stage takes the inputs, the last
        stage the ``target``; it appends each microbatch's loss to ``losses`` and returns the
        merged outputs (last stage only)."""
        if self._has_backward and not autograd.grad_mode.is_grad_enabled():
            raise RuntimeError("step() requires gradients to be enabled for backward "
                               "computation; it should not be used under no_grad()")
        st = self._stage
        st.has_backward = self._has_backward
        st.clear_runtime_states()
        n = self._n_microbatches
        if st.is_first:
            split = [_split(a, n, f"input {i}") for i, a in enumerate(args)]
            self._args = [tuple(s[i] for s in split) for i in range(n)]
            self._kwargs = [{k: _split(v, n, k)[i] for k, v in kwargs.items()}
                            for i in range(n)]
        else:
            self._args, self._kwargs = [()] * n, [{}] * n
        if st.is_last and self._has_backward:
            if target is None:
                raise ValueError("pipeline schedule: the last stage needs target= for loss_fn")
            self._targets = _split(target, n, "target")
        self._losses = []
        try:
            self._step_microbatches()
        finally:
            st._wait_sends()
        if self._has_backward and self.scale_grads:
            st.scale_grads(n)
        if st.is_last and losses is not None:
            losses.extend(self._losses)
        if st.is_last and return_outputs:
            from ... import cat
            outs = st.output_chunks
            if outs and hasattr(outs[0], "shape"):
                return cat([o.detach() if self._has_backward else o for o in outs], 0)
            return outs
        return None

    def _forward(self, i):
        st = self._stage
        out = st.forward_one_chunk(i, self._args[i], self._kwargs[i])
        if st.is_last:
            st.output_chunks.append(out)
            if self._has_backward:
                loss = self._loss_fn(out, self._targets[i])
                self._losses.append(loss.detach())
                st._set_loss(i, loss)

    def _backward(self, i):
        if self._has_backward:
            self._stage.backward_one_chunk(i)

    def _step_microbatches(self):
        raise NotImplementedError


class ScheduleGPipe(PipelineScheduleSingle):
    """All forwards, then all backwards."""

    def _step_microbatches(self):
        for i in range(self._n_microbatches):
            self._forward(i)
        for i in range(self._n_microbatches):
            self._backward(i)


class Schedule1F1B(PipelineScheduleSingle):
    """Warm-up forwards, then one forward / one backward in turn, then the last backwards."""

    def _step_microbatches(self):
        st, n = self._stage, self._n_microbatches
        warmup = min(n, st.num_stages - st.stage_index - 1)
        for i in range(warmup):
            self._forward(i)
        for k in range(n - warmup):
            self._forward(warmup + k)
            self._backward(k)
        for k in range(n - warmup, n):
            self._backward(k)
