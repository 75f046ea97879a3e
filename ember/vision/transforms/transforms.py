"""Transform classes (torchvision's names and arguments). Random transforms draw from ember's
default generator, so ``ember.manual_seed`` (and DataLoader worker seeding) makes them repeat."""

from __future__ import annotations

import math
import numbers

from . import functional as F
from .functional import InterpolationMode


def _rand():
    from ... import rand
    return float(rand(1).item())


def _uniform(a, b):
    return a + (b - a) * _rand()


def _randint(low, high):
    from ... import randint
    return int(randint(low, high, (1,)).item())


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class _Simple:
    def __repr__(self):
        return f"{type(self).__name__}()"


class ToTensor(_Simple):
    def __call__(self, pic):
        return F.to_tensor(pic)


class PILToTensor(_Simple):
    def __call__(self, pic):
        return F.pil_to_tensor(pic)


class ToPILImage:
    def __init__(self, mode=None):
        self.mode = mode

    def __call__(self, pic):
        return F.to_pil_image(pic, self.mode)

    def __repr__(self):
        return f"ToPILImage(mode={self.mode})" if self.mode else "ToPILImage()"


class ConvertImageDtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __call__(self, image):
        return F.convert_image_dtype(image, self.dtype)

    def __repr__(self):
        return f"ConvertImageDtype(dtype={self.dtype})"


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor):
        return F.normalize(tensor, self.mean, self.std, self.inplace)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class Lambda:
    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self):
        return "Lambda()"


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None,
                 antialias=True):
        self.size, self.interpolation, self.max_size = size, interpolation, max_size
        self.antialias = antialias

    def __call__(self, img):
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)

    def __repr__(self):
        return (f"Resize(size={self.size}, interpolation={self.interpolation}, "
                f"max_size={self.max_size}, antialias={self.antialias})")


class CenterCrop:
    def __init__(self, size):
        self.size = F._size_pair(size)

    def __call__(self, img):
        return F.center_crop(img, self.size)

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


class Pad:
    def __init__(self, padding, fill=0, padding_mode="constant"):
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img):
        return F.pad(img, self.padding, self.fill, self.padding_mode)

    def __repr__(self):
        return (f"Pad(padding={self.padding}, fill={self.fill}, "
                f"padding_mode={self.padding_mode})")


class RandomCrop:
    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = F._size_pair(size)
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode

    @staticmethod
    def get_params(img, output_size):
        _, h, w = F.get_dimensions(img)
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(f"Required crop size {(th, tw)} is larger than input image size "
                             f"{(h, w)}")
        if w == tw and h == th:
            return 0, 0, h, w
        return _randint(0, h - th + 1), _randint(0, w - tw + 1), th, tw

    def __call__(self, img):
        if self.padding is not None:
            img = F.pad(img, self.padding, self.fill, self.padding_mode)
        _, h, w = F.get_dimensions(img)
        th, tw = self.size
        if self.pad_if_needed and w < tw:
            img = F.pad(img, [tw - w, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and h < th:
            img = F.pad(img, [0, th - h], self.fill, self.padding_mode)
        i, j, h, w = self.get_params(img, self.size)
        return F.crop(img, i, j, h, w)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomResizedCrop:
    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation=InterpolationMode.BILINEAR, antialias=True):
        self.size = F._size_pair(size)
        self.scale, self.ratio, self.interpolation = scale, ratio, interpolation

    @staticmethod
    def get_params(img, scale, ratio):
        _, height, width = F.get_dimensions(img)
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(scale[0], scale[1])
            aspect = math.exp(_uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return _randint(0, height - h + 1), _randint(0, width - w + 1), h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img):
        i, j, h, w = self.get_params(img, self.scale, self.ratio)
        return F.resized_crop(img, i, j, h, w, self.size, self.interpolation)

    def __repr__(self):
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
                f"interpolation={self.interpolation})")


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        return F.hflip(img) if _rand() < self.p else img

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomVerticalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        return F.vflip(img) if _rand() < self.p else img

    def __repr__(self):
        return f"RandomVerticalFlip(p={self.p})"


def _range(value, name, center=0.0, bound=(0, float("inf"))):
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non negative.")
        value = [center - value, center + value]
        if bound[0] == 0:
            value[0] = max(value[0], 0.0)
    elif len(value) != 2:
        raise ValueError(f"{name} should be a single number or a list/tuple with length 2.")
    return tuple(float(v) for v in value)


class RandomRotation:
    def __init__(self, degrees, interpolation=InterpolationMode.NEAREST, expand=False,
                 center=None, fill=0):
        self.degrees = (-float(degrees), float(degrees)) if isinstance(degrees, numbers.Number) \
            else tuple(degrees)
        self.interpolation, self.expand = interpolation, expand
        self.center, self.fill = center, fill

    def __call__(self, img):
        angle = _uniform(*self.degrees)
        return F.rotate(img, angle, self.interpolation, self.expand, self.center, self.fill)

    def __repr__(self):
        return f"RandomRotation(degrees={list(self.degrees)}, interpolation={self.interpolation})"


class RandomAffine:
    def __init__(self, degrees, translate=None, scale=None, shear=None,
                 interpolation=InterpolationMode.NEAREST, fill=0, center=None):
        self.degrees = (-float(degrees), float(degrees)) if isinstance(degrees, numbers.Number) \
            else tuple(degrees)
        self.translate, self.scale, self.shear = translate, scale, shear
        if isinstance(shear, numbers.Number):
            self.shear = (-float(shear), float(shear))
        self.interpolation, self.fill, self.center = interpolation, fill, center

    def get_params(self, img_size):
        angle = _uniform(*self.degrees)
        if self.translate is not None:
            mx, my = self.translate[0] * img_size[0], self.translate[1] * img_size[1]
            tx, ty = int(round(_uniform(-mx, mx))), int(round(_uniform(-my, my)))
        else:
            tx = ty = 0
        scale = _uniform(*self.scale) if self.scale is not None else 1.0
        shx = shy = 0.0
        if self.shear is not None:
            shx = _uniform(self.shear[0], self.shear[1])
            if len(self.shear) == 4:
                shy = _uniform(self.shear[2], self.shear[3])
        return angle, (tx, ty), scale, (shx, shy)

    def __call__(self, img):
        angle, t, s, sh = self.get_params(F.get_image_size(img))
        return F.affine(img, angle, list(t), s, list(sh), self.interpolation, self.fill,
                        self.center)

    def __repr__(self):
        return (f"RandomAffine(degrees={list(self.degrees)}, translate={self.translate}, "
                f"scale={self.scale}, shear={self.shear})")


class ColorJitter:
    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        self.brightness = _range(brightness, "brightness", 1.0) if brightness else None
        self.contrast = _range(contrast, "contrast", 1.0) if contrast else None
        self.saturation = _range(saturation, "saturation", 1.0) if saturation else None
        self.hue = _range(hue, "hue", 0.0, (-0.5, 0.5)) if hue else None
        if self.hue is not None and isinstance(hue, numbers.Number):
            self.hue = (-float(hue), float(hue))

    def __call__(self, img):
        from ... import randperm
        order = randperm(4).tolist()
        for k in order:
            if k == 0 and self.brightness:
                img = F.adjust_brightness(img, _uniform(*self.brightness))
            elif k == 1 and self.contrast:
                img = F.adjust_contrast(img, _uniform(*self.contrast))
            elif k == 2 and self.saturation:
                img = F.adjust_saturation(img, _uniform(*self.saturation))
            elif k == 3 and self.hue:
                img = F.adjust_hue(img, _uniform(*self.hue))
        return img

    def __repr__(self):
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


class Grayscale:
    def __init__(self, num_output_channels=1):
        self.num_output_channels = num_output_channels

    def __call__(self, img):
        return F.rgb_to_grayscale(img, self.num_output_channels)

    def __repr__(self):
        return f"Grayscale(num_output_channels={self.num_output_channels})"


class GaussianBlur:
    def __init__(self, kernel_size, sigma=(0.1, 2.0)):
        self.kernel_size = F._size_pair(kernel_size)
        self.sigma = (float(sigma), float(sigma)) if isinstance(sigma, numbers.Number) \
            else tuple(sigma)

    def __call__(self, img):
        s = _uniform(*self.sigma)
        return F.gaussian_blur(img, self.kernel_size, [s, s])

    def __repr__(self):
        return f"GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma})"


class RandomErasing:
    """Erase a random rectangle of a tensor image (p, scale, ratio, value as torchvision)."""

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, inplace=False):
        self.p, self.scale, self.ratio, self.value, self.inplace = p, scale, ratio, value, inplace

    def __call__(self, img):
        if _rand() >= self.p:
            return img
        c, h, w = F.get_dimensions(img)
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            erase_area = area * _uniform(*self.scale)
            aspect = math.exp(_uniform(*log_ratio))
            eh = int(round(math.sqrt(erase_area * aspect)))
            ew = int(round(math.sqrt(erase_area / aspect)))
            if eh < h and ew < w:
                i, j = _randint(0, h - eh + 1), _randint(0, w - ew + 1)
                if self.value == "random":
                    from ... import randn
                    v = randn(c, eh, ew, dtype=img.dtype)
                else:
                    v = self.value
                return F.erase(img, i, j, eh, ew, v, self.inplace)
        return img

    def __repr__(self):
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio})"
