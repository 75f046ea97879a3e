"""``ember.quantization``: PyTorch's old name for ``ember.ao.quantization`` (same objects)."""

from .ao.quantization import *  # noqa: F401,F403
from .ao.quantization import (_PartialWrapper, _with_args,  # noqa: F401
                              _with_callable_args)


def __getattr__(name):
    import importlib
    mod = importlib.import_module("ember.ao.quantization")
    try:
        return getattr(mod, name)
    except AttributeError:
        pass
    try:
        return importlib.import_module("ember.ao.quantization." + name)
    except ImportError:
        raise AttributeError(f"module 'ember.quantization' has no attribute '{name}'") from None
