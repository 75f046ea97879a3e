"""``torch.nn.attention``: choosing the kernel behind ``F.scaled_dot_product_attention``.

ember has one kernel (the math formulation, on NumPy), so every backend choice is accepted
and the same kernel runs; ``sdpa_kernel`` only checks its arguments, as a program on a machine
without flash attention would see."""

from __future__ import annotations

import contextlib
import enum

__all__ = ["SDPBackend", "sdpa_kernel", "WARN_FOR_UNFUSED_KERNELS",
           "register_flash_attention_impl", "activate_flash_attention_impl",
           "list_flash_attention_impls", "current_flash_attention_impl",
           "restore_flash_attention_impl"]

WARN_FOR_UNFUSED_KERNELS = False


class SDPBackend(enum.IntEnum):
    """The kernels PyTorch can choose from for scaled dot-product attention."""

    ERROR = -1
    MATH = 0
    FLASH_ATTENTION = 1
    EFFICIENT_ATTENTION = 2
    CUDNN_ATTENTION = 3
    OVERRIDEABLE = 4


_active = [list(SDPBackend)[1:]]


@contextlib.contextmanager
def sdpa_kernel(backends, set_priority: bool = False):
    """Within the block, allow only ``backends`` (one SDPBackend or a list of them).

    ember always runs its math kernel, so the block changes nothing numerically."""
    if isinstance(backends, SDPBackend):
        backends = [backends]
    backends = list(backends)
    for b in backends:
        if not isinstance(b, SDPBackend):
            raise TypeError(f"sdpa_kernel: backends must be SDPBackend members, got "
                            f"{type(b).__name__}")
    _active.append(backends)
    try:
        yield
    finally:
        _active.pop()


def _flash_impls_unavailable(*args, **kwargs):
    raise NotImplementedError("ember has no flash attention implementations to register or "
                              "activate (its scaled_dot_product_attention runs the math kernel)")


register_flash_attention_impl = _flash_impls_unavailable
activate_flash_attention_impl = _flash_impls_unavailable


def list_flash_attention_impls():
    return []


def current_flash_attention_impl():
    return None


def restore_flash_attention_impl():
    pass
