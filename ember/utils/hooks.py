"""``ember.utils.hooks``: PyTorch's ``torch.utils.hooks`` names (the handle lives in layer 1,
``ember/_hooks.py``, so that autograd and nn share one class)."""

from .._hooks import RemovableHandle

__all__ = ["RemovableHandle"]


def unserializable_hook(f):
    """Mark ``f`` as a hook that is not meant to be saved with its tensor (silences
    ``warn_if_has_hooks``)."""
    f.__torch_unserializable__ = True
    return f


def _tensor_hooks(tensor):
    # leaves keep their hooks on the tensor, others on their grad_fn by output index
    if tensor.grad_fn is None:
        return tensor._hooks or {}
    return (tensor.grad_fn._tensor_hooks or {}).get(tensor._output_nr, {})


def warn_if_has_hooks(tensor):
    """Warn, for each backward hook of ``tensor`` not marked ``unserializable_hook``, that
    saving the tensor will not save the hook."""
    import warnings
    for hook in list(_tensor_hooks(tensor).values()):
        if not hasattr(hook, "__torch_unserializable__"):
            warnings.warn(f"backward hook {hook!r} on tensor will not be serialized.  If this "
                          f"is expected, you can decorate the function with "
                          f"@torch.utils.hooks.unserializable_hook to suppress this warning",
                          stacklevel=2)


__all__ += ["unserializable_hook", "warn_if_has_hooks"]
