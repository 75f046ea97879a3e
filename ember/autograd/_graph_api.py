"""The rest of ``torch.autograd.graph``'s public names (``ember.autograd.graph`` reaches
them through its module ``__getattr__``, so the dispatch file stays as it is)."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

from .._tensor import Tensor, _bump_version

__all__ = ["register_multi_grad_hook", "GradientEdge", "get_gradient_edge", "increment_version",
           "allow_mutation_on_saved_tensors", "region_activation_memory_budget",
           "set_warn_on_accumulate_grad_stream_mismatch", "set_override_stale_capture_stream"]


class GradientEdge(NamedTuple):
    """Where the gradient of a tensor is computed: a graph node and which of its outputs."""

    node: object
    output_nr: int
    ownership_token: object = None


def get_gradient_edge(tensor):
    """The gradient edge of ``tensor``: its ``grad_fn`` and output index, or, for a leaf,
    the node that accumulates its ``.grad``."""
    from .graph import _accumulator
    if not tensor.requires_grad:
        raise RuntimeError("It is not possible to get the gradient edge for a Tensor that does "
                           "not require gradients")
    if tensor.grad_fn is not None:
        return GradientEdge(tensor.grad_fn, tensor._output_nr)
    return GradientEdge(_accumulator(tensor), 0)


def increment_version(tensor):
    """Mark ``tensor`` (or each of a list) as modified in place, for code that writes into its
    memory behind autograd's back (through ``numpy()``, say): a backward that saved it then
    raises, as it would after an in-place op."""
    for t in (tensor,) if isinstance(tensor, Tensor) else tensor:
        _bump_version(t)


@contextlib.contextmanager
def allow_mutation_on_saved_tensors():
    """Inside, tensors saved for backward may be modified in place afterwards: backward uses
    the values they had when saved. (PyTorch clones a saved tensor when it is first
    mutated; ember clones each at save time, the same results for more memory.)"""
    from .graph import saved_tensors_hooks

    def pack(t):
        return t.detach().clone()

    with saved_tensors_hooks(pack, lambda t: t):
        yield


def region_activation_memory_budget(budget):
    """The activation-memory budget (a ratio in [0, 1]) of a region of a compiled forward,
    which steers PyTorch's min-cut partitioner. Only meaningful while compiling (eager use
    raises, as in PyTorch); ember's compiler accepts the annotation and keeps its own
    choice of what to save."""
    from .. import compiler
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise TypeError(f"torch.autograd.graph.region_activation_memory_budget: expects a "
                        f"float, got {type(budget).__name__}")
    if not 0.0 <= budget <= 1.0:
        raise ValueError(f"torch.autograd.graph.region_activation_memory_budget: must be in "
                         f"[0, 1], got {budget}")
    if not compiler.is_compiling():
        raise RuntimeError("torch.autograd.graph.region_activation_memory_budget can only be "
                           "used inside a torch.compile region; it has no effect in eager "
                           "mode.")
    return contextlib.nullcontext()


_FLAGS = {"warn_on_accumulate_grad_stream_mismatch": True, "override_stale_capture_stream": False}


def set_warn_on_accumulate_grad_stream_mismatch(enabled):
    """Whether to warn when a gradient arrives on another CUDA stream than its
    accumulator's. ember has no streams, so the warning never applies."""
    _FLAGS["warn_on_accumulate_grad_stream_mismatch"] = bool(enabled)


def set_override_stale_capture_stream(enabled):
    """What to do with a stale stream during CUDA graph capture. ember captures no CUDA
    graphs, so the setting is kept and has nothing to act on."""
    _FLAGS["override_stale_capture_stream"] = bool(enabled)


class _MultiHandle:
    """Removes the hooks ``register_multi_grad_hook`` placed on each tensor."""

    def __init__(self, handles):
        self.handles = handles

    def remove(self):
        for h in self.handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def register_multi_grad_hook(tensors, fn, *, mode="all"):
    """One hook over several tensors. ``mode="all"``: once per backward pass in which any of
    them gets a gradient, ``fn(grads)`` with one entry per tensor (None for those that got
    none), run when the pass ends. ``mode="any"``: ``fn(grad)`` with the first gradient
    computed among them, once per pass. Returns a handle whose ``remove()`` undoes it."""
    from . import engine
    if mode not in ("all", "any"):
        raise ValueError(f"Expects mode to be one of ('all', 'any') but got {mode}")
    tensors = tuple(tensors)
    state = {"task": None, "grads": None}

    def current_task():  # the running backward's callback list identifies the pass
        return engine._FINAL_CALLBACKS[-1] if engine._FINAL_CALLBACKS else None

    def make_hook(i):
        def hook(grad):
            task = current_task()
            if mode == "any":
                if state["task"] is not task:
                    state["task"] = task
                    fn(grad)
                return None
            if state["task"] is not task:
                state["task"], state["grads"] = task, [None] * len(tensors)

                def finish(grads=state["grads"]):
                    state["task"] = state["grads"] = None
                    fn(grads)
                engine.queue_callback(finish)
            state["grads"][i] = grad
            return None
        return hook

    if not all(t.requires_grad for t in tensors):  # PyTorch's check: every one needs a node
        raise AssertionError("Expected gradient function to be set")
    return _MultiHandle([t.register_hook(make_hook(i)) for i, t in enumerate(tensors)])
