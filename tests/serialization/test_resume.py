"""Training resumes across frameworks: a checkpoint from one continues in the other."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
nn = pytest.importorskip("ember.nn")
optim = pytest.importorskip("ember.optim")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 4)).astype(np.float32)
Y = RNG.standard_normal((16, 2)).astype(np.float32)


def _models():
    t = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    e = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    return t, e


def _step(lib, model, opt, sched=None, i=0):
    x, y = lib.tensor(X[i % 4::4]), lib.tensor(Y[i % 4::4])
    opt.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return loss.item()


def _assert_params_match(t_model, e_model):
    t_sd, e_sd = t_model.state_dict(), e_model.state_dict()
    assert list(t_sd) == list(e_sd)
    for k in t_sd:
        np.testing.assert_allclose(e_sd[k].detach().numpy(), t_sd[k].detach().numpy(),
                                   rtol=2e-5, atol=2e-6, err_msg=k)


def test_torch_checkpoint_resumes_in_ember(tmp_path):
    t_model, e_model = _models()
    t_opt = torch.optim.Adam(t_model.parameters(), lr=1e-2, weight_decay=1e-3)
    t_sched = torch.optim.lr_scheduler.StepLR(t_opt, step_size=3, gamma=0.5)
    for i in range(4):
        _step(torch, t_model, t_opt, t_sched, i)
    path = tmp_path / "torch.pt"
    torch.save({"model": t_model.state_dict(), "opt": t_opt.state_dict(),
                "sched": t_sched.state_dict()}, path)

    ckpt = ember.load(path)
    e_opt = optim.Adam(e_model.parameters(), lr=1e-2, weight_decay=1e-3)
    e_sched = optim.lr_scheduler.StepLR(e_opt, step_size=3, gamma=0.5)
    e_model.load_state_dict(ckpt["model"])
    e_opt.load_state_dict(ckpt["opt"])
    e_sched.load_state_dict(ckpt["sched"])
    _assert_params_match(t_model, e_model)
    for i in range(4, 8):
        lt = _step(torch, t_model, t_opt, t_sched, i)
        le = _step(ember, e_model, e_opt, e_sched, i)
        assert le == pytest.approx(lt, rel=1e-5)
        _assert_params_match(t_model, e_model)
        assert e_opt.param_groups[0]["lr"] == pytest.approx(t_opt.param_groups[0]["lr"])


def test_ember_checkpoint_resumes_in_torch(tmp_path):
    t_model, e_model = _models()
    e_opt = optim.SGD(e_model.parameters(), lr=5e-2, momentum=0.9, nesterov=True)
    for i in range(4):
        _step(ember, e_model, e_opt, None, i)
    path = tmp_path / "ember.pt"
    ember.save({"model": e_model.state_dict(), "opt": e_opt.state_dict()}, path)

    ckpt = torch.load(path, weights_only=True)
    t_opt = torch.optim.SGD(t_model.parameters(), lr=5e-2, momentum=0.9, nesterov=True)
    t_model.load_state_dict(ckpt["model"])
    t_opt.load_state_dict(ckpt["opt"])
    _assert_params_match(t_model, e_model)
    for i in range(4, 8):
        lt = _step(torch, t_model, t_opt, None, i)
        le = _step(ember, e_model, e_opt, None, i)
        assert le == pytest.approx(lt, rel=1e-5)
        _assert_params_match(t_model, e_model)


def test_whole_module_state_roundtrip_in_ember(tmp_path):
    _, e_model = _models()
    path = tmp_path / "m.pt"
    ember.save(e_model.state_dict(), path)
    _, other = _models()
    other.load_state_dict(ember.load(path))
    for (k, a), (_, b) in zip(e_model.state_dict().items(), other.state_dict().items()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy()), k
