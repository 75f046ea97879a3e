"""The functorch spelling (make_functional & co.) and ember.utils.benchmark."""

import numpy as np
import pytest

import ember
from ember.utils import benchmark

torch = pytest.importorskip("torch")


def test_functorch_names_are_ember_func():
    import ember.functorch as ft
    from ember import func
    assert ft.vmap is func.vmap and ft.grad is func.grad and ft.jvp is func.jvp
    assert ember.functorch is ft


def test_make_functional_per_sample_grads_match_torch_func():
    ember.manual_seed(0)
    emodel = ember.nn.Sequential(ember.nn.Linear(3, 4), ember.nn.ReLU(), ember.nn.Linear(4, 2))
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        for p, tp in zip(emodel.parameters(), tmodel.parameters()):
            tp.copy_(torch.from_numpy(p.detach().numpy().copy()))
    fmodel, params = ember.functorch.make_functional(emodel)
    assert isinstance(params, tuple) and len(params) == 4
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(fmodel(params, ember.tensor(x)).detach().numpy(),
                               emodel(ember.tensor(x)).detach().numpy(), rtol=1e-6)

    def eloss(p, xi):
        return fmodel(p, xi.unsqueeze(0)).pow(2).sum()
    g = ember.functorch.vmap(ember.functorch.grad(eloss), (None, 0))(params, ember.tensor(x))
    tparams = {k: v.detach() for k, v in tmodel.named_parameters()}

    def tloss(p, xi):
        return torch.func.functional_call(tmodel, p, (xi.unsqueeze(0),)).pow(2).sum()
    tg = torch.func.vmap(torch.func.grad(tloss), (None, 0))(tparams, torch.tensor(x))
    for a, b in zip(g, tg.values()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_make_functional_with_buffers_and_errors():
    model = ember.nn.Sequential(ember.nn.Linear(3, 3), ember.nn.BatchNorm1d(3))
    with pytest.raises(RuntimeError, match="make_functional_with_buffers"):
        ember.functorch.make_functional(model)
    fmodel, params, buffers = ember.functorch.make_functional_with_buffers(model)
    assert len(buffers) == 3  # running mean, var and the batch counter
    model.eval()
    fmodel.eval()
    x = ember.randn(4, 3)
    np.testing.assert_allclose(fmodel(params, buffers, x).detach().numpy(),
                               model(x).detach().numpy(), rtol=1e-6)


def test_timer_timeit_and_blocked_autorange():
    t = benchmark.Timer(stmt="f(x)", setup="x = ember.randn(8)", globals={"ember": ember,
                                                                          "f": ember.tanh})
    m = t.timeit(50)
    assert isinstance(m, benchmark.Measurement)
    assert m.number_per_run == 50 and len(m.times) == 1 and m.median > 0
    b = t.blocked_autorange(min_run_time=0.05)
    assert len(b.times) >= 1 and sum(b.raw_times) >= 0.05  # one block may fill the time
    assert b.iqr >= 0 and min(b.times) <= b.median <= max(b.times)
    shown = repr(benchmark.Measurement(10, [1e-3, 2e-3, 4e-3], {"stmt": "f(x)"}))
    assert "Median: 200.00 us" in shown and "IQR" in shown
    # a callable statement
    calls = []
    benchmark.Timer(stmt=lambda: calls.append(1)).timeit(3)
    assert len(calls) == 4  # one warm-up run, then three timed


def test_measurement_statistics():
    m = benchmark.Measurement(2, [2.0, 4.0, 6.0, 8.0, 100.0], {"stmt": "s"})
    assert m.times == [1.0, 2.0, 3.0, 4.0, 50.0]
    assert m.median == 3.0 and m.mean == 12.0
    assert m.iqr == pytest.approx(np.percentile(m.times, 75) - np.percentile(m.times, 25))
