"""CTC loss against PyTorch: values and gradients, padded and concatenated targets, all
reductions, zero_infinity, unbatched input; finite-difference check through log_softmax."""

import numpy as np
import pytest

from tests.parity.helpers import gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402

T, N, C = 12, 3, 5


def _data(seed=0, S=4, tl=(4, 2, 3), il=(12, 10, 8)):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, N, C)), rng.integers(1, C, (N, S)), np.array(il),
            np.array(tl))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("concat", [False, True])
def test_ctc_parity(reduction, concat, dtype):
    logits, tg, il, tl = _data()
    targets = np.concatenate([tg[b, :tl[b]] for b in range(N)]) if concat else tg
    res = []
    for m in (torch, ember):
        x = m.tensor(logits.astype(dtype), requires_grad=True)
        loss = m.nn.functional.ctc_loss(x.log_softmax(-1), m.tensor(targets), m.tensor(il),
                                        m.tensor(tl), reduction=reduction)
        loss.sum().backward()
        res.append((loss.detach().numpy(), x.grad.numpy()))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=tol, atol=tol)


def test_ctc_module_blank_zero_infinity_unbatched():
    logits, _, il, _ = _data()
    rng = np.random.default_rng(1)
    tl = np.array([4, 2, 9])  # the last cannot align within 8 steps
    tg = rng.integers(0, C - 1, (N, 9))
    out = []
    for m in (torch, ember):
        x = m.tensor(logits, requires_grad=True)
        crit = m.nn.CTCLoss(blank=C - 1, reduction="none", zero_infinity=True)
        loss = crit(x.log_softmax(-1), m.tensor(tg), m.tensor(il), m.tensor(tl))
        loss.sum().backward()
        out.append((loss.detach().numpy(), x.grad.numpy()))
    np.testing.assert_allclose(out[1][0], out[0][0], atol=1e-10)
    np.testing.assert_allclose(out[1][1], out[0][1], atol=1e-10)
    assert out[1][0][2] == 0.0
    # unbatched (T, C) with a 1-d target
    a = ember.nn.functional.ctc_loss(ember.tensor(logits[:, 0]).log_softmax(-1),
                                     ember.tensor([1, 2, 2]), [12], [3])
    b = torch.nn.functional.ctc_loss(torch.tensor(logits[:, 0]).log_softmax(-1),
                                     torch.tensor([1, 2, 2]), [12], [3])
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10)


def test_ctc_gradcheck_and_errors():
    tg = np.array([[1, 2], [3, 3]])

    def fn(m, x):
        return m.nn.functional.ctc_loss(x.log_softmax(-1), m.tensor(tg), m.tensor([5, 4]),
                                        m.tensor([2, 2]), reduction="sum")
    gradcheck(fn, [(5, 2, 4)])
    lp = ember.randn(5, 2, 4).log_softmax(-1)
    with pytest.raises(RuntimeError):
        ember.nn.functional.ctc_loss(lp, ember.tensor(tg), [6, 4], [2, 2])  # input too long
    with pytest.raises(RuntimeError):
        ember.nn.functional.ctc_loss(lp, ember.tensor([[1, 9], [1, 1]]), [5, 4], [2, 2])
    with pytest.raises(RuntimeError):
        ember.nn.functional.ctc_loss(lp, ember.tensor(tg), [5, 4], [2, 2], blank=4)
