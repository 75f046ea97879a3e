"""The eager-mode flow: ``propagate_qconfig_`` → ``prepare`` (observers) → calibrate →
``convert`` (quantized modules); ``prepare_qat`` for quantization-aware training;
``quantize_dynamic`` for weight-quantized Linear/LSTM with activations quantized at run time.

``prepare`` attaches an ``activation_post_process`` observer to every leaf module that has a
qconfig and a quantized counterpart (and to fused modules as a whole), called by a forward
hook on the module's output. ``convert`` swaps each such module for its quantized class via
``from_float``, which reads the observers' qparams.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import warnings

import ember
from ember import nn

from . import _qtypes as Q
from .fake_quantize import FakeQuantizeBase
from .observer import ObserverBase
from .qconfig import (default_dynamic_qconfig, float16_dynamic_qconfig,
                      float_qparams_weight_only_qconfig, float_qparams_weight_only_qconfig_4bit)
from .quantization_mappings import (get_default_dynamic_quant_module_mappings,
                                    get_default_qat_module_mappings,
                                    get_default_qconfig_propagation_list,
                                    get_default_static_quant_module_mappings,
                                    get_default_static_quant_reference_module_mappings,
                                    no_observer_set)
from .stubs import DeQuantStub, QuantWrapper
from .utils import get_qparam_dict

__all__ = ["get_default_custom_config_dict", "propagate_qconfig_", "add_quant_dequant",
           "prepare", "quantize", "quantize_dynamic", "prepare_qat", "quantize_qat", "convert",
           "swap_module"]


def get_default_custom_config_dict():
    """The default custom-module configuration (no custom modules)."""
    return {"float_to_observed_custom_module_class": {},
            "observed_to_quantized_custom_module_class": {}}


def _is_activation_post_process(m):
    return isinstance(m, (ObserverBase, FakeQuantizeBase))


def _fused_module_types():
    """Modules that quantize as one unit (their children are not visited)."""
    from ember.ao.nn.intrinsic import _FusedModule
    from ember.ao.nn.intrinsic.qat import _ConvBnNd  # fused in PyTorch's class tree too
    return (_FusedModule, _ConvBnNd)


# ---------------------------------------------------------------- qconfig propagation
def _propagate_qconfig_helper(module, qconfig_dict, qconfig_parent=None, prefix="",
                              prepare_custom_config_dict=None):
    module_qconfig = qconfig_dict.get(type(module), qconfig_parent)
    module_qconfig = qconfig_dict.get(prefix, module_qconfig)
    module_qconfig = getattr(module, "qconfig", module_qconfig)
    module.qconfig = module_qconfig
    cfg = prepare_custom_config_dict or {}
    skip_names = cfg.get("non_traceable_module_name", [])
    skip_types = cfg.get("non_traceable_module_class", [])
    for name, child in module.named_children():
        child_prefix = prefix + "." + name if prefix else name
        if name in skip_names or type(child) in skip_types:
            continue
        _propagate_qconfig_helper(child, qconfig_dict, module_qconfig, child_prefix, cfg)


def propagate_qconfig_(module, qconfig_dict=None, prepare_custom_config_dict=None):
    """Give every submodule a ``qconfig``: its own if set, else from ``qconfig_dict`` (keys:
    module types or qualified names; names win), else its parent's. In place."""
    _propagate_qconfig_helper(module, qconfig_dict or {},
                              prepare_custom_config_dict=prepare_custom_config_dict)


# ---------------------------------------------------------------- observers
def _observer_forward_hook(self, input, output):
    """Forward hook that lets the module's observer see its output."""
    return self.activation_post_process(output)


def _observer_forward_pre_hook(self, input):
    """Forward pre-hook for QuantStub-like modules observed on their input."""
    return self.activation_post_process(input[0])


def _needs_observation(m):
    return getattr(m, "qconfig", None) is not None


def _get_activation_post_process(qconfig, special=None):
    return (special or qconfig.activation)()


def _insert_activation_post_process(m, special=None):
    """Add ``m.activation_post_process`` and the hook that feeds it (first among hooks)."""
    if _needs_observation(m) and not isinstance(m, DeQuantStub):
        m.add_module("activation_post_process", _get_activation_post_process(m.qconfig, special))
        # first among hooks: the observer sees the module's own output, before any user hook
        m.register_forward_hook(_observer_forward_hook, prepend=True)


def _has_no_children(m):
    return len(m._modules) == 0


def _add_observer_(module, qconfig_propagation_list=None, non_leaf_module_list=None,
                   custom_module_class_mapping=None):
    if qconfig_propagation_list is None:
        qconfig_propagation_list = get_default_qconfig_propagation_list()
    custom = custom_module_class_mapping or {}
    fused = _fused_module_types()
    functional_types = _float_functional_types()
    for name, child in module.named_children():
        if type(child) in functional_types:
            if _needs_observation(child):
                child.activation_post_process = _get_activation_post_process(child.qconfig)
        elif isinstance(child, fused):
            _insert_activation_post_process(child)
        elif non_leaf_module_list is not None and type(child) in non_leaf_module_list:
            _insert_activation_post_process(child)
        elif _needs_observation(child) and type(child) in custom:
            observed = custom[type(child)].from_float(child)
            setattr(module, name, observed)
            if custom[type(child)] not in no_observer_set():
                _insert_activation_post_process(observed)
        else:
            _add_observer_(child, qconfig_propagation_list, non_leaf_module_list, custom)
    if _has_no_children(module) and not isinstance(module, nn.Sequential) and \
            type(module) in qconfig_propagation_list:
        _insert_activation_post_process(module)


def _float_functional_types():
    try:
        from ember.ao.nn import quantized as nnq
    except ImportError:
        return ()
    return tuple(t for t in (getattr(nnq, "FloatFunctional", None),
                             getattr(nnq, "QFunctional", None)) if t is not None)


def add_quant_dequant(module):
    """Wrap every leaf module that has a qconfig in a ``QuantWrapper`` (recursively)."""
    if _has_no_children(module) and getattr(module, "qconfig", None):
        return QuantWrapper(module)
    for name, child in module.named_children():
        module._modules[name] = add_quant_dequant(child)
    return module


def prepare(model, inplace=False, allow_list=None, observer_non_leaf_module_list=None,
            prepare_custom_config_dict=None):
    """Attach observers for post-training static quantization. The model's modules need
    qconfigs (``model.qconfig = get_default_qconfig("x86")``); run calibration data through
    the result, then ``convert`` it. Returns the prepared model (a copy unless ``inplace``)."""
    if prepare_custom_config_dict is None:
        prepare_custom_config_dict = get_default_custom_config_dict()
    custom = prepare_custom_config_dict.get("float_to_observed_custom_module_class", {})
    if not inplace:
        model = copy.deepcopy(model)
    propagation = allow_list if allow_list is not None else \
        get_default_qconfig_propagation_list()
    propagate_qconfig_(model, qconfig_dict=None)
    if not any(getattr(m, "qconfig", None) for m in model.modules()):
        warnings.warn("None of the submodule got qconfig applied. Make sure you passed correct "
                      "configuration through `qconfig_dict` or by assigning the `.qconfig` "
                      "attribute directly on submodules", stacklevel=2)
    _add_observer_(model, propagation, observer_non_leaf_module_list, custom)
    return model


def _remove_activation_post_process(module):
    if hasattr(module, "activation_post_process") and \
            _is_activation_post_process(module.activation_post_process):
        delattr(module, "activation_post_process")
    for key, fn in list(module._forward_hooks.items()):
        if fn is _observer_forward_hook:
            del module._forward_hooks[key]
    for key, fn in list(module._forward_pre_hooks.items()):
        if fn is _observer_forward_pre_hook:
            del module._forward_pre_hooks[key]


def _remove_qconfig(module):
    for child in module.children():
        _remove_qconfig(child)
    if hasattr(module, "qconfig"):
        del module.qconfig
    _remove_activation_post_process(module)


def quantize(model, run_fn, run_args, mapping=None, inplace=False):
    """Post-training static quantization in one call: prepare, ``run_fn(model, *run_args)``
    to calibrate, convert."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    prepare(model, inplace=True)
    run_fn(model, *run_args)
    convert(model, mapping, inplace=True)
    return model


def quantize_dynamic(model, qconfig_spec=None, dtype=None, mapping=None, inplace=False):
    """Dynamic quantization: weights of the chosen module types become int8 (or float16),
    activations are quantized per batch at run time. ``qconfig_spec`` is a set of module
    types (``{nn.Linear, nn.LSTM}``) or a dict {type or name: qconfig}; ``dtype`` is
    ``ember.qint8`` (default) or ``ember.float16`` (or quint8/quint4x2 for embeddings)."""
    dtype = Q.qint8 if dtype is None else dtype
    dynamic_types = [t for t in (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.RNNCell,
                                 nn.GRUCell) if t is not None]
    if qconfig_spec is None:
        if dtype is Q.qint8:
            qconfig_spec = dict.fromkeys(dynamic_types, default_dynamic_qconfig)
        elif dtype is ember.float16:
            qconfig_spec = dict.fromkeys(dynamic_types, float16_dynamic_qconfig)
        elif dtype is Q.quint8:
            qconfig_spec = {nn.EmbeddingBag: float_qparams_weight_only_qconfig,
                            nn.Embedding: float_qparams_weight_only_qconfig}
        elif dtype is Q.quint4x2:
            qconfig_spec = {nn.EmbeddingBag: float_qparams_weight_only_qconfig_4bit}
        else:
            raise ValueError(f"Don't know how to quantize with default settings for {dtype}. "
                             "Provide full qconfig please")
    elif isinstance(qconfig_spec, set):
        defaults = {Q.qint8: default_dynamic_qconfig, ember.float16: float16_dynamic_qconfig,
                    Q.quint8: float_qparams_weight_only_qconfig,
                    Q.quint4x2: float_qparams_weight_only_qconfig_4bit}
        if dtype not in defaults:
            raise RuntimeError(f"Unknown dtype specified for quantize_dynamic: {dtype}")
        qconfig_spec = dict(zip(qconfig_spec, itertools.repeat(defaults[dtype])))
    if mapping is None:
        mapping = get_default_dynamic_quant_module_mappings()
    missing = [t.__name__ for t in qconfig_spec if isinstance(t, type) and t not in mapping]
    if missing:
        warnings.warn(f"quantize_dynamic: no dynamically quantized module for {missing}; "
                      "those modules stay in float", stacklevel=2)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    propagate_qconfig_(model, qconfig_spec)
    convert(model, mapping, inplace=True)
    return model


def prepare_qat(model, mapping=None, inplace=False):
    """Prepare for quantization-aware training: swap modules for their QAT versions
    (fake-quantized weights) and attach fake-quantize observers to outputs. The model must be
    in training mode and carry a QAT qconfig (``get_default_qat_qconfig``)."""
    if not model.training:
        raise AssertionError("prepare_qat only works on models in training mode")
    if mapping is None:
        mapping = get_default_qat_module_mappings()
    if not inplace:
        model = copy.deepcopy(model)
    propagate_qconfig_(model, qconfig_dict=None)
    convert(model, mapping=mapping, inplace=True, remove_qconfig=False)
    prepare(model, observer_non_leaf_module_list=set(mapping.values()), inplace=True)
    return model


def quantize_qat(model, run_fn, run_args, inplace=False):
    """QAT in one call: prepare_qat, ``run_fn(model, *run_args)`` to train, convert."""
    if not inplace:
        model = copy.deepcopy(model)
    model.train()
    prepare_qat(model, inplace=True)
    run_fn(model, *run_args)
    convert(model, inplace=True)
    return model


def convert(module, mapping=None, inplace=False, remove_qconfig=True, is_reference=False,
            convert_custom_config_dict=None, use_precomputed_fake_quant=False):
    """Swap every observed (or QAT) module for its quantized version (``from_float`` reads
    the observers), then drop qconfigs and observers. Returns the converted model (a copy
    unless ``inplace``)."""
    if not inplace:
        module = copy.deepcopy(module)
    _convert(module, mapping, inplace=True, is_reference=is_reference,
             convert_custom_config_dict=convert_custom_config_dict,
             use_precomputed_fake_quant=use_precomputed_fake_quant)
    if remove_qconfig:
        _remove_qconfig(module)
    return module


def _convert(module, mapping=None, inplace=False, is_reference=False,
             convert_custom_config_dict=None, use_precomputed_fake_quant=False):
    if mapping is None:
        mapping = (get_default_static_quant_reference_module_mappings() if is_reference
                   else get_default_static_quant_module_mappings())
    cfg = convert_custom_config_dict or get_default_custom_config_dict()
    custom = cfg.get("observed_to_quantized_custom_module_class", {})
    if not inplace:
        module = copy.deepcopy(module)
    fused = _fused_module_types()
    reassign = {}
    for name, mod in module.named_children():
        # a fused module converts as a whole: its children are not visited
        if not isinstance(mod, fused) and type(mod) not in custom:
            _convert(mod, mapping, True, is_reference, cfg, use_precomputed_fake_quant)
        reassign[name] = swap_module(mod, mapping, custom, use_precomputed_fake_quant)
    for key, value in reassign.items():
        module._modules[key] = value
    return module


def _fold_qat_conv_bn(mod):
    """A QAT ConvBn(ReLU) as the QAT Conv (or ConvReLU) it stands for at inference: BN folded
    into the weight and bias with its running statistics; the same weight fake-quantizer,
    output observer and qconfig."""
    from ember.ao.nn import qat as nnqat
    from ember.ao.nn.intrinsic import qat as nniqat
    from ember.ao.nn.qat.modules.conv import _ConvNd
    target = getattr(nniqat, f"ConvReLU{mod._dim}d") if mod._with_relu else \
        getattr(nnqat, f"Conv{mod._dim}d")
    args = _ConvNd._conv_args(mod)
    args["bias"] = True
    conv = target(**args, qconfig=mod.qconfig)
    w, b = mod.folded_weight_bias()
    conv.weight = nn.Parameter(w.detach())
    conv.bias = nn.Parameter(b.detach())
    conv.weight_fake_quant = mod.weight_fake_quant
    if hasattr(mod, "activation_post_process"):
        conv.activation_post_process = mod.activation_post_process
    conv.train(False)
    return conv


def swap_module(mod, mapping, custom_module_class_mapping=None,
                use_precomputed_fake_quant=False):
    """The quantized replacement of ``mod`` if it has a qconfig and its type is in
    ``mapping`` (its pre-hooks and non-observer hooks carry over), else ``mod`` itself."""
    custom = custom_module_class_mapping or {}
    if getattr(mod, "qconfig", None) is None:
        return mod
    if type(mod) in custom:
        new_mod = custom[type(mod)].from_observed(mod)
    elif type(mod) in mapping and getattr(mapping[type(mod)], "_IS_REFERENCE", False):
        # a reference module: the float weight with the qparams of the qconfig's weight
        # observer run on it (PyTorch's convert(is_reference=True))
        wobs = mod.qconfig.weight()
        wobs(mod.weight)
        new_mod = mapping[type(mod)].from_float(mod, get_qparam_dict(wobs))
    elif type(mod) in mapping:
        qmod = mapping[type(mod)]
        src = mod
        from ember.ao.nn.intrinsic.qat import _ConvBnNd
        if isinstance(mod, _ConvBnNd) and not _is_qat_target(qmod):
            src = _fold_qat_conv_bn(mod)
        if hasattr(src, "weight_fake_quant") and not _is_qat_target(qmod):
            # a QAT module's weights are quantized with its own (trained) weight fake-quant,
            # as PyTorch's from_float does; the quantized modules ask qconfig.weight for it
            src.qconfig = _SharedWeightQConfig(src.qconfig.activation, src.weight_fake_quant)
        if "use_precomputed_fake_quant" in inspect.signature(qmod.from_float).parameters:
            new_mod = qmod.from_float(src, use_precomputed_fake_quant=use_precomputed_fake_quant)
        else:
            new_mod = qmod.from_float(src)
    else:
        return mod
    for fn in mod._forward_pre_hooks.values():
        new_mod.register_forward_pre_hook(fn)
    for fn in mod._forward_hooks.values():
        if fn is not _observer_forward_hook:
            new_mod.register_forward_hook(fn)
    return new_mod


class _SharedWeightQConfig:
    """A qconfig whose ``weight()`` returns one existing fake-quant module."""

    def __init__(self, activation, weight_fake_quant):
        self.activation = activation
        self._wfq = weight_fake_quant

    def weight(self):
        return self._wfq


def _is_qat_target(cls):
    return cls.__module__.startswith(("ember.ao.nn.qat", "ember.ao.nn.intrinsic.qat"))
