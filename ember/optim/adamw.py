"""``torch.optim.adamw``: AdamW at PyTorch's path."""

from .adam import AdamW

__all__ = ["AdamW"]
