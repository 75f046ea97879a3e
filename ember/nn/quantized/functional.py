"""``ember.nn.quantized.functional``: PyTorch's older name for
``ember.ao.nn.quantized.functional``."""

from ...ao.nn.quantized.functional import *  # noqa: F401,F403
