"""Cross-entropy and NLL gradients when no target counts ('mean' over zero total weight):
PyTorch's loss is NaN, its gradient is 0 at ignored positions and NaN (0/0) only where a
target with zero weight sits; ember gave NaN everywhere."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

_CASES = [
    dict(target=[-100, -100, -100]),
    dict(target=[0, 0, -100], weight=[0.0, 1.0, 1.0, 1.0]),
    dict(target=[-100, -100, -100], label_smoothing=0.1),
    dict(target=[[-100, -100], [-100, -100], [-100, -100]], spatial=True),
    dict(target=[2, -100, 1]),  # an ordinary case beside them
]


def _grads(m, fn, case, dtype, create_graph):
    x = np.arange(24.0).reshape(3, 4, 2) / 7 if case.get("spatial") else \
        np.arange(12.0).reshape(3, 4) / 7
    xt = m.tensor(x.astype(dtype), requires_grad=True)
    kw = {}
    if "weight" in case:
        kw["weight"] = m.tensor(np.array(case["weight"], dtype))
    if "label_smoothing" in case:
        if fn == "nll":
            return None
        kw["label_smoothing"] = case["label_smoothing"]
    target = m.tensor(case["target"])
    if fn == "ce":
        loss = m.nn.functional.cross_entropy(xt, target, **kw)
    else:
        loss = m.nn.functional.nll_loss(xt.log_softmax(1), target, **kw)
    (g,) = m.autograd.grad(loss, xt, create_graph=create_graph)
    return loss.detach().numpy(), g.detach().numpy()


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", ["ce", "nll"])
@pytest.mark.parametrize("case", range(len(_CASES)))
def test_matches_pytorch(case, fn, dtype, create_graph):
    want = _grads(torch, fn, _CASES[case], dtype, create_graph)
    if want is None:
        pytest.skip("label smoothing is cross_entropy's")
    with np.errstate(all="raise"):  # no NumPy warnings leak to the user
        got = _grads(ember, fn, _CASES[case], dtype, create_graph)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-5, atol=1e-6)
