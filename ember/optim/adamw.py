"""``torch.optim.adamw``: AdamW at PyTorch's path."""

from .adam import AdamW

__all__ = ["AdamW"]

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import adamw  # noqa: E402

__all__ += ["adamw"]
