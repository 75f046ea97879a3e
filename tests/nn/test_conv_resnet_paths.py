"""ResNet-shaped convolution paths (issue 25): the stride-1 input gradient over tiny planes by
GEMM + col2im (no flipped copy of the weight), against PyTorch (values and gradients,
float32 and float64), by finite differences, and at 1 and several threads."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402
import ember.ops.conv as C  # noqa: E402

DTYPES = [np.float32, np.float64]

# (input, weight, kwargs): stride 1, O <= C, output planes of at most _FULL_MIN_PLANE
# positions, no Winograd (too few tiles) and too many taps (O * 9 > 400) or groups for the
# direct kernels
TINY = [
    ((16, 64, 2, 2), (64, 64, 3, 3), {"padding": 1}),            # ResNet's last stage
    ((4, 56, 4, 3), (48, 56, 3, 3), {"padding": 1}),             # odd plane, O < C
    ((1, 48, 4, 4), (48, 48, 3, 3), {"padding": 1}),             # batch 1
    ((3, 52, 5, 4), (50, 52, 3, 3), {}),                         # no padding: 3x2 plane
    ((5, 32, 3, 3), (32, 16, 3, 3), {"padding": 1, "groups": 2}),
    ((2, 50, 4, 4), (48, 50, 3, 3), {"padding": 2, "dilation": 2}),
    ((3, 48, 2, 3), (48, 48, 3, 3), {"padding": (1, 2)}),        # asymmetric padding
]


@pytest.fixture
def spy_flip(monkeypatch):
    """Count the flipped, transposed weight copies (the full-convolution path)."""
    calls = []
    real = C._flipped_transposed

    def spy(w, groups):
        calls.append(w.shape)
        return real(w, groups)
    monkeypatch.setattr(C, "_flipped_transposed", spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", TINY)
def test_tiny_plane_input_grad_parity(xs, ws, kw, dtype, spy_flip):
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, **kw), [xs, ws], dtype, low=-1, high=1)
    assert not spy_flip  # col2im, not the full convolution


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_plane_input_grad_conv1d_and_noncontiguous(dtype, spy_flip):
    check(lambda m, x, w: m.nn.functional.conv1d(x, w, padding=1), [(4, 48, 8), (48, 48, 3)],
          dtype, low=-1, high=1)
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(6, 48, 3, 4),
                                                                     (48, 48, 3, 3)],
          dtype, low=-1, high=1, noncontig=True)
    assert not spy_flip


def test_larger_planes_keep_the_full_convolution(spy_flip):
    # 5x5 output planes (25 positions), too few tiles for Winograd: the full convolution
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(1, 48, 5, 5),
                                                                     (48, 48, 3, 3)],
          np.float64, low=-1, high=1)
    assert spy_flip


def test_tiny_plane_input_grad_double_backward():
    gradcheck(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1, groups=2),
              [(2, 8, 2, 3), (8, 4, 3, 3)], gradgrad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_plane_input_grad_threads(dtype, threads, monkeypatch):
    monkeypatch.setattr(C, "_SPLIT_MIN", 1)
    monkeypatch.setattr(ember._parallel, "GEMM_SPLIT_MIN", 1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 64, 2, 2)).astype(dtype)
    w = rng.standard_normal((64, 64, 3, 3)).astype(dtype)
    res = []
    for n in (1, 2, 3):
        threads(n)
        xt, wt = (ember.tensor(a, requires_grad=True) for a in (x, w))
        y = ember.nn.functional.conv2d(xt, wt, padding=1)
        y.backward(ember.ones_like(y))
        res.append([y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()])
    for other in res[1:]:
        for a, b in zip(res[0], other):
            # parts split no sum; only BLAS's kernels on a part's edge tiles may differ
            np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-5 if dtype == np.float32 else 1e-12)
