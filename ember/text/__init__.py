"""``ember.text``: tokenizers, vocabularies, transforms, batching helpers and datasets
(torchtext's shape). Trained subword tokenizers (BPE, WordPiece, Unigram) use Hugging Face
``tokenizers`` (``pip install ember[text]``); everything else needs nothing beyond NumPy."""

import importlib

_SUBMODULES = {"data", "vocab", "transforms", "functional", "datasets", "tokenizers"}

__all__ = sorted(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ember.text' has no attribute '{name}'")
