"""ember.vision.ops (torchvision.ops) against straightforward NumPy references: torchvision
itself cannot be installed beside the oracle PyTorch, so the references below are written
from torchvision's documented formulas and its CPU kernels' arithmetic, loop by loop."""

import math

import numpy as np
import pytest

import ember
from ember.vision import ops


def _boxes(rng, n, scale=20.0):
    xy = rng.uniform(0, scale, size=(n, 2))
    wh = rng.uniform(0.5, scale / 2, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _ref_iou_parts(a, b):
    out = np.zeros((len(a), len(b), 6))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            cw = max(p[2], q[2]) - min(p[0], q[0])
            ch = max(p[3], q[3]) - min(p[1], q[1])
            dc = ((p[0] + p[2]) / 2 - (q[0] + q[2]) / 2) ** 2 + \
                 ((p[1] + p[3]) / 2 - (q[1] + q[3]) / 2) ** 2
            v = 4 / math.pi ** 2 * (math.atan((p[2] - p[0]) / (p[3] - p[1]))
                                    - math.atan((q[2] - q[0]) / (q[3] - q[1]))) ** 2
            out[i, j] = inter, union, cw * ch, dc, cw ** 2 + ch ** 2, v
    return out


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_box_overlaps_match_formulas(dtype):
    rng = np.random.default_rng(0)
    a, b = _boxes(rng, 5), _boxes(rng, 7)
    ta, tb = ember.tensor(a, dtype=dtype), ember.tensor(b, dtype=dtype)
    parts = _ref_iou_parts(a, b)
    inter, union, enclose, dc, diag, v = np.moveaxis(parts, -1, 0)
    iou = inter / union
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == ember.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ops.box_area(ta).numpy(), (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]),
                               **tol)
    np.testing.assert_allclose(ops.box_iou(ta, tb).numpy(), iou, **tol)
    np.testing.assert_allclose(ops.generalized_box_iou(ta, tb).numpy(),
                               iou - (enclose - union) / enclose, **tol)
    diou = iou - dc / (diag + 1e-7)
    np.testing.assert_allclose(ops.distance_box_iou(ta, tb).numpy(), diou, **tol)
    alpha = v / (1 - iou + v + 1e-7)
    np.testing.assert_allclose(ops.complete_box_iou(ta, tb).numpy(), diou - alpha * v, **tol)
    assert ops.box_iou(ta, tb).dtype == dtype


def test_giou_loss_has_gradients():
    rng = np.random.default_rng(1)
    a = ember.tensor(_boxes(rng, 4), dtype=ember.float64, requires_grad=True)
    b = ember.tensor(_boxes(rng, 4), dtype=ember.float64)
    assert ember.autograd.gradcheck(lambda x: ops.generalized_box_iou(x, b).diagonal(), (a,))


def test_box_convert_round_trips():
    rng = np.random.default_rng(2)
    a = _boxes(rng, 6)
    t = ember.tensor(a)
    xywh = ops.box_convert(t, "xyxy", "xywh").numpy()
    np.testing.assert_allclose(xywh, np.concatenate([a[:, :2], a[:, 2:] - a[:, :2]], 1),
                               rtol=1e-6)
    cxcywh = ops.box_convert(t, "xyxy", "cxcywh").numpy()
    np.testing.assert_allclose(cxcywh, np.concatenate([(a[:, :2] + a[:, 2:]) / 2,
                                                       a[:, 2:] - a[:, :2]], 1), rtol=1e-6)
    for fmt in ("xywh", "cxcywh"):
        back = ops.box_convert(ops.box_convert(t, "xyxy", fmt), fmt, "xyxy")
        np.testing.assert_allclose(back.numpy(), a, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unsupported box format"):
        ops.box_convert(t, "xyxy", "yxyx")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        ops.box_iou(ember.zeros(3, 5), t)


def test_clip_and_remove_small():
    b = ember.tensor([[-3.0, 2.0, 15.0, 30.0], [1.0, 1.0, 1.5, 9.0]])
    np.testing.assert_allclose(ops.clip_boxes_to_image(b, (20, 10)).numpy(),
                               [[0, 2, 10, 20], [1, 1, 1.5, 9]])
    assert ops.remove_small_boxes(b, 1.0).tolist() == [0]


def _ref_nms(b, s, thr):
    order = sorted(range(len(s)), key=lambda i: -s[i])
    keep = []
    for i in order:
        ok = True
        for k in keep:
            iw = max(0.0, min(b[i][2], b[k][2]) - max(b[i][0], b[k][0]))
            ih = max(0.0, min(b[i][3], b[k][3]) - max(b[i][1], b[k][1]))
            inter = iw * ih
            union = ((b[i][2] - b[i][0]) * (b[i][3] - b[i][1])
                     + (b[k][2] - b[k][0]) * (b[k][3] - b[k][1]) - inter)
            if inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.7])
def test_nms_and_batched_nms(thr):
    rng = np.random.default_rng(3)
    b = _boxes(rng, 40, scale=30)
    s = rng.permutation(40).astype(np.float64)
    keep = ops.nms(ember.tensor(b), ember.tensor(s), thr)
    assert keep.dtype == ember.int64
    assert keep.tolist() == _ref_nms(b, s, thr)
    cls = rng.integers(0, 3, size=40)
    got = ops.batched_nms(ember.tensor(b), ember.tensor(s), ember.tensor(cls), thr).tolist()
    want = []
    for c in range(3):
        idx = np.nonzero(cls == c)[0]
        want += [idx[i] for i in _ref_nms(b[idx], s[idx], thr)]
    assert got == sorted(want, key=lambda i: -s[i])
    assert ops.nms(ember.zeros(0, 4), ember.zeros(0), 0.5).tolist() == []


def _ref_roi_align(x, rois, ph_n, pw_n, scale, ratio, aligned):
    """A transcription of the per-sample loop of torchvision's CPU RoIAlign kernel."""
    n, c, h, w = x.shape
    out = np.zeros((len(rois), c, ph_n, pw_n))

    def bilinear(img, y, xx):
        if y < -1.0 or y > h or xx < -1.0 or xx > w:
            return np.zeros(c)
        y, xx = max(y, 0.0), max(xx, 0.0)
        yl, xl = int(y), int(xx)
        if yl >= h - 1:
            yh = yl = h - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= w - 1:
            xh = xl = w - 1
            xx = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, xx - xl
        hy, hx = 1 - ly, 1 - lx
        return (hy * hx * img[:, yl, xl] + hy * lx * img[:, yl, xh]
                + ly * hx * img[:, yh, xl] + ly * lx * img[:, yh, xh])

    for k, r in enumerate(rois):
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = r[1] * scale - off, r[2] * scale - off, r[3] * scale - off, \
            r[4] * scale - off
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = ratio if ratio > 0 else math.ceil(rh / ph_n)
        gw = ratio if ratio > 0 else math.ceil(rw / pw_n)
        cnt = max(gh * gw, 1)
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = np.zeros(c)
                for iy in range(gh):
                    y = y1 + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = x1 + pw * bw + (ix + 0.5) * bw / gw
                        acc += bilinear(x[int(r[0])], y, xx)
                out[k, :, ph, pw] = acc / cnt
    return out


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [-1, 2])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_roi_align_matches_kernel(aligned, ratio, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 11))
    rois = np.array([[0, 1.0, 1.5, 7.0, 6.0], [1, -2.0, 0.0, 4.0, 3.0],
                     [1, 5.2, 4.1, 12.0, 10.5], [0, 3.0, 3.0, 3.2, 3.1]])
    got = ops.roi_align(ember.tensor(x, dtype=dtype), ember.tensor(rois, dtype=dtype), (3, 4),
                        spatial_scale=0.9, sampling_ratio=ratio, aligned=aligned)
    assert got.shape == (4, 3, 3, 4) and got.dtype == dtype
    want = _ref_roi_align(x, rois, 3, 4, 0.9, ratio, aligned)
    tol = 1e-5 if dtype == ember.float32 else 1e-12
    np.testing.assert_allclose(got.numpy(), want, rtol=tol, atol=tol)
    # list-of-boxes form, and the module form
    per_image = [ember.tensor(rois[rois[:, 0] == i, 1:], dtype=dtype) for i in range(2)]
    got2 = ops.RoIAlign((3, 4), 0.9, ratio, aligned)(ember.tensor(x, dtype=dtype), per_image)
    order = np.argsort(rois[:, 0], kind="stable")
    np.testing.assert_allclose(got2.numpy(), want[order], rtol=tol, atol=tol)


def test_roi_align_gradient():
    rng = np.random.default_rng(5)
    x = ember.tensor(rng.standard_normal((1, 2, 5, 6)), requires_grad=True)
    rois = ember.tensor([[0, 0.5, 0.5, 4.0, 3.5], [0, 1.0, 0.0, 5.5, 4.5]], dtype=ember.float64)
    assert ember.autograd.gradcheck(lambda t: ops.roi_align(t, rois, 2, 1.0, 2, True), (x,))
    with pytest.raises(IndexError, match="batch index 3"):
        ops.roi_align(x, ember.tensor([[3, 0, 0, 1, 1.0]], dtype=ember.float64), 2)


def test_frozen_batchnorm_matches_eval_batchnorm():
    torch = pytest.importorskip("torch")
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    bn.eval()
    fbn = ops.FrozenBatchNorm2d(4)
    sd = {k: ember.tensor(v.numpy()) for k, v in bn.state_dict().items()}
    fbn.load_state_dict(sd)  # num_batches_tracked is dropped, as torchvision does
    x = np.random.default_rng(6).standard_normal((2, 4, 3, 3)).astype(np.float32)
    fbn.train()
    np.testing.assert_allclose(fbn(ember.tensor(x)).numpy(), bn(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert list(fbn.parameters()) == []


def test_conv_norm_activation_and_se_and_mlp():
    blk = ops.Conv2dNormActivation(3, 8, kernel_size=3, stride=2)
    assert [type(m).__name__ for m in blk] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert blk[0].bias is None and blk[0].padding == (1, 1)
    x = ember.randn(2, 3, 8, 8)
    assert blk(x).shape == (2, 8, 4, 4)
    b3 = ops.Conv3dNormActivation(2, 4, kernel_size=(1, 3, 3), norm_layer=None)
    assert b3[0].padding == (0, 1, 1) and b3[0].bias is not None
    se = ops.SqueezeExcitation(8, 2)
    y = blk(x)
    pooled = y.mean((2, 3), keepdim=True)
    scale = ember.sigmoid(se.fc2(ember.relu(se.fc1(pooled))))
    ember.testing.assert_close(se(y), y * scale)
    mlp = ops.MLP(8, [16, 4], dropout=0.0)
    assert [type(m).__name__ for m in mlp] == ["Linear", "ReLU", "Dropout", "Linear", "Dropout"]
    assert ops.Permute([0, 2, 3, 1])(x).shape == (2, 8, 8, 3)


def test_stochastic_depth():
    x = ember.ones(1000, 3)
    ember.manual_seed(0)
    y = ops.stochastic_depth(x, 0.3, "row")
    rows = y[:, 0].numpy()
    vals = np.unique(rows)
    assert len(vals) == 2 and vals[0] == 0 and np.isclose(vals[1], 1 / 0.7)
    assert (y == y[:, :1]).all()  # a row is kept or dropped whole
    assert abs((rows == 0).mean() - 0.3) < 0.06
    yb = ops.stochastic_depth(x, 0.5, "batch")
    assert len(np.unique(yb.numpy())) == 1
    assert ops.stochastic_depth(x, 0.3, "row", training=False) is x
    m = ops.StochasticDepth(0.2, "row").eval()
    assert m(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        ops.stochastic_depth(x, 1.5, "row")
    with pytest.raises(ValueError, match="'batch' or 'row'"):
        ops.stochastic_depth(x, 0.5, "col")


def test_torchvision_paths_and_interpolation_mode():
    from ember.vision.transforms import InterpolationMode
    from ember.vision.transforms.functional import InterpolationMode as IM2
    assert InterpolationMode is IM2
    assert InterpolationMode("bicubic") is InterpolationMode.BICUBIC
    assert InterpolationMode.BILINEAR == "bilinear" and InterpolationMode.BILINEAR.value == \
        "bilinear"
    assert {"bilinear": 1}[InterpolationMode.BILINEAR] == 1
    import ember.vision.ops.misc as misc
    assert misc.FrozenBatchNorm2d is ops.FrozenBatchNorm2d
    from ember.vision.models import Conv2dNormActivation
    assert Conv2dNormActivation is ops.Conv2dNormActivation
