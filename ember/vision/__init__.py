"""``ember.vision``: datasets, transforms, models and image utilities (torchvision's shape)."""

import importlib

_SUBMODULES = {"datasets", "transforms", "models", "utils"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.vision' has no attribute '{name}'")
