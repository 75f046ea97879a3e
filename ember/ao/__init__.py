"""``ember.ao``: PyTorch's architecture-optimization namespace (quantization, issue 20).

``ember.ao.nn.quantized`` (quantized modules and kernels) and ``ember.ao.quantization``
(observers, QConfig, the eager/FX/weight-only flows) load on first use.
"""

import importlib as _importlib

_SUBMODULES = {"nn", "quantization"}


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.ao' has no attribute '{name}'")
