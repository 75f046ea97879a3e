"""``ember.ao.nn.quantized``: static quantized modules (``torch.ao.nn.quantized``), with
``functional`` (quantized ops) and ``dynamic`` (dynamically quantized Linear/LSTM/GRU)."""

from . import dynamic, functional  # noqa: F401
from .modules import (ELU, BatchNorm2d, BatchNorm3d, Conv1d, Conv2d, Conv3d,  # noqa: F401
                      DeQuantize, Dropout,
                      Embedding, EmbeddingBag, EmbeddingPackedParams, FloatFunctional,
                      FXFloatFunctional, Hardswish, LayerNorm, LeakyReLU, Linear,
                      LinearPackedParams, QFunctional, Quantize, ReLU6, Sigmoid)

__all__ = ["BatchNorm2d", "BatchNorm3d", "Conv1d", "Conv2d", "Conv3d", "DeQuantize", "ELU",
           "Dropout", "Embedding",
           "EmbeddingBag", "FloatFunctional", "FXFloatFunctional", "Hardswish", "LayerNorm",
           "LeakyReLU", "Linear", "QFunctional", "Quantize", "ReLU6", "Sigmoid", "dynamic",
           "functional"]
