"""nn.Module behaviour: registration, iteration, state_dict, hooks, containers, Parameter."""

from collections import OrderedDict

import numpy as np
import pytest

import ember
import ember.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(4, 2)
        self.scale = nn.Parameter(ember.ones(1))
        self.register_buffer("steps", ember.zeros(1))
        self.register_buffer("cache", ember.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


def test_registration_routing_and_iteration():
    m = Net()
    assert [n for n, _ in m.named_parameters()] == ["scale", "fc1.weight", "fc1.bias",
                                                    "fc2.weight", "fc2.bias"]
    assert [n for n, _ in m.named_buffers()] == ["steps", "cache"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert [n for n, _ in m.named_parameters(prefix="net", recurse=False)] == ["net.scale"]
    assert len(list(m.parameters())) == 5 and len(list(m.buffers())) == 2
    assert m.get_submodule("fc1") is m.fc1
    assert m.get_parameter("fc2.bias") is m.fc2.bias
    assert m.get_buffer("steps") is m.steps
    with pytest.raises(AttributeError, match="has no attribute `nope`"):
        m.get_submodule("nope")
    with pytest.raises(AttributeError, match="is not a buffer"):
        m.get_buffer("scale")
    # assigning a plain tensor to a parameter slot is refused, None is allowed
    with pytest.raises(TypeError, match="cannot assign"):
        m.scale = ember.ones(1)
    m.scale = None
    assert "scale" in m._parameters and m.scale is None
    # reassigning a buffer keeps it a buffer
    m.steps = ember.ones(1)
    assert "steps" in m._buffers
    del m.fc2
    assert "fc2" not in m._modules
    with pytest.raises(KeyError, match="can.*t contain"):
        m.register_buffer("a.b", ember.zeros(1))
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        m.missing
    assert "fc1" in dir(m) and "steps" in dir(m)


def test_shared_parameters_are_deduplicated():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.named_parameters(remove_duplicate=False))) == 4
    assert len(list(seq.modules())) == 2


def test_attribute_before_init_raises():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ember.ones(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_train_eval_requires_grad_zero_grad_apply():
    m = Net()
    m.eval()
    assert not m.training and not m.fc1.training
    m.train()
    assert m.fc1.training
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    m.requires_grad_(True)
    m(ember.randn(2, 3)).sum().backward()
    assert m.fc1.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert np.all(m.fc1.weight.grad.numpy() == 0)
    m.zero_grad()
    assert m.fc1.weight.grad is None
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Net"]


def test_dtype_conversion_keeps_parameter_identity():
    m = Net()
    w = m.fc1.weight
    m.double()
    assert m.fc1.weight is w and w.dtype == ember.float64 and m.steps.dtype == ember.float64
    m.to(ember.float32)
    assert w.dtype == ember.float32
    m.half()
    assert w.dtype == ember.float16
    with pytest.raises(TypeError, match="floating point or complex"):
        m.to(ember.int64)


def test_state_dict_and_load():
    m = Net()
    sd = m.state_dict()
    assert list(sd) == ["scale", "steps", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert sd._metadata[""] == {"version": 1} and "fc1" in sd._metadata
    assert not sd["fc1.weight"].requires_grad
    assert m.state_dict(keep_vars=True)["fc1.weight"] is m.fc1.weight
    assert list(m.state_dict(prefix="p."))[0] == "p.scale"
    m2 = Net()
    res = m2.load_state_dict(sd)
    assert repr(res) == "<All keys matched successfully>"
    np.testing.assert_array_equal(m2.fc1.weight.detach().numpy(),
                                  m.fc1.weight.detach().numpy())
    bad = OrderedDict(sd)
    bad["fc1.weight"] = ember.zeros(5, 5)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1.weight: copying a param with "
                                           r"shape ember.Size\(\[5, 5\]\) from checkpoint, the "
                                           r"shape in current model is ember.Size\(\[4, 3\]\)"):
        m2.load_state_dict(bad)
    partial = OrderedDict(sd)
    del partial["fc2.bias"]
    partial["extra"] = ember.zeros(1)
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "fc2.bias"'):
        m2.load_state_dict(partial)
    res = m2.load_state_dict(partial, strict=False)
    assert res.missing_keys == ["fc2.bias"] and res.unexpected_keys == ["extra"]
    # assign=True takes the given tensors instead of copying
    new = {k: v.clone() for k, v in sd.items()}
    m2.load_state_dict(new, assign=True)
    assert m2.fc1.weight._data is new["fc1.weight"]._data
    assert isinstance(m2.fc1.weight, nn.Parameter)


def test_overridable_state_dict_hooks_and_extra_state():
    class WithExtra(nn.Linear):
        def get_extra_state(self):
            return {"note": 7}

        def set_extra_state(self, state):
            self.loaded = state

    m = WithExtra(2, 2)
    sd = m.state_dict()
    assert sd["_extra_state"] == {"note": 7}
    m.load_state_dict(sd)
    assert m.loaded == {"note": 7}
    calls = []
    h = m.register_state_dict_pre_hook(lambda mod, prefix, keep: calls.append(prefix))
    h2 = m.register_state_dict_post_hook(lambda mod, d, prefix, meta: [d.pop("bias")] and None)
    assert "bias" not in m.state_dict() and calls == [""]
    h2.remove()
    m.register_state_dict_post_hook(lambda mod, d, prefix, meta: {})
    with pytest.raises(RuntimeError, match="must return None"):
        m.state_dict()
    h.remove()
    m.register_load_state_dict_post_hook(lambda mod, keys: keys.missing_keys.clear())
    assert m.load_state_dict({"weight": ember.zeros(2, 2),
                              "_extra_state": {}}).missing_keys == []


def test_forward_hooks():
    m = nn.Linear(2, 2)
    order = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = m.register_forward_hook(lambda mod, args, out: out + 1)
    m.register_forward_hook(lambda mod, args, out: order.append("second"))
    m.register_forward_hook(lambda mod, args, out: order.append("first"), prepend=True)
    out = m(ember.ones(1, 2))
    np.testing.assert_allclose(out.detach().numpy(), m.bias.detach().numpy()[None] + 1,
                               rtol=1e-6)
    assert order == ["first", "second"]
    h1.remove()
    h2.remove()
    kw = {}
    m.register_forward_pre_hook(lambda mod, args, kwargs: kw.update(kwargs), with_kwargs=True)
    m.register_forward_hook(lambda mod, args, kwargs, out: kw.update(seen=True),
                            with_kwargs=True)
    m(input=ember.ones(1, 2))
    assert "input" in kw and kw["seen"]


def test_forward_hook_always_call_runs_on_error():
    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")
    m = Boom()
    called = []
    m.register_forward_hook(lambda *a: called.append(1), always_call=True)
    with pytest.raises(ValueError):
        m(ember.ones(1))
    assert called == [1]


def test_global_hooks():
    from ember.nn.modules.module import register_module_forward_hook
    seen = []
    h = register_module_forward_hook(lambda mod, args, out: seen.append(type(mod).__name__))
    nn.Sequential(nn.ReLU())(ember.ones(1))
    h.remove()
    nn.ReLU()(ember.ones(1))
    assert seen == ["ReLU", "Sequential"]


def test_full_backward_hooks_match_torch():
    torch = pytest.importorskip("torch")
    res = {}
    for m in (torch, ember):
        lin = m.nn.Linear(3, 2).double()
        with m.no_grad():
            lin.weight.copy_(m.tensor(np.arange(6.0).reshape(2, 3)))
            lin.bias.zero_()
        rec = []
        lin.register_full_backward_pre_hook(lambda mod, go: rec.append(("pre", go[0].numpy())))
        lin.register_full_backward_hook(
            lambda mod, gi, go: (rec.append(("post", gi[0].numpy(), go[0].numpy())),
                                 (gi[0] * 2,))[1])
        x = m.tensor(np.ones((1, 3)), requires_grad=True)
        lin(x).sum().backward()
        res[m.__name__] = (rec, x.grad.numpy(), lin.weight.grad.numpy())
    (er, ex, ew), (tr, tx, tw) = res["ember"], res["torch"]
    assert [r[0] for r in er] == [r[0] for r in tr] == ["pre", "post"]
    for a, b in zip(er, tr):
        for u, v in zip(a[1:], b[1:]):
            np.testing.assert_allclose(u, v)
    np.testing.assert_allclose(ex, tx)
    np.testing.assert_allclose(ew, tw)


def test_backward_hook_without_input_grad():
    lin = nn.Linear(2, 2)
    got = []
    lin.register_full_backward_hook(lambda mod, gi, go: got.append((gi, go)))
    lin(ember.ones(1, 2)).sum().backward()
    assert got and got[0][0] == (None,) and got[0][1][0].shape == (1, 2)


def test_repr_and_extra_repr():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(1, 1)

        def extra_repr(self):
            return "k=3\nmode='x'"
    assert repr(Custom()) == ("Custom(\n  k=3\n  mode='x'\n  (inner): Linear(in_features=1, "
                              "out_features=1, bias=True)\n)")
    assert repr(nn.Module()) == "Module()"


def test_parameter_and_buffer():
    t = ember.ones(2)
    p = nn.Parameter(t)
    assert p.requires_grad and isinstance(p, ember.Tensor) and p._data is t._data
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor([1., 1.], requires_grad=True)")
    assert str(p) == repr(p)
    m = nn.Module()
    m.b = nn.Buffer(ember.zeros(3), persistent=False)
    assert "b" in m._buffers and "b" not in m.state_dict()
    import copy
    import pickle
    q = copy.deepcopy(p)
    assert isinstance(q, nn.Parameter) and q._data is not p._data
    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, nn.Parameter) and r.requires_grad


def test_lazy_linear():
    m = nn.LazyLinear(3)
    y = m(ember.randn(2, 5))
    assert y.shape == (2, 3) and type(m) is nn.Linear and m.weight.shape == (3, 5)
    assert m.in_features == 5


def test_sequential_container_api():
    a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    s = nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b
    assert isinstance(s[0:1], nn.Sequential) and len(s[0:1]) == 1
    s.append(c)
    assert s[2] is c
    s.insert(0, nn.Identity())
    assert list(s._modules) == ["0", "1", "2", "3"] and s[1] is a
    del s[0]
    assert s[0] is a and list(s._modules) == ["0", "1", "2"]
    s.extend([nn.ReLU()])
    assert len(s) == 4
    s[1] = nn.ELU()
    assert isinstance(s[1], nn.ELU)
    d = nn.Sequential(OrderedDict([("x", a), ("y", b)]))
    assert d.x is a and list(d._modules) == ["x", "y"]
    assert len(s + d) == 6
    with pytest.raises(IndexError, match="out of range"):
        s[10]
    out = nn.Sequential(nn.Linear(2, 3), nn.ReLU())(ember.ones(4, 2))
    assert out.shape == (4, 3)


def test_module_list_dict_parameter_containers():
    ml = nn.ModuleList([nn.ReLU(), nn.ReLU()])
    ml.append(nn.Tanh())
    ml.insert(0, nn.Identity())
    ml += [nn.ELU()]
    assert len(ml) == 5 and isinstance(ml[-1], nn.ELU) and isinstance(ml[1:3], nn.ModuleList)
    assert repr(nn.ModuleList([nn.ReLU()] * 3)) == "ModuleList(\n  (0-2): 3 x ReLU()\n)"
    md = nn.ModuleDict({"b": nn.ReLU(), "a": nn.Tanh()})
    assert list(md.keys()) == ["b", "a"] and "a" in md
    md.update([("c", nn.ELU())])
    assert md.pop("b") is not None and len(md) == 2
    pl = nn.ParameterList([ember.ones(2), nn.Parameter(ember.zeros(3))])
    assert isinstance(pl[0], nn.Parameter) and len(list(pl.parameters())) == 2
    pl.append(ember.ones(1))
    assert len(pl) == 3
    pd = nn.ParameterDict({"w": ember.ones(2)})
    pd["v"] = nn.Parameter(ember.zeros(1))
    assert isinstance(pd["w"], nn.Parameter) and list(pd) == ["w", "v"]
    assert [n for n, _ in pd.named_parameters()] == ["w", "v"]
    with pytest.raises(RuntimeError, match="should not be called"):
        pl()


def test_call_fast_path_skips_hook_machinery(monkeypatch):
    m = nn.Linear(2, 2)

    def fail(*a):
        raise AssertionError("hook path taken without hooks")
    monkeypatch.setattr(nn.Module, "_call_with_hooks", fail)
    m(ember.ones(1, 2))
    m.register_forward_hook(lambda *a: None)
    with pytest.raises(AssertionError, match="hook path"):
        m(ember.ones(1, 2))
