"""``ember.audio``: audio I/O, functional DSP, transforms and datasets (torchaudio's shape).

WAV (PCM 8/16/24/32-bit and float32) is read and written with the standard library and NumPy;
FLAC, OGG and the other formats go through ``soundfile`` (``pip install ember[audio]``).
"""

import importlib

from ._io import AudioMetaData, info, load, save

__all__ = ["load", "save", "info", "AudioMetaData", "functional", "transforms", "datasets"]

_SUBMODULES = {"functional", "transforms", "datasets"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.audio' has no attribute '{name}'")
