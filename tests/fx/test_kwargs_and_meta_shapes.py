"""symbolic_trace of forwards taking ``**kwargs`` (node for node as torch.fx), and ShapeProp
run on meta tensors: the shapes, dtypes and strides of every node equal a real run's and
torch.fx's ShapeProp on PyTorch's meta device."""

import numpy as np
import pytest

import ember
from ember.fx.passes.shape_prop import ShapeProp

from tests.export.models import cases

torch = pytest.importorskip("torch")


class KwModel:
    @staticmethod
    def make(lib):
        class M(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = lib.nn.Linear(3, 3)

            def forward(self, x, *rest, scale=2.0, **kw):
                return self.lin(x) * scale + rest[0] + kw["bias"] * kw["gain"]
        return M()


def _kinds(gm):
    return [(n.op, str(n.target).split(".")[-1]) for n in gm.graph.nodes]


def test_kwargs_forward_traces_like_torch_fx():
    gm = ember.fx.symbolic_trace(KwModel.make(ember))
    tgm = torch.fx.symbolic_trace(KwModel.make(torch))
    assert [k for k, _ in _kinds(gm)] == [k for k, _ in _kinds(tgm)]
    body = [t for k, t in _kinds(gm) if k != "placeholder"]
    assert body == [t for k, t in _kinds(tgm) if k != "placeholder"]
    placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    # torch.fx lists the keyword-only ``scale`` before ``*rest``; ember keeps signature order
    assert sorted(placeholders) == sorted(n.target for n in tgm.graph.nodes
                                          if n.op == "placeholder") == \
        ["**kw", "*rest", "scale", "x"]
    assert "**kw" in gm.code
    x, r, b = ember.randn(2, 3), ember.randn(2, 3), ember.randn(3)
    want = gm.lin(x) * 3.0 + r + b * 0.5
    got = gm(x, r, scale=3.0, bias=b, gain=0.5)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    # the regenerated module runs again after recompile, and its Interpreter too
    gm.recompile()
    np.testing.assert_allclose(gm(x, r, scale=3.0, bias=b, gain=0.5).detach().numpy(),
                               want.detach().numpy(), rtol=1e-6)


def test_kwargs_function_and_concrete_args():
    def f(x, **kw):
        return x + kw["y"]
    gm = ember.fx.symbolic_trace(f)
    np.testing.assert_allclose(gm(ember.ones(2), y=ember.full((2,), 2.0)).numpy(), [3.0, 3.0])
    with pytest.raises(NotImplementedError, match="kwargs"):
        ember.fx.symbolic_trace(f, concrete_args={"kw": {"y": 1}})


def _metas(gm):
    out = []
    for n in gm.graph.nodes:
        tm = n.meta.get("tensor_meta")
        if tm is not None and hasattr(tm, "shape"):
            out.append((n.name, tuple(tm.shape), str(tm.dtype).split(".")[-1],
                        tuple(tm.stride)))
    return out


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet18", "gpt_block"])
def test_shape_prop_on_meta_equals_a_real_run(name):
    factory, make_inputs = {n: (f, i) for n, f, i in cases()}[name]
    ember.manual_seed(0)
    model = factory().eval()
    inputs = make_inputs()
    real = ember.fx.symbolic_trace(model)
    ShapeProp(real).propagate(*inputs)
    meta = ember.fx.symbolic_trace(factory().eval().to("meta"))
    ShapeProp(meta).propagate(*[ember.empty(i.shape, dtype=i.dtype, device="meta")
                                for i in inputs])
    assert _metas(meta) == _metas(real) and len(_metas(real)) > 3
    out = [n for n in meta.graph.nodes if n.op == "output"][0]
    assert out.meta["tensor_meta"].shape == tuple(model(*inputs).shape)


def test_shape_prop_on_meta_matches_torch_fx():
    def build(lib):
        nn = lib.nn
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(8 * 3 * 3, 10), nn.LogSoftmax(-1))
    gm = ember.fx.symbolic_trace(build(ember).to("meta"))
    ShapeProp(gm).propagate(ember.empty(2, 3, 8, 8, device="meta"))
    tgm = torch.fx.symbolic_trace(build(torch).to("meta"))
    torch.fx.passes.shape_prop.ShapeProp(tgm).propagate(torch.empty(2, 3, 8, 8, device="meta"))
    assert _metas(gm) == _metas(tgm)
