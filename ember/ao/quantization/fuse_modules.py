"""``fuse_modules`` / ``fuse_modules_qat``: merge conv-bn(-relu), linear-relu, bn-relu ...
into single modules before quantization (eager mode).

The first module of each list becomes the fused module, the others ``nn.Identity``; forward
pre-hooks of the first and forward hooks of the last move onto the fused module."""

from __future__ import annotations

import copy

from ember import nn

from .fuser_method_mappings import fuse_conv_bn, fuse_conv_bn_relu, get_fuser_method  # noqa: F401

__all__ = ["fuse_known_modules", "fuse_modules", "fuse_modules_qat"]


def _get_module(model, key):
    mod = model
    for name in key.split("."):
        try:
            mod = getattr(mod, name)
        except AttributeError:
            raise AttributeError(f"fuse_modules: {type(model).__name__} has no submodule "
                                 f"'{key}'") from None
    return mod


def _set_module(model, key, module):
    *parents, last = key.split(".")
    mod = model
    for name in parents:
        mod = getattr(mod, name)
    setattr(mod, last, module)


def fuse_known_modules(mod_list, is_qat, additional_fuser_method_mapping=None):
    """Fuse a list of modules with the known fuser methods; returns the new list (the fused
    module, then Identities)."""
    types = tuple(type(m) for m in mod_list)
    fuser = get_fuser_method(types, additional_fuser_method_mapping)
    if fuser is None:
        raise NotImplementedError(f"Cannot fuse modules: {tuple(t.__name__ for t in types)}")
    fused = fuser(is_qat, *mod_list)
    for hook in list(mod_list[0]._forward_pre_hooks.values()):
        fused.register_forward_pre_hook(hook)
    mod_list[0]._forward_pre_hooks.clear()
    for hook in list(mod_list[-1]._forward_hooks.values()):
        fused.register_forward_hook(hook)
    mod_list[-1]._forward_hooks.clear()
    new = [fused]
    for _ in mod_list[1:]:
        ident = nn.Identity()
        ident.training = mod_list[0].training
        new.append(ident)
    return new


def _fuse_helper(model, names, is_qat, fuser_func, custom):
    extra = (custom or {}).get("additional_fuser_method_mapping", {})
    mods = [_get_module(model, n) for n in names]
    for name, new in zip(names, fuser_func(mods, is_qat, extra)):
        _set_module(model, name, new)


def _fuse_modules(model, modules_to_fuse, is_qat, inplace=False, fuser_func=fuse_known_modules,
                  fuse_custom_config_dict=None):
    if not inplace:
        model = copy.deepcopy(model)
    if all(isinstance(m, str) for m in modules_to_fuse):
        _fuse_helper(model, modules_to_fuse, is_qat, fuser_func, fuse_custom_config_dict)
    else:
        for names in modules_to_fuse:
            _fuse_helper(model, names, is_qat, fuser_func, fuse_custom_config_dict)
    return model


def fuse_modules(model, modules_to_fuse, inplace=False, fuser_func=fuse_known_modules,
                 fuse_custom_config_dict=None):
    """Fuse lists of submodules (by name) for post-training quantization; the model must be in
    eval mode (BN is folded into the conv weights). ``modules_to_fuse`` is one list of names
    or a list of such lists. Returns the fused model (a copy unless ``inplace``)."""
    return _fuse_modules(model, modules_to_fuse, False, inplace, fuser_func,
                         fuse_custom_config_dict)


def fuse_modules_qat(model, modules_to_fuse, inplace=False, fuser_func=fuse_known_modules,
                     fuse_custom_config_dict=None):
    """Like ``fuse_modules`` for quantization-aware training: conv+bn stays a ``ConvBn``
    container (BN keeps training until ``convert`` folds it)."""
    return _fuse_modules(model, modules_to_fuse, True, inplace, fuser_func,
                         fuse_custom_config_dict)
