"""``ember.utils``: data loading, hooks and other helpers; submodules load on first use."""

from __future__ import annotations

import importlib


def __getattr__(name):
    try:
        return importlib.import_module("." + name, __name__)
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{name}":
            raise AttributeError(f"module '{__name__}' has no attribute '{name}'") from None
        raise
