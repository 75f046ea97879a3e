"""The short entries of the dispatch path for view ops, basic indexing and reductions
(``apply_with``: one Tensor followed by non-Tensor arguments; ``apply_unary`` for ``mean()``,
``max()``, ``min()``; ``_record_unary``/``_record_binary`` on the grad path) behave exactly
as ``Op.apply``: values and gradients as PyTorch's, node names, views sharing memory and
version counters, grad modes, active modes, saved-tensor hooks, meta tensors."""

import numpy as np
import pytest

import ember
from ember.autograd import graph as G

torch = pytest.importorskip("torch")

_OPS = {
    "view": lambda x: x.view(-1, x.shape[-1]) * 1.5,
    "view_flat": lambda x: x.view(x.numel()),
    "reshape": lambda x: x.reshape(x.shape[-1], -1),
    "reshape_tuple": lambda x: x.reshape((x.shape[0], x.shape[1] * x.shape[2])),
    "permute": lambda x: x.permute(2, 0, 1),
    "transpose": lambda x: x.transpose(-2, -1),
    "transpose02": lambda x: x.transpose(0, 2),
    "mT": lambda x: x.mT,
    "t": lambda x: x.flatten(1).t(),
    "t_1d": lambda x: x.flatten().t(),
    "index_int": lambda x: x[1] if x.shape[0] > 1 else x[0:0],
    "index_neg": lambda x: x[-1] if x.shape[0] else x[0:0],
    "slice": lambda x: x[:, 1:3],
    "tuple": lambda x: x[..., 1] if x.shape[0] else x[..., 1],
    "tuple_none": lambda x: x[None, :, 0],
    "sum_dim": lambda x: x.sum(1),
    "sum_neg_keep": lambda x: x.sum(-1, keepdim=True),
    "mean": lambda x: x.mean() if x.numel() else x.sum(),
    "mean_dim": lambda x: x.mean(2),
    "mean_neg_keep": lambda x: x.mean(-2, keepdim=True),
    "max": lambda x: x.max() if x.numel() else x.sum(),
    "min": lambda x: x.min() if x.numel() else x.sum(),
    "relu": lambda x: torch_or_ember(x).nn.functional.relu(x),
}


def torch_or_ember(x):
    return ember if isinstance(x, ember.Tensor) else torch


def _input(dtype, layout, rng):
    a = rng.standard_normal((3, 4, 5)).astype(dtype)
    a[0, 1, 2] = a[1, 2, 3]  # a tie for max/min
    if layout == "transposed":
        a = np.ascontiguousarray(a.transpose(2, 1, 0)).transpose(2, 1, 0)  # strides reversed
    elif layout == "empty":
        a = a[:0]
    return a


@pytest.mark.parametrize("op", list(_OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "empty"])
@pytest.mark.parametrize("threads", [1, 2])
def test_values_and_gradients_match_torch(op, dtype, layout, threads):
    before = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        a = _input(dtype, layout, np.random.default_rng(0))
        results = []
        for m in (ember, torch):
            x = m.tensor(a, requires_grad=True)
            if layout == "transposed":  # the same non-contiguous strides in both
                x = m.tensor(np.ascontiguousarray(a.transpose(2, 1, 0)),
                             requires_grad=True)
                leaf, x = x, x.permute(2, 1, 0)
            else:
                leaf = x
            try:
                r = _OPS[op](x)
            except RuntimeError as e:  # view of a non-viewable layout: both refuse
                results.append(type(e))
                continue
            (r * m.arange(r.numel(), dtype=r.dtype).reshape(r.shape)).sum().backward()
            with m.no_grad():
                r_ng = _OPS[op](x)
            results.append((r.detach().numpy(), r_ng.detach().numpy(), leaf.grad.numpy(), r.dtype,
                             r.grad_fn.name() if r.grad_fn is not None else None))
        e, t = results
        if not isinstance(e, tuple) or not isinstance(t, tuple):
            assert e == t
            return
        tol = 1e-5 if dtype == np.float32 else 1e-12
        for ve, vt in zip(e[:3], t[:3]):
            assert ve.shape == vt.shape
            np.testing.assert_allclose(ve, vt, rtol=tol, atol=tol)
        assert str(e[3]).split(".")[-1] == str(t[3]).split(".")[-1]
    finally:
        ember.set_num_threads(before)


@pytest.mark.parametrize("expr,name", [
    ("x.view(4, 5)", "ViewBackward0"), ("x.reshape(-1)", "ViewBackward0"),
    ("x.t().reshape(-1)", "UnsafeViewBackward0"), ("x.t()", "TBackward0"),
    ("x.transpose(0, 1)", "TransposeBackward0"), ("x.mT", "TransposeBackward0"),
    ("x.permute(1, 0)", "PermuteBackward0"), ("x[1]", "SelectBackward0"),
    ("x[1:3]", "SliceBackward0"), ("x[:, 1:3]", "SliceBackward0"),
    ("x[None]", "UnsqueezeBackward0"), ("x[1, 2]", "SelectBackward0"),
    ("x.sum(1)", "SumBackward1"), ("x.sum()", "SumBackward0"), ("x.mean()", "MeanBackward0"),
    ("x.mean(0)", "MeanBackward1"), ("x.max()", "MaxBackward1"), ("x.min()", "MinBackward1"),
    ("x.relu()", "ReluBackward0"), ("x.amax()", "AmaxBackward0"),
])
def test_node_names_match_torch(expr, name):
    for m in (ember, torch):
        x = m.randn(4, 5, requires_grad=True)  # noqa: F841 (read by eval)
        assert eval(expr).grad_fn.name() == name, m.__name__


def test_views_share_memory_and_version_counters():
    base = ember.randn(4, 6)
    for v in (base.view(24), base.reshape(2, 12), base.t(), base[1], base[:, 2:4],
              base.permute(1, 0), base.view(-1, 3)[1:], base[..., None]):
        assert v._base is base
        before = v._version
        base.add_(1.0)
        assert v._version == before + 1
    copy = base.t().reshape(-1)  # not viewable: a copy, no base
    assert copy._base is None
    assert base.t()[0]._base is base  # a view of a view points at the root


def test_view_errors_as_torch():
    for m in (ember, torch):
        x = m.randn(4, 6)
        for bad in (lambda: x.t().view(24), lambda: x.view(5, 5), lambda: x.view(-1, -1),
                    lambda: x.view(-2, 12), lambda: x.reshape(7, -1),
                    lambda: m.zeros(0, 3).reshape(-1, 0), lambda: x.t().t().t().view(-1)):
            with pytest.raises(RuntimeError):
                bad()
        with pytest.raises(IndexError):
            x.sum(2)
        with pytest.raises(IndexError):
            x[4]


def test_mean_and_max_bits_equal_numpy():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for n in (1, 5, 16, 17, 255, 1000):
            a = (rng.standard_normal((3, n)) * 10.0 ** rng.uniform(-4, 4)).astype(dtype)
            t = ember.tensor(a)
            assert t.mean().numpy().tobytes() == np.asarray(np.mean(a)).tobytes()
            assert t.mean(1).numpy().tobytes() == np.mean(a, axis=1).tobytes()
            assert t.mean(0, keepdim=True).numpy().tobytes() == \
                np.mean(a, axis=0, keepdims=True).tobytes()
            assert t.max().item() == a.max() and t.min().item() == a.min()
    nan = ember.tensor([1.0, float("nan"), 3.0])
    assert np.isnan(nan.max().item()) and np.isnan(nan.min().item())
    assert ember.tensor([3, 7, 1]).max().item() == 7  # integers keep their dtype
    assert ember.tensor([3, 7, 1]).max().dtype == ember.int64
    with pytest.raises(RuntimeError, match="numel"):
        ember.zeros(0).max()


def test_grad_path_bookkeeping_as_apply():
    x = ember.randn(3, 4, requires_grad=True)
    y = x * 2.0
    v = y.view(12)
    fn = v.grad_fn
    # one edge, metadata and needs_input_grad entry per argument, as Op.apply records them
    assert len(fn.next_functions) == 2 and fn.next_functions[1] == (None, 0)
    assert fn.needs_input_grad == (True, False)
    s = y.sum(1)
    assert len(s.grad_fn.next_functions) == 4 and s.grad_fn.needs_input_grad == \
        (True, False, False, False)
    # a saved output (Relu) is version-checked
    r = y.relu()
    r.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        r.sum().backward()
    with ember.no_grad():
        assert x.view(12).grad_fn is None and x.t().grad_fn is None and x.sum(0).grad_fn is None
    with ember.enable_grad():
        assert x.t().requires_grad


def test_saved_tensor_hooks_and_anomaly_mode_see_fast_path_ops():
    packed = []
    x = ember.randn(3, 4, requires_grad=True)
    with ember.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        y = (x * 1.0).relu().max()
    assert packed  # relu's output and max's input/output went through pack
    y.backward()
    with ember.autograd.detect_anomaly():
        z = x.t()[1].mean()
        w = x.view(12)
    assert z.grad_fn._anomaly_trace is not None and w.grad_fn._anomaly_trace is not None
    for trace in (z.grad_fn._anomaly_trace, w.grad_fn._anomaly_trace):
        assert any("test_saved_tensor_hooks" in f for f in trace)  # the caller's frames
        assert "autograd/graph.py" not in trace[-1]  # the dispatch's own frames left out


def test_active_modes_see_fast_path_ops():
    seen = []

    class Mode:
        def on_op(self, cls, args, kwargs, run):
            seen.append(cls.__name__)
            return run()

    x = ember.randn(3, 4, requires_grad=True)
    G._MODES.append(Mode())
    try:
        x.view(12).reshape(4, 3).t()[1].sum(0).relu().mean().max()
    finally:
        G._MODES.pop()
    assert seen == ["View", "Reshape", "Permute", "Index", "Sum", "Relu", "Mean", "MaxAll"]


def test_meta_tensors():
    m = ember.empty(3, 4, device="meta")
    for r in (m.view(12), m.reshape(4, 3), m.t(), m[1], m[:, 1:3], m.sum(1), m.mean(),
              m.mean(0), m.max(), m.relu()):
        assert r.device.type == "meta"
    assert m.t().shape == (4, 3) and m.sum(1).shape == (3,) and m.max().shape == ()


def test_symbolic_trace_records_the_ops_not_the_dispatch_entry():
    # ``fx.symbolic_trace`` diverts the public functions of ``ember.ops`` modules; the
    # dispatch entries are private names there, so a trace records the ops themselves
    class M(ember.nn.Module):
        def forward(self, x):
            return ember.sum(x.view(4, 5).t()[1:3], 1) + ember.mean(x) + \
                ember.transpose(x, 0, 1).sum(0)[:2] + ember.max(x)

    gm = ember.fx.symbolic_trace(M())
    names = [getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes]
    assert not any("apply" in name for name in names)
    x = ember.randn(4, 5)
    np.testing.assert_allclose(gm(x).numpy(), M()(x).numpy(), rtol=1e-6)
