"""``grad_fn._saved_<name>`` / ``_raw_saved_<name>`` and ``grad_fn.name()``/``metadata``
against PyTorch."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

CASES = [
    ("mul", lambda T, x, y: x * y, ["self", "other"]),
    ("div", lambda T, x, y: x / y, ["self", "other"]),
    ("mm", lambda T, x, y: x.mm(y), ["self", "mat2"]),
    ("exp", lambda T, x, y: x.exp(), ["result"]),
    ("tanh", lambda T, x, y: x.tanh(), ["result"]),
    ("sigmoid", lambda T, x, y: x.sigmoid(), ["result"]),
    ("relu", lambda T, x, y: x.relu(), ["result"]),
    ("sqrt", lambda T, x, y: (x * x + 1).sqrt(), ["result"]),
    ("sin", lambda T, x, y: x.sin(), ["self"]),
    ("cos", lambda T, x, y: x.cos(), ["self"]),
    ("log", lambda T, x, y: (x * x + 1).log(), ["self"]),
    ("softmax", lambda T, x, y: x.softmax(1), ["result"]),
    ("log_softmax", lambda T, x, y: x.log_softmax(1), ["result"]),
    ("pow_tensor", lambda T, x, y: (x * x + 1) ** y, ["self", "exponent", "result"]),
]


@pytest.mark.parametrize("name,fn,saved", CASES, ids=[c[0] for c in CASES])
def test_saved_values_match_pytorch(name, fn, saved):
    a = np.random.default_rng(0).uniform(-1, 1, (3, 3))
    b = np.random.default_rng(1).uniform(0.5, 1.5, (3, 3))
    xe, ye = ember.tensor(a, requires_grad=True), ember.tensor(b, requires_grad=True)
    xt, yt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    oe, ot = fn(ember, xe, ye), fn(torch, xt, yt)
    assert oe.grad_fn.name() == ot.grad_fn.name()
    for s in saved:
        ve = getattr(oe.grad_fn, "_saved_" + s)
        vt = getattr(ot.grad_fn, "_saved_" + s)
        np.testing.assert_allclose(ve.detach().numpy(), vt.detach().numpy(), rtol=1e-12)
        assert hasattr(oe.grad_fn, "_raw_saved_" + s)
    with pytest.raises(AttributeError):
        oe.grad_fn._saved_nonexistent


def test_saved_self_is_the_input_and_version_checked():
    x = ember.randn(3, requires_grad=True)
    y = x * 1
    z = y.sin()
    assert z.grad_fn._saved_self is y
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.grad_fn._saved_self


def test_raw_saved_register_hooks():
    for T in (torch, ember):
        log = []
        x = T.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x.exp()
        raw = y.grad_fn._raw_saved_result

        def pack(t):
            log.append("pack")
            return t.detach() * 1

        def unpack(p):
            log.append("unpack")
            return p

        raw.register_hooks(pack, unpack)
        assert log == ["pack"]
        y.sum().backward()
        assert log == ["pack", "unpack"], T
        np.testing.assert_allclose(x.grad.numpy(), np.exp([1.0, 2.0, 3.0]), rtol=1e-6)
        with pytest.raises(RuntimeError):
            raw.register_hooks(pack, unpack)  # already set (PyTorch), or freed


def test_saved_after_backward_is_freed():
    for T in (torch, ember):
        x = T.tensor([1.0, 2.0], requires_grad=True)
        y = x * x
        y.sum().backward()
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            y.grad_fn._saved_self


def test_metadata_dict():
    y = ember.ones(2, requires_grad=True) * 2
    y.grad_fn.metadata["k"] = 1
    assert y.grad_fn.metadata == {"k": 1}


def test_non_tensor_saved_values_match_pytorch():
    """Dims, sizes, flags and kept indices under PyTorch's ``_saved_<name>`` names."""
    torch = pytest.importorskip("torch")

    def run(lib):
        x = lib.ones(2, 3, requires_grad=True)
        cases = [(x.sum(1), ["dim"]), (x.softmax(1), ["dim"]), (x.log_softmax(0), ["dim"]),
                 (x.transpose(0, 1), ["dim0", "dim1"]), (x.view(3, 2), ["self_sym_sizes"]),
                 (lib.cat([x, x], 1), ["dim"]),
                 (x.mean(0), ["dim", "keepdim", "self_sym_sizes", "self_sym_numel"]),
                 (x.mean(), ["self_sym_sizes", "self_sym_numel"]),
                 (x.permute(1, 0), ["dims"]), (x[:1].expand(4, 3), ["self_sym_sizes"]),
                 (x.max(1)[0], ["dim", "keepdim", "self_sym_sizes", "indices"]),
                 (x.gather(1, lib.zeros(2, 1, dtype=lib.int64)),
                  ["dim", "index", "sparse_grad"]),
                 (lib.nn.functional.leaky_relu(x, 0.2), ["negative_slope"])]
        out = []
        for y, attrs in cases:
            for a in attrs:
                v = getattr(y.grad_fn, "_saved_" + a)
                out.append((y.grad_fn.name(), a, v.tolist() if hasattr(v, "tolist") else v))
        return out

    assert run(ember) == run(torch)
    with pytest.raises(AttributeError):
        ember.ones(2, requires_grad=True).sum().grad_fn._saved_dim
