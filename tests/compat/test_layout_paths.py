"""What was added at PyTorch's submodule paths (issue 23, layout coverage): behaviour against
PyTorch where PyTorch has it on CPU, PyTorch's errors where it needs CUDA."""

import importlib

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _mod(name):
    # ``import a.b.spectral_norm as m`` would give the function of the same name
    return importlib.import_module(name)


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("n_out", [4, 3])
def test_spectral_norm_module_state_dict_versions(dt, n_out):
    esn, tsn = _mod("ember.nn.utils.spectral_norm"), _mod("torch.nn.utils.spectral_norm")
    torch.manual_seed(0)
    tl = tsn.spectral_norm(torch.nn.Linear(4, n_out).to(getattr(torch, dt)))
    el = esn.spectral_norm(ember.nn.Linear(4, n_out, dtype=getattr(ember, dt)))
    tsd = tl.state_dict()
    el.load_state_dict({k: ember.tensor(_np(v)) for k, v in tsd.items()})
    esd = el.state_dict()
    assert sorted(esd) == sorted(tsd)
    assert esd._metadata[""]["spectral_norm"] == tsd._metadata[""]["spectral_norm"]
    # a version-0 checkpoint (no weight_v): v solved from weight_orig, weight and weight_u
    w = _np(tl.weight_orig)
    old_t = {"weight_orig": torch.tensor(w), "weight": torch.tensor(w / 2.5),
             "weight_u": tsd["weight_u"], "bias": tsd["bias"]}
    old_e = {k: ember.tensor(_np(v)) for k, v in old_t.items()}
    tl2 = tsn.spectral_norm(torch.nn.Linear(4, n_out).to(getattr(torch, dt)))
    el2 = esn.spectral_norm(ember.nn.Linear(4, n_out, dtype=getattr(ember, dt)))
    tl2.load_state_dict(old_t)
    el2.load_state_dict(old_e)
    tol = 1e-4 if dt == "float32" else 1e-9
    if n_out == 4:  # W^T W invertible: v is unique (for 3x4 only u^T W v = sigma is)
        np.testing.assert_allclose(_np(el2.weight_v), _np(tl2.weight_v), rtol=tol, atol=tol)
    tl2.eval()
    el2.eval()
    x = np.linspace(-1, 1, 8).reshape(2, 4)
    np.testing.assert_allclose(_np(el2(ember.tensor(x, dtype=getattr(ember, dt)))),
                               _np(tl2(torch.tensor(x, dtype=getattr(torch, dt)))),
                               rtol=tol, atol=tol)
    esn.remove_spectral_norm(el2)
    tsn.remove_spectral_norm(tl2)
    assert sorted(el2.state_dict()) == sorted(tl2.state_dict()) == ["bias", "weight"]
    assert not hasattr(el2.state_dict()._metadata[""], "spectral_norm")
    assert ember.nn.utils.spectral_norm is esn.spectral_norm  # the function, as PyTorch's
