"""``ember.nn``: modules, parameters, functional forms, init and utilities."""

from .parameter import (Buffer, Parameter, UninitializedBuffer,  # noqa: F401
                        UninitializedParameter)
from .modules import *  # noqa: F401,F403
from . import functional, init, modules, parameter, utils  # noqa: F401
from . import parallel  # noqa: F401,E402  (DDP, DataParallel: mpi4py loads on use)
from .parallel import DataParallel  # noqa: F401,E402


def factory_kwargs(kwargs):
    """The ``device``/``dtype``/``memory_format`` entries of ``kwargs`` (and of its
    ``factory_kwargs`` entry) as one dict for factory functions; other keys are a TypeError."""
    if kwargs is None:
        return {}
    simple = {"device", "dtype", "memory_format"}
    if not kwargs.keys() <= simple | {"factory_kwargs"}:
        raise TypeError(f"unexpected kwargs {kwargs.keys() - simple - {'factory_kwargs'}}")
    out = dict(kwargs.get("factory_kwargs", {}))
    for k in simple & kwargs.keys():
        if k in out:
            raise TypeError(f"{k} specified twice, in **kwargs and in factory_kwargs")
        out[k] = kwargs[k]
    return out


# PyTorch-path subpackages that load on first use (ember.compat's module layout)
_LAZY_SUBMODULES = {"attention", "grad"}
_LAZY_SUBMODULES |= {"quantized"}  # alias of ember.ao.nn.quantized (issue 20)


def __getattr__(name):
    import importlib
    if name in _LAZY_SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.nn' has no attribute '{name}'")
