"""``RemovableHandle`` (PyTorch's ``torch.utils.hooks.RemovableHandle``): the handle every
``register_*_hook`` call returns (tensors, graph nodes, modules, optimizers); ``remove()``
takes the hook out of its dict."""

from __future__ import annotations

import weakref
from collections import OrderedDict

__all__ = ["RemovableHandle"]


def _ref(d):
    """A weak reference to ``d``; plain dicts cannot be weakly referenced, so those (small,
    owned by a tensor or graph node) are held directly."""
    try:
        return weakref.ref(d)
    except TypeError:
        return lambda: d


class RemovableHandle:
    """Removes the entry ``id`` from ``hooks_dict`` (and from each dict in ``extra_dict``).

    The caller stores its hook under ``handle.id``. Dicts are held weakly, so a handle never
    keeps a module alive; ids increase over the process, so insertion order is call order.
    """

    next_id = 0

    def __init__(self, hooks_dict, *, extra_dict=None):
        self.hooks_dict_ref = _ref(hooks_dict)
        self.id = RemovableHandle.next_id
        RemovableHandle.next_id += 1
        if isinstance(extra_dict, dict):
            extra_dict = [extra_dict]
        self.extra_dict_ref = tuple(_ref(d) for d in (extra_dict or ()))

    def remove(self):
        """Remove the hook; removing twice, or after its owner is gone, does nothing."""
        for ref in (self.hooks_dict_ref, *self.extra_dict_ref):
            d = ref()
            if d is not None:
                d.pop(self.id, None)

    def __getstate__(self):
        return (self.hooks_dict_ref(), self.id, tuple(ref() for ref in self.extra_dict_ref))

    def __setstate__(self, state):
        # a dict that did not survive pickling leaves a dead reference behind
        self.hooks_dict_ref = weakref.ref(state[0] if state[0] is not None else OrderedDict())
        self.id = state[1]
        RemovableHandle.next_id = max(RemovableHandle.next_id, self.id + 1)
        extra = state[2] if len(state) > 2 and state[2] is not None else ()
        self.extra_dict_ref = tuple(weakref.ref(d) for d in extra)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def add_hook(hooks_dict, fn):
    """Store ``fn`` in ``hooks_dict`` under a new handle's id; return the handle."""
    handle = RemovableHandle(hooks_dict)
    hooks_dict[handle.id] = fn
    return handle
