"""``torch.nn.parallel``: DataParallel on a machine without GPUs, and the import path of
DistributedDataParallel.

With no GPUs PyTorch's DataParallel calls the wrapped module directly (its ``device_ids`` is
empty); ember's does the same, so single-process programs written for it run unchanged.
DistributedDataParallel's behaviour belongs to ``ember.distributed``; it is looked up lazily
so that importing this package costs nothing.
"""

from __future__ import annotations

import importlib

from ..modules.module import Module

__all__ = ["replicate", "scatter", "parallel_apply", "gather", "data_parallel", "DataParallel",
           "DistributedDataParallel"]


def _check_cpu(device_ids, what):
    if device_ids:
        raise RuntimeError(f"{what}: device_ids={list(device_ids)} names GPUs, but ember has no "
                           f"CUDA backend here (ember.cuda.is_available() is False); leave "
                           f"device_ids unset to run on the CPU")


class DataParallel(Module):
    """Wraps ``module``; on a machine without GPUs ``forward`` calls it directly, as PyTorch's
    does. The wrapped module is ``self.module`` (so state dict keys start with ``module.``)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        _check_cpu(device_ids, "DataParallel")
        self.module = module
        self.device_ids = []
        self.output_device = None
        self.dim = dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


def data_parallel(module, inputs, device_ids=None, output_device=None, dim=0,
                  module_kwargs=None):
    """The functional form of DataParallel: ``module(*inputs, **module_kwargs)`` on the CPU."""
    _check_cpu(device_ids, "data_parallel")
    if not isinstance(inputs, tuple):
        inputs = (inputs,) if inputs is not None else ()
    return module(*inputs, **(module_kwargs or {}))


def _multi_device(name):
    def fn(*args, **kwargs):
        raise NotImplementedError(f"ember.nn.parallel.{name} spreads work over several GPUs; "
                                  f"ember has none here")
    fn.__name__ = name
    return fn


replicate = _multi_device("replicate")
scatter = _multi_device("scatter")
parallel_apply = _multi_device("parallel_apply")
gather = _multi_device("gather")


class _DistributedDataParallelPending(Module):
    """Stands in for DistributedDataParallel until ``ember/nn/parallel/distributed.py`` exists:
    importing works, constructing says what is missing."""

    def __init__(self, module, *args, **kwargs):
        raise NotImplementedError("ember.nn.parallel.DistributedDataParallel: this build of "
                                  "ember has no distributed data parallelism "
                                  "(ember/nn/parallel/distributed.py is absent)")


def __getattr__(name):
    if name == "DistributedDataParallel":
        try:
            mod = importlib.import_module(".distributed", __name__)
        except ModuleNotFoundError as e:
            if e.name != __name__ + ".distributed":
                raise
            return _DistributedDataParallelPending
        return mod.DistributedDataParallel
    raise AttributeError(f"module 'ember.nn.parallel' has no attribute '{name}'")
