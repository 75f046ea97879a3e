"""``torch.autograd.profiler_legacy``: the legacy profiler's ``profile`` at PyTorch's path;
it records and reports as ``ember.autograd.profiler.profile``."""

from __future__ import annotations

from .profiler import profile as _profile

__all__ = ["profile"]


class profile(_profile):  # noqa: N801  (PyTorch's name)
    """``with profile() as prof:`` then ``prof.key_averages()``/``prof.table()``; the
    legacy spelling's arguments (``use_cuda``, ``record_shapes``, ``with_flops``,
    ``profile_memory``, ``with_stack``, ``with_modules``)."""

    def __init__(self, enabled=True, *, use_cuda=False, record_shapes=False, with_flops=False,
                 profile_memory=False, with_stack=False, with_modules=False):
        super().__init__(enabled, use_cuda=use_cuda, record_shapes=record_shapes,
                         with_flops=with_flops, profile_memory=profile_memory,
                         with_stack=with_stack, with_modules=with_modules)
