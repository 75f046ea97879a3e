"""``torch._C``: the few private entry points that libraries call on PyTorch's C extension.
ember has no C extension; these answer as PyTorch does on a CPU build with no tracer and no
telemetry."""

from __future__ import annotations


def _log_api_usage_once(event):
    """PyTorch records API usage for its internal telemetry; ember records nothing."""


def _get_tracing_state():
    """The TorchScript tracer's state: ember has no TorchScript tracer, so never tracing."""
    return None


def _get_cudnn_enabled():
    from ._namespaces import backends
    return backends.cudnn.enabled


def _cuda_getDeviceCount():
    return 0


def _get_default_device():
    from . import get_default_device
    return str(get_default_device())


def _nn_parse_to(*args, **kwargs):
    """``torch._C._nn._parse_to``: ``(device, dtype, non_blocking, memory_format)`` of the
    arguments of ``Tensor.to``/``Module.to``."""
    from ._device import to_device
    from ._tensor_methods import _parse_to
    kwargs = dict(kwargs)
    memory_format = kwargs.pop("memory_format", None)
    non_blocking = bool(kwargs.pop("non_blocking", False))
    dtype, device, _copy = _parse_to(args, kwargs)
    return (None if device is None else to_device(device)), dtype, non_blocking, memory_format


class _nn:  # noqa: N801  (torch._C._nn)
    _parse_to = staticmethod(_nn_parse_to)


def __getattr__(name):
    # _TensorMeta: the metaclass of Tensor in PyTorch (libraries annotate with it)
    if name == "_TensorMeta":
        from ._tensor import Tensor
        return type(Tensor)
    raise AttributeError(f"module 'ember._C' has no attribute '{name}' (ember has no C "
                         f"extension; only a few of torch._C's entry points are served)")
