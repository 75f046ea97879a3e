"""``ember.distributed.checkpoint.state_dict``: model and optimizer state dicts keyed by
parameter names (FQNs), for DDP, FSDP2 and plain models alike (PyTorch's helpers).

By default tensors stay as the model holds them (FSDP2 parameters and their optimizer state
are ``Shard(0)`` DTensors), which is what ``checkpoint.save`` wants. With
``StateDictOptions(full_state_dict=True)`` every DTensor becomes its whole tensor (a
collective), so the result loads into a plain model; with ``cpu_offload=True`` as well, only
rank 0 keeps the values (the other ranks get an empty dict), as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from ..._tensor import Tensor, _bump_version, _make

__all__ = ["StateDictOptions", "get_model_state_dict", "get_optimizer_state_dict",
           "get_state_dict", "set_model_state_dict", "set_optimizer_state_dict",
           "set_state_dict"]


class StateDictOptions:
    """Options of the state-dict helpers (PyTorch's names and defaults)."""

    def __init__(self, full_state_dict=False, cpu_offload=False, ignore_frozen_params=False,
                 keep_submodule_prefixes=True, strict=True, broadcast_from_rank0=False,
                 flatten_optimizer_state_dict=False, dsd_fqn_modifiers="_fqn_modifiers"):
        self.full_state_dict, self.cpu_offload = full_state_dict, cpu_offload
        self.ignore_frozen_params, self.strict = ignore_frozen_params, strict
        self.keep_submodule_prefixes = keep_submodule_prefixes
        self.broadcast_from_rank0 = broadcast_from_rank0
        self.flatten_optimizer_state_dict = flatten_optimizer_state_dict
        if broadcast_from_rank0 or flatten_optimizer_state_dict:
            raise NotImplementedError("StateDictOptions: broadcast_from_rank0 and "
                                      "flatten_optimizer_state_dict are not supported")


def _is_dtensor(t):
    return hasattr(t, "_spec") and hasattr(t, "_local")


def _unwrap(model):
    from ...nn.parallel import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else model


def _rank0():
    from .. import distributed_c10d as c10d
    return not c10d.is_initialized() or c10d.get_rank() == 0


def _finish(sd, options):
    """Apply full_state_dict / cpu_offload to a (nested) state dict."""
    if not options.full_state_dict:
        return sd

    def full(v):
        if isinstance(v, dict):
            return {k: full(x) for k, x in v.items()}
        if isinstance(v, list):
            return [full(x) for x in v]
        if _is_dtensor(v):
            return v.full_tensor().detach()
        return v
    out = full(sd)
    if options.cpu_offload and not _rank0():
        return {}
    return out


def get_model_state_dict(model, *, submodules=None, options=None):
    """``model``'s state dict by FQN (without DDP's ``module.`` prefix)."""
    options = options or StateDictOptions()
    if submodules is not None:
        raise NotImplementedError("get_model_state_dict(submodules=...) is not supported")
    m = _unwrap(model)
    sd = m.state_dict()
    if options.ignore_frozen_params:
        frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
        sd = {k: v for k, v in sd.items() if k not in frozen}
    return _finish(dict(sd), options)


def _optimizers(optimizers):
    if isinstance(optimizers, (list, tuple)):
        return list(optimizers)
    return [optimizers]


def _init_optim_state(opt):
    """Create the optimizer's lazily made state (a step with zero gradients and lr 0, as
    PyTorch does), so that a freshly built optimizer has every key a checkpoint fills."""
    if opt.state:
        return
    saved_lr, set_grads = [], []
    for g in opt.param_groups:
        saved_lr.append(g.get("lr"))
        if "lr" in g:
            g["lr"] = 0.0 if not isinstance(g["lr"], Tensor) else g["lr"] * 0
        for p in g["params"]:
            if p.requires_grad and p.grad is None:
                holder = p._local if _is_dtensor(p) else p
                holder.grad = _make(np.zeros_like(holder._data))
                set_grads.append(holder)
    try:
        opt.step()
    finally:
        for g, lr in zip(opt.param_groups, saved_lr):
            if lr is not None:
                g["lr"] = lr
        for h in set_grads:
            h.grad = None


def _param_names(model):
    m = _unwrap(model)
    names = {}
    for n, p in m.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), n)
    return names


def get_optimizer_state_dict(model, optimizers, *, submodules=None, options=None):
    """The optimizers' state keyed by parameter FQN; the state of a DTensor parameter is a
    DTensor laid out like it."""
    from ..tensor import DTensor
    options = options or StateDictOptions()
    names = _param_names(model)
    state, groups = {}, []
    for opt in _optimizers(optimizers):
        _init_optim_state(opt)
        for g in opt.param_groups:
            fqns = []
            for p in g["params"]:
                fqn = names.get(id(p))
                if fqn is None:
                    raise RuntimeError("get_optimizer_state_dict: an optimizer parameter is "
                                       "not a parameter of the model")
                fqns.append(fqn)
                st = opt.state.get(p)
                if not st:
                    continue
                out = {}
                for k, v in st.items():
                    if _is_dtensor(p) and isinstance(v, Tensor) and not _is_dtensor(v) and \
                            v.ndim > 0 and tuple(v.shape) == tuple(p._local.shape):
                        v = DTensor.from_local(v.detach(), p.device_mesh, p.placements,
                                               shape=tuple(p.shape))
                    out[k] = v
                state[fqn] = out
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": fqns})
    return _finish({"state": state, "param_groups": groups}, options)


def get_state_dict(model, optimizers, *, submodules=None, options=None):
    """``(get_model_state_dict(model), get_optimizer_state_dict(model, optimizers))``."""
    return (get_model_state_dict(model, submodules=submodules, options=options),
            get_optimizer_state_dict(model, optimizers, submodules=submodules,
                                     options=options))


def _local_of(value, target, key):
    """The array ``target`` (a tensor or DTensor of the model) should hold from ``value`` (a
    whole tensor, or a DTensor laid out like the target)."""
    if _is_dtensor(value):
        if _is_dtensor(target) and tuple(value.placements) == tuple(target.placements):
            return value._local._data
        value = value.full_tensor()
    arr = value._data if isinstance(value, Tensor) else np.asarray(value)
    if _is_dtensor(target):
        if tuple(arr.shape) != tuple(target.shape):
            raise RuntimeError(f"set_state_dict: {key!r} has shape {tuple(arr.shape)}, the "
                               f"model's is {tuple(target.shape)}")
        shape, offs = target._spec.local_shape_and_offset()
        return arr[tuple(slice(o, o + n) for o, n in zip(offs, shape))]
    return arr


def _copy_into(target, arr, key):
    holder = target._local if _is_dtensor(target) else target
    if tuple(holder._data.shape) != tuple(arr.shape):
        raise RuntimeError(f"set_state_dict: {key!r} has shape {tuple(arr.shape)} for this rank, "
                           f"the model's is {tuple(holder._data.shape)}")
    holder._data[...] = arr
    _bump_version(holder)


class _IncompatibleKeys:
    def __init__(self, missing_keys, unexpected_keys):
        self.missing_keys, self.unexpected_keys = missing_keys, unexpected_keys

    def __iter__(self):
        return iter((self.missing_keys, self.unexpected_keys))

    def __repr__(self):
        return (f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")


def set_model_state_dict(model, model_state_dict, *, options=None):
    """Load a state dict (sharded, or whole with ``full_state_dict``) into ``model``: each
    rank keeps its shard of DTensor parameters. Returns (missing_keys, unexpected_keys)."""
    options = options or StateDictOptions()
    m = _unwrap(model)
    targets = dict(m.state_dict(keep_vars=True))
    missing = [k for k in targets if k not in model_state_dict]
    unexpected = [k for k in model_state_dict if k not in targets]
    if options.strict and (missing or unexpected):
        raise RuntimeError(f"Error(s) in loading state_dict for {type(m).__name__}: missing "
                           f"keys {missing}, unexpected keys {unexpected}")
    for k, t in targets.items():
        if k in model_state_dict and t is not None:
            _copy_into(t, _local_of(model_state_dict[k], t, k), k)
    return _IncompatibleKeys(missing, unexpected)


def set_optimizer_state_dict(model, optimizers, optim_state_dict, *, options=None):
    """Load an FQN-keyed optimizer state dict into ``optimizers``."""
    from ..tensor import DTensor
    names = _param_names(model)
    for opt in _optimizers(optimizers):
        index, groups, state = 0, [], {}
        saved_groups = {tuple(g["params"]): g for g in optim_state_dict["param_groups"]}
        for g in opt.param_groups:
            fqns = [names[id(p)] for p in g["params"]]
            sg = saved_groups.get(tuple(fqns))
            if sg is None:
                raise RuntimeError(f"set_optimizer_state_dict: no saved parameter group holds "
                                   f"exactly the parameters {fqns}")
            ids = list(range(index, index + len(fqns)))
            index += len(fqns)
            groups.append({**{k: v for k, v in sg.items() if k != "params"}, "params": ids})
            for i, p, fqn in zip(ids, g["params"], fqns):
                st = optim_state_dict["state"].get(fqn)
                if st is None:
                    continue
                out = {}
                for k, v in st.items():
                    if isinstance(v, Tensor) and _is_dtensor(p) and v.ndim > 0 and \
                            tuple(v.shape) == tuple(p.shape):
                        # the state of a sharded parameter stays a DTensor laid out like it
                        # (the optimizer steps on its local array)
                        local = _make(np.array(_local_of(v, p, f"{fqn}.{k}")))
                        v = DTensor.from_local(local, p.device_mesh, p.placements,
                                               shape=tuple(p.shape))
                    elif _is_dtensor(v):
                        v = v.full_tensor().detach()
                    out[k] = v
                state[i] = out
        opt.load_state_dict({"state": state, "param_groups": groups})


def set_state_dict(model, optimizers, *, model_state_dict, optim_state_dict, options=None):
    """``set_model_state_dict`` and ``set_optimizer_state_dict`` together."""
    keys = set_model_state_dict(model, model_state_dict, options=options)
    set_optimizer_state_dict(model, optimizers, optim_state_dict, options=options)
    return keys
