"""``ember.ao.nn.intrinsic``: fused module containers (``ConvReLU2d``, ``LinearReLU``,
``ConvBn2d`` ...); ``.qat`` their QAT versions, ``.quantized`` their int8 versions."""

import importlib as _importlib

from .modules import *  # noqa: F401,F403
from .modules import _FusedModule  # noqa: F401


def __getattr__(name):
    if name in ("qat", "quantized"):
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.ao.nn.intrinsic' has no attribute '{name}'")
