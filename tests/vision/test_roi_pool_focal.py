"""roi_pool against a direct loop over torchvision's definition (torchvision's compiled ops are
not installed beside the oracle PyTorch), with its gradient; sigmoid_focal_loss against the
same formula written with PyTorch ops, values and gradients."""

import math

import numpy as np
import pytest

import ember
from ember.vision.ops import RoIPool, roi_pool, sigmoid_focal_loss


def _reference_roi_pool(x, rois, ph_n, pw_n, scale):
    """Fast R-CNN's RoIPool, one bin at a time, with the argmax of each bin."""
    k, (_, c, h, w) = len(rois), x.shape
    out = np.zeros((k, c, ph_n, pw_n), x.dtype)
    grad_idx = np.full((k, c, ph_n, pw_n), -1)
    for r, (b, *box) in enumerate(rois):
        x1, y1, x2, y2 = (int(math.copysign(math.floor(abs(v * scale) + 0.5), v)) for v in box)
        bh, bw = max(y2 - y1 + 1, 1) / ph_n, max(x2 - x1 + 1, 1) / pw_n
        for i in range(ph_n):
            for j in range(pw_n):
                hs = min(max(math.floor(i * bh) + y1, 0), h)
                he = min(max(math.ceil((i + 1) * bh) + y1, 0), h)
                ws = min(max(math.floor(j * bw) + x1, 0), w)
                we = min(max(math.ceil((j + 1) * bw) + x1, 0), w)
                for ch in range(c):
                    best, arg = -np.inf, -1
                    for yy in range(hs, he):
                        for xx in range(ws, we):
                            if x[int(b), ch, yy, xx] > best:
                                best, arg = x[int(b), ch, yy, xx], yy * w + xx
                    if arg >= 0:
                        out[r, ch, i, j], grad_idx[r, ch, i, j] = best, arg
    return out, grad_idx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_pool_matches_reference(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 10, 12)).astype(dtype)
    rois = np.array([[0, 1.0, 1.0, 8.6, 6.2], [1, 0.0, 0.0, 11.0, 9.0],
                     [1, 5.5, 2.5, 5.5, 2.5], [0, -4.0, -3.0, 3.0, 2.0],
                     [1, 20.0, 20.0, 30.0, 30.0]], dtype)
    for scale, size in ((1.0, (3, 2)), (0.5, 4)):
        ps = (size, size) if isinstance(size, int) else size
        ref, arg = _reference_roi_pool(x, rois, *ps, scale)
        ex = ember.tensor(x, requires_grad=True)
        out = roi_pool(ex, ember.tensor(rois), size, scale)
        np.testing.assert_array_equal(out.detach().numpy(), ref)
        g = rng.standard_normal(ref.shape).astype(dtype)
        out.backward(ember.tensor(g))
        want = np.zeros((2, 3, 10 * 12), dtype)
        for r in range(len(rois)):
            for ch in range(3):
                for a, gv in zip(arg[r, ch].ravel(), g[r, ch].ravel()):
                    if a >= 0:
                        want[int(rois[r, 0]), ch, a] += gv
        np.testing.assert_allclose(ex.grad.numpy().reshape(2, 3, -1), want, rtol=1e-6)
    # the list-of-boxes form and the module
    per_image = [ember.tensor(rois[rois[:, 0] == i, 1:]) for i in range(2)]
    order = np.argsort(rois[:, 0], kind="stable")
    a = RoIPool((3, 2), 1.0)(ember.tensor(x), per_image).numpy()
    np.testing.assert_array_equal(a, _reference_roi_pool(x, rois[order], 3, 2, 1.0)[0])
    with pytest.raises(ValueError):
        roi_pool(ember.tensor(x), ember.zeros(2, 4), 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,gamma,reduction", [(0.25, 2, "none"), (-1, 1.5, "mean"),
                                                   (0.7, 0, "sum")])
def test_sigmoid_focal_loss_matches_torch_formula(dtype, alpha, gamma, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 5)).astype(dtype) * 3
    targets = (rng.random((4, 5)) > 0.6).astype(dtype)
    el = ember.tensor(logits, requires_grad=True)
    tl = torch.tensor(logits, requires_grad=True)
    ours = sigmoid_focal_loss(el, ember.tensor(targets), alpha, gamma, reduction)
    tt = torch.tensor(targets)
    p = tl.sigmoid()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(tl, tt, reduction="none")
    p_t = p * tt + (1 - p) * (1 - tt)
    ref = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        ref = (alpha * tt + (1 - alpha) * (1 - tt)) * ref
    ref = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours.detach().numpy(), ref.detach().numpy(), rtol=tol, atol=tol)
    ours.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(el.grad.numpy(), tl.grad.numpy(), rtol=tol, atol=tol)
    with pytest.raises(ValueError):
        sigmoid_focal_loss(el, ember.tensor(targets), alpha=2.0)
    with pytest.raises(ValueError):
        sigmoid_focal_loss(el, ember.tensor(targets), reduction="bogus")
