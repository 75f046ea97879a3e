"""Default module mappings of the eager flow: float → QAT (``prepare_qat``), float/QAT →
quantized (``convert``), float → dynamically quantized (``quantize_dynamic``).

The quantized module packages are looked up when a mapping is first asked for, and a class a
package does not define is left out of the mapping (that module then stays in float)."""

from __future__ import annotations

import copy
import importlib

from ember import nn

from .stubs import DeQuantStub, QuantStub

__all__ = [
    "get_default_static_quant_module_mappings",
    "get_default_static_quant_reference_module_mappings",
    "get_default_qat_module_mappings", "get_default_dynamic_quant_module_mappings",
    "get_default_qconfig_propagation_list", "get_default_compare_output_module_list",
    "get_default_float_to_quantized_operator_mappings", "get_quantized_operator",
    "no_observer_set", "get_static_quant_module_class", "get_dynamic_quant_module_class",
    "DEFAULT_STATIC_QUANT_MODULE_MAPPINGS", "DEFAULT_QAT_MODULE_MAPPINGS",
    "DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS",
]


def _pkg(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _build(pairs):
    """{float class: target class} from (float class, package, target name), skipping targets
    the package lacks."""
    out = {}
    for src, pkg, name in pairs:
        mod = _pkg(pkg)
        target = getattr(mod, name, None) if mod is not None else None
        if src is not None and target is not None:
            out[src] = target
    return out


_NNQ = "ember.ao.nn.quantized"
_NNQD = "ember.ao.nn.quantized.dynamic"
_NNIQ = "ember.ao.nn.intrinsic.quantized"
_NNIQD = "ember.ao.nn.intrinsic.quantized.dynamic"
_NNQAT = "ember.ao.nn.qat"
_NNIQAT = "ember.ao.nn.intrinsic.qat"


def _static_pairs():
    from ember.ao.nn import intrinsic as nni
    from ember.ao.nn import qat as nnqat
    from ember.ao.nn.intrinsic import qat as nniqat
    pairs = [(QuantStub, _NNQ, "Quantize"), (DeQuantStub, _NNQ, "DeQuantize")]
    for name in ("BatchNorm2d", "BatchNorm3d", "Dropout", "Conv1d", "Conv2d", "Conv3d",
                 "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "ELU", "Embedding",
                 "EmbeddingBag", "GroupNorm", "Hardswish", "InstanceNorm1d", "InstanceNorm2d",
                 "InstanceNorm3d", "LayerNorm", "LeakyReLU", "Linear", "ReLU6", "PReLU"):
        pairs.append((getattr(nn, name, None), _NNQ, name))
    pairs.append((getattr(nn.modules.linear, "NonDynamicallyQuantizableLinear", None), _NNQ,
                  "Linear"))
    try:
        from ember.ao.nn.quantized import FloatFunctional
        pairs.append((FloatFunctional, _NNQ, "QFunctional"))
    except ImportError:
        pass
    for name in ("BNReLU2d", "BNReLU3d", "ConvReLU1d", "ConvReLU2d", "ConvReLU3d",
                 "LinearReLU"):
        pairs.append((getattr(nni, name), _NNIQ, name))
    for d in ("1d", "2d", "3d"):
        pairs += [(getattr(nniqat, "ConvBn" + d), _NNQ, "Conv" + d),
                  (getattr(nniqat, "ConvBnReLU" + d), _NNIQ, "ConvReLU" + d),
                  (getattr(nniqat, "ConvReLU" + d), _NNIQ, "ConvReLU" + d),
                  (getattr(nnqat, "Conv" + d), _NNQ, "Conv" + d)]
    pairs += [(nniqat.LinearReLU, _NNIQ, "LinearReLU"), (nnqat.Linear, _NNQ, "Linear")]
    return pairs


def get_default_static_quant_module_mappings():
    """{float or QAT module class: quantized module class} used by ``convert``."""
    return _build(_static_pairs())


def get_default_static_quant_reference_module_mappings():
    """{float module class: reference quantized module class} used by
    ``convert(..., is_reference=True)`` (stubs become Quantize/DeQuantize)."""
    from ember.ao.nn import quantized as nnq
    from ember.ao.nn.quantized import reference as nnqr

    from .stubs import DeQuantStub, QuantStub
    return {QuantStub: nnq.Quantize, DeQuantStub: nnq.DeQuantize, nn.Linear: nnqr.Linear,
            nn.Conv1d: nnqr.Conv1d, nn.Conv2d: nnqr.Conv2d, nn.Conv3d: nnqr.Conv3d}


def get_default_qat_module_mappings():
    """{float module class: QAT module class} used by ``prepare_qat``."""
    from ember.ao.nn import intrinsic as nni
    from ember.ao.nn import qat as nnqat
    from ember.ao.nn.intrinsic import qat as nniqat
    m = {nn.Conv1d: nnqat.Conv1d, nn.Conv2d: nnqat.Conv2d, nn.Conv3d: nnqat.Conv3d,
         nn.Linear: nnqat.Linear, nni.LinearReLU: nniqat.LinearReLU}
    for d in ("1d", "2d", "3d"):
        m[getattr(nni, "ConvBn" + d)] = getattr(nniqat, "ConvBn" + d)
        m[getattr(nni, "ConvBnReLU" + d)] = getattr(nniqat, "ConvBnReLU" + d)
        m[getattr(nni, "ConvReLU" + d)] = getattr(nniqat, "ConvReLU" + d)
    ndql = getattr(nn.modules.linear, "NonDynamicallyQuantizableLinear", None)
    if ndql is not None:
        m[ndql] = nnqat.Linear
    return m


def get_default_dynamic_quant_module_mappings():
    """{float module class: dynamically quantized class} used by ``quantize_dynamic``."""
    from ember.ao.nn import intrinsic as nni
    pairs = [(getattr(nn, n, None), _NNQD, n) for n in
             ("GRUCell", "Linear", "LSTM", "GRU", "LSTMCell", "RNNCell")]
    pairs.append((getattr(nn.modules.linear, "NonDynamicallyQuantizableLinear", None), _NNQD,
                  "Linear"))
    pairs.append((nni.LinearReLU, _NNIQD, "LinearReLU"))
    return _build(pairs)


def get_default_qconfig_propagation_list():
    """The module types that take observers in ``prepare``."""
    # every float type that has (or would have) a quantized counterpart, whether or not the
    # quantized package defines it yet: observers are placed the same either way
    static = {src for src, _, _ in _static_pairs() if src is not None}
    dynamic = {t for t in (getattr(nn, n, None) for n in ("GRUCell", "Linear", "LSTM", "GRU",
                                                           "LSTMCell", "RNNCell")) if t}
    return static | set(get_default_qat_module_mappings()) | dynamic | {nn.Sequential}


def get_default_compare_output_module_list():
    return (set(get_default_static_quant_module_mappings().values())
            | set(get_default_qat_module_mappings().values())
            | set(get_default_dynamic_quant_module_mappings().values())
            | set(get_default_static_quant_module_mappings())
            | set(get_default_qat_module_mappings())
            | set(get_default_dynamic_quant_module_mappings()))


def get_default_float_to_quantized_operator_mappings():
    raise NotImplementedError("functional operator mappings (F.elu → quantized.elu ...) are "
                              "not implemented in ember's eager flow")


def get_quantized_operator(float_op):
    raise NotImplementedError("functional operator mappings are not implemented in ember's "
                              "eager flow")


def no_observer_set():
    """Module types that get no activation observer (their outputs keep the input qparams)."""
    return {nn.quantizable.LSTM, nn.quantizable.MultiheadAttention} \
        if hasattr(nn, "quantizable") else set()


def get_static_quant_module_class(float_module_class, additional_static_quant_mapping=None,
                                  is_reference=False):
    """The quantized class ``convert`` uses for a float class (KeyError-style error if none)."""
    m = {**get_default_static_quant_module_mappings(), **(additional_static_quant_mapping or {})}
    if float_module_class not in m:
        raise AssertionError(f"Floating point module class {float_module_class} does not have "
                             "a corresponding quantized module class")
    return copy.deepcopy(m[float_module_class])


def get_dynamic_quant_module_class(float_module_class, additional_dynamic_quant_mapping=None):
    m = {**get_default_dynamic_quant_module_mappings(),
         **(additional_dynamic_quant_mapping or {})}
    if float_module_class not in m:
        raise AssertionError(f"Floating point module class {float_module_class} does not have "
                             "a corresponding quantized module class")
    return copy.deepcopy(m[float_module_class])


class _LazyMapping(dict):
    """A module-level mapping constant filled on first use (the quantized packages load
    late)."""

    def __init__(self, builder):
        super().__init__()
        self._builder = builder
        self._filled = False

    def _fill(self):
        if not self._filled:
            self._filled = True
            self.update(self._builder())

    def __getitem__(self, k):
        self._fill()
        return super().__getitem__(k)

    def __contains__(self, k):
        self._fill()
        return super().__contains__(k)

    def __iter__(self):
        self._fill()
        return super().__iter__()

    def __len__(self):
        self._fill()
        return super().__len__()

    def get(self, k, default=None):
        self._fill()
        return super().get(k, default)

    def items(self):
        self._fill()
        return super().items()

    def keys(self):
        self._fill()
        return super().keys()

    def values(self):
        self._fill()
        return super().values()


DEFAULT_STATIC_QUANT_MODULE_MAPPINGS = _LazyMapping(get_default_static_quant_module_mappings)
DEFAULT_QAT_MODULE_MAPPINGS = _LazyMapping(get_default_qat_module_mappings)
DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS = _LazyMapping(get_default_dynamic_quant_module_mappings)
