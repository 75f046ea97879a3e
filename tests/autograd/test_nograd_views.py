"""Views made under ``no_grad``/``inference_mode`` of a tensor that requires grad (PyTorch's
view creation meta): they report ``requires_grad=True`` as leaves whose gradient goes
nowhere, and an in-place write to them (or to a view of them) with grad mode on raises
RuntimeError instead of silently changing a leaf behind autograd's back."""

import pytest

import ember

torch = pytest.importorskip("torch")

_VIEWS = {
    "slice": lambda t: t[:2],
    "index": lambda t: t[1],
    "view": lambda t: t.view(6),
    "reshape": lambda t: t.reshape(3, 2),
    "transpose": lambda t: t.t(),
    "unsqueeze": lambda t: t.unsqueeze(0),
    "unbind": lambda t: t.unbind(0)[1],
    "narrow": lambda t: t.narrow(1, 0, 2),
    "diagonal": lambda t: t.diagonal(),
}


def _both(fn):
    """``fn(m, base)`` for PyTorch and ember on the same values; bases are non-leaves too."""
    out = []
    for m in (torch, ember):
        m.manual_seed(0)
        out.append(fn(m))
    return out


@pytest.mark.parametrize("leaf", [True, False], ids=["leaf", "nonleaf"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("name", sorted(_VIEWS))
def test_flags_and_inplace_error(name, mode, leaf):
    def run(m):
        a = m.ones(2, 3, dtype=m.float64, requires_grad=True)
        base = a if leaf else a * 2
        with getattr(m, mode)():
            v = _VIEWS[name](base)
        flags = (v.requires_grad, v.is_leaf, v.grad_fn is None)
        with pytest.raises(RuntimeError, match="is being modified inplace"):
            v.mul_(2)
        with getattr(m, mode)():  # both inside the block: allowed, writes through
            v.add_(1)
        return flags, a.detach().numpy().copy(), base.detach().numpy().copy()

    (tf, ta, tb), (ef, ea, eb) = _both(run)
    assert ef == tf
    assert (ea == ta).all() and (eb == tb).all()


def test_view_of_such_a_view_in_grad_mode():
    def run(m):
        a = m.randn(4, requires_grad=True)
        with m.no_grad():
            v = a[:3]
        vv = v[1:]
        flags = (vv.requires_grad, vv.is_leaf)
        with pytest.raises(RuntimeError, match="view of a view which was created in no_grad"):
            vv.mul_(2)
        return flags

    t, e = _both(run)
    assert e == t == (True, False)


def test_gradient_goes_nowhere():
    def run(m):
        a = m.randn(3, dtype=m.float64, requires_grad=True)
        with m.no_grad():
            v = a[:2]
        y = (v * 2).sum()
        y.backward()
        with pytest.raises(RuntimeError, match="not have been used in the graph"):
            m.autograd.grad((v * 3).sum(), v)
        return y.requires_grad, v.grad, a.grad

    t, e = _both(run)
    assert e == t == (True, None, None)


def test_unaffected_cases():
    """Bases that do not require grad, detached bases, views in grad mode, and non-view
    ops under no_grad keep PyTorch's plain behaviour."""
    def run(m):
        b = m.zeros(3)
        a = m.zeros(3, requires_grad=True)
        with m.no_grad():
            bv = b[:2]
            dv = a.detach()[:2]
            n = a * 2
        bv.add_(1)
        dv.add_(1)
        n.add_(1)
        gv = (a * 1)[:2]
        gv.add_(1)
        return (bv.requires_grad, dv.requires_grad, n.requires_grad, gv.requires_grad,
                b.tolist(), a.tolist())

    t, e = _both(run)
    assert e == t


def test_parameter_updates_under_no_grad_still_work():
    """The optimizer pattern: views of parameters made and written under no_grad."""
    def run(m):
        m.manual_seed(0)
        lin = m.nn.Linear(3, 2).double()
        with m.no_grad():
            lin.weight[0].zero_()
            lin.weight.view(-1)[1:3].add_(1.0)
        return lin.weight.detach().numpy().copy()

    t, e = _both(run)
    assert e[0].tolist() == t[0].tolist() == [0.0, 1.0, 1.0]
    assert e.shape == t.shape
