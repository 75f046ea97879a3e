"""``ember.ao.nn``: quantized (``quantized``, ``quantized.dynamic``), QAT (``qat``) and fused
(``intrinsic``) modules; each loads on first use."""

import importlib as _importlib

_SUBMODULES = {"quantized", "qat", "intrinsic", "quantizable"}


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.ao.nn' has no attribute '{name}'")
