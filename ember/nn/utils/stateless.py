"""``functional_call``: run a module with some parameters and buffers swapped out."""

from __future__ import annotations

import contextlib

from ..._tensor import Tensor

__all__ = ["functional_call"]


def _resolve(module, name):
    *path, attr = name.split(".")
    mod = module
    for p in path:
        mod = getattr(mod, p)
    return mod, attr


def _swap(mod, attr, value):
    """Put ``value`` at ``mod.<attr>`` (parameter slot, buffer slot or attribute); return an
    undo function."""
    for slot in ("_parameters", "_buffers"):
        d = mod.__dict__[slot]
        if attr in d:
            old = d[attr]
            d[attr] = value

            def undo(d=d, old=old):
                d[attr] = old
            return undo
    had = attr in mod.__dict__
    old = mod.__dict__.get(attr)
    object.__setattr__(mod, attr, value)

    def undo_attr():
        if had:
            object.__setattr__(mod, attr, old)
        else:
            object.__delattr__(mod, attr)
    return undo_attr


@contextlib.contextmanager
def _reparametrize(module, values, tie_weights, strict):
    names = {n: t for n, t in module.named_parameters(remove_duplicate=False)}
    names.update(dict(module.named_buffers(remove_duplicate=False)))
    values = dict(values)
    if tie_weights:
        # a tensor shared under several names takes the new value under all of them
        by_id = {}
        for n, t in names.items():
            by_id.setdefault(id(t), []).append(n)
        for n in list(values):
            if n in names:
                for other in by_id[id(names[n])]:
                    if other not in values:
                        values[other] = values[n]
                    elif values[other] is not values[n]:
                        raise ValueError(f"functional_call got multiple values for keys "
                                         f"['{n}', '{other}'], which are tied. Consider using "
                                         "tie_weights=False")
    if strict:
        missing = [n for n in names if n not in values]
        unexpected = [n for n in values if n not in names]
        if missing or unexpected:
            msgs = []
            if unexpected:
                msgs.append("Unexpected key(s): {}.".format(
                    ", ".join(map(repr, unexpected))))
            if missing:
                msgs.append("Missing key(s): {}.".format(", ".join(map(repr, missing))))
            raise RuntimeError("Error(s) in reparametrizing for {}:\n\t{}".format(
                module._get_name(), "\n\t".join(msgs)))
    undo = []
    try:
        for n, v in values.items():
            mod, attr = _resolve(module, n)
            undo.append(_swap(mod, attr, v))
        yield
    finally:
        for u in reversed(undo):
            u()


def functional_call(module, parameter_and_buffer_dicts, args=None, kwargs=None, *,
                    tie_weights=True, strict=False):
    """Call ``module(*args, **kwargs)`` with the given tensors in place of its parameters and
    buffers (by dotted name); the module is unchanged afterwards."""
    if isinstance(parameter_and_buffer_dicts, dict):
        values = parameter_and_buffer_dicts
    elif isinstance(parameter_and_buffer_dicts, (list, tuple)):
        values = {}
        for d in parameter_and_buffer_dicts:
            for k, v in d.items():
                if k in values:
                    raise ValueError(f"{k} appeared in multiple dictionaries; behavior of "
                                     "functional call is ambiguous")
                values[k] = v
    else:
        raise ValueError(f"Expected parameter_and_buffer_dicts to be a dict, or a list/tuple "
                         f"of dicts, but got {type(parameter_and_buffer_dicts)}")
    for k, v in values.items():
        if v is not None and not isinstance(v, Tensor):
            raise TypeError(f"functional_call expects tensors as values, got "
                            f"{type(v).__name__} for '{k}'")
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    with _reparametrize(module, values, tie_weights, strict):
        return module(*args, **(kwargs or {}))
