"""Activation checkpointing: trade compute for memory (PyTorch's ``torch.utils.checkpoint``).

``checkpoint(fn, *args)`` runs ``fn`` without keeping the tensors its backward needs; when
backward first needs one of them, ``fn`` runs again on the same inputs (with the same random
state and autocast state) to rebuild them.

* ``use_reentrant=False`` (PyTorch's recommendation; pass it explicitly: left out, it warns
  and takes ``True``, as PyTorch 2.13 does): the forward runs
  under ``saved_tensors_hooks`` whose pack hook keeps a placeholder instead of the tensor;
  the first unpack recomputes ``fn`` with a pack hook that collects the tensors, in the same
  order, and each placeholder then resolves to its recomputed tensor. The recomputed tensors
  live until the nodes of the segment have run their backward.
* ``use_reentrant=True``: an ``autograd.Function`` runs ``fn`` under no_grad; its backward
  runs ``fn`` again with grad and calls backward through that graph (PyTorch's older scheme).
"""

from __future__ import annotations

import contextlib
import warnings

from .. import _random
from .._tensor import Tensor
from ..autograd import graph as _graph
from ..autograd.grad_mode import enable_grad, is_grad_enabled

__all__ = ["checkpoint", "checkpoint_sequential", "CheckpointError", "noop_context_fn",
           "detach_variable", "set_checkpoint_debug_enabled"]


class CheckpointError(RuntimeError):
    """The recomputation did not reproduce the forward (different saved tensors)."""


def noop_context_fn():
    return contextlib.nullcontext(), contextlib.nullcontext()


def detach_variable(inputs):
    """Detached copies of ``inputs`` keeping each one's ``requires_grad``."""
    if not isinstance(inputs, tuple):
        raise RuntimeError(f"Only tuple of tensors is supported. Got Unsupported input type: "
                           f"{type(inputs).__name__}")
    out = []
    for t in inputs:
        if not isinstance(t, Tensor):
            out.append(t)
            continue
        d = t.detach()
        d.requires_grad = t.requires_grad
        out.append(d)
    return tuple(out)


@contextlib.contextmanager
def set_checkpoint_debug_enabled(enabled):
    yield


def _autocast_state():
    from ..amp import autocast_mode as A
    return A.is_autocast_enabled("cpu"), A.get_autocast_dtype("cpu"), \
        A.is_autocast_cache_enabled()


def _replay_autocast(state):
    if state is None:
        return contextlib.nullcontext()
    from ..amp import autocast
    enabled, dtype, cache = state
    return autocast("cpu", dtype=dtype, enabled=enabled, cache_enabled=cache)


class _RNG:
    """The global generator's state at forward time, restored around the recomputation."""

    def __init__(self, preserve):
        self.state = _random.get_rng_state() if preserve else None

    @contextlib.contextmanager
    def replay(self):
        if self.state is None:
            yield
            return
        now = _random.get_rng_state()
        _random.set_rng_state(self.state)
        try:
            yield
        finally:
            _random.set_rng_state(now)


_REENTRANT_WARNING = (
    "ember.utils.checkpoint: pass use_reentrant explicitly. Left out, it means "
    "use_reentrant=True (PyTorch's current default, which PyTorch plans to turn into an "
    "error); use_reentrant=False is the recommended variant.")


def _default_reentrant(use_reentrant):
    if use_reentrant is None:
        warnings.warn(_REENTRANT_WARNING, stacklevel=3)
        return True
    return use_reentrant


def checkpoint(function, *args, use_reentrant=None, context_fn=noop_context_fn,
               determinism_check="default", debug=False, preserve_rng_state=True,
               early_stop=True, **kwargs):
    """Run ``function(*args, **kwargs)`` keeping none of its intermediate activations;
    backward recomputes them. Gradients equal those without checkpointing (dropout too,
    with ``preserve_rng_state``)."""
    use_reentrant = _default_reentrant(use_reentrant)
    if determinism_check not in ("default", "none"):
        raise ValueError(f"determinism_check should be one of ['default', 'none'], but got "
                         f"{determinism_check}")
    if use_reentrant:
        if context_fn is not noop_context_fn or debug:
            raise ValueError("Passing `context_fn` or `debug` is only supported when "
                             "use_reentrant=False.")
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
        return _CheckpointFunction.apply(function, preserve_rng_state, *args)
    return _checkpoint_hooks(function, args, kwargs, context_fn, determinism_check,
                             preserve_rng_state)


# ---------------------------------------------------------------------- non-reentrant
class _Frame:
    """One checkpointed call: how to recompute it and what the recomputation saved."""

    def __init__(self, recompute, check):
        self.recompute = recompute
        self.check = check
        self.meta = []        # (shape, dtype) of each tensor the forward saved, in order
        self.recomputed = None

    def unpack(self, index):
        if self.recomputed is None:
            got = []

            def pack(t):
                got.append(t.detach() if t.requires_grad else t)
                return None
            with _graph.saved_tensors_hooks(pack, lambda _: None):
                self.recompute()
            if self.check:
                meta = [(tuple(t.shape), t.dtype) for t in got]
                if meta[:len(self.meta)] != self.meta:
                    raise CheckpointError(
                        "torch.utils.checkpoint: Recomputed values for the following tensors "
                        "have different metadata than during the forward pass.\n"
                        f"forward saved {len(self.meta)} tensors {self.meta}; the "
                        f"recomputation saved {len(got)} tensors {meta}")
            if len(got) < len(self.meta):
                raise CheckpointError(
                    f"torch.utils.checkpoint: the recomputation saved {len(got)} tensors, the "
                    f"forward {len(self.meta)}: the checkpointed function is not deterministic")
            self.recomputed = got
        return self.recomputed[index]


class _Holder:
    """What the forward keeps for one saved tensor: its position in the frame."""

    __slots__ = ("frame", "index")

    def __init__(self, frame, index):
        self.frame, self.index = frame, index


class _Kept:
    """A tensor saved by an op that selective checkpointing keeps (not recomputed)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor


def _unpack(holder):
    if type(holder) is _Kept:
        return holder.tensor
    return holder.frame.unpack(holder.index)


# True while an op whose output selective checkpointing keeps runs in the forward: the
# tensors it saves for backward are kept as they are (the recomputation skips that op)
_KEEP = [False]


def _checkpoint_hooks(function, args, kwargs, context_fn, determinism_check, preserve):
    rng = _RNG(preserve)
    amp = _autocast_state()
    fwd_ctx, re_ctx = context_fn()
    grad_on = is_grad_enabled()

    def recompute():
        inputs = detach_variable(tuple(args))
        with rng.replay(), _replay_autocast(amp), re_ctx, enable_grad():
            function(*inputs, **kwargs)

    frame = _Frame(recompute, determinism_check == "default")

    def pack(t):
        if _KEEP[0]:
            return _Kept(t)
        frame.meta.append((tuple(t.shape), t.dtype))
        return _Holder(frame, len(frame.meta) - 1)

    if not grad_on:  # nothing will be saved: run plainly
        with fwd_ctx:
            return function(*args, **kwargs)
    with _graph.saved_tensors_hooks(pack, _unpack), fwd_ctx:
        return function(*args, **kwargs)


# ---------------------------------------------------------------------- reentrant
def _function_class():
    from ..autograd import Function

    class CheckpointFunction(Function):
        @staticmethod
        def forward(ctx, run_function, preserve_rng_state, *args):
            ctx.run_function = run_function
            ctx.rng = _RNG(preserve_rng_state)
            ctx.amp = _autocast_state()
            ctx.inputs = args
            if not any(isinstance(a, Tensor) and a.requires_grad for a in args):
                warnings.warn("None of the inputs have requires_grad=True. Gradients will be "
                              "None", stacklevel=4)
            return run_function(*args)

        @staticmethod
        def backward(ctx, *grads):
            from ..autograd import backward as autograd_backward
            inputs = detach_variable(tuple(ctx.inputs))
            with ctx.rng.replay(), _replay_autocast(ctx.amp), enable_grad():
                outputs = ctx.run_function(*inputs)
            if isinstance(outputs, Tensor):
                outputs = (outputs,)
            outs, gs = [], []
            for o, g in zip(outputs, grads):
                if isinstance(o, Tensor) and o.requires_grad and g is not None:
                    outs.append(o)
                    gs.append(g)
            if not outs:
                raise RuntimeError("none of output has requires_grad=True, this checkpoint() "
                                   "is not necessary")
            autograd_backward(outs, gs)
            return (None, None) + tuple(i.grad if isinstance(i, Tensor) else None
                                        for i in inputs)
    return CheckpointFunction


_CF: list = []


class _CheckpointFunction:
    @staticmethod
    def apply(*args):
        if not _CF:
            _CF.append(_function_class())
        return _CF[0].apply(*args)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Split ``functions`` (a Sequential or a list of modules) into ``segments`` chunks and
    checkpoint each but the last; returns the output."""
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    use_reentrant = _default_reentrant(use_reentrant)
    if hasattr(functions, "children") and not isinstance(functions, (list, tuple)):
        functions = list(functions.children())
    functions = list(functions)
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    size = len(functions) // segments
    end = -1

    def run(start, stop):
        def forward(x):
            for j in range(start, stop + 1):
                x = functions[j](x)
            return x
        return forward

    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end), input, use_reentrant=use_reentrant,
                           preserve_rng_state=preserve)
    return run(end + 1, len(functions) - 1)(input)


# ---------------------------------------------------------------------- PyTorch's helpers
import enum  # noqa: E402



def check_backward_validity(inputs):
    """Warn when no tensor of ``inputs`` requires grad (the checkpoint's gradients would all
    be None)."""
    if not any(inp.requires_grad for inp in inputs if isinstance(inp, Tensor)):
        warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                      stacklevel=2)


class DefaultDeviceType:
    """The device type whose random state checkpointing saves when no argument is on an
    accelerator; ember has none, so it is ``"cpu"`` unless set."""

    _default_device_type = None

    @staticmethod
    def set_device_type(device="cuda"):
        DefaultDeviceType._default_device_type = device

    @staticmethod
    def get_device_type():
        if not DefaultDeviceType._default_device_type:
            DefaultDeviceType._default_device_type = "cpu"
        return DefaultDeviceType._default_device_type


def _flat_tensors(args):
    from ._pytree import tree_leaves
    return [a for a in tree_leaves(args) if isinstance(a, Tensor)]


def get_device_states(*args):
    """``(device ids, rng states)`` of the accelerator devices the tensors of ``args`` live
    on. The CPU's generator is saved by checkpoint itself and meta has none, so on ember
    both lists are empty."""
    ids = [t.get_device() for t in _flat_tensors(args) if t.device.type not in ("cpu", "meta")]
    if ids:
        raise NotImplementedError(f"get_device_states: ember has no accelerator generators "
                                  f"(devices {ids})")
    return [], []


def set_device_states(devices, states, *, device_type=None):
    """Restore the generators ``get_device_states`` returned (none on ember)."""
    if device_type is None:
        device_type = DefaultDeviceType.get_device_type()
    if device_type == "meta" or not list(devices):
        return
    raise NotImplementedError(f"set_device_states: ember has no {device_type} generators "
                              f"(devices {list(devices)})")


_early_stop = [True]


@contextlib.contextmanager
def set_checkpoint_early_stop(enable):
    """Whether the non-reentrant recomputation may stop once it has what backward needs.
    ember's recomputation always runs the whole function (the results are the same either
    way), so the setting is kept for programs that set it and changes nothing."""
    prev = _early_stop[0]
    _early_stop[0] = enable
    try:
        yield
    finally:
        _early_stop[0] = prev


class CheckpointPolicy(enum.Enum):
    """What selective checkpointing does with an op's output: save it, recompute it, or
    offload it to the CPU (``MUST_*`` may not be overridden, ``PREFER_*`` may)."""

    MUST_SAVE = 0
    PREFER_SAVE = 1
    MUST_RECOMPUTE = 2
    PREFER_RECOMPUTE = 3
    MUST_CPU_OFFLOAD = 4
    PREFER_CPU_OFFLOAD = 5


class SelectiveCheckpointContext:
    """What a selective-checkpoint policy function receives about the current op."""

    def __init__(self, *, is_recompute, op_output=None):
        self.is_recompute = is_recompute
        self.op_output = op_output


# PyTorch's set holds ATen ops (detach, prim.device and the functional-tensor metadata
# functions) that selective checkpointing never caches; ember's ops are not ATen's
SAC_IGNORED_OPS: set = set()

def create_selective_checkpoint_contexts(policy_fn_or_list, allow_cache_entry_mutation=False):
    """The ``context_fn`` result for selective activation checkpointing:
    ``checkpoint(fn, *args, use_reentrant=False, context_fn=lambda:
    create_selective_checkpoint_contexts(policy))``. ``policy`` is a list of ops whose
    outputs are kept (the rest are recomputed), or a function ``policy(ctx, op, *args,
    **kwargs)`` returning a ``CheckpointPolicy`` (or a bool: True keeps). The ops are
    ember's op classes (``ember.ops.linalg.Matmul``, ``ember.ops.nn.Linear``, ...): ember's
    ops are not ATen's. A kept op's output (and what it saves for backward) is held from the
    forward, and the recomputation returns it instead of running the op."""
    if isinstance(policy_fn_or_list, (list, tuple, set)):
        ops = tuple(policy_fn_or_list)

        def policy_fn(ctx, op, *args, **kwargs):
            return CheckpointPolicy.MUST_SAVE if op in ops else \
                CheckpointPolicy.PREFER_RECOMPUTE
    elif callable(policy_fn_or_list):
        policy_fn = policy_fn_or_list
    else:
        raise TypeError("policy_fn_or_list must be either a function or a list of ops.")
    cache: dict = {}
    return (_SACMode(policy_fn, cache, False, allow_cache_entry_mutation),
            _SACMode(policy_fn, cache, True, allow_cache_entry_mutation))


def _keeps(policy):
    if isinstance(policy, bool):
        return policy
    if not isinstance(policy, CheckpointPolicy):
        raise TypeError(f"a selective checkpoint policy must return a CheckpointPolicy, got "
                        f"{type(policy).__name__}")
    return policy in (CheckpointPolicy.MUST_SAVE, CheckpointPolicy.PREFER_SAVE,
                      CheckpointPolicy.MUST_CPU_OFFLOAD, CheckpointPolicy.PREFER_CPU_OFFLOAD)


class _SACMode:
    """One side of selective checkpointing, as a dispatch mode: in the forward it keeps the
    outputs of the ops the policy keeps (per op class, in call order); in the recomputation
    it hands them back instead of running those ops."""

    def __init__(self, policy_fn, cache, recompute, allow_mutation):
        self.policy_fn, self.cache = policy_fn, cache
        self.recompute, self.allow_mutation = recompute, allow_mutation

    def __enter__(self):
        _graph._MODES.append(self)
        return self

    def __exit__(self, *exc):
        if self in _graph._MODES:
            _graph._MODES.remove(self)
        return False

    def on_op(self, cls, args, kwargs, run):
        ctx = SelectiveCheckpointContext(is_recompute=self.recompute)
        if not _keeps(self.policy_fn(ctx, cls, *args, **kwargs)):
            return run()
        if self.recompute:
            queue = self.cache.get(cls)
            if not queue:
                raise CheckpointError(
                    f"torch.utils.checkpoint: selective checkpointing kept no more outputs of "
                    f"{cls.__name__} for the recomputation: the policy must decide the same "
                    f"way in the forward and the recomputation")
            out, versions = queue.pop(0)
            for t, v in zip(_flat_tensors(out), versions):
                if v is not None and t._version != v:
                    raise RuntimeError(
                        f"Trying to backward an extra time, or the output of {cls.__name__} "
                        f"kept by selective checkpointing was modified in place after the "
                        f"forward (pass allow_cache_entry_mutation=True to keep a copy)")
            modes = _graph._MODES
            at = modes.index(self)
            del modes[at]  # the copies _rewrap makes are not the function's ops
            try:
                return _rewrap(out)
            finally:
                modes.insert(at, self)
        _KEEP[0] = True
        try:
            out = run()
        finally:
            _KEEP[0] = False
        kept = _keep_copy(out) if self.allow_mutation else out
        versions = [None if self.allow_mutation else t._version for t in _flat_tensors(kept)]
        self.cache.setdefault(cls, []).append((kept, versions))
        return out


def _keep_copy(out):
    if isinstance(out, Tensor):
        return out.detach().clone().requires_grad_(out.requires_grad)
    if isinstance(out, (tuple, list)):
        return type(out)(_keep_copy(o) for o in out)
    return out


def _rewrap(out):
    """A kept output as the recomputation's value: a copy (the function may write to it in
    place, as the forward did to the original) that requires grad where the original did, so
    the ops after it record, and save, as in the forward (a copy saves nothing itself)."""
    if isinstance(out, Tensor):
        d = out.detach()
        if not out.requires_grad:
            return d.clone()
        with enable_grad():
            return d.requires_grad_(True).clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_rewrap(o) for o in out)
    return out


class GraphExecGroup:
    """Backward calls inside one group recompute each checkpointed region at most once in
    PyTorch; ember recomputes per backward call (same values, more compute). Groups do not
    nest, as in PyTorch."""

    _current = None

    def __enter__(self):
        if GraphExecGroup._current is not None:
            raise RuntimeError(f"GraphExecGroup contexts cannot be nested. Already inside "
                               f"group {GraphExecGroup._current}")
        GraphExecGroup._current = self
        return self

    def __exit__(self, *args):
        GraphExecGroup._current = None

    @classmethod
    def _get_current_group(cls):
        return cls._current


def __getattr__(name):
    if name == "CheckpointFunction":  # the reentrant scheme's autograd Function
        if not _CF:
            _CF.append(_function_class())
        return _CF[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ += ["check_backward_validity", "DefaultDeviceType", "get_device_states",
            "set_device_states", "set_checkpoint_early_stop", "CheckpointPolicy",
            "SelectiveCheckpointContext", "SAC_IGNORED_OPS",
            "create_selective_checkpoint_contexts", "GraphExecGroup"]  # + CheckpointFunction
