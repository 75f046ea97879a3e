"""``ember.vision``: datasets, transforms, models and image utilities (torchvision's shape)."""

import importlib

_SUBMODULES = {"datasets", "transforms", "models", "utils", "ops"}

# the torchvision API level these modules follow (what `torchvision.__version__` reports under
# ember.compat.alias_torch())
__version__ = "0.28.0"


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.vision' has no attribute '{name}'")
