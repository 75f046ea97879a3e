"""Fused module containers: a Sequential of modules that quantize as one unit.

``fuse_modules`` builds them (eval: BN already folded into the conv); ``prepare_qat`` swaps
them for their ``intrinsic.qat`` versions and ``convert`` for ``intrinsic.quantized`` ones."""

from __future__ import annotations

from ember import nn

__all__ = ["ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "LinearReLU", "ConvBn1d", "ConvBn2d",
           "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d", "ConvBnReLU3d", "BNReLU2d", "BNReLU3d",
           "LinearBn1d", "LinearLeakyReLU", "LinearTanh"]


class _FusedModule(nn.Sequential):
    pass


def _check(cls, mods, types):
    if len(mods) != len(types) or any(type(m) is not t for m, t in zip(mods, types)):
        names = " and ".join(type(m).__name__ for m in mods)
        raise AssertionError(f"{cls.__name__}: incorrect types for input modules: {names} "
                             f"(expected {' and '.join(t.__name__ for t in types)})")


def _fused(name, types, doc):
    def __init__(self, *mods):
        _check(type(self), mods, types)
        _FusedModule.__init__(self, *mods)
    return type(name, (_FusedModule,), {"__init__": __init__, "__doc__": doc,
                                        "__module__": __name__})


ConvReLU1d = _fused("ConvReLU1d", (nn.Conv1d, nn.ReLU), "Conv1d then ReLU.")
ConvReLU2d = _fused("ConvReLU2d", (nn.Conv2d, nn.ReLU), "Conv2d then ReLU.")
ConvReLU3d = _fused("ConvReLU3d", (nn.Conv3d, nn.ReLU), "Conv3d then ReLU.")
LinearReLU = _fused("LinearReLU", (nn.Linear, nn.ReLU), "Linear then ReLU.")
ConvBn1d = _fused("ConvBn1d", (nn.Conv1d, nn.BatchNorm1d), "Conv1d then BatchNorm1d (QAT).")
ConvBn2d = _fused("ConvBn2d", (nn.Conv2d, nn.BatchNorm2d), "Conv2d then BatchNorm2d (QAT).")
ConvBn3d = _fused("ConvBn3d", (nn.Conv3d, nn.BatchNorm3d), "Conv3d then BatchNorm3d (QAT).")
ConvBnReLU1d = _fused("ConvBnReLU1d", (nn.Conv1d, nn.BatchNorm1d, nn.ReLU),
                      "Conv1d, BatchNorm1d, ReLU (QAT).")
ConvBnReLU2d = _fused("ConvBnReLU2d", (nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
                      "Conv2d, BatchNorm2d, ReLU (QAT).")
ConvBnReLU3d = _fused("ConvBnReLU3d", (nn.Conv3d, nn.BatchNorm3d, nn.ReLU),
                      "Conv3d, BatchNorm3d, ReLU (QAT).")
BNReLU2d = _fused("BNReLU2d", (nn.BatchNorm2d, nn.ReLU), "BatchNorm2d then ReLU.")
BNReLU3d = _fused("BNReLU3d", (nn.BatchNorm3d, nn.ReLU), "BatchNorm3d then ReLU.")
LinearBn1d = _fused("LinearBn1d", (nn.Linear, nn.BatchNorm1d), "Linear then BatchNorm1d (QAT).")
LinearLeakyReLU = _fused("LinearLeakyReLU", (nn.Linear, nn.LeakyReLU), "Linear then LeakyReLU.")
LinearTanh = _fused("LinearTanh", (nn.Linear, nn.Tanh), "Linear then Tanh.")
