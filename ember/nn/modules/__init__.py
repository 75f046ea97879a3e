"""Every ``nn`` layer class; ``ember.nn`` re-exports this namespace."""

import importlib as _importlib

from .module import Module
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .linear import Bilinear, Identity, LazyLinear, Linear
from .activation import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .normalization import GroupNorm, LayerNorm, LocalResponseNorm, RMSNorm
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .instancenorm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from .loss import *  # noqa: F401,F403
from .flatten import Flatten, Unflatten
from .distance import CosineSimilarity, PairwiseDistance
from . import activation, dropout, loss

__all__ = ["Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
           "ParameterDict", "Identity", "Linear", "Bilinear", "LazyLinear", "LayerNorm",
           "GroupNorm", "RMSNorm", "LocalResponseNorm", "BatchNorm1d", "BatchNorm2d",
           "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "Flatten",
           "Unflatten", "CosineSimilarity", "PairwiseDistance"]
__all__ += activation.__all__ + dropout.__all__ + loss.__all__

# Layers built by other work streams; each file is optional until it lands.
for _name in ("conv", "pooling", "upsampling", "padding", "fold", "pixelshuffle", "rnn",
              "sparse", "transformer", "lazy_layers"):
    try:
        _mod = _importlib.import_module("." + _name, __name__)
    except ImportError as _e:
        if _e.name != f"{__name__}.{_name}":
            raise  # the file exists but is broken: say so
        continue
    for _n in getattr(_mod, "__all__", ()):
        globals()[_n] = getattr(_mod, _n)
        __all__.append(_n)
from .syncbatchnorm import SyncBatchNorm  # noqa: E402,F401  (ember.distributed's part)
__all__.append("SyncBatchNorm")
from .container import Container  # noqa: E402,F401  (issue 23)
from .linear_cross_entropy_options import LinearCrossEntropyOptions  # noqa: E402,F401
__all__ += ["Container", "LinearCrossEntropyOptions"]
del _importlib, _name

# PyTorch-layout additions (ember.compat)
from .normalization import CrossMapLRN2d  # noqa: E402
from .adaptive import AdaptiveLogSoftmaxWithLoss  # noqa: E402
__all__ += ["CrossMapLRN2d", "AdaptiveLogSoftmaxWithLoss"]
