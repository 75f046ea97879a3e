"""Bad inputs raise PyTorch's error types, with the offending shapes or dtypes in the message.

Each case is one call written once against a module (``torch`` or ``ember``). The test runs it
on both: torch must raise (this checks the case itself), ember must raise an exception of the
same builtin type (IndexError, RuntimeError, TypeError, ValueError), and ember's message must
name what the case lists: shapes (in any of the usual spellings: ``[2, 3]``, ``(2, 3)``,
``2x3``), sizes, indices or dtype names. The same words are checked in torch's message, so the
expectations are PyTorch's.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import ember  # noqa: E402

BUILTIN_ERRORS = (IndexError, TypeError, ValueError, NotImplementedError, RuntimeError)


def shape(*dims):
    """The spellings a message may use for a shape."""
    inner = ", ".join(map(str, dims))
    return (f"[{inner}]", f"({inner})", "x".join(map(str, dims)), " x ".join(map(str, dims)))


def dtype(torch_name, ember_name):
    """A dtype named the PyTorch way (``Long``, in kernel messages) or as ``int64``."""
    return (torch_name, ember_name, f"torch.{ember_name}", f"ember.{ember_name}")


def _raise(fn, mod):
    try:
        fn(mod)
    except Exception as exc:
        return exc
    return None


def _builtin_base(exc):
    return next(base for base in BUILTIN_ERRORS if isinstance(exc, base))


def _mentions(message, token):
    alternatives = token if isinstance(token, tuple) else (str(token),)
    return any(alt in message for alt in alternatives)


def F(mod):  # noqa: N802 (named like the usual import alias)
    return mod.nn.functional


CASES = {
    # matrix products
    "mm shape mismatch": (lambda m: m.mm(m.ones(2, 3), m.ones(4, 5)), [shape(2, 3), shape(4, 5)]),
    "matmul shape mismatch": (lambda m: m.matmul(m.ones(2, 3), m.ones(4, 5)),
                              [shape(2, 3), shape(4, 5)]),
    "matmul 0-d": (lambda m: m.matmul(m.tensor(1.0), m.ones(2)), ["0D", "1D"]),
    "bmm batch mismatch": (lambda m: m.bmm(m.ones(2, 3, 4), m.ones(3, 4, 5)), ["2", "3"]),
    "dot size mismatch": (lambda m: m.dot(m.ones(3), m.ones(4)), ["3", "4"]),
    "linear wrong in_features": (lambda m: m.nn.Linear(3, 2)(m.ones(4, 5)),
                                 [shape(4, 5), shape(3, 2)]),
    "linalg.inv non-square": (lambda m: m.linalg.inv(m.ones(2, 3)), ["2 by 3"]),
    # joining and shape changes
    "cat size mismatch": (lambda m: m.cat([m.ones(2, 3), m.ones(2, 4)], dim=0), ["3", "4"]),
    "cat zero-dim": (lambda m: m.cat([m.tensor(1.0), m.tensor(2.0)]), ["zero-dimensional"]),
    "cat dim out of range": (lambda m: m.cat([m.ones(2, 3)], dim=2), ["[-2, 1]", "2"]),
    "stack size mismatch": (lambda m: m.stack([m.ones(2, 3), m.ones(2, 4)]),
                            [shape(2, 3), shape(2, 4)]),
    "view incompatible size": (lambda m: m.ones(2, 3).view(4), [shape(4), "6"]),
    "view non-contiguous": (lambda m: m.ones(2, 3).t().view(6), ["view size"]),
    "reshape invalid": (lambda m: m.ones(2, 3).reshape(5), [shape(5), "6"]),
    "reshape two -1": (lambda m: m.ones(2, 3).reshape(-1, -1), ["only one dimension"]),
    "unsqueeze bad dim": (lambda m: m.ones(2, 3).unsqueeze(4), ["[-3, 2]", "4"]),
    "squeeze bad dim": (lambda m: m.ones(2, 3).squeeze(2), ["[-2, 1]", "2"]),
    "transpose bad dim": (lambda m: m.ones(2, 3).transpose(0, 5), ["[-2, 1]", "5"]),
    "permute wrong length": (lambda m: m.ones(2, 3).permute(0), ["2", "1"]),
    "expand bad size": (lambda m: m.ones(2, 3).expand(4, 3), ["4", "2", shape(4, 3)]),
    "expand too few sizes": (lambda m: m.ones(2, 3).expand(3), ["1", "2"]),
    "repeat too few dims": (lambda m: m.ones(2, 3).repeat(2), ["repeat dims"]),
    "split sizes wrong sum": (lambda m: m.ones(5).split([2, 2]), ["5", shape(2, 2)]),
    "chunk zero": (lambda m: m.ones(3).chunk(0), ["0"]),
    "broadcast mismatch": (lambda m: m.ones(2, 3) + m.ones(4), ["3", "4"]),
    "in-place broadcast to bigger": (lambda m: m.ones(3).add_(m.ones(2, 3)),
                                     [shape(3), shape(2, 3)]),
    "ones negative size": (lambda m: m.ones(-1), ["-1"]),
    "ragged nested list": (lambda m: m.tensor([[1, 2], [3]]), ["2", "1"]),
    # indexing
    "index out of range": (lambda m: m.ones(3)[5], ["5", "3"]),
    "negative index out of range": (lambda m: m.ones(3)[-4], ["-4", "3"]),
    "tensor index out of range": (lambda m: m.ones(3)[m.tensor([5])], ["5", "3"]),
    "too many indices": (lambda m: m.ones(3)[0, 0], ["1"]),
    "bool mask shape mismatch": (lambda m: m.ones(3)[m.tensor([True, False])], ["2", "3"]),
    "gather bad index": (lambda m: m.gather(m.ones(2, 3), 1, m.tensor([[5]])), ["5", "3"]),
    "gather index ndim": (lambda m: m.gather(m.ones(2, 3), 1, m.tensor([0])), ["dimensions"]),
    "gather float index": (lambda m: m.gather(m.ones(2, 3), 1, m.tensor([[0.0]])), ["int64"]),
    "index_select out of range": (lambda m: m.index_select(m.ones(3), 0, m.tensor([3])),
                                  ["index out of range"]),
    "embedding index out of range": (lambda m: F(m).embedding(m.tensor([5]), m.ones(3, 2)),
                                     ["index out of range"]),
    # dtypes
    "bool subtraction": (lambda m: m.tensor([True]) - m.tensor([False]), ["bool"]),
    "bool negation": (lambda m: -m.tensor([True]), ["bool"]),
    "mean of int": (lambda m: m.tensor([1, 2]).mean(), [dtype("Long", "int64")]),
    "bitwise and of float": (lambda m: m.ones(2) & m.ones(2), [dtype("Float", "float32")]),
    "in-place float into int": (lambda m: m.tensor([1, 2]).add_(1.5),
                                [dtype("Float", "float32"), dtype("Long", "int64")]),
    "add string": (lambda m: m.ones(2) + "a", []),
    "nll_loss float target": (lambda m: F(m).nll_loss(m.ones(2, 3), m.tensor([0.0, 1.0])),
                              [dtype("Long", "int64"), dtype("Float", "float32")]),
    # nn
    "conv2d wrong channels": (lambda m: m.nn.Conv2d(3, 4, 3)(m.ones(1, 2, 5, 5)),
                              [shape(1, 2, 5, 5), "3 channels", "2 channels"]),
    "conv2d kernel too big": (lambda m: m.nn.Conv2d(1, 1, 5)(m.ones(1, 1, 3, 3)),
                              ["Kernel size"]),
    "cross_entropy target out of range": (
        lambda m: F(m).cross_entropy(m.ones(2, 3), m.tensor([0, 5])), ["5"]),
    "cross_entropy batch mismatch": (
        lambda m: F(m).cross_entropy(m.ones(2, 3), m.tensor([0, 1, 2])), ["2", "3"]),
    "pad too long": (lambda m: F(m).pad(m.ones(2), (1, 1, 1, 1)), ["4", "1"]),
    "dropout p out of range": (lambda m: F(m).dropout(m.ones(2), p=1.5), ["1.5"]),
    "softmax dim out of range": (lambda m: F(m).softmax(m.ones(2, 3), dim=2), ["[-2, 1]", "2"]),
    # scalars and autograd
    "item of many elements": (lambda m: m.ones(2).item(), ["2 elements"]),
    "bool of many elements": (lambda m: bool(m.ones(2)), ["ambiguous"]),
    "max of empty": (lambda m: m.ones(0).max(), ["numel() == 0"]),
    "arange zero step": (lambda m: m.arange(0, 5, 0), ["step"]),
    "backward non-scalar": (lambda m: (m.ones(2, requires_grad=True) * 2).backward(),
                            ["scalar outputs"]),
    "backward without grad": (lambda m: m.ones(2).sum().backward(), ["does not require grad"]),
    "in-place on leaf": (lambda m: m.ones(2, requires_grad=True).add_(1), ["leaf"]),
}

# Where ember's error type or message differs and the fix is not a one-line local change.
XFAIL = {}


def _params():
    out = []
    for name, (fn, tokens) in CASES.items():
        marks = [pytest.mark.xfail(reason=XFAIL[name], strict=False)] if name in XFAIL else []
        out.append(pytest.param(fn, tokens, id=name, marks=marks))
    return out


@pytest.mark.parametrize("fn,tokens", _params())
def test_bad_input(fn, tokens):
    t_exc = _raise(fn, torch)
    assert t_exc is not None, "the case must be an error in PyTorch"
    for token in tokens:
        assert _mentions(str(t_exc), token), f"case words {token!r} not in torch's {t_exc!r}"
    e_exc = _raise(fn, ember)
    assert e_exc is not None, f"ember accepted it; torch raised {t_exc!r}"
    expected = _builtin_base(t_exc)
    assert isinstance(e_exc, expected), (
        f"ember raised {type(e_exc).__name__}({e_exc}); torch raises {expected.__name__}({t_exc})")
    for token in tokens:
        assert _mentions(str(e_exc), token), f"ember's message {str(e_exc)!r} lacks {token!r}"
