"""QConfigMapping: which QConfig applies where, for the FX flow (and ``get_default_*``).

Precedence, lowest to highest (PyTorch's): global, object type, module-name regex,
module name, module name + object type + index.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from ember import nn
from ember.nn import functional as F

from .qconfig import (QConfig, default_placeholder_observer, default_quint8_weight_qconfig,
                      default_reuse_input_qconfig, default_weight_fake_quant,
                      default_weight_observer, get_default_qat_qconfig, get_default_qconfig)

__all__ = ["QConfigMapping", "get_default_qconfig_mapping", "get_default_qat_qconfig_mapping"]

_GLOBAL_DICT_KEY = ""
_OBJECT_TYPE_DICT_KEY = "object_type"
_MODULE_NAME_REGEX_DICT_KEY = "module_name_regex"
_MODULE_NAME_DICT_KEY = "module_name"
_MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY = "module_name_object_type_order"


class QConfigMapping:
    """A mapping from model ops to QConfigs; ``None`` for an entry means "leave in float".

    Example::

        qconfig_mapping = (QConfigMapping()
                           .set_global(get_default_qconfig("x86"))
                           .set_object_type(nn.LSTM, None)
                           .set_module_name("head", None))
    """

    def __init__(self):
        self.global_qconfig = None
        self.object_type_qconfigs = OrderedDict()
        self.module_name_regex_qconfigs = OrderedDict()
        self.module_name_qconfigs = OrderedDict()
        self.module_name_object_type_order_qconfigs = OrderedDict()

    def set_global(self, global_qconfig):
        """The QConfig for everything not matched by a more specific entry."""
        self.global_qconfig = global_qconfig
        return self

    def set_object_type(self, object_type, qconfig):
        """The QConfig for a module class, a function or a method name (str)."""
        self.object_type_qconfigs[object_type] = qconfig
        return self

    def set_module_name_regex(self, module_name_regex, qconfig):
        """The QConfig for modules whose qualified name matches the regex (first match wins)."""
        self.module_name_regex_qconfigs[module_name_regex] = qconfig
        return self

    def set_module_name(self, module_name, qconfig):
        """The QConfig for one submodule by its qualified name."""
        self.module_name_qconfigs[module_name] = qconfig
        return self

    def set_module_name_object_type_order(self, module_name, object_type, index, qconfig):
        """The QConfig for the ``index``-th call of ``object_type`` inside ``module_name``."""
        self.module_name_object_type_order_qconfigs[(module_name, object_type, index)] = qconfig
        return self

    def __repr__(self):
        parts = [f"\n {k}: {getattr(self, a)}" for k, a in (
            ("global_qconfig", "global_qconfig"),
            ("object_type_qconfigs", "object_type_qconfigs"),
            ("module_name_regex_qconfigs", "module_name_regex_qconfigs"),
            ("module_name_qconfigs", "module_name_qconfigs"),
            ("module_name_object_type_order_qconfigs",
             "module_name_object_type_order_qconfigs"))]
        return f"{type(self).__name__} ({''.join(parts)}\n)"

    def to_dict(self):
        """The old ``qconfig_dict`` form."""
        return {
            _GLOBAL_DICT_KEY: self.global_qconfig,
            _OBJECT_TYPE_DICT_KEY: list(self.object_type_qconfigs.items()),
            _MODULE_NAME_REGEX_DICT_KEY: list(self.module_name_regex_qconfigs.items()),
            _MODULE_NAME_DICT_KEY: list(self.module_name_qconfigs.items()),
            _MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY: [
                (*k, v) for k, v in self.module_name_object_type_order_qconfigs.items()],
        }

    @classmethod
    def from_dict(cls, qconfig_dict):
        """Build from the old ``qconfig_dict`` form."""
        m = cls()
        if _GLOBAL_DICT_KEY in qconfig_dict:
            m.set_global(qconfig_dict[_GLOBAL_DICT_KEY])
        for t, q in qconfig_dict.get(_OBJECT_TYPE_DICT_KEY, []):
            m.set_object_type(t, q)
        for r, q in qconfig_dict.get(_MODULE_NAME_REGEX_DICT_KEY, []):
            m.set_module_name_regex(r, q)
        for n, q in qconfig_dict.get(_MODULE_NAME_DICT_KEY, []):
            m.set_module_name(n, q)
        for n, t, i, q in qconfig_dict.get(_MODULE_NAME_OBJECT_TYPE_ORDER_DICT_KEY, []):
            m.set_module_name_object_type_order(n, t, i, q)
        return m

    # -- lookup (used by the FX flow) --
    def _qconfig_for_module(self, module_name, module_type):
        """The QConfig for a submodule: name, then regex, then the parents' names, then type,
        then global."""
        if module_name in self.module_name_qconfigs:
            return self.module_name_qconfigs[module_name]
        for regex, q in self.module_name_regex_qconfigs.items():
            if re.match(regex, module_name):
                return q
        parent = module_name
        while "." in parent:
            parent = parent.rsplit(".", 1)[0]
            if parent in self.module_name_qconfigs:
                return self.module_name_qconfigs[parent]
        if module_type in self.object_type_qconfigs:
            return self.object_type_qconfigs[module_type]
        return self.global_qconfig

    def _qconfig_for_function(self, fn, module_name=""):
        if module_name and module_name in self.module_name_qconfigs:
            return self.module_name_qconfigs[module_name]
        if fn in self.object_type_qconfigs:
            return self.object_type_qconfigs[fn]
        return self.global_qconfig


def _get_default_qconfig_mapping(is_qat, backend, version):
    qconfig = get_default_qat_qconfig(backend, version) if is_qat else \
        get_default_qconfig(backend, version)
    default_weight = default_weight_fake_quant if is_qat else default_weight_observer
    # per-channel weights are not supported for transposed convolutions on fbgemm/x86
    transpose = QConfig(activation=qconfig.activation, weight=default_weight) \
        if backend in ("fbgemm", "x86") else qconfig
    # layer_norm keeps float weights
    layernorm = QConfig(activation=qconfig.activation, weight=default_placeholder_observer)
    m = (QConfigMapping().set_global(qconfig)
         .set_object_type("reshape", default_reuse_input_qconfig)
         .set_object_type(nn.ConvTranspose1d, transpose)
         .set_object_type(nn.ConvTranspose2d, transpose)
         .set_object_type(nn.ConvTranspose3d, transpose)
         .set_object_type(F.conv_transpose1d, transpose)
         .set_object_type(F.conv_transpose2d, transpose)
         .set_object_type(F.conv_transpose3d, transpose)
         .set_object_type(F.layer_norm, layernorm)
         .set_object_type(nn.LayerNorm, layernorm)
         .set_object_type(nn.PReLU, default_quint8_weight_qconfig))
    return m


def get_default_qconfig_mapping(backend="x86", version=0):
    """The default QConfigMapping for post-training quantization on ``backend``."""
    return _get_default_qconfig_mapping(False, backend, version)


def get_default_qat_qconfig_mapping(backend="x86", version=1):
    """The default QConfigMapping for quantization-aware training on ``backend``."""
    return _get_default_qconfig_mapping(True, backend, version)
