"""``torch.nn.parallel.parallel_apply``: run modules on their inputs, one thread per GPU.
Without a GPU PyTorch refuses after checking the arguments; ember does the same."""

from __future__ import annotations

from ..._tensor import Tensor

__all__ = ["get_a_var", "parallel_apply"]


def get_a_var(obj):
    """The first tensor found in ``obj`` (nested lists, tuples and dict items), or None."""
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (list, tuple)):
        for result in map(get_a_var, obj):
            if isinstance(result, Tensor):
                return result
    if isinstance(obj, dict):
        for result in map(get_a_var, obj.items()):
            if isinstance(result, Tensor):
                return result
    return None


def parallel_apply(modules, inputs, kwargs_tup=None, devices=None):
    """``modules[i](*inputs[i], **kwargs_tup[i])`` on GPU ``devices[i]`` in parallel (needs
    an accelerator, as PyTorch's)."""
    if len(modules) != len(inputs):
        raise AssertionError(f"The number of modules {len(modules)} is not equal to the number "
                             f"of inputs {len(inputs)}")
    if kwargs_tup is not None and len(modules) != len(kwargs_tup):
        raise AssertionError(f"The number of modules {len(modules)} is not equal to the number "
                             f"of kwargs_tup {len(kwargs_tup)}")
    for d in devices or ():
        if str(getattr(d, "type", d)) == "cpu":
            raise ValueError(f"Expected a cuda device, but got: {d}")
    raise RuntimeError("Cannot access accelerator device when none is available.")
