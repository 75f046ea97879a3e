"""``ember.nn``: modules, parameters, functional forms, init and utilities."""

from .parameter import (Buffer, Parameter, UninitializedBuffer,  # noqa: F401
                        UninitializedParameter)
from .modules import *  # noqa: F401,F403
from . import functional, init, modules, parameter, utils  # noqa: F401
from . import parallel  # noqa: F401,E402  (DDP, DataParallel: mpi4py loads on use)
from .parallel import DataParallel  # noqa: F401,E402


# PyTorch-path subpackages that load on first use (ember.compat's module layout)
_LAZY_SUBMODULES = {"attention", "grad"}
_LAZY_SUBMODULES |= {"quantized"}  # alias of ember.ao.nn.quantized (issue 20)


def __getattr__(name):
    import importlib
    if name in _LAZY_SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.nn' has no attribute '{name}'")
