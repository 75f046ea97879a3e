"""``DataParallel``: single-process replication over GPUs. ember runs on CPU, where PyTorch's
DataParallel (with no GPUs visible) simply runs the wrapped module; so does this one."""

from __future__ import annotations

from ..modules.module import Module

__all__ = ["DataParallel", "data_parallel", "replicate", "scatter", "parallel_apply", "gather"]


def _check_devices(device_ids, output_device):
    """PyTorch's DataParallel with no GPU visible ignores ``device_ids``/``output_device`` and
    runs the module as it is; so does ember's (programs written for GPUs run unchanged)."""


# PyTorch's pieces of multi-GPU DataParallel, at their own paths (they need CUDA)
from .parallel_apply import parallel_apply  # noqa: E402
from .replicate import replicate  # noqa: E402
from .scatter_gather import gather, scatter  # noqa: E402


class DataParallel(Module):
    """Wraps ``module`` (``.module``; state-dict keys get PyTorch's ``module.`` prefix) and
    runs it on the inputs as they are."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        _check_devices(device_ids, output_device)
        self.module = module
        self.device_ids = []
        self.output_device = None
        self.dim = dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


def data_parallel(module, inputs, device_ids=None, output_device=None, dim=0,
                  module_kwargs=None):
    """The functional form: ``module(*inputs, **module_kwargs)`` on CPU."""
    _check_devices(device_ids, output_device)
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return module(*inputs, **(module_kwargs or {}))
