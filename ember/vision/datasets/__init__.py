"""Datasets: built-in generated digits (no files), the standard MNIST-family and CIFAR files,
image folders, and fake data."""

from .digits import Digits
from .files import (CIFAR10, CIFAR100, DatasetFolder, FakeData, FashionMNIST, ImageFolder,
                    KMNIST, MNIST)

__all__ = ["Digits", "MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100", "ImageFolder",
           "DatasetFolder", "FakeData"]
