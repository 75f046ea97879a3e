"""Meta capture (``CompiledFunction._meta_capture``): a training step is first captured on
meta tensors, without arithmetic, and its first call runs the compiled program. The graph
must be the one a capture with data records, the first call must give eager's values and
state (gradients, optimizer state, BatchNorm statistics, the random generator), and
whatever a meta capture cannot record faithfully must fall back to a capture with data."""

import copy
import re

import numpy as np
import pytest

import ember
from ember import nn
from tests.export.models import GPTBlock, LeNet

TOL = {ember.float32: 1e-5, ember.float64: 1e-10}


@pytest.fixture(autouse=True)
def _meta_capture_on(monkeypatch):
    # opt-in (EMBER_META_CAPTURE=1): see ember/compiler/_core.py
    monkeypatch.setenv("EMBER_META_CAPTURE", "1")


def _close(a, b, tol, what=""):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    err = float(np.abs(a - b).max()) if a.size else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} x {scale:.3g}"


def _pair(make, dtype, opt=lambda ps: ember.optim.SGD(ps, lr=0.05, momentum=0.9)):
    ember.manual_seed(5)
    ref = make().to(dtype)
    model = copy.deepcopy(ref)
    return (ref, opt(ref.parameters())), (model, opt(model.parameters()))


def _step_of(model, opt, loss_of=lambda out: out.pow(2).mean()):
    def step(x):
        opt.zero_grad()
        loss = loss_of(model(x))
        loss.backward()
        opt.step()
        return loss
    return step


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("make,shape", [(LeNet, (2, 1, 28, 28)), (GPTBlock, (2, 6, 16))])
def test_first_call_on_meta_gives_eager_values_and_state(make, shape, dtype):
    (ref, ro), (model, mo) = _pair(make, dtype, lambda ps: ember.optim.AdamW(ps, lr=1e-2))
    eager, compiled = _step_of(ref, ro), ember.compile(_step_of(model, mo))
    x = ember.randn(*shape, dtype=dtype)
    for i in range(4):  # the first call warms AdamW up eagerly, the second is captured
        _close(compiled(x).detach().numpy(), eager(x).detach().numpy(), TOL[dtype], f"loss {i}")
        if i == 1:
            assert compiled.entries and compiled.entries[0].on_meta, compiled.meta_failure
            for (n, p), q in zip(model.named_parameters(), ref.parameters()):
                _close(p.grad.numpy(), q.grad.numpy(), TOL[dtype] * 10, f"grad {n}")
                for k, v in mo.state[p].items():
                    _close(np.asarray(v), np.asarray(ro.state[q][k]), TOL[dtype] * 10, k)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        _close(p.detach().numpy(), q.detach().numpy(), TOL[dtype] * 10, f"parameter {n}")
    assert not any(p.is_meta for p in model.parameters())
    assert not any(p.grad is not None and p.grad.is_meta for p in model.parameters())


def _strip(graph):
    """The graph's text without addresses; the order of the ``accumulate_grad`` nodes varies
    from run to run in captures with data too, so they are compared as a set."""
    lines = re.sub(r" at 0x[0-9a-f]+", "", str(graph)).splitlines()
    acc = [re.sub(r"%accumulate_grad(_\d+)?", "", ln) for ln in lines if "accumulate_grad" in ln]
    return [ln for ln in lines if "accumulate_grad" not in ln], sorted(acc)


def test_meta_graph_is_the_graph_captured_with_data(monkeypatch):
    graphs = []
    for meta in ("1", "0"):
        monkeypatch.setenv("EMBER_META_CAPTURE", meta)
        ember.manual_seed(0)
        m = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 3))
        opt = ember.optim.SGD(m.parameters(), lr=0.1)
        x, y = ember.randn(8, 12), ember.randint(0, 3, (8,))

        def step():
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        c = ember.compile(step)
        c()
        c()  # (a stateless SGD takes one eager step first, as every optimizer does)
        assert c.entries[0].on_meta == (meta == "1")
        graphs.append(_strip(c.entries[0].cap.graph))
    assert graphs[0] == graphs[1]


def test_dropout_and_batch_norm_on_meta_match_eager():
    """The generator is restored after the meta capture: the program draws the masks eager
    draws, and leaves the generator where eager leaves it; running statistics as eager's."""
    def make():
        return nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(),
                             nn.Dropout(0.5), nn.Linear(32, 1))
    (ref, ro), (model, mo) = _pair(make, ember.float64)
    eager, compiled = _step_of(ref, ro), ember.compile(_step_of(model, mo))
    x = ember.randn(16, 10, dtype=ember.float64)
    for i in range(3):
        ember.manual_seed(100 + i)
        got = compiled(x).item()
        after_compiled = ember.rand(3).numpy()
        ember.manual_seed(100 + i)
        want = eager(x).item()
        after_eager = ember.rand(3).numpy()
        assert abs(got - want) <= 1e-10 * max(1.0, abs(want)), (i, got, want)
        np.testing.assert_array_equal(after_compiled, after_eager)
    assert compiled.entries[0].on_meta, compiled.meta_failure
    for (n, b), c in zip(model.named_buffers(), ref.buffers()):
        _close(b.numpy(), c.numpy(), 1e-10, f"buffer {n}")


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        return h * 2 if h.sum() > 0 else h * 3  # a value read the step's own code hides


def test_value_read_inside_a_module_falls_back_to_a_capture_with_data():
    (ref, ro), (model, mo) = _pair(_Branchy, ember.float64)
    eager, compiled = _step_of(ref, ro), ember.compile(_step_of(model, mo))
    for i in range(4):
        x = ember.randn(3, 4, dtype=ember.float64) * (1 if i % 2 else -1)
        _close(compiled(x).detach().numpy(), eager(x).detach().numpy(), 1e-10, f"loss {i}")
    assert compiled.meta_failure  # why it was captured with data
    assert not any(e.on_meta for e in compiled.entries)
    assert not any(p.is_meta for p in model.parameters())
    for p, q in zip(model.parameters(), ref.parameters()):
        _close(p.detach().numpy(), q.detach().numpy(), 1e-9, "parameter")


def test_item_or_global_write_in_the_step_is_captured_with_data_from_the_start():
    """Python side effects before a refusal would run twice on the first call: a step whose
    own code reads a value or writes a global is not tried on meta at all."""
    m = nn.Linear(3, 1)
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    x = ember.randn(5, 3)
    calls = []

    def step():
        calls.append(1)
        loss = m(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()
    c = ember.compile(step)
    c()  # the optimizer's eager first step
    c()
    assert len(calls) == 2 and "item" in c.meta_failure and not c.entries[0].on_meta

    def step2():
        global _COUNT
        _COUNT = 1
        loss = m(x).pow(2).mean()
        loss.backward()
        return loss
    c2 = ember.compile(step2)
    c2()
    assert "_COUNT" in c2.meta_failure


_COUNT = 0


def test_tensors_sharing_memory_are_captured_with_data():
    w = ember.randn(4, 4, requires_grad=True)
    view = w.detach()[1]  # shares w's memory
    opt = ember.optim.SGD([w], lr=0.1)

    def step():
        loss = (w * 2).sum() + view.sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    eager_w = w.detach().numpy().copy()
    c = ember.compile(step)
    c()
    c()
    assert "share memory" in c.meta_failure and not any(e.on_meta for e in c.entries)
    np.testing.assert_allclose(w.detach().numpy(), eager_w - 0.4, rtol=1e-6)


def test_factories_on_the_input_device_and_arange_positions():
    """``zeros(..., device=x.device)`` and ``arange`` inside the step: the meta capture sees
    the CPU device outside the ops, and the factories become constants with data."""
    ember.manual_seed(1)
    emb = nn.Embedding(10, 6)
    opt = ember.optim.SGD(emb.parameters(), lr=0.1)
    idx = ember.randint(0, 10, (2, 5))

    def step(i):
        pos = ember.arange(i.shape[1], device=i.device)
        bias = ember.zeros(6, device=i.device) + 0.5
        loss = (emb(i) + pos.unsqueeze(-1) + bias).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    ref = copy.deepcopy(emb)
    ropt = ember.optim.SGD(ref.parameters(), lr=0.1)

    def eager(i):
        pos = ember.arange(i.shape[1])
        loss = (ref(i) + pos.unsqueeze(-1) + ember.zeros(6) + 0.5).pow(2).mean()
        loss.backward()
        ropt.step()
        ropt.zero_grad()
        return loss
    c = ember.compile(step)
    for _ in range(3):
        _close(c(idx).detach().numpy(), eager(idx).detach().numpy(), 1e-5, "loss")
    assert c.entries[0].on_meta, c.meta_failure
    _close(emb.weight.detach().numpy(), ref.weight.detach().numpy(), 1e-5, "weight")


def test_embedding_index_out_of_range_still_raises_on_the_first_call():
    emb = nn.Embedding(4, 3)
    opt = ember.optim.SGD(emb.parameters(), lr=0.1)

    def step(i):
        loss = emb(i).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    c = ember.compile(step)
    with pytest.raises(IndexError):
        c(ember.tensor([[0, 7]]))
    assert not emb.weight.is_meta and emb.weight.grad is None


def test_env_switch_turns_meta_capture_off(monkeypatch):
    monkeypatch.setenv("EMBER_META_CAPTURE", "0")
    m = nn.Linear(3, 2)
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    x = ember.randn(4, 3)

    def step():
        loss = m(x).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    c = ember.compile(step)
    c()
    c()
    assert not c.entries[0].on_meta and c.meta_failure is None


def test_forward_only_functions_are_captured_with_data():
    """A forward's capture costs about what running its program would: it keeps eager's
    values on the first call exactly."""
    m = nn.Linear(3, 2)
    x = ember.randn(4, 3)
    c = ember.compile(lambda v: ember.tanh(m(v)) * 2)
    np.testing.assert_array_equal(c(x).detach().numpy(), (ember.tanh(m(x)) * 2).detach().numpy())
    assert not c.entries[0].on_meta


def test_masked_scatter_is_refused_by_captures_and_runs_eagerly():
    """masked_scatter reads as many source elements as the mask has ones: a capture with data
    would bake the count in, a meta capture cannot know it."""
    w = ember.randn(6, requires_grad=True)
    opt = ember.optim.SGD([w], lr=0.1)

    def step(mask, src):
        loss = (w * 1.0).masked_scatter(mask, src).pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    c = ember.compile(step)
    src = ember.arange(6.0)
    for bits in ([1, 0, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1]):
        mask = ember.tensor(bits, dtype=ember.bool)
        before = w.detach().numpy().copy()
        got = c(mask, src).item()
        want = before.copy()
        want[np.asarray(bits, bool)] = np.arange(6.0)[:sum(bits)]
        assert abs(got - float((want ** 2).sum())) < 1e-4
    assert c.eager_only and any("masked_scatter" in b for b in c.breaks)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_scheduler_stepped_inside_the_step_on_meta(dtype):
    """The first call's update uses the learning rate the eager update uses (before the
    scheduler's step), and leaves the one the scheduler set."""
    def make():
        return nn.Linear(5, 3)

    def opt(ps):
        return ember.optim.SGD(ps, lr=0.5, momentum=0.9)
    (ref, ro), (model, mo) = _pair(make, dtype, opt)
    rs = ember.optim.lr_scheduler.StepLR(ro, step_size=1, gamma=0.5)
    ms = ember.optim.lr_scheduler.StepLR(mo, step_size=1, gamma=0.5)
    x = ember.randn(4, 5, dtype=dtype)

    def step_of(model, opt, sched):
        def step():
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            sched.step()
            return loss
        return step
    eager, compiled = step_of(ref, ro, rs), ember.compile(step_of(model, mo, ms))
    for i in range(2):
        _close(compiled().detach().numpy(), eager().detach().numpy(), TOL[dtype], f"loss {i}")
        _close(model.weight.detach().numpy(), ref.weight.detach().numpy(), TOL[dtype], "w")
        assert mo.param_groups[0]["lr"] == ro.param_groups[0]["lr"]
    assert compiled.entries[0].on_meta, compiled.meta_failure


def test_traps_on_meta_inplace_input_aliasing_output_guards():
    """An in-place write into an input, an input returned as an output, requires_grad
    toggled, train/eval switched and a changed batch size: each capture on meta, each
    call as eager's."""
    def make():
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.3),
                             nn.Linear(8, 2))
    (ref, ro), (model, mo) = _pair(make, ember.float64)

    def step_of(model, opt):
        def step(x):
            x.mul_(0.5)  # written into the caller's tensor
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            return loss, x
        return step
    eager, compiled = step_of(ref, ro), ember.compile(step_of(model, mo))
    calls = [(16, True, True), (16, True, True), (16, False, True), (8, False, True),
             (8, False, False), (16, True, True)]
    for i, (n, train, rg) in enumerate(calls):
        for m in (ref, model):
            m.train(train)
            m[0].weight.requires_grad_(rg)
        ember.manual_seed(i)
        xa = ember.randn(n, 4, dtype=ember.float64)
        xb = xa.clone()
        ember.manual_seed(50 + i)
        got, out_x = compiled(xa)
        ember.manual_seed(50 + i)
        want, _ = eager(xb)
        assert out_x is xa
        _close(xa.numpy(), xb.numpy(), 0, f"input written in place, call {i}")
        _close(got.detach().numpy(), want.detach().numpy(), 1e-10, f"loss {i}")
    assert len(compiled.entries) >= 4 and all(e.on_meta for e in compiled.entries), \
        compiled.meta_failure
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        _close(p.detach().numpy(), q.detach().numpy(), 1e-9, f"parameter {n}")
    for (n, b), c in zip(model.named_buffers(), ref.buffers()):
        _close(b.numpy(), c.numpy(), 1e-9, f"buffer {n}")
