"""``ember.ao``: architecture optimization — quantization (``ember.ao.quantization``) and the
quantized, QAT and fused modules (``ember.ao.nn``). Subpackages load on first use."""

import importlib as _importlib

_SUBMODULES = {"quantization", "nn"}


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.ao' has no attribute '{name}'")
