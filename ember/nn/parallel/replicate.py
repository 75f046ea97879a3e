"""``torch.nn.parallel.replicate``: copies of a module on several GPUs (needs CUDA, which
ember has none of here), with PyTorch's errors for CPU devices and CPU parameters."""

from __future__ import annotations

from . import comm

__all__ = ["replicate"]


def replicate(network, devices, detach=False):
    """One copy of ``network`` per GPU of ``devices``, sharing its parameters (needs CUDA)."""
    comm._check_devices(devices)
    if any(p.device.type == "cpu" for p in network.parameters()):
        raise AssertionError("Broadcast function not implemented for CPU tensors")
    comm._needs_cuda("broadcast_coalesced")
