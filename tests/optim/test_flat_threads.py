"""The foreach (flat-buffer) optimizer step splits its chunks over ember's thread pool from
``_PAR_MIN`` values: the same parameters bit for bit at one and two threads, and
PyTorch's values."""

import numpy as np
import pytest

import ember
from ember.optim import optimizer as O

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name,kw", [("AdamW", {"lr": 1e-2}), ("Adam", {"lr": 1e-2,
                                                                         "amsgrad": True}),
                                     ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_step_threads_equal_and_match_torch(name, kw, dtype):
    # chunks split unevenly; parameters straddle chunk boundaries (each chunk gathers its
    # own slices of the gradients), one is empty
    rng = np.random.default_rng(0)
    shapes = [(300, 517), (O._PAR_MIN // 3,), (7,), (0,), (129, 3), (O._CHUNK + 1,)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    before = ember.get_num_threads()

    def run(fw, threads=1):
        if fw is ember:
            ember.set_num_threads(threads)
        ps = [fw.nn.Parameter(fw.tensor(a.copy())) for a in init]
        opt = getattr(fw.optim, name)(ps, **kw)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = fw.tensor(g)
            opt.step()
        return [p.detach().numpy().copy() for p in ps]

    try:
        one, two = run(ember, 1), run(ember, 2)
    finally:
        ember.set_num_threads(before)
    for a, b, t in zip(one, two, run(torch)):
        np.testing.assert_array_equal(a, b)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(a, t, rtol=tol, atol=tol / 10)
