"""``nn.Module``: the base class of every layer.

A Module keeps three ordered dicts, ``_parameters``, ``_buffers`` and ``_modules``;
``__setattr__`` routes assignments of Parameters, buffers and Modules into them and
``__getattr__`` reads them back, so ``self.weight = Parameter(...)`` registers a parameter.
``state_dict`` walks the tree with dotted keys; ``__call__`` runs ``forward`` between hooks,
with a fast path that is a plain ``forward`` call when no hook is registered anywhere.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from ... import _dtype as D
from ..._tensor import Tensor
from ...autograd.grad_mode import GradMode, no_grad
from ...autograd.graph import Function
from ...utils.hooks import RemovableHandle
from ..parameter import Buffer, Parameter, is_lazy

__all__ = ["Module", "register_module_forward_pre_hook", "register_module_forward_hook",
           "register_module_full_backward_hook", "register_module_full_backward_pre_hook",
           "register_module_backward_hook",
           "register_module_buffer_registration_hook",
           "register_module_parameter_registration_hook",
           "register_module_module_registration_hook"]

# the state_dict key suffix of get_extra_state()'s value (libraries compare keys against it)
_EXTRA_STATE_KEY_SUFFIX = "_extra_state"

# Hooks that apply to every module (``nn.modules.module.register_module_*``).
_global_forward_pre_hooks: dict = OrderedDict()
_global_forward_hooks: dict = OrderedDict()
_global_forward_hooks_always_called: dict = OrderedDict()
_global_backward_hooks: dict = OrderedDict()
_global_backward_pre_hooks: dict = OrderedDict()
_global_buffer_registration_hooks: dict = OrderedDict()
_global_parameter_registration_hooks: dict = OrderedDict()
_global_module_registration_hooks: dict = OrderedDict()
_global_hook_count = [0]  # nonzero when any global forward/backward hook exists


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys it could not match."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(s, num_spaces):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    first = lines.pop(0)
    return first + "\n" + "\n".join(num_spaces * " " + line for line in lines)


def _typename(obj):
    if isinstance(obj, Tensor):
        from ..._tensor_methods import type_
        return type_(obj)
    module = type(obj).__module__
    name = type(obj).__qualname__
    return name if module in ("builtins", "__builtin__", None) else f"{module}.{name}"


def _handle(container, fn, prepend=False, extra=None):
    """Register ``fn`` in an ordered dict of hooks and return its removable handle."""
    h = RemovableHandle(container, extra_dict=list(extra or ()))
    container[h.id] = fn
    if prepend:
        container.move_to_end(h.id, last=False)
    return h


def _fwd_hook_flag_handle(handle):
    # the global hook count gates the fast path of ``__call__``
    _global_hook_count[0] += 1
    remove = handle.remove

    def counted_remove():
        hooks = handle.hooks_dict_ref()
        if hooks is not None and handle.id in hooks:
            _global_hook_count[0] -= 1
        remove()
    handle.remove = counted_remove  # instance attribute: shadows the class method
    return handle


def register_module_forward_pre_hook(hook):
    """A forward pre-hook run before every module's forward."""
    return _fwd_hook_flag_handle(_handle(_global_forward_pre_hooks, hook))


def register_module_forward_hook(hook, *, with_kwargs=False, always_call=False):
    """A forward hook run after every module's forward."""
    if with_kwargs:
        raise NotImplementedError("register_module_forward_hook(with_kwargs=True) is not "
                                  "supported by ember")
    h = _handle(_global_forward_hooks, hook, extra=(_global_forward_hooks_always_called,))
    if always_call:
        _global_forward_hooks_always_called[h.id] = True
    return _fwd_hook_flag_handle(h)


def register_module_full_backward_hook(hook):
    """A full backward hook run for every module."""
    return _fwd_hook_flag_handle(_handle(_global_backward_hooks, hook))


def register_module_backward_hook(hook):
    """Deprecated in PyTorch; as ``Module.register_backward_hook``, ember runs it with the
    semantics of ``register_module_full_backward_hook``."""
    warnings.warn("register_module_backward_hook is deprecated; ember runs it as a full "
                  "backward hook (register_module_full_backward_hook)", FutureWarning,
                  stacklevel=2)
    return register_module_full_backward_hook(hook)


def register_module_full_backward_pre_hook(hook):
    """A backward pre-hook run for every module."""
    return _fwd_hook_flag_handle(_handle(_global_backward_pre_hooks, hook))


def register_module_buffer_registration_hook(hook):
    """``hook(module, name, buffer)`` runs on every ``register_buffer``; may return a new one."""
    return _handle(_global_buffer_registration_hooks, hook)


def register_module_parameter_registration_hook(hook):
    """``hook(module, name, param)`` runs on every ``register_parameter``."""
    return _handle(_global_parameter_registration_hooks, hook)


def register_module_module_registration_hook(hook):
    """``hook(module, name, submodule)`` runs on every ``register_module``."""
    return _handle(_global_module_registration_hooks, hook)


# ---------------------------------------------------------------------- backward hooks
class _GradCapture(Function):
    """Identity on a tuple of tensors whose backward hands the incoming grads to ``cb``."""

    @staticmethod
    def forward(ctx, cb, *tensors):
        ctx.cb = cb
        ctx.set_materialize_grads(False)
        # copies, not aliases: in-place ops on a hooked module's outputs must stay allowed
        out = tuple(t.clone() for t in tensors)
        return out if len(out) > 1 else out[0]

    @staticmethod
    def backward(ctx, *grads):
        res = ctx.cb(grads)
        return (None,) + tuple(res if res is not None else grads)


class _BackwardHookState:
    """Runs a module's backward pre-hooks and full backward hooks for one forward call.

    The outputs pass through an identity node whose backward sees ``grad_output`` (pre-hooks
    run there); the inputs pass through another whose backward sees ``grad_input`` (the full
    hooks run there and may replace it). With no input requiring grad the full hooks run at
    the output node with ``grad_input`` all None, as in PyTorch.
    """

    def __init__(self, module, pre_hooks, hooks):
        self.module = module
        self.pre_hooks = pre_hooks
        self.hooks = hooks
        self.grad_outputs = None
        self.n_inputs = 0
        self.input_wrapped = False

    def wrap_inputs(self, args):
        idx = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_inputs = len(idx)
        if not self.hooks or not any(args[i]._rg for i in idx):
            return args
        self.input_wrapped = True
        out = _GradCapture.apply(self._on_inputs, *[args[i] for i in idx])
        out = out if isinstance(out, tuple) else (out,)
        args = list(args)
        for i, t in zip(idx, out):
            args[i] = t
        return tuple(args)

    def wrap_outputs(self, result):
        single = isinstance(result, Tensor)
        outs = (result,) if single else result
        if not isinstance(outs, tuple) or not any(isinstance(o, Tensor) and o._rg for o in outs):
            return result
        idx = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o._rg]
        wrapped = _GradCapture.apply(self._on_outputs, *[outs[i] for i in idx])
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        outs = list(outs)
        for i, t in zip(idx, wrapped):
            outs[i] = t
        return outs[0] if single else type(result)(outs)

    def _on_outputs(self, grads):
        for hook in self.pre_hooks:
            res = hook(self.module, grads)
            if res is not None:
                res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
                if len(res) != len(grads):
                    raise RuntimeError(f"Backward pre hook returned an invalid number of grad "
                                       f"outputs, got {len(res)}, but expected {len(grads)}")
                grads = res
        self.grad_outputs = grads
        if self.hooks and not self.input_wrapped:
            none = (None,) * max(self.n_inputs, 1)
            for hook in self.hooks:
                if hook(self.module, none, grads) is not None:
                    raise RuntimeError("Backward hook for Modules where no input requires "
                                       "gradient should always return None or None for all "
                                       "gradients.")
        return grads

    def _on_inputs(self, grads):
        for hook in self.hooks:
            res = hook(self.module, grads, self.grad_outputs)
            if res is not None:
                res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
                if len(res) != len(grads):
                    raise RuntimeError(f"Backward hook returned an invalid number of grad_input, "
                                       f"got {len(res)}, but expected {len(grads)}")
                grads = res
        return grads


# ---------------------------------------------------------------------- Module
class Module:
    """Base class for all neural network modules; subclasses define ``forward``."""

    dump_patches = False
    _version = 1
    training: bool
    call_super_init = False
    _compiled_call_impl = None

    def __init__(self, *args, **kwargs):
        if not self.call_super_init and (args or kwargs):
            if kwargs:
                raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword "
                                f"argument '{next(iter(kwargs))}'")
            raise TypeError(f"{type(self).__name__}.__init__() takes 1 positional argument but "
                            f"{len(args) + 1} were given")
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent_buffers_set"] = set()
        d["_backward_pre_hooks"] = OrderedDict()
        d["_backward_hooks"] = OrderedDict()
        d["_is_full_backward_hook"] = None
        d["_forward_hooks"] = OrderedDict()
        d["_forward_hooks_with_kwargs"] = OrderedDict()
        d["_forward_hooks_always_called"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()
        d["_forward_pre_hooks_with_kwargs"] = OrderedDict()
        d["_state_dict_hooks"] = OrderedDict()
        d["_state_dict_pre_hooks"] = OrderedDict()
        d["_public_state_dict_hooks"] = set()
        d["_load_state_dict_pre_hooks"] = OrderedDict()
        d["_load_state_dict_post_hooks"] = OrderedDict()
        d["_modules"] = {}
        if self.call_super_init:
            super().__init__(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    # ------------------------------------------------------------------ registration
    def register_buffer(self, name, tensor, persistent=True):
        """Add a buffer (state that is not a parameter); non-persistent ones skip state_dict."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"buffer name should be a string. Got {_typename(name)}")
        if "." in name:
            raise KeyError('buffer name can\'t contain "."')
        if name == "":
            raise KeyError('buffer name can\'t be empty string ""')
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_typename(tensor)}' object to buffer '{name}' "
                            "(torch Tensor or None required)")
        if isinstance(tensor, Buffer):
            persistent = tensor.persistent
        for hook in _global_buffer_registration_hooks.values():
            out = hook(self, name, tensor)
            if out is not None:
                tensor = out
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def register_parameter(self, name, param):
        """Add a parameter (a ``Parameter`` or None) under ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"parameter name should be a string. Got {_typename(name)}")
        if "." in name:
            raise KeyError('parameter name can\'t contain "."')
        if name == "":
            raise KeyError('parameter name can\'t be empty string ""')
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is None:
            self._parameters[name] = None
            return
        if not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_typename(param)}' object to parameter '{name}' "
                            "(torch.nn.Parameter or None required)")
        if param.grad_fn is not None:
            raise ValueError(
                f"Cannot assign non-leaf Tensor to parameter '{name}'. Model parameters must be "
                f"created explicitly. To express '{name}' as a function of another Tensor, "
                "compute the value in the forward() method.")
        for hook in _global_parameter_registration_hooks.values():
            out = hook(self, name, param)
            if out is not None:
                param = out
        self._parameters[name] = param

    def add_module(self, name, module):
        """Add a child module under ``name`` (``None`` keeps a placeholder)."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{_typename(module)} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {_typename(name)}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f'module name can\'t contain ".", got: {name}')
        if name == "":
            raise KeyError('module name can\'t be empty string ""')
        for hook in _global_module_registration_hooks.values():
            out = hook(self, name, module)
            if out is not None:
                module = out
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        """The submodule at dotted path ``target`` ("" is self)."""
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if not hasattr(mod, item):
                raise AttributeError(mod._get_name() + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    def set_submodule(self, target, module, strict=False):
        """Replace the submodule at dotted path ``target`` with ``module``."""
        if target == "":
            raise ValueError("Cannot set the submodule without a target name!")
        *path, last = target.split(".")
        parent = self.get_submodule(".".join(path))
        if strict and not hasattr(parent, last):
            raise AttributeError(parent._get_name() + " has no attribute `" + last + "`")
        if hasattr(parent, last) and not isinstance(getattr(parent, last), Module):
            raise AttributeError("`" + last + "` is not an nn.Module")
        setattr(parent, last, module)

    def _get_member(self, target):
        module_path, _, name = target.rpartition(".")
        mod = self.get_submodule(module_path)
        if not hasattr(mod, name):
            raise AttributeError(mod._get_name() + " has no attribute `" + name + "`")
        return mod, name, getattr(mod, name)

    def get_parameter(self, target):
        """The parameter at dotted path ``target``."""
        mod, name, param = self._get_member(target)
        if not isinstance(param, Parameter):
            raise AttributeError("`" + name + "` is not an nn.Parameter")
        return param

    def get_buffer(self, target):
        """The buffer at dotted path ``target``."""
        mod, name, buf = self._get_member(target)
        if name not in mod._buffers:
            raise AttributeError("`" + name + "` is not a buffer")
        return buf

    def get_extra_state(self):
        raise RuntimeError("Reached a code path in Module.get_extra_state() that should never be "
                           "called.")

    def set_extra_state(self, state):
        raise RuntimeError("Reached a code path in Module.set_extra_state() that should never be "
                           "called.")

    # ------------------------------------------------------------------ attributes
    def __getattr__(self, name):
        d = self.__dict__
        if "_parameters" in d:
            p = d["_parameters"]
            if name in p:
                return p[name]
        if "_buffers" in d:
            b = d["_buffers"]
            if name in b:
                return b[name]
        if "_modules" in d:
            m = d["_modules"]
            if name in m:
                return m[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name, value):
        d = self.__dict__

        def remove_from(*dicts_or_sets):
            for c in dicts_or_sets:
                if name in c:
                    if isinstance(c, dict):
                        del c[name]
                    else:
                        c.discard(name)

        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            remove_from(d, self._buffers, self._modules, self._non_persistent_buffers_set)
            self.register_parameter(name, value)
            return
        if params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as parameter '{name}' "
                                "(torch.nn.Parameter or None expected)")
            self.register_parameter(name, value)
            return
        modules = d.get("_modules")
        if isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            remove_from(d, self._parameters, self._buffers, self._non_persistent_buffers_set)
            for hook in _global_module_registration_hooks.values():
                out = hook(self, name, value)
                if out is not None:
                    value = out
            modules[name] = value
            return
        if modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as child module '{name}' "
                                "(torch.nn.Module or None expected)")
            modules[name] = value
            return
        buffers = d.get("_buffers")
        if isinstance(value, Buffer) or (buffers is not None and name in buffers):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_typename(value)}' as buffer '{name}' "
                                "(torch.nn.Buffer, torch.Tensor or None expected)")
            if isinstance(value, Buffer):
                persistent = value.persistent
            else:
                persistent = name not in self._non_persistent_buffers_set
            remove_from(d, self._parameters, self._modules)
            # an existing buffer is replaced in place (its key keeps its position), as in
            # PyTorch: code that reassigns buffers while iterating named_buffers() relies on it
            self.register_buffer(name, value, persistent)
            return
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers_set.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def __dir__(self):
        keys = (dir(self.__class__) + list(self.__dict__) + list(self._parameters)
                + list(self._modules) + list(self._buffers))
        return sorted(k for k in keys if not k[0].isdigit())

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
                     "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                     "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                     "_load_state_dict_post_hooks", "_backward_pre_hooks", "_backward_hooks"):
            if name not in self.__dict__:
                self.__dict__[name] = OrderedDict()
        self.__dict__.setdefault("_non_persistent_buffers_set", set())
        self.__dict__.setdefault("_public_state_dict_hooks", set())
        self.__dict__.setdefault("_is_full_backward_hook", None)

    # ------------------------------------------------------------------ iteration
    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        memo = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for module_prefix, module in modules:
            for k, v in get_members_fn(module):
                if v is None or (remove_duplicate and id(v) in memo):
                    continue
                if remove_duplicate:
                    memo.add(id(v))
                yield module_prefix + ("." if module_prefix else "") + k, v

    def parameters(self, recurse=True):
        """Iterate over the parameters (of submodules too when ``recurse``)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Iterate over ``(dotted name, parameter)`` pairs."""
        yield from self._named_members(lambda m: m._parameters.items(), prefix=prefix,
                                       recurse=recurse, remove_duplicate=remove_duplicate)

    def buffers(self, recurse=True):
        """Iterate over the buffers."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """Iterate over ``(dotted name, buffer)`` pairs."""
        yield from self._named_members(lambda m: m._buffers.items(), prefix=prefix,
                                       recurse=recurse, remove_duplicate=remove_duplicate)

    def children(self):
        """Iterate over the direct child modules."""
        for _, m in self.named_children():
            yield m

    def named_children(self):
        """Iterate over ``(name, child)`` pairs of the direct children (each once)."""
        memo = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in memo:
                memo.add(id(module))
                yield name, module

    def modules(self, remove_duplicate=True):
        """Iterate over every module of the tree, self first."""
        for _, m in self.named_modules(remove_duplicate=remove_duplicate):
            yield m

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """Iterate over ``(dotted name, module)`` for the whole tree, self first (as "")."""
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode=True):
        """Set training mode on this module and every descendant."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for m in self.children():
            m.train(mode)
        return self

    def eval(self):
        """Set evaluation mode (``train(False)``)."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of every parameter (to None by default)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    def share_memory(self):
        """Move parameters and buffers to shared memory (Hogwild: see ember.multiprocessing)."""
        return self._apply(lambda t: t.share_memory_())

    def apply(self, fn):
        """Call ``fn`` on every submodule (children first) and then on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _apply(self, fn, recurse=True):
        """Replace every parameter's and buffer's data by ``fn(tensor)``, keeping identities."""
        if recurse:
            for m in self.children():
                m._apply(fn)
        for key, param in self._parameters.items():
            if param is None:
                continue
            with no_grad():
                new = fn(param)
            param._data = new._data
            if param.grad is not None:
                with no_grad():
                    g = fn(param.grad)
                param.grad._data = g._data
        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = fn(buf)
        return self

    def to(self, *args, **kwargs):
        """Move/cast parameters and buffers: ``to(dtype)``, ``to(device)``, ``to(tensor)``."""
        from ..._device import to_device
        from ..._tensor_methods import _parse_to
        dtype, device, _ = _parse_to(args, dict(kwargs))
        device = None if device is None else to_device(device)
        fmt = kwargs.get("memory_format")
        rank = {"channels_last": 4, "channels_last_3d": 5}.get(getattr(fmt, "name", None))
        if dtype is not None:
            if not (dtype.is_floating_point or dtype.is_complex):
                raise TypeError("nn.Module.to only accepts floating point or complex dtypes, "
                                f"but got desired dtype={dtype}")

        def convert(t):
            if device is not None and t.device != device:
                t = t.to(device)  # cpu -> meta keeps shapes and drops data
            if rank is not None and t.dim() == rank:  # as PyTorch: only 4-d (5-d) tensors
                t = t.contiguous(memory_format=fmt)
            if dtype is None:
                return t
            if t.is_floating_point() or (dtype.is_complex and t.is_complex()):
                return t.to(dtype)
            return t
        return self._apply(convert)

    def _cast_floats(self, dt):
        return self._apply(lambda t: t.to(dt) if t.is_floating_point() else t)

    def float(self):
        return self._cast_floats(D.float32)

    def double(self):
        return self._cast_floats(D.float64)

    def half(self):
        return self._cast_floats(D.float16)

    def bfloat16(self):
        return self._cast_floats(D.bfloat16)

    def type(self, dst_type):
        """Cast every parameter and buffer to ``dst_type``."""
        dt = D.to_dtype(dst_type)
        return self._apply(lambda t: t.to(dt))

    def cpu(self):
        return self

    def cuda(self, device=None):
        from ..._device import to_device
        to_device("cuda" if device is None or isinstance(device, int) else device)
        return self

    def to_empty(self, *, device=None, recurse=True):
        """Give every parameter and buffer fresh uninitialised storage of the same shape and
        dtype on ``device`` (materialises a model built on ``meta``; then
        ``reset_parameters()`` or a state dict fills it)."""
        from ..._device import to_device
        from ...ops.creation import empty
        dev = to_device(device) if device is not None else None

        def fresh(t):
            return empty(t.shape, dtype=t.dtype, device=dev if dev is not None else t.device)
        return self._apply(fresh, recurse=recurse)

    # ------------------------------------------------------------------ hooks
    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """``hook(module, args)`` (or ``(module, args, kwargs)``) runs before forward."""
        h = _handle(self._forward_pre_hooks, hook, prepend,
                    extra=(self._forward_pre_hooks_with_kwargs,))
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs[h.id] = True
        return h

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False,
                              always_call=False):
        """``hook(module, args, output)`` runs after forward and may replace the output."""
        h = _handle(self._forward_hooks, hook, prepend,
                    extra=(self._forward_hooks_with_kwargs, self._forward_hooks_always_called))
        if with_kwargs:
            self._forward_hooks_with_kwargs[h.id] = True
        if always_call:
            self._forward_hooks_always_called[h.id] = True
        return h

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """``hook(module, grad_output)`` runs before the module's gradients are computed."""
        return _handle(self._backward_pre_hooks, hook, prepend)

    def register_full_backward_hook(self, hook, prepend=False):
        """``hook(module, grad_input, grad_output)`` runs once the inputs' grads are known."""
        if self._is_full_backward_hook is False:
            raise RuntimeError("Cannot use both regular backward hooks and full backward hooks "
                               "on a single Module. Please use only one of them.")
        self._is_full_backward_hook = True
        return _handle(self._backward_hooks, hook, prepend)

    def register_backward_hook(self, hook):
        """Deprecated; runs with the semantics of ``register_full_backward_hook``."""
        warnings.warn("register_backward_hook is deprecated; ember runs it as a full backward "
                      "hook (register_full_backward_hook)", FutureWarning, stacklevel=2)
        return self.register_full_backward_hook(hook)

    def register_state_dict_pre_hook(self, hook):
        """``hook(module, prefix, keep_vars)`` runs before ``state_dict`` walks this module."""
        return _handle(self._state_dict_pre_hooks, hook)

    def register_state_dict_post_hook(self, hook):
        """``hook(module, state_dict, prefix, local_metadata)`` runs after; may edit the dict
        in place and must return None."""
        h = _handle(self._state_dict_hooks, hook)
        self._public_state_dict_hooks.add(h.id)
        return h

    def _register_state_dict_hook(self, hook):
        """The older form: a hook that may return a replacement state dict."""
        return _handle(self._state_dict_hooks, hook)

    def register_load_state_dict_pre_hook(self, hook):
        """``hook(module, state_dict, prefix, local_metadata, strict, missing, unexpected,
        errors)`` runs before this module loads its entries."""
        return _handle(self._load_state_dict_pre_hooks,
                       functools.partial(_with_module_hook, hook, self))

    def _register_load_state_dict_pre_hook(self, hook, with_module=False):
        if with_module:
            return self.register_load_state_dict_pre_hook(hook)
        return _handle(self._load_state_dict_pre_hooks, hook)

    def register_load_state_dict_post_hook(self, hook):
        """``hook(module, incompatible_keys)`` runs after ``load_state_dict``; may edit keys."""
        return _handle(self._load_state_dict_post_hooks, hook)

    # ------------------------------------------------------------------ call
    def __call__(self, *args, **kwargs):
        d = self.__dict__
        if not (d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"]
                or d["_backward_pre_hooks"] or _global_hook_count[0]):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    _call_impl = __call__
    _wrapped_call_impl = __call__

    def _call_with_hooks(self, args, kwargs):
        d = self.__dict__
        called_fwd_hooks = set()
        result = None
        try:
            pre = itertools.chain(_global_forward_pre_hooks.items(),
                                  d["_forward_pre_hooks"].items())
            for hid, hook in pre:
                if hid in d["_forward_pre_hooks_with_kwargs"]:
                    res = hook(self, args, kwargs)
                    if res is not None:
                        if not (isinstance(res, tuple) and len(res) == 2):
                            raise RuntimeError("forward pre-hook must return None or a tuple of "
                                               f"(new_args, new_kwargs), but got {res}.")
                        args, kwargs = res
                else:
                    res = hook(self, args)
                    if res is not None:
                        args = res if isinstance(res, tuple) else (res,)
            bw_hooks = list(_global_backward_hooks.values()) + list(d["_backward_hooks"].values())
            bw_pre = (list(_global_backward_pre_hooks.values())
                      + list(d["_backward_pre_hooks"].values()))
            state = None
            if (bw_hooks or bw_pre) and GradMode.enabled:
                state = _BackwardHookState(self, bw_pre, bw_hooks)
                args = state.wrap_inputs(args)
            result = self.forward(*args, **kwargs)
            fwd = itertools.chain(_global_forward_hooks.items(), d["_forward_hooks"].items())
            for hid, hook in fwd:
                called_fwd_hooks.add(hid)
                if hid in d["_forward_hooks_with_kwargs"]:
                    res = hook(self, args, kwargs, result)
                else:
                    res = hook(self, args, result)
                if res is not None:
                    result = res
            if state is not None:
                result = state.wrap_outputs(result)
            return result
        except Exception:
            # forward hooks registered with always_call run even when forward raised
            for hid, hook in d["_forward_hooks"].items():
                if hid in d["_forward_hooks_always_called"] and hid not in called_fwd_hooks:
                    try:
                        if hid in d["_forward_hooks_with_kwargs"]:
                            hook(self, args, kwargs, result)
                        else:
                            hook(self, args, result)
                    except Exception as e:
                        warnings.warn("forward hook with ``always_call=True`` raised an "
                                      f"exception that was silenced as another error was "
                                      f"raised in forward: {e}", stacklevel=2)
            raise

    # ------------------------------------------------------------------ state dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Write this module's own parameters and persistent buffers into ``destination``."""
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()
        if type(self).get_extra_state is not Module.get_extra_state:
            destination[prefix + "_extra_state"] = self.get_extra_state()

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """An ordered dict of every parameter and persistent buffer, under dotted names."""
        if args:  # the deprecated positional form (destination, prefix, keep_vars)
            warnings.warn("Positional args are being deprecated, use kwargs instead.",
                          FutureWarning, stacklevel=2)
            destination = args[0]
            if len(args) > 1:
                prefix = args[1]
            if len(args) > 2:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()
        local_metadata = {"version": self._version}
        if hasattr(destination, "_metadata"):
            destination._metadata[prefix[:-1]] = local_metadata
        for hook in self._state_dict_pre_hooks.values():
            hook(self, prefix, keep_vars)
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        for hid, hook in self._state_dict_hooks.items():
            res = hook(self, destination, prefix, local_metadata)
            if res is not None:
                if hid in self._public_state_dict_hooks:
                    raise RuntimeError("state_dict post-hook must return None")
                destination = res
        return destination

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """Copy this module's own entries from ``state_dict``; collect problems in the lists."""
        for hook in self._load_state_dict_pre_hooks.values():
            hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                 error_msgs)
        persistent = {k: v for k, v in self._buffers.items()
                      if k not in self._non_persistent_buffers_set}
        local_state = {k: v for k, v in itertools.chain(self._parameters.items(),
                                                        persistent.items()) if v is not None}
        assign = local_metadata.get("assign_to_params_buffers", False)
        for name, param in local_state.items():
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            value = _as_tensor(state_dict[key])
            if value is None:
                error_msgs.append(f'While copying the parameter named "{key}", expected '
                                  f"torch.Tensor or Tensor-like object from checkpoint but "
                                  f"received {type(state_dict[key])}")
                continue
            if not is_lazy(param) and value.shape != param.shape:
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape {value.shape} from "
                    f"checkpoint, the shape in current model is {param.shape}.")
                continue
            try:
                if is_lazy(param):
                    param.materialize(value.shape, dtype=value.dtype)
                if assign:
                    if isinstance(param, Parameter):
                        new = value if isinstance(value, Parameter) else \
                            Parameter(value, requires_grad=param.requires_grad)
                        setattr(self, name, new)
                    else:
                        setattr(self, name, value)
                else:
                    with no_grad():
                        param.copy_(value)
            except Exception as ex:
                error_msgs.append(f'While copying the parameter named "{key}", whose dimensions '
                                  f"in the model are {param.shape} and whose dimensions in the "
                                  f"checkpoint are {value.shape}, an exception occurred : "
                                  f"{ex.args}.")
        extra_key = prefix + "_extra_state"
        if type(self).set_extra_state is not Module.set_extra_state:
            if extra_key in state_dict:
                self.set_extra_state(state_dict[extra_key])
            elif strict:
                missing_keys.append(extra_key)
        elif strict and extra_key in state_dict:
            unexpected_keys.append(extra_key)
        if strict:
            for key in state_dict:
                if key.startswith(prefix) and key != extra_key:
                    input_name = key[len(prefix):].split(".", 1)
                    if input_name[0] not in self._modules and input_name[0] not in local_state:
                        unexpected_keys.append(key)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy parameters and buffers from ``state_dict`` into this module and its children.

        Returns ``(missing_keys, unexpected_keys)``; with ``strict`` any of them, or a shape
        mismatch, raises RuntimeError listing every problem.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing_keys, unexpected_keys, error_msgs = [], [], []
        metadata = getattr(state_dict, "_metadata", None)
        state_dict = OrderedDict(state_dict)
        if metadata is not None:
            state_dict._metadata = metadata

        def load(module, local_state_dict, prefix=""):
            local_metadata = {} if metadata is None else dict(metadata.get(prefix[:-1], {}))
            if assign:
                local_metadata["assign_to_params_buffers"] = assign
            module._load_from_state_dict(local_state_dict, prefix, local_metadata, True,
                                         missing_keys, unexpected_keys, error_msgs)
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    child_state = {k: v for k, v in local_state_dict.items()
                                   if k.startswith(child_prefix)}
                    load(child, child_state, child_prefix)
            incompatible = _IncompatibleKeys(missing_keys, unexpected_keys)
            for hook in module._load_state_dict_post_hooks.values():
                if hook(module, incompatible) is not None:
                    raise RuntimeError("Hooks registered with "
                                       "``register_load_state_dict_post_hook`` are not expected "
                                       "to return new values, if incompatible_keys need to be "
                                       "modified, it should be done inplace.")

        load(self, state_dict)
        if strict:
            if unexpected_keys:
                error_msgs.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected_keys)))
            if missing_keys:
                error_msgs.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing_keys)))
        if error_msgs:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                self._get_name(), "\n\t".join(error_msgs)))
        return _IncompatibleKeys(missing_keys, unexpected_keys)

    # ------------------------------------------------------------------ repr
    def _get_name(self):
        return type(self).__name__

    def extra_repr(self):
        """The module-specific part of ``repr`` (one line per item); subclasses override."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = ["(" + key + "): " + _addindent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def compile(self, *args, **kwargs):
        """Compile this module's forward in place (``ember.compile``'s arguments)."""
        from ...compiler._api import compile_module_inplace
        compile_module_inplace(self, *args, **kwargs)


def _with_module_hook(hook, module, *args):
    return hook(module, *args)


def _as_tensor(value):
    """A checkpoint entry as an ember Tensor: Tensors as-is, array-likes (NumPy arrays,
    other frameworks' tensors through ``__array__``) converted; None when impossible."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        from ..._tensor import _make
        try:
            arr = np.asarray(value.detach() if hasattr(value, "detach") else value)
        except (TypeError, RuntimeError, ValueError):
            return None
        return _make(arr)
    return None
