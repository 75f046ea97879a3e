"""``ember.vision.transforms``: torchvision's transforms, on PIL images and tensors."""

from . import functional
from .functional import InterpolationMode
from .transforms import (CenterCrop, ColorJitter, Compose, ConvertImageDtype, GaussianBlur,
                         Grayscale, Lambda, Normalize, Pad, PILToTensor, RandomAffine,
                         RandomCrop, RandomErasing, RandomHorizontalFlip, RandomResizedCrop,
                         RandomRotation, RandomVerticalFlip, Resize, ToPILImage, ToTensor)

__all__ = ["functional", "InterpolationMode", "CenterCrop", "ColorJitter", "Compose",
           "ConvertImageDtype", "GaussianBlur", "Grayscale", "Lambda", "Normalize", "Pad",
           "PILToTensor", "RandomAffine", "RandomCrop", "RandomErasing", "RandomHorizontalFlip",
           "RandomResizedCrop", "RandomRotation", "RandomVerticalFlip", "Resize", "ToPILImage",
           "ToTensor"]
