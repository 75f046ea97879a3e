"""``SyncBatchNorm``: batch normalisation whose statistics span the whole process group.

In training, each rank's batch statistics are combined over the group, so N ranks with
batches of B normalise exactly as one process with a batch of N*B (the running statistics
too). Forward all-reduces the per-channel sum and count (then the sum of squared deviations
from the global mean: two passes, no cancellation); backward all-reduces the two per-channel
sums the input gradient needs. The weight and bias gradients stay local sums, which DDP's
averaging turns into the global ones. Outside training, or without a group of more than one
rank, it is ``BatchNorm``.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ...autograd.graph import Function
from ...ops.creation import from_numpy
from .batchnorm import _BatchNorm

__all__ = ["SyncBatchNorm"]


def _all_reduce_array(arr, group):
    from ... import distributed as dist
    t = from_numpy(np.ascontiguousarray(arr))
    dist.all_reduce(t, group=group)
    return t._data


class _SyncBatchNormFunction(Function):
    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum, group):
        x = input._data
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        local = np.concatenate([x.sum(axes), [x.size // x.shape[1]]]).astype(x.dtype)
        total = _all_reduce_array(local, group)
        count = total[-1]
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got "
                             f"input size {tuple(x.shape)} over the whole group")
        mean = total[:-1] / count
        centred = x - mean.reshape(shape)
        var = _all_reduce_array((centred * centred).sum(axes), group) / count
        invstd = 1.0 / np.sqrt(var + eps)
        xhat = centred * invstd.reshape(shape)
        y = xhat
        if weight is not None:
            y = y * weight._data.reshape(shape)
        if bias is not None:
            y = y + bias._data.reshape(shape)
        if running_mean is not None:
            running_mean._data[...] = (1 - momentum) * running_mean._data + momentum * mean
            running_var._data[...] = (1 - momentum) * running_var._data + \
                momentum * var * (count / (count - 1))
        ctx.xhat, ctx.invstd, ctx.count, ctx.group = xhat, invstd, count, group
        ctx.weight = None if weight is None else weight._data
        ctx.shape, ctx.axes = shape, axes
        return from_numpy(y.astype(x.dtype, copy=False))

    @staticmethod
    def backward(ctx, grad_output):
        dy = grad_output._data
        xhat, shape, axes = ctx.xhat, ctx.shape, ctx.axes
        sum_dy = dy.sum(axes)
        sum_dy_xhat = (dy * xhat).sum(axes)
        c = len(sum_dy)
        both = _all_reduce_array(np.concatenate([sum_dy, sum_dy_xhat]), ctx.group)
        scale = ctx.invstd if ctx.weight is None else ctx.invstd * ctx.weight
        dx = scale.reshape(shape) * (dy - (both[:c] / ctx.count).reshape(shape)
                                     - xhat * (both[c:] / ctx.count).reshape(shape))
        gw = from_numpy(sum_dy_xhat) if ctx.weight is not None else None
        gb = from_numpy(sum_dy)
        return from_numpy(dx.astype(dy.dtype, copy=False)), gw, gb, None, None, None, None, \
            None


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over N-D inputs (N, C, ...) with statistics over the whole group."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.ndim < 2:
            raise ValueError(f"expected at least 2D input (got {input.ndim}D input)")

    def _check_non_zero_input_channels(self, input):
        if input.shape[1] == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")

    def _group_size(self):
        from ... import distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, input):
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        if not self.training or self._group_size() <= 1:
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked._data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked._data)
        track = self.track_running_stats
        return _SyncBatchNormFunction.apply(
            input, self.weight, self.bias, self.running_mean if track else None,
            self.running_var if track else None, self.eps, factor, self.process_group)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm*d replaced by a SyncBatchNorm sharing its
        parameters and buffers (returns the module, or the replacement when it is one)."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = SyncBatchNorm(module.num_features, module.eps, module.momentum,
                                module.affine, module.track_running_stats, process_group)
            if module.affine:
                out.weight = module.weight
                out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        del module
        return out


# F is imported for the eval path's users of this module's namespace
_ = F
