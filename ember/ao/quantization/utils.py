"""``ember.ao.quantization.utils``: helpers shared by the flows (PyTorch's names)."""

from __future__ import annotations

from . import _qtypes as Q

__all__ = ["get_qparam_dict"]


def get_qparam_dict(observer_or_fake_quant):
    """The weight qparams a reference module takes, from an observer or fake-quantize that
    has seen the weight: ``qscheme`` (symmetric schemes become affine ones: quantized tensors
    have no symmetric scheme), ``dtype``, ``scale``, ``zero_point``, ``axis`` (per channel),
    ``quant_min``/``quant_max``; ``{"qscheme": None, "dtype": dtype}`` for a placeholder."""
    from .observer import PlaceholderObserver
    qscheme = getattr(observer_or_fake_quant, "qscheme", None)
    dtype = observer_or_fake_quant.dtype
    if not qscheme or isinstance(observer_or_fake_quant, PlaceholderObserver):
        return {"qscheme": None, "dtype": dtype}
    qparams = {"qscheme": qscheme, "dtype": dtype}
    if Q.is_per_tensor(qscheme):
        qscheme = Q.per_tensor_affine
    elif Q.is_per_channel(qscheme):
        if qscheme is Q.per_channel_symmetric:
            qscheme = Q.per_channel_affine
        qparams["axis"] = observer_or_fake_quant.ch_axis
    else:
        raise RuntimeError(f"Unrecognized qscheme: {qscheme}")
    qparams["qscheme"] = qscheme
    scale, zero_point = observer_or_fake_quant.calculate_qparams()
    qparams["scale"], qparams["zero_point"] = scale, zero_point
    if hasattr(observer_or_fake_quant, "quant_min"):
        qparams["quant_min"] = observer_or_fake_quant.quant_min
    if hasattr(observer_or_fake_quant, "quant_max"):
        qparams["quant_max"] = observer_or_fake_quant.quant_max
    return qparams
