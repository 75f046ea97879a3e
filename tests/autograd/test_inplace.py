"""In-place ops, version counters and views, against PyTorch."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def test_modified_saved_tensor_raises():
    for mod in (ember, torch):
        a = mod.randn(3, requires_grad=True)
        b = a * 2
        c = b * b  # saves b
        b.add_(1)
        with pytest.raises(RuntimeError, match="one of the variables needed for gradient "
                           "computation has been modified by an inplace operation"):
            c.sum().backward()


def test_modified_saved_output_raises():
    for mod in (ember, torch):
        a = mod.randn(3, requires_grad=True)
        b = a.exp()  # saves its output
        b.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            b.sum().backward()


def test_error_message_names_version():
    a = ember.randn(3, requires_grad=True)
    b = a * 2
    c = b.sin()
    b.add_(1)
    with pytest.raises(RuntimeError, match=r"is at version 1; expected version 0 instead"):
        c.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises():
    for mod in (ember, torch):
        a = mod.randn(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used "
                           "in an in-place operation."):
            a.add_(1)
        with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
            a[:2].mul_(2)
        with mod.no_grad():
            a.add_(1)  # allowed without grad mode (optimizer updates)


def test_inplace_gradients_match_torch():
    res = []
    for mod in (ember, torch):
        a = mod.tensor([0.5, -1.0, 2.0], dtype=mod.float64, requires_grad=True)
        b = a * 1
        b.mul_(a)
        b.add_(3)
        b.exp_()
        b.sum().backward()
        res.append(a.grad.numpy())
    np.testing.assert_allclose(*res)


def test_view_shares_storage_and_writes_through():
    base = ember.zeros(2, 3)
    v = base[0]
    v.fill_(5)
    np.testing.assert_array_equal(base.numpy()[0], [5, 5, 5])
    w = base.view(6)
    w[4] = 7
    assert base[1, 1].item() == 7
    t = base.t()
    t[2, 1] = 9
    assert base[1, 2].item() == 9
    base.add_(1)
    assert v[0].item() == 6
    assert base._version == v._version == w._version


def test_version_counts_match_torch():
    def seq(mod):
        x = mod.zeros(4)
        out = [x._version]
        x.add_(1)
        out.append(x._version)
        x.mul_(2).sub_(1)
        out.append(x._version)
        x[0] = 3
        out.append(x._version)
        v = x[1:]
        v.zero_()
        out += [x._version, v._version]
        x.copy_(mod.ones(4))
        out.append(x._version)
        y = x + 1
        out.append(y._version)
        x += 1
        out.append(x._version)
        x.fill_(2)
        out.append(x._version)
        x.clamp_(0, 1)
        out.append(x._version)
        d = x.detach()
        d.add_(1)
        out.append(x._version)  # detach shares the version counter
        return out
    assert seq(ember) == seq(torch)


def test_data_does_not_share_version():
    for mod in (ember, torch):
        x = mod.zeros(3)
        x.data.add_(1)
        assert x._version == 0


def test_inplace_on_non_leaf_grad_fn_changes():
    for mod in (ember, torch):
        a = mod.randn(3, requires_grad=True)
        b = a * 2
        b.add_(1)
        assert b.grad_fn.name() == "AddBackward0"
        assert not b.is_leaf


def test_setitem_on_non_leaf_gradient():
    res = []
    for mod in (ember, torch):
        a = mod.tensor([1.0, 2.0, 3.0], dtype=mod.float64, requires_grad=True)
        b = a * 2
        b[1] = 0
        (b * b).sum().backward()
        res.append(a.grad.numpy())
    np.testing.assert_allclose(*res)


def test_detach_shares_memory():
    a = ember.randn(3, requires_grad=True)
    d = a.detach()
    assert not d.requires_grad and d.is_leaf
    d[0] = 10.0
    assert a[0].item() == 10.0


def test_detach_inplace():
    a = ember.randn(3, requires_grad=True)
    b = a * 2
    b.detach_()
    assert b.grad_fn is None and not b.requires_grad
