"""ember.vision.models against PyTorch references (issue 9).

torchvision cannot be installed beside the oracle torch here, so this file rebuilds torchvision's
ResNet, VGG and MobileNetV2 with ``torch.nn`` under the same class and attribute names. A
torchvision state dict is a mapping from those names to tensors, so a reference state dict that
loads into ember with ``strict=True`` and gives the same logits is what a torchvision checkpoint
would do. Key names and parameter counts are checked against torchvision's published ones.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

import ember  # noqa: E402
from ember.vision import models  # noqa: E402


# ---------------------------------------------------------------- PyTorch references
class LeNet5(tnn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2))
        self.classifier = tnn.Sequential(
            tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
            tnn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv(cin, cout, k, stride=1, groups=1, dilation=1):
    return tnn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation,
                      dilation=dilation, groups=groups, bias=False)


class BasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride, dilation=dilation)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=1000, replace_stride_with_dilation=(False,) * 3):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dilate = (False, *replace_stride_with_dilation)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}",
                    self._make_layer(block, planes, n, 1 if i == 0 else 2, dilate[i]))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, n, stride, dilate):
        downsample, previous_dilation = None, self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = tnn.Sequential(_conv(self.inplanes, planes * block.expansion, 1, stride),
                                        tnn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, n)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(tnn.Module):
    def __init__(self, cfg, batch_norm, num_classes=1000):
        super().__init__()
        layers, cin = [], 3
        for v in _CFGS[cfg]:
            if v == "M":
                layers.append(tnn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(tnn.Conv2d(cin, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(tnn.BatchNorm2d(v))
            layers.append(tnn.ReLU(inplace=True))
            cin = v
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(
            tnn.Linear(512 * 7 * 7, 4096), tnn.ReLU(True), tnn.Dropout(p=0.5),
            tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Dropout(p=0.5),
            tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class Conv2dNormActivation(tnn.Sequential):
    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        super().__init__(_conv(cin, cout, kernel_size, stride, groups), tnn.BatchNorm2d(cout),
                         tnn.ReLU6(inplace=True))


class InvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [Conv2dNormActivation(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
                   tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False), tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(tnn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        features, cin = [Conv2dNormActivation(3, 32, stride=2)], 32
        for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                           [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(Conv2dNormActivation(cin, 1280, kernel_size=1))
        self.features = tnn.Sequential(*features)
        self.classifier = tnn.Sequential(tnn.Dropout(p=0.2), tnn.Linear(1280, num_classes))

    def forward(self, x):
        x = tnn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


REFS = {
    "resnet18": lambda **kw: ResNet(BasicBlock, [2, 2, 2, 2], **kw),
    "resnet34": lambda **kw: ResNet(BasicBlock, [3, 4, 6, 3], **kw),
    "resnet50": lambda **kw: ResNet(Bottleneck, [3, 4, 6, 3], **kw),
    "vgg11": lambda **kw: VGG("A", False, **kw),
    "vgg11_bn": lambda **kw: VGG("A", True, **kw),
    "vgg16": lambda **kw: VGG("D", False, **kw),
    "vgg16_bn": lambda **kw: VGG("D", True, **kw),
    "mobilenet_v2": lambda **kw: MobileNetV2(**kw),
}

# torchvision's documented parameter counts (its model-builder docs, ImageNet heads).
COUNTS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
          "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg16": 138_357_544,
          "vgg16_bn": 138_365_992, "mobilenet_v2": 3_504_872}


# ---------------------------------------------------------------- helpers
def _count(model):
    return sum(p.numel() for p in model.parameters())


def _randomize_bn(ref, seed=0):
    """Give every BatchNorm non-trivial affine parameters and running statistics, so that eval
    mode exercises them (fresh ones are the identity up to eps)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, tnn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)


def _load(model, ref):
    """Copy the reference's state dict into ``model`` through NumPy, with ``strict=True``."""
    sd = {k: ember.from_numpy(v.detach().numpy()) for k, v in ref.state_dict().items()}
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


_DTYPES = {np.float32: (torch.float32, ember.float32), np.float64: (torch.float64, ember.float64)}


def _pair(name, dtype=np.float32, **kw):
    """The ember model and its reference, with the reference's weights loaded into ember."""
    tdtype, edtype = _DTYPES[dtype]
    torch.manual_seed(0)
    ref = REFS[name](**kw).to(tdtype)
    _randomize_bn(ref)
    return _load(getattr(models, name)(**kw).to(edtype), ref), ref


def _close(a, b, rtol=1e-4, what=""):
    """Compare an ember tensor with a torch tensor, tolerance scaled to the torch value's size."""
    a, b = a.detach().numpy(), b.detach().numpy()
    assert a.shape == b.shape and a.dtype == b.dtype, what
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=what)


def _input(shape, seed=1, dtype=np.float32):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ember.from_numpy(x.copy()), torch.from_numpy(x)


# ---------------------------------------------------------------- names, counts, repr
RESNET18_KEYS = [
    "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
    "bn1.num_batches_tracked", "layer1.0.conv1.weight", "layer1.0.bn1.weight",
    "layer1.1.conv2.weight", "layer1.1.bn2.running_var", "layer2.0.conv1.weight",
    "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
    "layer2.0.downsample.1.num_batches_tracked", "layer3.1.bn1.bias",
    "layer4.0.downsample.0.weight", "layer4.1.bn2.running_mean", "fc.weight", "fc.bias"]
MOBILENET_KEYS = [
    "features.0.0.weight", "features.0.1.running_var", "features.1.conv.0.0.weight",
    "features.1.conv.1.weight", "features.1.conv.2.bias", "features.2.conv.0.0.weight",
    "features.2.conv.3.running_mean", "features.18.0.weight", "features.18.1.bias",
    "classifier.1.weight"]


def test_reference_matches_torchvision_names():
    # Guards the references themselves against the key names torchvision's checkpoints use.
    sd = REFS["resnet18"]().state_dict()
    assert len(sd) == 122 and set(RESNET18_KEYS) <= set(sd)
    assert list(sd)[:6] == RESNET18_KEYS[:6] and list(sd)[-2:] == ["fc.weight", "fc.bias"]
    assert set(MOBILENET_KEYS) <= set(REFS["mobilenet_v2"]().state_dict())


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "mobilenet_v2"])
def test_parameter_count_and_names(name):
    model, ref = getattr(models, name)(), REFS[name]()
    assert _count(model) == _count(ref) == COUNTS[name]
    sd, ref_sd = model.state_dict(), ref.state_dict()
    assert list(sd) == list(ref_sd)
    assert all(tuple(sd[k].shape) == tuple(ref_sd[k].shape) for k in sd)


def test_lenet5_count():
    assert _count(models.LeNet5()) == _count(LeNet5()) == 61_706


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_repr_matches(name):
    assert repr(getattr(models, name)()) == repr(REFS[name]())


def test_lenet5_repr():
    assert repr(models.LeNet5()) == repr(LeNet5())


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_pretrained_weights_raise(name):
    with pytest.raises(NotImplementedError, match=f"{name}: pretrained weights"):
        getattr(models, name)(weights="DEFAULT")


def test_init_follows_torchvision():
    model = models.resnet18(zero_init_residual=True)
    # kaiming_normal_(mode="fan_out"): std = sqrt(2 / (64 * 7 * 7))
    assert abs(float(model.conv1.weight.std()) - (2 / (64 * 49)) ** 0.5) < 2e-3
    assert float(model.bn1.weight.min()) == float(model.bn1.weight.max()) == 1.0
    assert float(model.layer1[0].bn2.weight.abs().max()) == 0.0
    fc = models.mobilenet_v2().classifier[1]
    assert abs(float(fc.weight.std()) - 0.01) < 1e-3 and float(fc.bias.abs().max()) == 0.0


# ---------------------------------------------------------------- eval-mode logits
def _eval_match(model, ref, shape):
    model.eval()
    ref.eval()
    x, tx = _input(shape)
    with ember.no_grad():
        out = model(x)
    with torch.no_grad():
        tout = ref(tx)
    _close(out, tout)


@pytest.mark.parametrize("name,shape,kw", [
    ("resnet18", (2, 3, 64, 64), {}),
    ("resnet34", (1, 3, 48, 48), {"num_classes": 10}),
    ("resnet50", (1, 3, 64, 64), {"num_classes": 10}),
    ("mobilenet_v2", (2, 3, 64, 64), {}),
])
def test_eval_logits_match(name, shape, kw):
    _eval_match(*_pair(name, **kw), shape)


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg16", "vgg16_bn"])
def test_vgg(name):
    # One build per variant: the 25088x4096 classifier layer makes construction the cost.
    # ember's own init is skipped (init_weights=False): the reference's weights replace it.
    torch.manual_seed(0)
    ref = REFS[name](num_classes=10)
    _randomize_bn(ref)
    model = getattr(models, name)(num_classes=10, init_weights=False)
    assert repr(model) == repr(ref)
    tail = 4096 * 10 + 10 - (4096 * 1000 + 1000)  # the 10-class head instead of 1000
    assert _count(model) == _count(ref) == COUNTS[name] + tail
    ref_sd = ref.state_dict()
    assert {"features.0.weight", "classifier.0.weight", "classifier.3.weight",
            "classifier.6.bias"} <= set(ref_sd)
    assert ("features.1.running_mean" in ref_sd) == name.endswith("_bn")
    _load(model, ref)
    _eval_match(model, ref, (2, 3, 32, 32))


def test_dilated_resnet50_matches():
    # the segmentation backbone: stages 3 and 4 dilate instead of striding (output stride 8)
    kw = {"num_classes": 10, "replace_stride_with_dilation": [False, True, True]}
    model, ref = _pair("resnet50", **kw)
    assert model.layer4[1].conv2.dilation == (4, 4) and model.layer4[0].conv2.stride == (1, 1)
    _eval_match(model, ref, (1, 3, 32, 32))


def test_argument_errors():
    with pytest.raises(NotImplementedError, match="Dilation > 1 not supported in BasicBlock"):
        models.resnet18(replace_stride_with_dilation=[False, False, True])
    with pytest.raises(ValueError, match="3-element tuple"):
        models.resnet50(replace_stride_with_dilation=[False, True])
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1"):
        models.BasicBlock(8, 8, groups=2)
    with pytest.raises(ValueError, match="stride should be 1 or 2 instead of 3"):
        models.InvertedResidual(8, 8, 3, 6)
    with pytest.raises(ValueError, match="inverted_residual_setting"):
        models.MobileNetV2(inverted_residual_setting=[])


def test_conv2d_norm_activation_defaults():
    # torchvision's defaults: BatchNorm then ReLU, a bias only when there is no norm layer
    conv, bn, act = models.Conv2dNormActivation(3, 8, stride=2)
    assert conv.bias is None and conv.padding == (1, 1) and conv.stride == (2, 2)
    assert isinstance(bn, ember.nn.BatchNorm2d) and type(act) is ember.nn.ReLU and act.inplace
    plain = models.Conv2dNormActivation(3, 8, 5, norm_layer=None, activation_layer=None,
                                        dilation=2)
    assert len(plain) == 1 and plain[0].bias is not None and plain[0].padding == (4, 4)


def test_lenet5_logits_match():
    torch.manual_seed(0)
    ref = LeNet5()
    model = _load(models.LeNet5(), ref)
    x, tx = _input((3, 1, 28, 28))
    _close(model(x), ref(tx), what="lenet5")


# ---------------------------------------------------------------- train-mode step
# float32 for ResNet; float64 for MobileNetV2, whose 17 train-mode BatchNorms over 8 values a
# channel amplify float32 rounding in the first layers' gradients to ~1e-3 (in float64 the two
# agree to 1e-12, which shows the difference is rounding, not a different computation).
@pytest.mark.parametrize("name,dtype,rtol,grads", [
    ("resnet18", np.float32, 1e-3, ["conv1.weight", "bn1.weight", "layer2.0.downsample.0.weight",
                                    "layer4.1.bn2.bias", "fc.weight"]),
    ("mobilenet_v2", np.float64, 1e-9, ["features.0.0.weight", "features.1.conv.0.0.weight",
                                        "features.5.conv.1.0.weight", "features.18.1.weight",
                                        "classifier.1.bias"]),
])
def test_train_step_matches(name, dtype, rtol, grads):
    model, ref = _pair(name, dtype, num_classes=10)
    model.train()
    ref.train()
    if name == "mobilenet_v2":  # dropout draws differ between the frameworks
        model.classifier[0].eval()
        ref.classifier[0].eval()
    x, tx = _input((2, 3, 64, 64), dtype=dtype)
    x.requires_grad_(True)
    tx.requires_grad_(True)
    w, tw = _input((2, 10), seed=2, dtype=dtype)
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    out, tout = model(x), ref(tx)
    _close(out, tout, rtol=rtol / 10, what="train logits")
    (out * w).sum().backward()
    (tout * tw).sum().backward()
    _close(x.grad, tx.grad, rtol=rtol, what="input grad")
    params, tparams = dict(model.named_parameters()), dict(ref.named_parameters())
    for k in grads:
        _close(params[k].grad, tparams[k].grad, rtol=rtol, what=f"{k}.grad")
    opt.step()
    topt.step()
    for k in grads:
        _close(params[k], tparams[k], rtol=rtol / 10, what=f"{k} after step")
    sd, tsd = model.state_dict(), ref.state_dict()
    for k in tsd:
        if k.endswith(("running_mean", "running_var")):
            _close(sd[k], tsd[k], rtol=rtol / 10, what=k)
        elif k.endswith("num_batches_tracked"):
            assert int(sd[k]) == int(tsd[k]) == 8, k
