"""Shared helpers for the optimizer tests: run one optimizer in torch and in ember."""

import numpy as np

import ember

SHAPES = [(3, 4), (5,), (), (2, 3, 2)]


def make_problem(seed=0, steps=50, shapes=SHAPES):
    """Initial parameters and a fixed gradient sequence (float64)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return init, grads


def to_numpy(v):
    """A torch or ember tensor (or a number) as a NumPy value."""
    if isinstance(v, ember.Tensor):
        return np.asarray(v._data)
    if hasattr(v, "detach"):
        return v.detach().numpy()
    return np.asarray(v)


def run(lib, name, init, grads, kwargs, foreach=None):
    """Build ``lib.optim.<name>`` over copies of ``init`` and feed it ``grads``."""
    params = [lib.tensor(a.copy(), requires_grad=True) for a in init]
    kw = dict(kwargs)
    if foreach is not None:
        kw["foreach"] = foreach
    opt = getattr(lib.optim, name)(params, **kw)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = lib.tensor(g.copy())
        opt.step()
    return params, opt


def torch_state_to_ember(sd):
    """Convert a torch optimizer state_dict to ember tensors through NumPy."""
    def conv(v):
        if hasattr(v, "detach"):
            return ember.tensor(v.detach().numpy().copy())
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v
    return {"state": {k: conv(v) for k, v in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def assert_state_close(sd_torch, sd_ember, atol=1e-6, check_dtype=True):
    """Same parameter indices, same keys, same values (and dtypes); same param-group options."""
    assert sd_torch["state"].keys() == sd_ember["state"].keys()
    for i, st in sd_torch["state"].items():
        est = sd_ember["state"][i]
        assert st.keys() == est.keys(), (i, st.keys(), est.keys())
        for k, v in st.items():
            np.testing.assert_allclose(to_numpy(est[k]), to_numpy(v), atol=atol, rtol=0,
                                       err_msg=f"state {i} {k}")
            if check_dtype and hasattr(v, "dtype"):
                assert str(est[k].dtype).split(".")[-1] == str(v.dtype).split(".")[-1], k
    for g, eg in zip(sd_torch["param_groups"], sd_ember["param_groups"]):
        assert g.keys() == eg.keys()
        assert g["params"] == eg["params"]
