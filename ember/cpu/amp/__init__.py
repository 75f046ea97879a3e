"""``ember.cpu.amp``: PyTorch's older spelling of CPU autocast and the gradient scaler."""

import warnings

from ...amp import GradScaler as _GradScaler
from ...amp import autocast as _autocast
from ..._dtype import bfloat16

__all__ = ["autocast", "GradScaler"]


class autocast(_autocast):
    """``ember.autocast("cpu", ...)`` (``torch.cpu.amp.autocast`` is deprecated in PyTorch)."""

    def __init__(self, enabled=True, dtype=bfloat16, cache_enabled=True):
        warnings.warn("`torch.cpu.amp.autocast(args...)` is deprecated. Please use "
                      "`torch.amp.autocast('cpu', args...)` instead.", FutureWarning,
                      stacklevel=2)
        super().__init__("cpu", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


class GradScaler(_GradScaler):
    """``ember.amp.GradScaler("cpu", ...)``."""

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        super().__init__("cpu", init_scale, growth_factor, backoff_factor, growth_interval,
                         enabled)
