"""ember.compile finds the models, optimizers and tensors a step updates inside plain objects
and dicts it reaches through globals; deeper than that, the capture refuses a tensor it would
hold as a frozen copy (one that requires grad, or one written in place) and the function runs
eagerly, so replays are never silently wrong (before: every replay returned the first loss)."""

import pytest

import ember
from ember import nn


class _Box:
    pass


def _holder(depth):
    ember.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    inner = _Box()
    inner.model, inner.opt = model, opt
    for _ in range(depth - 1):
        outer = _Box()
        outer.inner = inner
        inner = outer
    return inner


def _leaf(h):
    while not hasattr(h, "model"):
        h = h.inner
    return h


G = {"h": None, "d": None}
H = None


def _step_attr(x, y):
    box = _leaf(H)
    box.opt.zero_grad()
    loss = ((box.model(x) - y) ** 2).mean()
    loss.backward()
    box.opt.step()
    return loss


def _step_dict(x, y):
    G["d"]["opt"].zero_grad()
    loss = ((G["d"]["model"](x) - y) ** 2).mean()
    loss.backward()
    G["d"]["opt"].step()
    return loss


def _losses(fn, make, n=4):
    global H
    x, y = ember.randn(8, 4, generator=ember.Generator().manual_seed(1)), \
        ember.randn(8, 1, generator=ember.Generator().manual_seed(2))
    make()
    eager = [float(fn(x, y)) for _ in range(n)]
    make()
    c = ember.compile(fn)
    comp = [float(c(x, y)) for _ in range(n)]
    return eager, comp, c


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_step_through_attributes_of_a_global_object(depth):
    def make():
        global H
        H = _holder(depth)
    eager, comp, _ = _losses(_step_attr, make)
    assert len(set(eager)) == len(eager)  # the model trains
    assert comp == pytest.approx(eager, rel=1e-6, abs=1e-7)


def test_step_through_a_global_dict():
    def make():
        h = _holder(1)
        G["d"] = {"model": h.model, "opt": h.opt}
    eager, comp, _ = _losses(_step_dict, make)
    assert comp == pytest.approx(eager, rel=1e-6, abs=1e-7)


def test_deep_parameter_is_refused_with_fullgraph():
    global H
    H = _holder(3)
    c = ember.compile(_step_attr, fullgraph=True)
    with pytest.raises(ember._dynamo.exc.Unsupported, match="requires grad"):
        c(ember.randn(8, 4), ember.randn(8, 1))


def test_in_place_write_into_a_deep_tensor_is_never_frozen():
    global H
    H = _box = _Box()
    _box.inner = _Box()
    _box.inner.inner = _Box()
    _box.inner.inner.buf = ember.zeros(3)

    def f(x):
        b = H.inner.inner.buf
        b.add_(x)
        return b * 2
    x = ember.ones(3)
    c = ember.compile(f)
    outs = [c(x).tolist() for _ in range(3)]
    assert outs == [[2.0] * 3, [4.0] * 3, [6.0] * 3]
    assert H.inner.inner.buf.tolist() == [3.0] * 3


def test_step_with_model_and_optimizer_as_default_arguments():
    def run(compiled):
        h = _holder(1)

        def step(x, y, model=h.model, *, opt=h.opt):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        f = ember.compile(step) if compiled else step
        x = ember.randn(8, 4, generator=ember.Generator().manual_seed(1))
        y = ember.randn(8, 1, generator=ember.Generator().manual_seed(2))
        return [float(f(x, y)) for _ in range(4)]
    eager, comp = run(False), run(True)
    assert len(set(eager)) == len(eager)
    assert comp == pytest.approx(eager, rel=1e-6, abs=1e-7)
