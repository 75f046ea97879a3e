import gzip
import os
import pickle
import struct

import numpy as np
import pytest

import ember
from ember.vision import datasets


def _write_idx(path, arr, gz):
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim])
    header += b"".join(struct.pack(">I", s) for s in arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path + (".gz" if gz else ""), "wb") as f:
        f.write(data)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cls", [datasets.MNIST, datasets.FashionMNIST, datasets.KMNIST])
def test_mnist_family_reads_idx(tmp_path, gz, cls):
    raw = tmp_path / cls.__name__ / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _write_idx(str(raw / "t10k-images-idx3-ubyte"), imgs, gz)
    _write_idx(str(raw / "t10k-labels-idx1-ubyte"), labels, gz)
    ds = cls(str(tmp_path), train=False, transform=ember.vision.transforms.ToTensor())
    assert len(ds) == 5
    x, y = ds[2]
    assert y == 4
    assert x.shape == (1, 28, 28) and x.dtype == ember.float32
    np.testing.assert_allclose(x.numpy()[0], imgs[2] / 255.0, rtol=1e-6)


def test_mnist_missing_and_download_messages(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        datasets.MNIST(str(tmp_path))
    with pytest.raises(RuntimeError, match="no network"):
        datasets.MNIST(str(tmp_path), download=True)


def test_truncated_idx_raises(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(str(raw / "t10k-images-idx3-ubyte"), np.zeros((5, 28, 28), np.uint8), False)
    p = raw / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:100])
    _write_idx(str(raw / "t10k-labels-idx1-ubyte"), np.zeros(5, np.uint8), False)
    with pytest.raises(RuntimeError, match="truncated"):
        datasets.MNIST(str(tmp_path), train=False)


def _write_cifar(folder, names, n, label_key):
    os.makedirs(folder)
    rng = np.random.default_rng(1)
    for name in names:
        entry = {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 label_key: list(rng.integers(0, 10, n))}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f)
    return entry


def test_cifar10_and_100(tmp_path):
    e = _write_cifar(str(tmp_path / "cifar-10-batches-py"), ["test_batch"], 4, "labels")
    ds = datasets.CIFAR10(str(tmp_path), train=False)
    assert len(ds) == 4
    img, label = ds[1]
    assert label == e["labels"][1]
    arr = np.asarray(img)
    np.testing.assert_array_equal(arr, e["data"][1].reshape(3, 32, 32).transpose(1, 2, 0))
    _write_cifar(str(tmp_path / "cifar-100-python"), ["test"], 3, "fine_labels")
    assert len(datasets.CIFAR100(str(tmp_path), train=False)) == 3


def test_cifar_refuses_code_in_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="disallowed"):
        datasets.CIFAR10(str(tmp_path), train=False)
    assert not marker.exists()


def test_image_folder(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    for cls, color in (("cat", 10), ("dog", 200)):
        d = tmp_path / cls
        d.mkdir()
        for i in range(2):
            PIL.fromarray(np.full((8, 8, 3), color + i, np.uint8)).save(d / f"{i}.png")
    ds = datasets.ImageFolder(str(tmp_path))
    assert ds.classes == ["cat", "dog"] and len(ds) == 4
    img, label = ds[3]
    assert label == 1 and np.asarray(img)[0, 0, 0] == 201


def test_fake_data_deterministic():
    ds = datasets.FakeData(size=3, image_size=(3, 8, 8), transform=ember.vision.transforms.ToTensor())
    a, la = ds[1]
    b, lb = ds[1]
    assert la == lb and ember.equal(a, b) and a.shape == (3, 8, 8)


def test_digits_deterministic_and_balanced(tmp_path):
    a = datasets.Digits(root=str(tmp_path), size=200, seed=3)
    b = datasets.Digits(root=str(tmp_path), size=200, seed=3, cache=False)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert np.bincount(a.targets).tolist() == [20] * 10
    test = datasets.Digits(root=str(tmp_path), train=False, size=200, seed=3)
    assert not np.array_equal(test.data, a.data)
    x, y = a[0]
    assert x.shape == (1, 28, 28) and x.dtype == ember.float32 and 0 <= y < 10
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
