"""CNNs exported with spatial sizes that vary at run time: pooling ops carry their output
size as a rule (floor / ceil_mode) and global average pooling is a mean, so ResNet-18 and
MobileNetV2 export with dynamic height and width; onnxruntime runs each export at three
sizes against ember."""

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import ember  # noqa: E402
import ember.nn as nn  # noqa: E402
from ember.onnx.verification import verify  # noqa: E402


def _conv_then(pool):
    return nn.Sequential(nn.Conv2d(3, 4, 3), pool)


CASES = {
    "max": _conv_then(nn.MaxPool2d(3, 2, 1)),
    "max_ceil": _conv_then(nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
    "max_ceil_nopad": _conv_then(nn.MaxPool2d(2, ceil_mode=True)),
    "max_dilated": _conv_then(nn.MaxPool2d(3, 2, 1, dilation=2)),
    "avg": _conv_then(nn.AvgPool2d(3, 2, 1)),
    "avg_exclude_pad": _conv_then(nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
    "avg_divisor": _conv_then(nn.AvgPool2d(3, 2, 1, divisor_override=5)),
    "avg_ceil": _conv_then(nn.AvgPool2d(3, 2, 1, ceil_mode=True)),
    "avg_ceil_exclude": _conv_then(nn.AvgPool2d(3, 2, 0, ceil_mode=True,
                                                count_include_pad=False)),
    "global_avg": nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pooling_with_dynamic_spatial_sizes(name):
    ember.manual_seed(0)
    m = CASES[name].eval()
    verify(m, (ember.randn(2, 3, 17, 19),),
           test_args=[(ember.randn(3, 3, 24, 16),), (ember.randn(2, 3, 19, 20),)],
           input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, rtol=1e-5,
           atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_cnn_with_dynamic_height_and_width(arch):
    from ember.vision import models
    ember.manual_seed(0)
    m = getattr(models, arch)(num_classes=10).eval()
    res = verify(m, (ember.randn(2, 3, 64, 64),),
                 test_args=[(ember.randn(3, 3, 71, 61),), (ember.randn(1, 3, 48, 80),)],
                 input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, rtol=1e-4,
                 atol=1e-4)
    dims = res.model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["n", "", "h", "w"]
