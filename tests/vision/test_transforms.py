import numpy as np
import pytest

import ember
from ember.vision import transforms as T
from ember.vision.transforms import functional as F
from ember.vision.utils import make_grid, save_image

PIL = pytest.importorskip("PIL.Image")


def _img(h=6, w=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_to_tensor_and_back():
    arr = _img()
    t = T.ToTensor()(PIL.fromarray(arr))
    assert t.shape == (3, 6, 8) and t.dtype == ember.float32
    np.testing.assert_allclose(t.numpy(), arr.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    back = np.asarray(T.ToPILImage()(t))
    np.testing.assert_array_equal(back, arr)
    u8 = T.PILToTensor()(PIL.fromarray(arr))
    assert u8.dtype == ember.uint8 and u8.shape == (3, 6, 8)


def test_normalize_and_convert_dtype():
    t = ember.rand(3, 4, 4)
    n = T.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.4])(t)
    exp = (t.numpy() - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array([0.2, 0.3, 0.4])[:, None, None]
    np.testing.assert_allclose(n.numpy(), exp, rtol=1e-5)
    u = ember.tensor([[[0, 255]]], dtype=ember.uint8)
    f = T.ConvertImageDtype(ember.float32)(u)
    np.testing.assert_allclose(f.numpy(), [[[0.0, 1.0]]])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_geometry_shapes(as_tensor):
    img = PIL.fromarray(_img(20, 30))
    if as_tensor:
        img = T.ToTensor()(img)
    size = lambda x: F.get_image_size(x)  # noqa: E731
    assert size(T.Resize((10, 12))(img)) == [12, 10]
    assert size(T.Resize(10)(img)) == [15, 10]
    assert size(T.CenterCrop(8)(img)) == [8, 8]
    assert size(T.RandomCrop(8, padding=2)(img)) == [8, 8]
    assert size(T.RandomResizedCrop(9)(img)) == [9, 9]
    assert size(T.Pad(3)(img)) == [36, 26]
    assert size(T.RandomRotation(20)(img)) == [30, 20]
    assert size(T.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5)(img)) == [30, 20]
    assert size(T.GaussianBlur(3)(img)) == [30, 20]
    assert size(T.Grayscale()(img)) == [30, 20]
    assert size(T.ColorJitter(0.2, 0.2, 0.2, 0.1)(img)) == [30, 20]


def test_flips_tensor_and_pil_agree():
    arr = _img()
    t = T.ToTensor()(PIL.fromarray(arr))
    np.testing.assert_array_equal(F.hflip(t).numpy(), t.numpy()[..., ::-1])
    np.testing.assert_array_equal(np.asarray(F.hflip(PIL.fromarray(arr))), arr[:, ::-1])
    np.testing.assert_array_equal(F.vflip(t).numpy(), t.numpy()[..., ::-1, :])
    assert ember.equal(T.RandomHorizontalFlip(p=1.0)(t), F.hflip(t))
    assert ember.equal(T.RandomVerticalFlip(p=0.0)(t), t)


def test_tensor_resize_matches_pil_bilinear_on_upsampling():
    arr = _img(4, 4)[..., 0]
    pil = np.asarray(PIL.fromarray(arr).resize((8, 8), PIL.BILINEAR)).astype(np.float64)
    ten = F.resize(ember.tensor(arr[None].astype(np.float32)), [8, 8]).numpy()[0]
    assert np.abs(pil - ten).max() <= 1.0  # PIL rounds to uint8


def test_rotate_90_tensor_matches_rot90():
    t = ember.arange(16, dtype=ember.float32).reshape(1, 4, 4)
    r = F.rotate(t, 90)
    np.testing.assert_array_equal(r.numpy()[0], np.rot90(t.numpy()[0]))


def test_random_transforms_follow_manual_seed():
    t = ember.rand(3, 16, 16)
    aug = T.Compose([T.RandomCrop(12, padding=2), T.RandomHorizontalFlip(), T.RandomErasing(p=1.0)])
    ember.manual_seed(5)
    a = aug(t)
    ember.manual_seed(5)
    b = aug(t)
    assert ember.equal(a, b)


def test_make_grid_and_save_image(tmp_path):
    batch = ember.rand(5, 1, 4, 4)
    grid = make_grid(batch, nrow=3, padding=1)
    assert grid.shape == (3, 2 * 5 + 1, 3 * 5 + 1)
    np.testing.assert_allclose(grid.numpy()[0, 1:5, 1:5], batch.numpy()[0, 0])
    path = tmp_path / "g.png"
    save_image(batch, str(path), nrow=3, padding=1)
    assert PIL.open(path).size == (grid.shape[2], grid.shape[1])


def test_bad_inputs():
    with pytest.raises(TypeError):
        T.Normalize([0.5], [0.5])(ember.tensor([1, 2]))
    with pytest.raises(ValueError):
        T.GaussianBlur(4)(ember.rand(1, 8, 8))
    with pytest.raises(TypeError):
        F.hflip([1, 2, 3])
