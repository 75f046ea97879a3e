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
