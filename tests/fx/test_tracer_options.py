"""Tracer options: ``param_shapes_constant`` (parameter shapes as Python values in the trace,
as PyTorch's ParameterProxy)."""

import pytest

import ember

torch = pytest.importorskip("torch")


def _model(mod):
    class M(mod.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = mod.nn.Parameter(mod.ones(3, 4))

        def forward(self, x):
            if self.w.shape[0] == 3 and self.w.dim() == 2:  # Python control flow on shapes
                x = x + self.w.sum()
            return x.reshape(-1, self.w.size()[1]) * self.w.numel() + self.w.ndim
    return M()


def test_param_shapes_constant_matches_torch_fx():
    graphs = {}
    for mod in (ember, torch):
        g = mod.fx.Tracer(param_shapes_constant=True).trace(_model(mod))
        graphs[mod.__name__] = [(n.op, getattr(n.target, "__name__", str(n.target)))
                                for n in g.nodes]
    assert graphs["ember"] == graphs["torch"]
    gm = ember.fx.GraphModule(_model(ember), ember.fx.Tracer(param_shapes_constant=True)
                              .trace(_model(ember)))
    x = ember.randn(2, 6)
    assert ember.equal(gm(x), _model(ember)(x))
    with pytest.raises(ember.fx.proxy.TraceError):
        ember.fx.Tracer().trace(_model(ember))  # without it the shape test is traced
