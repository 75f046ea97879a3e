"""``torch.nn.parallel.comm``: copies between GPUs (broadcast, scatter, gather, reduce_add).
They need CUDA devices, which ember has none of here: each names what it needed, with
PyTorch's own errors where PyTorch's CPU-only build checks first (a ``"cpu"`` device; CPU
inputs of ``reduce_add``)."""

from __future__ import annotations

__all__ = ["broadcast", "broadcast_coalesced", "reduce_add", "reduce_add_coalesced", "scatter",
           "gather"]


def _check_devices(devices):
    for d in devices or ():
        if str(getattr(d, "type", d)) == "cpu":
            raise ValueError(f"Expected a non cpu device, but got: {d}")


def _needs_cuda(what):
    raise RuntimeError(f"torch.nn.parallel.comm.{what} copies tensors between CUDA devices; "
                       f"ember has no CUDA device here (ember.cuda.is_available() is False)")


def broadcast(tensor, devices=None, *, out=None):
    """Copy ``tensor`` to each GPU of ``devices`` (needs CUDA)."""
    _check_devices(devices)
    _needs_cuda("broadcast")


def broadcast_coalesced(tensors, devices, buffer_size=10485760):
    """Copy each tensor to each GPU of ``devices``, in buckets (needs CUDA)."""
    _check_devices(devices)
    _needs_cuda("broadcast_coalesced")


def _check_on_gpu(inputs):
    for i, t in enumerate(inputs):
        if t.device.type == "cpu":
            raise AssertionError(f"reduce_add expects all inputs to be on GPUs, but input {i} "
                                 f"is on CPU")


def reduce_add(inputs, destination=None):
    """Sum tensors held on several GPUs onto one (needs CUDA)."""
    _check_on_gpu(inputs)
    _needs_cuda("reduce_add")


def reduce_add_coalesced(inputs, destination=None, buffer_size=10485760):
    """``reduce_add`` of lists of tensors, in buckets (needs CUDA)."""
    _check_on_gpu([ts[0] for ts in inputs if len(ts)])
    _needs_cuda("reduce_add_coalesced")


def scatter(tensor, devices=None, chunk_sizes=None, dim=0, streams=None, *, out=None):
    """Split ``tensor`` along ``dim`` over GPUs (needs CUDA)."""
    _check_devices(devices)
    _needs_cuda("scatter")


def gather(tensors, dim=0, destination=None, *, out=None):
    """Concatenate tensors held on several GPUs onto one (needs CUDA)."""
    _needs_cuda("gather")
