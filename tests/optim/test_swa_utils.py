"""swa_utils: AveragedModel (SWA and EMA), update_bn, against PyTorch."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
swa = pytest.importorskip("ember.optim.swa_utils")


def _models(with_bn=False):
    """The same small model in torch and ember, with equal weights."""
    rng = np.random.default_rng(5)
    out = []
    for lib in (torch, ember):
        layers = [lib.nn.Linear(3, 4)]
        if with_bn:
            layers.append(lib.nn.BatchNorm1d(4))
        layers.append(lib.nn.Linear(4, 2))
        model = lib.nn.Sequential(*layers).double()
        out.append(model)
    shapes = [tuple(p.shape) for p in out[0].parameters()]
    values = [rng.standard_normal(s) for s in shapes]
    for model in out:
        lib = torch if isinstance(model, torch.nn.Module) else ember
        with lib.no_grad():
            for p, v in zip(model.parameters(), values):
                p.copy_(lib.tensor(v))
    return out


def _perturb(models, k):
    rng = np.random.default_rng(100 + k)
    deltas = [rng.standard_normal(tuple(p.shape)) * 0.1 for p in models[0].parameters()]
    for model in models:
        lib = torch if isinstance(model, torch.nn.Module) else ember
        with lib.no_grad():
            for p, d in zip(model.parameters(), deltas):
                p.add_(lib.tensor(d))


def _params(model):
    return [np.array(p.detach().numpy()) for p in model.parameters()]


@pytest.mark.parametrize("kind", ["swa", "ema_multi", "ema_single", "swa_single"])
def test_averaged_model_matches_torch(kind):
    models = _models()
    averaged = []
    for model in models:
        lib = torch if isinstance(model, torch.nn.Module) else ember
        su = lib.optim.swa_utils
        kw = {"swa": {}, "ema_multi": {"multi_avg_fn": su.get_ema_multi_avg_fn(0.9)},
              "ema_single": {"avg_fn": su.get_ema_avg_fn(0.8)},
              "swa_single": {"avg_fn": su.get_swa_avg_fn()}}[kind]
        averaged.append(su.AveragedModel(model, **kw))
    for k in range(6):
        _perturb(models, k)
        for avg, model in zip(averaged, models):
            avg.update_parameters(model)
    for a, b in zip(_params(averaged[0]), _params(averaged[1])):
        np.testing.assert_allclose(b, a, atol=1e-12)
    assert int(averaged[1].n_averaged) == 6
    x = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(averaged[1](ember.tensor(x)).detach().numpy(),
                               averaged[0](torch.tensor(x)).detach().numpy(), atol=1e-12)


def test_averaged_model_use_buffers_and_update_bn():
    models = _models(with_bn=True)
    results = []
    rng = np.random.default_rng(7)
    data = [rng.standard_normal((8, 3)) for _ in range(4)]
    for model in models:
        lib = torch if isinstance(model, torch.nn.Module) else ember
        su = lib.optim.swa_utils
        avg = su.AveragedModel(model, use_buffers=True)
        model.train()
        for k in range(3):
            model(lib.tensor(data[k]))
            avg.update_parameters(model)
        loader = [(lib.tensor(d), 0) for d in data]
        su.update_bn(loader, avg)
        bn = avg.module[1]
        results.append([np.array(t.detach().numpy()) for t in
                        list(avg.parameters()) + [bn.running_mean, bn.running_var]])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, atol=1e-10)


def test_ema_decay_checked():
    with pytest.raises(ValueError, match="Invalid decay value 1.5"):
        swa.get_ema_multi_avg_fn(1.5)
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        swa.AveragedModel(ember.nn.Linear(2, 2), avg_fn=swa.get_swa_avg_fn(),
                          multi_avg_fn=swa.get_swa_multi_avg_fn())
