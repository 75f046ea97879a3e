"""``ember.nn.quantized``: PyTorch's older name for ``ember.ao.nn.quantized``."""

from ...ao.nn.quantized import *  # noqa: F401,F403
from ...ao.nn.quantized import dynamic, functional  # noqa: F401
