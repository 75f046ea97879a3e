"""``ember.nn.quantized.dynamic``: PyTorch's older name for
``ember.ao.nn.quantized.dynamic``."""

from ...ao.nn.quantized.dynamic import *  # noqa: F401,F403
