"""``parametrizations.orthogonal`` with the Cayley map and with ``use_trivialization=False``
against PyTorch: the parametrized weight and the gradient reaching the original tensor."""

import numpy as np
import pytest

import ember
from ember.nn.utils.parametrizations import orthogonal as e_orthogonal

torch = pytest.importorskip("torch")
from torch.nn.utils.parametrizations import orthogonal as t_orthogonal  # noqa: E402


def _pair(shape, dtype, orthogonal_map, trivial):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(dtype)
    t = torch.nn.Linear(shape[1], shape[0], bias=False).to(getattr(torch, dtype))
    e = ember.nn.Linear(shape[1], shape[0], bias=False).to(getattr(ember, dtype))
    with torch.no_grad():
        t.weight.copy_(torch.tensor(w))
    with ember.no_grad():
        e.weight.copy_(ember.tensor(w))
    t_orthogonal(t, orthogonal_map=orthogonal_map, use_trivialization=trivial)
    e_orthogonal(e, orthogonal_map=orthogonal_map, use_trivialization=trivial)
    return t, e


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("orthogonal_map,trivial", [("cayley", True), ("cayley", False),
                                                    ("matrix_exp", False),
                                                    ("householder", False)])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3)])
def test_weight_and_gradient_match(shape, orthogonal_map, trivial, dtype):
    if trivial and shape[0] != shape[1]:
        pytest.skip("the trivialization completes a non-square Q with random columns")
    t, e = _pair(shape, dtype, orthogonal_map, trivial)
    tol = 2e-5 if dtype == "float32" else 1e-10
    wt, we = t.weight.detach().numpy(), e.weight.detach().numpy()
    np.testing.assert_allclose(we, wt, rtol=tol, atol=tol)
    k = min(shape)
    gram = we @ we.T if shape[0] <= shape[1] else we.T @ we
    np.testing.assert_allclose(gram, np.eye(k), atol=10 * tol)
    c = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    (t.weight * torch.tensor(c)).sum().backward()
    (e.weight * ember.tensor(c)).sum().backward()
    np.testing.assert_allclose(e.parametrizations.weight.original.grad.numpy(),
                               t.parametrizations.weight.original.grad.numpy(),
                               rtol=tol * 10, atol=tol * 10)


def test_assigning_without_trivialization():
    for m, orth in ((torch, t_orthogonal), (ember, e_orthogonal)):
        lin = orth(m.nn.Linear(3, 3), orthogonal_map="cayley", use_trivialization=False)
        with pytest.raises(NotImplementedError, match="not possible to assign"):
            lin.weight = m.eye(3)
    # householder: assigning an orthogonal matrix gives it back
    lin = e_orthogonal(ember.nn.Linear(3, 3).double(), orthogonal_map="householder",
                       use_trivialization=False)
    q = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]
    lin.weight = ember.tensor(q)
    np.testing.assert_allclose(lin.weight.detach().numpy(), q, atol=1e-12)
