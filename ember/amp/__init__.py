"""``ember.amp``: automatic mixed precision on the CPU.

``autocast`` runs matrix products and convolutions in bfloat16/float16 (accumulating in
float32) and losses/linear algebra in float32, by PyTorch's CPU op lists; ``GradScaler``
scales the loss so float16 gradients do not underflow.
"""

from .autocast_mode import (autocast, custom_bwd, custom_fwd, get_autocast_dtype,  # noqa: F401
                            is_autocast_available, is_autocast_enabled)
from .grad_scaler import GradScaler  # noqa: F401

__all__ = ["autocast", "GradScaler", "custom_fwd", "custom_bwd", "is_autocast_available"]
