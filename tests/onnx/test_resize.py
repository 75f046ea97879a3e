"""``F.interpolate`` exported to ONNX with spatial sizes that vary at run time: ``Resize``
where it computes what ember (and PyTorch) compute, exact index Gathers for the nearest
modes otherwise, constant resampling matrices only where the spatial sizes are static, and a
clear error where none of these is exact. onnxruntime runs each export at three sizes; the
model imported back (``ember.onnx.load``) runs at two."""

import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import ember  # noqa: E402
import ember.nn as nn  # noqa: E402
import ember.nn.functional as F  # noqa: E402
from ember.onnx import UnsupportedOperatorError  # noqa: E402
from ember.onnx.verification import verify  # noqa: E402


class _Interp(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x):
        return F.interpolate(x * 2.0, **self.kw)


def _ops(proto):
    return {n.op_type for n in proto.graph.node}


# name: (interpolate arguments, spatial dims, ONNX op expected where sizes vary)
CASES = {
    "nearest_x2": (dict(scale_factor=2), 2, "Resize"),
    "nearest_x1.5": (dict(scale_factor=1.5), 2, "Gather"),
    "nearest_x0.75_x3": (dict(scale_factor=(0.75, 3.0)), 2, "Gather"),
    "nearest_size": (dict(size=(7, 5)), 2, "Gather"),
    "nearest_exact_x2": (dict(scale_factor=2, mode="nearest-exact"), 2, "Resize"),
    "nearest_exact_x0.6": (dict(scale_factor=0.6, mode="nearest-exact"), 2, "Gather"),
    "nearest_recompute": (dict(scale_factor=1.5, recompute_scale_factor=True), 2, "Gather"),
    "bilinear_x2": (dict(scale_factor=2, mode="bilinear"), 2, "Resize"),
    "bilinear_x0.5_corners": (dict(scale_factor=0.5, mode="bilinear", align_corners=True), 2,
                              "Resize"),
    "bilinear_x1.5": (dict(scale_factor=1.5, mode="bilinear"), 2, "Resize"),
    "bilinear_size": (dict(size=(7, 5), mode="bilinear"), 2, "Resize"),
    "bilinear_size_1": (dict(size=(1, 3), mode="bilinear"), 2, "Resize"),
    "bilinear_size_corners": (dict(size=(7, 5), mode="bilinear", align_corners=True), 2,
                              "Resize"),
    "bilinear_recompute": (dict(scale_factor=0.7, mode="bilinear",
                                recompute_scale_factor=True), 2, "Resize"),
    "bicubic_x2": (dict(scale_factor=2, mode="bicubic"), 2, "Resize"),
    "bicubic_size_corners": (dict(size=(9, 4), mode="bicubic", align_corners=True), 2,
                             "Resize"),
    "bilinear_aa_x0.5": (dict(scale_factor=0.5, mode="bilinear", antialias=True), 2, "Resize"),
    "bicubic_aa_size": (dict(size=(3, 4), mode="bicubic", antialias=True), 2, "Resize"),
    "linear_1d": (dict(scale_factor=2, mode="linear"), 1, "Resize"),
    "trilinear": (dict(scale_factor=2, mode="trilinear"), 3, "Resize"),
    "nearest_3d": (dict(scale_factor=(1.5, 2, 1)), 3, "Gather"),
}
SIZES = {1: [(11,), (6,), (17,)], 2: [(8, 6), (5, 9), (12, 7)], 3: [(4, 3, 5), (3, 5, 4),
                                                                     (6, 4, 3)]}


def _inputs(nd, dtype=ember.float32):
    return [ember.randn(2 if i != 1 else 3, 3, *s, dtype=dtype) for i, s in enumerate(SIZES[nd])]


@pytest.mark.parametrize("name", list(CASES))
def test_interpolate_with_dynamic_spatial_sizes(name):
    ember.manual_seed(0)
    kw, nd, op = CASES[name]
    model = _Interp(**kw).eval()
    first, *others = _inputs(nd)
    dyn = {"x": {0: "n", **{2 + i: f"s{i}" for i in range(nd)}}}
    res = verify(model, (first,), test_args=[(t,) for t in others], input_names=["x"],
                 dynamic_axes=dyn, rtol=1e-5, atol=1e-5)
    assert op in _ops(res.model)
    if op == "Gather":
        assert "Resize" not in _ops(res.model)
    assert "MatMul" not in _ops(res.model)  # no matrix sized for the example
    gm = ember.onnx.load(res.model)
    for t in (first, others[0]):
        with ember.no_grad():
            np.testing.assert_allclose(gm(t).numpy(), model(t).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["nearest_x1.5", "nearest_size", "nearest_exact_x0.6"])
def test_interpolate_float64(name):
    # (onnxruntime has no float64 Resize kernel: the gathers only)
    kw, nd, op = CASES[name]
    model = _Interp(**kw).eval()
    first, *others = _inputs(nd, ember.float64)
    res = verify(model, (first,), test_args=[(t,) for t in others], input_names=["x"],
                 dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, rtol=1e-12, atol=1e-12)
    assert op in _ops(res.model)


@pytest.mark.parametrize("kw,opset", [
    (dict(scale_factor=0.3, mode="bilinear"), 18),
    (dict(scale_factor=0.5, mode="bilinear", antialias=True), 17),
    (dict(scale_factor=0.5, mode="lanczos", antialias=True), 18)])
def test_inexact_resampling_uses_matrices_when_static_and_refuses_when_dynamic(kw, opset):
    model = _Interp(**kw).eval()
    x, y = ember.randn(2, 3, 10, 8), ember.randn(3, 3, 10, 8)
    # static spatial sizes (a dynamic batch only): the resampling matrices, exact
    res = verify(model, (x,), test_args=[(y,)], input_names=["x"], opset_version=opset,
                 dynamic_axes={"x": {0: "n"}}, rtol=1e-5, atol=1e-5)
    assert "MatMul" in _ops(res.model) and "Resize" not in _ops(res.model)
    with pytest.raises(UnsupportedOperatorError, match="interpolate.*run time"):
        ember.onnx.export(model, (x,), io.BytesIO(), input_names=["x"], opset_version=opset,
                          dynamic_axes={"x": {2: "h", 3: "w"}})


def test_static_export_and_integer_nearest():
    class M(nn.Module):
        def forward(self, x, ids):
            a = F.interpolate(x, scale_factor=2, mode="bilinear")
            b = F.interpolate(ids, scale_factor=1.5)  # integers: gathers
            return a, b
    x = ember.randn(2, 2, 4, 6)
    ids = ember.randint(0, 9, (2, 2, 4, 6))
    res = verify(M().eval(), (x, ids), test_args=[(ember.randn(2, 2, 4, 6), ids * 2)])
    assert "Resize" in _ops(res.model)


def test_size_from_the_input_shape():
    class M(nn.Module):
        def forward(self, x):
            return F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] + 3), mode="bilinear")
    model = M().eval()
    res = verify(model, (ember.randn(2, 2, 5, 6),), test_args=[(ember.randn(3, 2, 7, 4),)],
                 input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
                 rtol=1e-5, atol=1e-5)
    assert "Resize" in _ops(res.model)


def test_upsample_module_in_a_network_exports_resize():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2,
                                                                      mode="bilinear"),
                          nn.Conv2d(4, 2, 3, padding=1)).eval()
    res = verify(model, (ember.randn(2, 3, 6, 8),), test_args=[(ember.randn(3, 3, 9, 5),)],
                 input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
                 rtol=1e-4, atol=1e-5)
    assert "Resize" in _ops(res.model)
