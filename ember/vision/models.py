"""Model definitions with torchvision's module names and shapes, so that a torchvision
state dict loads with ``strict=True``: LeNet5, ResNet-18/34/50, VGG-11/16 (with and without
batch norm), MobileNetV2, with torchvision's weight enums (``ResNet18_Weights.DEFAULT``).
No weights are bundled or downloaded: ``weights=`` loads the file from the hub cache when it
is there, and otherwise raises naming the file to fetch."""

from __future__ import annotations

import enum

from .. import nn
from .ops.misc import Conv2dNormActivation


class Weights:
    """One set of pretrained weights: where torchvision publishes the file, and metadata."""

    def __init__(self, url, transforms=None, meta=None):
        self.url = url
        self.transforms = transforms
        self.meta = meta or {}


class WeightsEnum(enum.Enum):
    """torchvision's enum of a model's pretrained weights (``ResNet18_Weights.DEFAULT``).
    ember does not download: ``get_state_dict`` reads the file from the hub cache
    (``ember.hub.get_dir()/checkpoints``) when it is already there."""

    @classmethod
    def verify(cls, obj):
        """The member ``obj`` names (a member, its name as a string, or None)."""
        if obj is None or isinstance(obj, cls):
            return obj
        if isinstance(obj, str):
            try:
                return cls[obj.replace(cls.__name__ + ".", "")]
            except KeyError:
                raise ValueError(f"{obj!r} is not a member of {cls.__name__}") from None
        raise TypeError(f"Invalid Weight class provided; expected {cls.__name__} but "
                        f"received {type(obj).__name__}.")

    def get_state_dict(self, *args, **kwargs):
        from ..hub import load_state_dict_from_url
        return load_state_dict_from_url(self.url, *args, **kwargs)

    def __getattr__(self, name):
        # url, transforms and meta read through to the Weights value
        if name in ("url", "transforms", "meta"):
            return getattr(self.value, name)
        raise AttributeError(name)

    def __repr__(self):
        return f"{type(self).__name__}.{self._name_}"


def _weights_enum(name, **members):
    default = members.pop("DEFAULT")
    enum_cls = WeightsEnum(name, [(k, Weights(v)) for k, v in members.items()])
    # DEFAULT is an alias of one member, as in torchvision
    enum_cls._member_map_["DEFAULT"] = enum_cls[default]
    enum_cls.__module__ = __name__
    return enum_cls


_URL = "https://download.pytorch.org/models/"
ResNet18_Weights = _weights_enum("ResNet18_Weights",
                                 IMAGENET1K_V1=_URL + "resnet18-f37072fd.pth",
                                 DEFAULT="IMAGENET1K_V1")
ResNet34_Weights = _weights_enum("ResNet34_Weights",
                                 IMAGENET1K_V1=_URL + "resnet34-b627a593.pth",
                                 DEFAULT="IMAGENET1K_V1")
ResNet50_Weights = _weights_enum("ResNet50_Weights",
                                 IMAGENET1K_V1=_URL + "resnet50-0676ba61.pth",
                                 IMAGENET1K_V2=_URL + "resnet50-11ad3fa6.pth",
                                 DEFAULT="IMAGENET1K_V2")
VGG11_Weights = _weights_enum("VGG11_Weights", IMAGENET1K_V1=_URL + "vgg11-8a719046.pth",
                              DEFAULT="IMAGENET1K_V1")
VGG11_BN_Weights = _weights_enum("VGG11_BN_Weights",
                                 IMAGENET1K_V1=_URL + "vgg11_bn-6002323d.pth",
                                 DEFAULT="IMAGENET1K_V1")
VGG16_Weights = _weights_enum("VGG16_Weights", IMAGENET1K_V1=_URL + "vgg16-397923af.pth",
                              IMAGENET1K_FEATURES=_URL + "vgg16_features-amdegroot-88682ab5.pth",
                              DEFAULT="IMAGENET1K_V1")
VGG16_BN_Weights = _weights_enum("VGG16_BN_Weights",
                                 IMAGENET1K_V1=_URL + "vgg16_bn-6c64b313.pth",
                                 DEFAULT="IMAGENET1K_V1")
MobileNet_V2_Weights = _weights_enum("MobileNet_V2_Weights",
                                     IMAGENET1K_V1=_URL + "mobilenet_v2-b0353104.pth",
                                     IMAGENET1K_V2=_URL + "mobilenet_v2-7ebf99e0.pth",
                                     DEFAULT="IMAGENET1K_V2")
_WEIGHTS = {"resnet18": ResNet18_Weights, "resnet34": ResNet34_Weights,
            "resnet50": ResNet50_Weights, "vgg11": VGG11_Weights, "vgg11_bn": VGG11_BN_Weights,
            "vgg16": VGG16_Weights, "vgg16_bn": VGG16_BN_Weights,
            "mobilenet_v2": MobileNet_V2_Weights}


def _no_weights(weights, name):
    """Checks ``weights`` names this model's weights; ember builds the model and the builder
    loads them (from the hub cache, never the network)."""
    if weights is not None:
        _WEIGHTS[name].verify(weights)


def _load_weights(model, weights, name):
    if weights is not None:
        w = _WEIGHTS[name].verify(weights)
        try:
            state = w.get_state_dict()
        except NotImplementedError:
            raise NotImplementedError(
                f"{name}: pretrained weights {w!r} are not in the hub cache and ember does not "
                f"download; put {w.url.rsplit('/', 1)[1]} in ember.hub.get_dir()/checkpoints, "
                f"or build with weights=None and load a state dict with "
                f"model.load_state_dict(ember.load(path))") from None
        model.load_state_dict(state)
    return model


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 inputs (padding 2 on the first conv, as usually done for MNIST)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------- ResNet
def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution with padding, no bias."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, the ResNet v1.5 placement), 1x1 expand, with a residual
    connection (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet (He et al., 2016) as torchvision builds it: a 7x7 stem, four stages of ``block``,
    global average pooling and a linear classifier. ``replace_stride_with_dilation`` (three
    bools) keeps the resolution of stages 2-4 by dilating instead of striding."""

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def resnet18(*, weights=None, progress=True, **kwargs):
    """ResNet-18 (11.7M parameters)."""
    _no_weights(weights, "resnet18")
    return _load_weights(ResNet(BasicBlock, [2, 2, 2, 2], **kwargs), weights, "resnet18")


def resnet34(*, weights=None, progress=True, **kwargs):
    """ResNet-34 (21.8M parameters)."""
    _no_weights(weights, "resnet34")
    return _load_weights(ResNet(BasicBlock, [3, 4, 6, 3], **kwargs), weights, "resnet34")


def resnet50(*, weights=None, progress=True, **kwargs):
    """ResNet-50 (25.6M parameters)."""
    _no_weights(weights, "resnet50")
    return _load_weights(ResNet(Bottleneck, [3, 4, 6, 3], **kwargs), weights, "resnet50")


# ---------------------------------------------------------------- VGG
_VGG_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG (Simonyan and Zisserman, 2015): ``features`` from :func:`make_layers`, a 7x7 adaptive
    average pool, and three linear layers with dropout."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)


def make_layers(cfg, batch_norm=False):
    """The convolutional part of VGG from a list of widths, with "M" for a 2x2 max pool."""
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
    return nn.Sequential(*layers)


def _vgg(cfg, bn, weights, name, kwargs):
    _no_weights(weights, name)
    return _load_weights(VGG(make_layers(_VGG_CFGS[cfg], batch_norm=bn), **kwargs), weights, name)


def vgg11(*, weights=None, progress=True, **kwargs):
    """VGG-11 (configuration "A", 132.9M parameters)."""
    return _vgg("A", False, weights, "vgg11", kwargs)


def vgg11_bn(*, weights=None, progress=True, **kwargs):
    """VGG-11 with batch norm after every convolution."""
    return _vgg("A", True, weights, "vgg11_bn", kwargs)


def vgg16(*, weights=None, progress=True, **kwargs):
    """VGG-16 (configuration "D", 138.4M parameters)."""
    return _vgg("D", False, weights, "vgg16", kwargs)


def vgg16_bn(*, weights=None, progress=True, **kwargs):
    """VGG-16 with batch norm after every convolution."""
    return _vgg("D", True, weights, "vgg16_bn", kwargs)


# ---------------------------------------------------------------- MobileNetV2
def _make_divisible(v, divisor, min_value=None):
    # the nearest multiple of divisor, but never more than 10% below v
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion (unless ``expand_ratio`` is 1), 3x3 depthwise, 1x1
    linear projection; residual when the shape is kept."""

    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=None):
        super().__init__()
        self.stride = stride
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        norm_layer = norm_layer or nn.BatchNorm2d
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=nn.ReLU6))
        layers.extend([
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim,
                                 norm_layer=norm_layer, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al., 2018). ``inverted_residual_setting`` lists ``[t, c, n, s]``
    rows (expansion, channels, repeats, first stride); widths scale by ``width_mult`` and round
    to multiples of ``round_nearest``."""

    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None,
                 round_nearest=8, block=None, norm_layer=None, dropout=0.2):
        super().__init__()
        block = block or InvertedResidual
        norm_layer = norm_layer or nn.BatchNorm2d
        input_channel, last_channel = 32, 1280
        if inverted_residual_setting is None:
            inverted_residual_setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2],
                                         [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                                         [6, 320, 1, 1]]
        if len(inverted_residual_setting) == 0 or len(inverted_residual_setting[0]) != 4:
            raise ValueError("inverted_residual_setting should be non-empty or a 4-element "
                             f"list, got {inverted_residual_setting}")
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features = [Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer,
                                         activation_layer=nn.ReLU6)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(block(input_channel, output_channel, s if i == 0 else 1,
                                      expand_ratio=t, norm_layer=norm_layer))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1,
                                             norm_layer=norm_layer, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


def mobilenet_v2(*, weights=None, progress=True, **kwargs):
    """MobileNetV2 (3.5M parameters at width 1.0)."""
    _no_weights(weights, "mobilenet_v2")
    return _load_weights(MobileNetV2(**kwargs), weights, "mobilenet_v2")


__all__ = ["LeNet5", "ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50",
           "VGG", "make_layers", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "MobileNetV2",
           "InvertedResidual", "Conv2dNormActivation", "mobilenet_v2", "Weights", "WeightsEnum",
           "ResNet18_Weights", "ResNet34_Weights", "ResNet50_Weights", "VGG11_Weights",
           "VGG11_BN_Weights", "VGG16_Weights", "VGG16_BN_Weights", "MobileNet_V2_Weights"]
