"""``torch.utils.checkpoint``: activation checkpointing's API.

ember runs the checkpointed function once, normally, keeping its activations: values and
gradients are exactly those of PyTorch's checkpointing (which recomputes the forward during
backward), but the memory saving is not implemented. Programs that turn on gradient
checkpointing (``model.gradient_checkpointing_enable()`` in transformers) run unchanged.
"""

from __future__ import annotations

import contextlib
import enum
import warnings

__all__ = ["checkpoint", "checkpoint_sequential", "CheckpointError", "CheckpointFunction",
           "check_backward_validity", "detach_variable", "get_device_states",
           "set_device_states", "noop_context_fn", "set_checkpoint_early_stop",
           "DefaultDeviceType", "set_checkpoint_debug_enabled", "CheckpointPolicy",
           "SelectiveCheckpointContext", "create_selective_checkpoint_contexts",
           "SAC_IGNORED_OPS", "GraphExecGroup"]

SAC_IGNORED_OPS = set()


class CheckpointError(RuntimeError):
    pass


class CheckpointPolicy(enum.Enum):
    MUST_SAVE = 0
    PREFER_SAVE = 1
    MUST_RECOMPUTE = 2
    PREFER_RECOMPUTE = 3


class DefaultDeviceType:
    _default_device_type = "cuda"

    @staticmethod
    def set_device_type(device="cuda"):
        DefaultDeviceType._default_device_type = device

    @staticmethod
    def get_device_type():
        return DefaultDeviceType._default_device_type


def noop_context_fn():
    return contextlib.nullcontext(), contextlib.nullcontext()


def _run(function, args, kwargs, use_reentrant, context_fn):
    if use_reentrant is None:
        warnings.warn("ember.utils.checkpoint: the use_reentrant parameter should be passed "
                      "explicitly (as PyTorch asks); ember keeps activations either way",
                      stacklevel=3)
    forward_ctx, _ = context_fn()
    with forward_ctx:
        return function(*args, **kwargs)


def checkpoint(function, *args, use_reentrant=None, context_fn=noop_context_fn,
               determinism_check="default", debug=False, preserve_rng_state=True, **kwargs):
    """``function(*args, **kwargs)``, with the values and gradients PyTorch's checkpointing
    gives (ember keeps the activations instead of recomputing them)."""
    return _run(function, args, kwargs, use_reentrant, context_fn)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Run a Sequential (or a list of modules) on ``input``, as checkpointed segments."""
    if use_reentrant is None:
        warnings.warn("ember.utils.checkpoint: the use_reentrant parameter should be passed "
                      "explicitly", stacklevel=2)
    if hasattr(functions, "children") and not isinstance(functions, (list, tuple)):
        functions = list(functions.children())
    for fn in functions:
        input = fn(input)
    return input


class CheckpointFunction:
    """The reentrant checkpoint's Function; ``apply`` runs the function directly in ember."""

    @staticmethod
    def apply(run_function, preserve_rng_state, *args):
        return run_function(*args)


def check_backward_validity(inputs):
    from .._tensor import Tensor
    if not any(isinstance(i, Tensor) and i.requires_grad for i in inputs):
        warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                      stacklevel=2)


def detach_variable(inputs):
    from .._tensor import Tensor
    if not isinstance(inputs, tuple):
        raise RuntimeError(f"Only tuple of tensors is supported. Got Unsupported input type: "
                           f"{type(inputs).__name__}")
    out = []
    for inp in inputs:
        if not isinstance(inp, Tensor):
            out.append(inp)
            continue
        x = inp.detach()
        x.requires_grad = inp.requires_grad
        out.append(x)
    return tuple(out)


def get_device_states(*args):
    return [], []


def set_device_states(devices, states, *, device_type=None):
    pass


@contextlib.contextmanager
def set_checkpoint_early_stop(enable):
    yield


@contextlib.contextmanager
def set_checkpoint_debug_enabled(enabled):
    yield


class SelectiveCheckpointContext:
    def __init__(self, *, is_recompute):
        self.is_recompute = is_recompute


def create_selective_checkpoint_contexts(policy_fn_or_list, allow_cache_entry_mutation=False):
    return contextlib.nullcontext(), contextlib.nullcontext()


class GraphExecGroup:
    """Groups graph executions for checkpointing; a no-op context in ember."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
