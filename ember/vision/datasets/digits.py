"""``Digits``: generated 28x28 handwritten-style digits, a drop-in for MNIST with no download."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ...utils.data import Dataset
from . import _digits


def _cache_dir():
    return os.environ.get("EMBER_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ember"))


class Digits(Dataset):
    """Generated digit images, deterministic under ``seed``; MNIST's interface.

    Each item is ``(image, label)``: the image is a float32 tensor of shape (1, 28, 28) in [0, 1]
    unless a ``transform`` is given (it then receives the (28, 28) uint8 NumPy array, as
    torchvision's MNIST hands transforms an image). The train and test splits come from
    different seeds, so test accuracy measures generalisation to unseen drawings.
    Generated arrays are cached under ``$EMBER_CACHE`` (default ``~/.cache/ember``).
    """

    classes = [f"{i} - {w}" for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])]

    def __init__(self, root=None, train=True, transform=None, target_transform=None,
                 size=None, seed=0, cache=True):
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        n = size if size is not None else (20000 if train else 4000)
        split_seed = seed * 2 + (0 if train else 1) + 12345
        self.data, self.targets = self._load(n, split_seed, root, cache)

    @staticmethod
    def _load(n, seed, root, cache):
        key = hashlib.sha1(f"digits-v2-{n}-{seed}".encode()).hexdigest()[:16]
        path = os.path.join(root or _cache_dir(), f"digits-{key}.npz")
        if cache and os.path.exists(path):
            try:
                with np.load(path) as z:
                    return z["images"], z["labels"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is regenerated
        images, labels = _digits.generate(n, seed)
        images = np.round(images * 255).astype(np.uint8)
        if cache:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}.{os.getpid()}.tmp.npz"
                np.savez(tmp, images=images, labels=labels)
                os.replace(tmp, path)
            except OSError:
                pass  # caching is an optimisation only
        return images, labels

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        from ... import from_numpy
        img, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        else:
            img = from_numpy(img[None].astype(np.float32) / 255.0)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def tensors(self):
        """All images as a float32 (N, 1, 28, 28) tensor in [0, 1] and labels as int64 (N,)."""
        from ... import from_numpy
        return (from_numpy(self.data[:, None].astype(np.float32) / 255.0),
                from_numpy(self.targets.astype(np.int64)))
