"""``torchvision.ops.focal_loss``."""

from .roi_pool import sigmoid_focal_loss

__all__ = ["sigmoid_focal_loss"]
