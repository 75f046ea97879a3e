"""Parity of ``nn.functional`` activations, normalisation, distances and losses with PyTorch."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

ACTS = [
    ("relu", {}), ("relu6", {}), ("elu", {}), ("elu", {"alpha": 0.5}), ("selu", {}),
    ("celu", {"alpha": 1.5}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}),
    ("mish", {}), ("softplus", {}), ("softplus", {"beta": 2.0, "threshold": 1.0}),
    ("softsign", {}), ("hardtanh", {}), ("hardtanh", {"min_val": -0.5, "max_val": 1.5}),
    ("hardsigmoid", {}), ("hardswish", {}), ("hardshrink", {}), ("softshrink", {"lambd": 0.3}),
    ("tanhshrink", {}), ("logsigmoid", {}), ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": 0.2}), ("threshold", {"threshold": 0.1, "value": -2.0}),
    ("sigmoid", {}), ("tanh", {}), ("rrelu", {"training": False}),
]


@pytest.mark.parametrize("name,kw", ACTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ACTS)])
def test_activation(name, kw):
    check(lambda m, x: getattr(m.nn.functional, name)(x, **kw), [(3, 7)])


@pytest.mark.parametrize("name", ["relu", "elu", "leaky_relu", "hardtanh", "silu", "selu",
                                  "mish", "hardswish", "hardsigmoid", "relu6", "celu"])
def test_activation_inplace(name):
    def fn(m, x):
        y = x * 1.0
        return getattr(m.nn.functional, name)(y, inplace=True)
    check(fn, [(4, 5)])


def test_threshold_inplace_and_low_precision():
    check(lambda m, x: m.nn.functional.threshold(x * 1.0, 0.2, -1.0, inplace=True), [(3, 4)])
    for dt in (ember.float16, ember.bfloat16):
        x = ember.randn(3, 4).to(dt).requires_grad_()
        net = ember.nn.Sequential(ember.nn.Linear(4, 4), ember.nn.LayerNorm(4), ember.nn.GELU(),
                                  ember.nn.BatchNorm1d(4), ember.nn.LogSoftmax(1)).to(dt)
        loss = ember.nn.functional.nll_loss(net(x), ember.tensor([0, 1, 2]))
        loss.backward()
        assert loss.dtype == dt and x.grad.dtype == dt and net[0].weight.grad.dtype == dt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_dtypes(dtype):
    for name in ("gelu", "silu", "softplus", "elu", "logsigmoid"):
        check(lambda m, x: getattr(m.nn.functional, name)(x), [(6,)], dtype=dtype)


def test_double_backward_activations():
    for name in ("gelu", "silu", "softplus", "elu", "leaky_relu", "logsigmoid"):
        gradcheck(lambda m, x: getattr(m.nn.functional, name)(x), [(5,)], gradgrad=True)
    gradcheck(lambda m, x: m.nn.functional.gelu(x, approximate="tanh"), [(5,)], gradgrad=True)


def test_prelu_glu():
    check(lambda m, x, w: m.nn.functional.prelu(x, w), [(2, 3, 4), (3,)])
    check(lambda m, x, w: m.nn.functional.prelu(x, w), [(2, 3), (1,)])
    check(lambda m, x: m.nn.functional.glu(x, 1), [(2, 6, 3)])
    check(lambda m, x: m.nn.functional.glu(x), [(4, 4)])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family(dim):
    for name in ("softmax", "log_softmax", "softmin"):
        check(lambda m, x: getattr(m.nn.functional, name)(x, dim), [(3, 4, 5)])
    check(lambda m, x: m.softmax(x, dim), [(3, 4, 5)])
    check(lambda m, x: m.log_softmax(x, dim, dtype=m.float64), [(3, 4)], dtype=np.float32)
    check(lambda m, x: x.softmax(dim), [(3, 4)])


def test_softmax_double_backward():
    gradcheck(lambda m, x: m.nn.functional.softmax(x, 1), [(3, 4)], gradgrad=True)
    gradcheck(lambda m, x: m.nn.functional.log_softmax(x, 0), [(3, 4)], gradgrad=True)


def test_softmax_large_values_stable():
    x = ember.tensor([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(ember.nn.functional.log_softmax(x, 1).numpy()).all()


def test_normalization_functionals():
    check(lambda m, x, w, b: m.nn.functional.layer_norm(x, (4,), w, b), [(3, 5, 4), (4,), (4,)])
    check(lambda m, x: m.nn.functional.layer_norm(x, (5, 4)), [(3, 5, 4)])
    check(lambda m, x, w, b: m.nn.functional.group_norm(x, 2, w, b), [(3, 4, 5), (4,), (4,)])
    check(lambda m, x: m.nn.functional.instance_norm(x), [(2, 3, 5)])
    check(lambda m, x, w: m.nn.functional.rms_norm(x, (4,), w), [(3, 4), (4,)])
    check(lambda m, x: m.nn.functional.rms_norm(x, (4,), eps=1e-3), [(3, 4)])
    check(lambda m, x: m.nn.functional.local_response_norm(x, 3), [(2, 5, 4)])
    check(lambda m, x: m.nn.functional.local_response_norm(x, 2, k=2.0), [(2, 4, 3, 3)])
    check(lambda m, x: m.nn.functional.normalize(x, dim=1), [(3, 4)])
    check(lambda m, x: m.nn.functional.normalize(x, p=1, dim=0), [(3, 4)])


def test_layer_norm_double_backward():
    gradcheck(lambda m, x, w, b: m.nn.functional.layer_norm(x, (4,), w, b),
              [(3, 4), (4,), (4,)], gradgrad=True)


def test_batch_norm_functional_training_updates_running_stats():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 4))
    out = {}
    for m in (torch, ember):
        rm, rv = m.zeros(3, dtype=m.float64), m.ones(3, dtype=m.float64)
        w = m.tensor(rng.standard_normal(3) if m is torch else out["w"], requires_grad=True)
        out.setdefault("w", w.detach().numpy())
        xt = m.tensor(x, requires_grad=True)
        y = m.nn.functional.batch_norm(xt, rm, rv, w, None, training=True, momentum=0.3)
        (y * y * y).sum().backward()
        out[m.__name__] = [y.detach().numpy(), rm.numpy(), rv.numpy(), xt.grad.numpy(),
                           w.grad.numpy()]
    for a, b in zip(out["ember"], out["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_distances():
    check(lambda m, a, b: m.nn.functional.cosine_similarity(a, b), [(3, 4), (3, 4)])
    check(lambda m, a, b: m.nn.functional.cosine_similarity(a, b, dim=0), [(3, 4), (1, 4)])
    check(lambda m, a, b: m.nn.functional.pairwise_distance(a, b), [(3, 4), (3, 4)])
    check(lambda m, a, b: m.nn.functional.pairwise_distance(a, b, p=1, keepdim=True),
          [(3, 4), (3, 4)])
    check(lambda m, a: m.nn.functional.pdist(a), [(4, 3)])


def test_one_hot():
    t = np.array([[0, 2], [1, 3]])
    a = ember.nn.functional.one_hot(ember.tensor(t)).numpy()
    b = torch.nn.functional.one_hot(torch.tensor(t)).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        ember.nn.functional.one_hot(ember.tensor([3]), 2)


def test_linear_bilinear():
    check(lambda m, x, w, b: m.nn.functional.linear(x, w, b), [(2, 3, 4), (5, 4), (5,)])
    check(lambda m, x, w: m.nn.functional.linear(x, w), [(4,), (5, 4)])
    check(lambda m, a, b, w, c: m.nn.functional.bilinear(a, b, w, c),
          [(3, 2), (3, 4), (5, 2, 4), (5,)])


REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses(reduction):
    F = lambda m: m.nn.functional  # noqa: E731
    shapes = [(3, 4), (3, 4)]
    check(lambda m, a, b: F(m).l1_loss(a, b, reduction=reduction), shapes)
    check(lambda m, a, b: F(m).mse_loss(a, b, reduction=reduction), shapes)
    check(lambda m, a, b: F(m).smooth_l1_loss(a, b, reduction=reduction, beta=0.5), shapes)
    check(lambda m, a, b: F(m).smooth_l1_loss(a, b, reduction=reduction, beta=0.0), shapes)
    check(lambda m, a, b: F(m).huber_loss(a, b, reduction=reduction, delta=0.7), shapes)
    sign = np.sign(np.random.default_rng(2).standard_normal((3, 4)))
    check(lambda m, a: F(m).soft_margin_loss(a, m.tensor(sign), reduction=reduction), [(3, 4)])
    check(lambda m, a, b: F(m).poisson_nll_loss(a, b, reduction=reduction), shapes)
    check(lambda m, a, b: F(m).poisson_nll_loss(a, b, log_input=False, full=True,
                                                reduction=reduction), shapes, low=0.1, high=3)
    check(lambda m, a, b, v: F(m).gaussian_nll_loss(a, b, v, reduction=reduction, full=True),
          shapes + [(3, 4)], low=0.1)
    check(lambda m, a, b, v: F(m).gaussian_nll_loss(a, b, v, reduction=reduction),
          shapes + [(3,)], low=0.1)


@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
def test_kl_div(reduction):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(lambda m, a, b: m.nn.functional.kl_div(a, b, reduction=reduction),
              [(3, 4), (3, 4)], low=0.0, high=1.0)
        check(lambda m, a, b: m.nn.functional.kl_div(a, b, reduction=reduction,
                                                     log_target=True), [(3, 4), (3, 4)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_losses(reduction):
    F = lambda m: m.nn.functional  # noqa: E731
    check(lambda m, x, t: F(m).binary_cross_entropy(x, t, reduction=reduction),
          [(3, 4), (3, 4)], low=0.05, high=0.95)
    w = np.array([0.5, 1.0, 2.0, 0.1])
    check(lambda m, x, t: F(m).binary_cross_entropy(x, t, m.tensor(w), reduction=reduction),
          [(3, 4), (3, 4)], low=0.05, high=0.95)
    check(lambda m, x, t: F(m).binary_cross_entropy_with_logits(x, t, reduction=reduction),
          [(3, 4), (3, 4)])
    w3, pw = np.array([[0.5], [1.0], [2.0]]), np.array([0.3, 1.0, 2.0, 4.0])
    check(lambda m, x, t: F(m).binary_cross_entropy_with_logits(
        x, t, m.tensor(w3), pos_weight=m.tensor(pw), reduction=reduction), [(3, 4), (3, 4)])
    check(lambda m, x, t: F(m).multilabel_soft_margin_loss(x, t, reduction=reduction),
          [(3, 4), (3, 4)], low=0.0, high=1.0)


def _targets(n, c, *extra, seed=0, ignore=None):
    t = np.random.default_rng(seed).integers(0, c, size=(n,) + extra)
    if ignore is not None:
        t.flat[::3] = ignore
    return t


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_indices(reduction):
    F = lambda m: m.nn.functional  # noqa: E731
    t = _targets(5, 4)
    t2 = _targets(2, 4, 3, 2, ignore=1)
    w = np.array([0.2, 1.0, 0.5, 2.0])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(t), reduction=reduction), [(5, 4)])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(t), m.tensor(w), reduction=reduction),
          [(5, 4)])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(t2), m.tensor(w), ignore_index=1,
                                          reduction=reduction), [(2, 4, 3, 2)])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(t), reduction=reduction,
                                          label_smoothing=0.2), [(5, 4)])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(t2), m.tensor(w), ignore_index=1,
                                          reduction=reduction, label_smoothing=0.1),
          [(2, 4, 3, 2)])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(3), reduction=reduction), [(4,)])
    check(lambda m, x: F(m).nll_loss(x, m.tensor(t), m.tensor(w), reduction=reduction),
          [(5, 4)])
    check(lambda m, x: F(m).nll_loss(x, m.tensor(t2), ignore_index=1, reduction=reduction),
          [(2, 4, 3, 2)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities(reduction):
    probs = np.random.default_rng(1).dirichlet(np.ones(4), size=(5,))
    w = np.array([0.2, 1.0, 0.5, 2.0])
    F = lambda m: m.nn.functional  # noqa: E731
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(probs), reduction=reduction), [(5, 4)])
    check(lambda m, x: F(m).cross_entropy(x, m.tensor(probs), m.tensor(w), reduction=reduction,
                                          label_smoothing=0.3), [(5, 4)])


def test_cross_entropy_double_backward_and_float32():
    t = _targets(4, 3)
    gradcheck(lambda m, x: m.nn.functional.cross_entropy(x, m.tensor(t)), [(4, 3)],
              gradgrad=True)
    gradcheck(lambda m, x: m.nn.functional.nll_loss(x, m.tensor(t), reduction="sum"), [(4, 3)],
              gradgrad=True)
    check(lambda m, x: m.nn.functional.cross_entropy(x, m.tensor(t)), [(4, 3)],
          dtype=np.float32)


def test_cross_entropy_errors():
    F = ember.nn.functional
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(ember.randn(2, 3), ember.tensor([0, 7]))
    with pytest.raises(ValueError, match="batch_size"):
        F.cross_entropy(ember.randn(2, 3), ember.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(ember.randn(2, 3), ember.tensor([0, 1]), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_losses(reduction):
    F = lambda m: m.nn.functional  # noqa: E731
    y = np.array([1.0, -1.0, 1.0, -1.0])
    t = _targets(4, 5)
    mt = np.array([[3, 0, -1, 1, 2], [1, 2, 3, -1, 0], [4, -1, 0, 0, 0], [0, 1, 2, 3, 4]])
    check(lambda m, a, b: F(m).margin_ranking_loss(a, b, m.tensor(y), margin=0.3,
                                                   reduction=reduction), [(4,), (4,)])
    check(lambda m, a: F(m).hinge_embedding_loss(a, m.tensor(y), margin=0.5,
                                                 reduction=reduction), [(4,)])
    check(lambda m, a, b: F(m).cosine_embedding_loss(a, b, m.tensor(y), margin=0.2,
                                                     reduction=reduction), [(4, 3), (4, 3)])
    check(lambda m, x: F(m).multi_margin_loss(x, m.tensor(t), reduction=reduction), [(4, 5)])
    w = np.linspace(0.5, 2.0, 5)
    check(lambda m, x: F(m).multi_margin_loss(x, m.tensor(t), p=2, margin=0.5,
                                              weight=m.tensor(w), reduction=reduction), [(4, 5)])
    check(lambda m, x: F(m).multilabel_margin_loss(x, m.tensor(mt), reduction=reduction),
          [(4, 5)])
    check(lambda m, a, p, n: F(m).triplet_margin_loss(a, p, n, reduction=reduction),
          [(4, 3), (4, 3), (4, 3)])
    check(lambda m, a, p, n: F(m).triplet_margin_loss(a, p, n, p=1, swap=True, margin=2.0,
                                                      reduction=reduction),
          [(4, 3), (4, 3), (4, 3)])
    check(lambda m, a, p, n: F(m).triplet_margin_with_distance_loss(
        a, p, n, distance_function=lambda u, v: (u - v).abs().sum(-1), swap=True,
        reduction=reduction), [(4, 3), (4, 3), (4, 3)])


def test_dropout_statistics_and_modes():
    F = ember.nn.functional
    x = ember.ones(200, 100)
    y = F.dropout(x, 0.3)
    kept = (y.numpy() != 0).mean()
    assert abs(kept - 0.7) < 0.02
    np.testing.assert_allclose(y.numpy()[y.numpy() != 0], 1 / 0.7, rtol=1e-6)
    assert F.dropout(x, 0.3, training=False) is x
    z = F.dropout2d(ember.ones(50, 40, 3, 3), 0.5).numpy()
    per_channel = z.reshape(50, 40, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel != 0).all(-1))
    a = F.alpha_dropout(ember.randn(400, 400), 0.2, training=True).numpy()
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.03
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)
    xg = ember.randn(5, 6, requires_grad=True)
    out = F.dropout(xg, 0.5)
    out.sum().backward()
    np.testing.assert_allclose(xg.grad.numpy(), (out.detach().numpy() != 0) * 2.0)


def test_feature_dropouts_and_gumbel_softmax():
    F = ember.nn.functional
    for fn, shape in ((F.dropout1d, (20, 30, 4)), (F.dropout1d, (30, 4)),
                      (F.dropout3d, (10, 20, 2, 2, 2)), (F.feature_alpha_dropout, (30, 20, 4))):
        z = fn(ember.ones(*shape), 0.5, training=True).numpy()
        lead = 1 if len(shape) == 2 else 2  # (C, L) has no batch dim
        per = z.reshape(int(np.prod(shape[:lead])), -1)
        assert np.all((per == per[:, :1]).all(1)), fn.__name__
    with pytest.raises(RuntimeError, match="Expected 2D or 3D input"):
        F.dropout1d(ember.ones(2, 2, 2, 2))
    logits = ember.randn(6, 5, requires_grad=True)
    soft = F.gumbel_softmax(logits, tau=0.5)
    np.testing.assert_allclose(soft.detach().numpy().sum(1), np.ones(6), rtol=1e-5)
    hard = F.gumbel_softmax(logits, hard=True)
    h = hard.detach().numpy()
    assert set(np.unique(h)) <= {0.0, 1.0} and np.all(h.sum(1) == 1)
    (hard * ember.arange(5.0)).sum().backward()
    assert logits.grad is not None and np.abs(logits.grad.numpy()).sum() > 0
