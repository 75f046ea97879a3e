"""File-backed datasets in their standard formats: MNIST/FashionMNIST/KMNIST (IDX, gzipped or
not), CIFAR-10/100 (python pickle batches, read by a restricted unpickler that runs no code),
ImageFolder/DatasetFolder, and FakeData. No network: ``download=True`` explains where the
files go instead."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np

from ...utils.data import Dataset


def _no_download(name, folder, files):
    raise RuntimeError(
        f"{name}: download=True is not available: ember has no network access here. Put the "
        f"standard files ({', '.join(files)}) into '{folder}' (gzipped or not) and create the "
        "dataset with download=False. The built-in ember.vision.datasets.Digits needs no files.")


def read_idx(path):
    """Read an IDX file (the MNIST format), gzipped or not, into a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise RuntimeError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = data[2], data[3]
    if code not in dtypes:
        raise RuntimeError(f"{path}: unknown IDX data type 0x{code:02x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dt = np.dtype(dtypes[code])
    need = int(np.prod(shape)) * dt.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) < need:
        raise RuntimeError(f"{path}: truncated IDX file ({len(body)} bytes of data, expected "
                           f"{need} for shape {shape})")
    return np.frombuffer(body[:need], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))


class MNIST(Dataset):
    """MNIST from the standard IDX files under ``root/<ClassName>/raw`` (or ``root``)."""

    _files = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    classes = [f"{i} - {w}" for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])]

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self.root = os.fspath(root)
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        folder = os.path.join(self.root, type(self).__name__, "raw")
        img_name, lbl_name = self._files[train]
        paths = [self._find(folder, n) for n in (img_name, lbl_name)]
        if None in paths:
            if download:
                _no_download(type(self).__name__, folder, self._files[train])
            raise RuntimeError(f"{type(self).__name__}: dataset not found in '{folder}' or "
                               f"'{self.root}' (expected {img_name} and {lbl_name}, optionally "
                               ".gz). You can use download=True to get instructions.")
        self.data = read_idx(paths[0])
        self.targets = read_idx(paths[1]).astype(np.int64)
        if len(self.data) != len(self.targets):
            raise RuntimeError(f"{type(self).__name__}: {len(self.data)} images but "
                               f"{len(self.targets)} labels")

    def _find(self, folder, name):
        for d in (folder, self.root):
            for candidate in (name, name + ".gz"):
                p = os.path.join(d, candidate)
                if os.path.exists(p):
                    return p
        return None

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        img = _to_image(img, mode="L")
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class FashionMNIST(MNIST):
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


class KMNIST(MNIST):
    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


def _to_image(arr, mode):
    """A PIL image when Pillow is installed (torchvision's behaviour), else the array."""
    try:
        from PIL import Image
    except ImportError:
        return arr
    return Image.fromarray(arr, mode=mode) if mode != "L" else Image.fromarray(arr)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what CIFAR's batches need (NumPy array reconstruction); runs no other code."""

    _allowed = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to a disallowed global {module}.{name}")


def _load_cifar_batch(path):
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


class CIFAR10(Dataset):
    """CIFAR-10 from the python-pickle batches in ``root/cifar-10-batches-py``."""

    base_folder = "cifar-10-batches-py"
    train_list = [f"data_batch_{i}" for i in range(1, 6)]
    test_list = ["test_batch"]
    label_key = "labels"
    meta_file, meta_key = "batches.meta", "label_names"

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self.root = os.fspath(root)
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        folder = os.path.join(self.root, self.base_folder)
        names = self.train_list if train else self.test_list
        if not all(os.path.exists(os.path.join(folder, n)) for n in names):
            if download:
                _no_download(type(self).__name__, folder, names)
            raise RuntimeError(f"{type(self).__name__}: dataset not found in '{folder}' "
                               f"(expected {names}). You can use download=True to get "
                               "instructions.")
        data, targets = [], []
        for n in names:
            entry = _load_cifar_batch(os.path.join(folder, n))
            data.append(np.asarray(entry["data"], dtype=np.uint8))
            targets.extend(entry[self.label_key] if self.label_key in entry
                           else entry["fine_labels"])
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.targets = list(targets)
        meta = os.path.join(folder, self.meta_file)
        if os.path.exists(meta):
            self.classes = list(_load_cifar_batch(meta)[self.meta_key])
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = _to_image(self.data[index], "RGB"), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class CIFAR100(CIFAR10):
    base_folder = "cifar-100-python"
    train_list = ["train"]
    test_list = ["test"]
    label_key = "fine_labels"
    meta_file, meta_key = "meta", "fine_label_names"


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path):
    from PIL import Image
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


default_loader = pil_loader


class DatasetFolder(Dataset):
    """Samples arranged as ``root/<class>/<file>``; classes sorted by name."""

    def __init__(self, root, loader, extensions=None, transform=None, target_transform=None,
                 is_valid_file=None, allow_empty=False):
        self.root = os.fspath(root)
        self.loader = loader
        self.extensions = extensions
        self.transform = transform
        self.target_transform = target_transform
        self.classes, self.class_to_idx = self.find_classes(self.root)
        if extensions is not None and is_valid_file is not None:
            raise ValueError("Both extensions and is_valid_file cannot be None or not None at "
                             "the same time")
        if is_valid_file is None:
            exts = tuple(e.lower() for e in extensions or ())
            is_valid_file = lambda p: p.lower().endswith(exts)  # noqa: E731
        self.samples = []
        for c in self.classes:
            d = os.path.join(self.root, c)
            found = []
            for base, _, files in sorted(os.walk(d, followlinks=True)):
                for fn in sorted(files):
                    p = os.path.join(base, fn)
                    if is_valid_file(p):
                        found.append((p, self.class_to_idx[c]))
            if not found and not allow_empty:
                raise FileNotFoundError(f"Found no valid file for the classes {c}. Supported "
                                        f"extensions are: {extensions}")
            self.samples.extend(found)
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples

    @staticmethod
    def find_classes(directory):
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {c: i for i, c in enumerate(classes)}

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target


class ImageFolder(DatasetFolder):
    """``DatasetFolder`` of images (loaded with Pillow, converted to RGB)."""

    def __init__(self, root, transform=None, target_transform=None, loader=default_loader,
                 is_valid_file=None, allow_empty=False):
        super().__init__(root, loader, IMG_EXTENSIONS if is_valid_file is None else None,
                         transform, target_transform, is_valid_file, allow_empty)


class FakeData(Dataset):
    """Random images and labels, reproducible per index (``random_offset`` shifts the stream)."""

    def __init__(self, size=1000, image_size=(3, 224, 224), num_classes=10, transform=None,
                 target_transform=None, random_offset=0):
        self.size = size
        self.image_size = tuple(image_size)
        self.num_classes = num_classes
        self.transform = transform
        self.target_transform = target_transform
        self.random_offset = random_offset

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        if not 0 <= index < self.size:
            raise IndexError(f"{type(self).__name__} index out of range")
        rng = np.random.default_rng(index + self.random_offset)
        img = (rng.random(self.image_size) * 255).astype(np.uint8)
        target = int(rng.integers(0, self.num_classes))
        c = self.image_size[0]
        arr = img.transpose(1, 2, 0) if c in (1, 3) else img
        if c == 1:
            arr = arr[..., 0]
        img = _to_image(arr, "RGB" if c == 3 else "L") if c in (1, 3) else img
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
