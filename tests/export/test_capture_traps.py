"""The dispatch-level capture's traps: never silently wrong (DESIGN.md, STYLE.md)."""

import io

import numpy as np
import pytest

import ember
from ember import nn
from ember.export import DataDependentError, Dim, GuardError
from ember.export._capture import trace_program

from .models import MLP


def _eq(a, b):
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_item_and_bool_in_a_captured_region_name_the_line():
    class ItemUser(nn.Module):
        def forward(self, x):
            s = x.sum().item()  # the line the error must name
            return x * s

    class Branch(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    x = ember.randn(3)
    with pytest.raises(DataDependentError, match=r"\.item\(\).*test_capture_traps.py.*x.sum\(\)"):
        ember.export.export(ItemUser(), (x,))
    with pytest.raises(DataDependentError, match=r"bool\(\).*if x.sum\(\) > 0"):
        ember.export.export(Branch(), (x,))
    with pytest.raises(DataDependentError, match="tolist"):
        ember.jit.trace(lambda t: ember.tensor(t.tolist()), (x,))
    # after the error, nothing of the capture is left behind
    assert x.sum().item() == float(x.sum())
    assert not ember.autograd.graph._MODES


def test_values_of_constants_may_be_read_but_not_of_parameters():
    class Reader(nn.Module):
        def __init__(self, read_param):
            super().__init__()
            self.scale = nn.Parameter(ember.tensor(2.0))
            self.read_param = read_param

        def forward(self, x):
            if self.read_param:  # a parameter's value changes with training: never baked
                return x * float(self.scale.detach())
            return x * self.scale + ember.tensor([1.0, 2.0, 3.0]).sum().item()
    x = ember.randn(3)
    ep = ember.export.export(Reader(False), (x,))
    _eq(ep.module()(x), x * 2.0 + 6.0)
    with pytest.raises(DataDependentError, match="float"):
        ember.export.export(Reader(True), (x,))


def test_random_functions_are_random_ops():
    class Noisy(nn.Module):
        def forward(self, mu, logvar):  # a VAE's reparameterisation
            eps = ember.randn_like(mu)
            return mu + eps * ember.exp(0.5 * logvar) + ember.rand(mu.shape[0], 1,
                                                                  dtype=mu.dtype)
    m = Noisy()
    mu, lv = ember.randn(4, 3, dtype=ember.float64), ember.randn(4, 3, dtype=ember.float64)
    ep = ember.export.export(m, (mu, lv), dynamic_shapes={"mu": {0: Dim("n")},
                                                          "logvar": {0: Dim("n")}})
    assert sum("random_op" in str(n.target) for n in ep.graph.nodes) == 2
    ember.manual_seed(3)
    got = ep.module()(mu, lv)
    ember.manual_seed(3)
    _eq(got, m(mu, lv))
    assert not np.array_equal(ep.module()(mu, lv).numpy(), got.numpy())  # re-drawn
    buf = io.BytesIO()
    ember.export.save(ep, buf)
    buf.seek(0)
    mu6, lv6 = ember.randn(6, 3, dtype=ember.float64), ember.randn(6, 3, dtype=ember.float64)
    ember.manual_seed(4)
    got = ember.export.load(buf).module()(mu6, lv6)
    ember.manual_seed(4)
    _eq(got, m(mu6, lv6))


def test_random_draw_outside_an_op_is_refused():
    class Filler(nn.Module):
        def forward(self, x):
            return x + ember.empty(x.shape).uniform_()

    class WithGenerator(nn.Module):
        def forward(self, x):
            return x + ember.randn(x.shape, generator=ember.Generator())
    with pytest.raises(NotImplementedError, match="random draw"):
        ember.export.export(Filler(), (ember.randn(3),))
    with pytest.raises(NotImplementedError, match="generator="):
        ember.export.export(WithGenerator(), (ember.randn(3),))
    assert ember.randn is ember.ops.random.randn  # the capture's wrappers are gone


def test_dropout_is_a_random_op_redrawn_per_run():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = ember.randn(16, 8)
    ep = ember.export.export(m, (x,))
    names = [str(n.target) for n in ep.graph.nodes]
    assert any("DropoutMask" in t for t in names)
    ember.manual_seed(5)
    a = ep.module()(x)
    b = ep.module()(x)
    assert not np.array_equal(a.detach().numpy(), b.detach().numpy())  # re-drawn
    ember.manual_seed(5)
    got = ep.module()(x)
    ember.manual_seed(5)
    _eq(got, m(x))  # same generator state, same masks as eager


def test_train_and_eval_are_different_programs():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.3))
    x = ember.randn(8, 4)
    traced = ember.jit.trace(m, (x,))
    m.eval()
    with pytest.raises(GuardError, match="training mode at capture, now in eval mode"):
        traced(x)
    ep_eval = ember.export.export(m, (x,))
    assert not any("DropoutMask" in str(n.target) for n in ep_eval.graph.nodes)
    _eq(ep_eval.module()(x), m(x))


def test_batch_norm_running_stats_are_written_back():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    x = ember.randn(8, 4)
    ref = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ref.load_state_dict(m.state_dict())
    ep = ember.export.export(m, (x,))
    mod = ep.module()
    for _ in range(3):
        _eq(mod(x), ref(x))
    for k, v in ref.state_dict().items():
        _eq(mod.state_dict()[k], v)
    assert int(mod.state_dict()["1.num_batches_tracked"]) == 3


def test_inplace_on_views_and_buffers():
    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("count", ember.zeros(()))
            self.register_buffer("acc", ember.zeros(4))

        def forward(self, x):
            y = x.clone()
            y[:, 0] = 0.0          # setitem on the base
            row = y[1]             # a view
            row.mul_(3.0)          # in place on the view: y sees it
            y.t()[2].add_(1.0)     # in place on a view of a view
            self.count.add_(1)     # a buffer
            self.acc[1:3] += x[0, 1:3]  # a view of a buffer
            return y * 2, y.sum(0)

    x = ember.randn(3, 4)
    m = Views()
    ref = Views()
    ep = ember.export.export(m, (x,))
    mod = ep.module()
    for _ in range(2):
        got, want = mod(x), ref(x)
        for a, b in zip(got, want):
            _eq(a, b)
    _eq(mod.count, ref.count)
    _eq(mod.acc, ref.acc)
    # the traced (jit) form writes into the module's own buffers
    before = float(m.count)  # the exported module shares the module's buffers
    t = ember.jit.trace(m, (x,))
    t(x)
    assert float(m.count) == before + 2  # once by the trace, once by the call


def test_guards_on_dtype_rank_and_requires_grad():
    m = MLP()
    x = ember.randn(4, 8)
    cap = trace_program(lambda a: m(a) * 2, (x,), modules=[m])
    cap.run(ember.randn(4, 8))
    with pytest.raises(GuardError, match="dtype"):
        cap.run(ember.randn(4, 8, dtype=ember.float64))
    with pytest.raises(GuardError, match="2 dims"):
        cap.run(ember.randn(4, 8, 1))
    with pytest.raises(GuardError, match="requires_grad"):
        cap.run(ember.randn(4, 8, requires_grad=True))
    with ember.no_grad(), pytest.raises(GuardError, match="grad mode"):
        cap.run(x)
    m.eval()
    with pytest.raises(GuardError, match="eval mode"):
        cap.run(x)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_step_replay_updates_parameters_like_eager(dtype, opt_name):
    """forward + backward + optimizer.step captured once, replayed for several steps."""
    def make():
        ember.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3)).to(dtype)
        if opt_name == "sgd":
            opt = ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        else:
            opt = ember.optim.Adam(m.parameters(), lr=1e-2)
        return m, opt

    def stepper(m, opt):
        def step(x, y):
            opt.zero_grad()
            loss = nn.functional.mse_loss(m(x), y)
            loss.backward()
            opt.step()
            return loss.detach()
        return step

    ember.manual_seed(1)
    data = [(ember.randn(5, 6, dtype=dtype), ember.randn(5, 3, dtype=dtype)) for _ in range(5)]
    m1, o1 = make()
    m2, o2 = make()
    s1, s2 = stepper(m1, o1), stepper(m2, o2)
    s1(*data[0])
    s2(*data[0])  # stateful optimizers take one step before capture
    cap = trace_program(s2, data[1], modules=[m2])
    s1(*data[1])
    kinds = {str(n.target) for n in cap.graph.nodes if n.op == "call_function"}
    assert any("accumulate_grad" in k for k in kinds)
    assert any("optimizer_param_step" in k for k in kinds)
    assert any("Backward" in k or "Grad" in k or "Matmul" in k for k in kinds)
    for x, y in data[2:]:
        want, got = s1(x, y), cap.run(x, y)
        if dtype is ember.float64:
            _eq(got, want)
        else:
            np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-6,
                                       atol=1e-6)
    for p, q in zip(m1.parameters(), m2.parameters()):
        if dtype is ember.float64:
            _eq(q, p)
        else:
            np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-5,
                                       atol=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss", "cross_entropy_weighted"])
def test_training_step_with_class_losses_replays_new_targets(loss):
    """cross_entropy/nll_loss backward reads the saved target tensor (not arrays the forward
    kept), so a captured training step replays with new targets, ignore_index and weights
    exactly as eager steps do."""
    ember.manual_seed(0)
    m, ref = MLP(), MLP()
    ref.load_state_dict(m.state_dict())
    weight = ember.tensor([0.5, 1.0, 2.0, 1.5])

    def make_step(model):
        opt = ember.optim.SGD(model.parameters(), lr=0.1)

        def step(a, y):
            opt.zero_grad()
            out = model(a)
            if loss == "nll_loss":
                val = nn.functional.nll_loss(out.log_softmax(-1), y, ignore_index=1)
            elif loss == "cross_entropy":
                val = nn.functional.cross_entropy(out, y, ignore_index=1)
            else:
                val = nn.functional.cross_entropy(out, y, weight=weight, reduction="sum")
            val.backward()
            opt.step()
            return val.detach()
        return step
    step, ref_step = make_step(m), make_step(ref)
    data = [(ember.randn(4, 8), ember.randint(0, 4, (4,))) for _ in range(4)]
    cap = trace_program(step, data[0], modules=[m])
    ref_step(*data[0])
    for a, y in data[1:]:
        got, want = cap.run(a, y), ref_step(a, y)
        np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    for p, q in zip(m.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert not ember.autograd.graph._MODES


def test_layer_norm_step_is_ops_only():
    m = MLP()
    x = ember.randn(4, 8)

    def step(a):
        out = nn.functional.layer_norm(m(a), (4,))
        out.sum().backward()
        return out.detach()
    cap = trace_program(step, (x,), modules=[m])  # layer_norm's backward is ops-only
    for p in m.parameters():
        p.grad = None
    got = cap.run(ember.randn(4, 8) + 3)
    assert got.shape == (4, 4)


def test_custom_function_and_its_backward():
    class Square(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    w = nn.Parameter(ember.randn(3, dtype=ember.float64))

    def step(a):
        w.grad = None
        y = Square.apply(w * a).sum()
        y.backward()
        return w.grad.clone()
    x = ember.randn(3, dtype=ember.float64)
    cap = trace_program(step, (x,), persistent=[w])
    x2 = ember.randn(3, dtype=ember.float64)
    got = cap.run(x2)
    _eq(got, 2 * (w.detach() * x2) * x2)


def test_nested_capture_is_refused_and_state_is_restored():
    class Inner(nn.Module):
        def forward(self, x):
            ember.jit.trace(lambda a: a + 1, (x,))
            return x

    with pytest.raises(RuntimeError, match="inside another"):
        ember.export.export(Inner(), (ember.randn(2),))
    assert not ember.autograd.graph._MODES
    assert "grad" in ember.Tensor.__dict__ and ember.randn(2).shape == (2,)


def test_sorting_indices_follow_the_data_on_replay():
    # topk/sort/kthvalue/median(dim)/mode pick positions from the data: the captured graph
    # must recompute them for new inputs, not replay the example's positions
    class Picks(nn.Module):
        def forward(self, x):
            v, i = ember.topk(x, 2, dim=1)
            s, j = ember.sort(x, dim=1, descending=True)
            k = ember.kthvalue(x, 2, dim=1)
            m = ember.median(x, dim=1)
            return v, i, s, j, k.values, k.indices, m.values, m.indices

    model = Picks()
    x = ember.randn(3, 5, dtype=ember.float64)
    ep = ember.export.export(model, (x,))
    x2 = ember.randn(3, 5, dtype=ember.float64)
    for got, want in zip(ep.module()(x2), model(x2)):
        assert np.array_equal(got.numpy(), want.numpy())


def test_positions_computed_outside_dispatch_are_refused():
    class Q(nn.Module):
        def forward(self, x):
            return ember.quantile(x, 0.5, dim=1) + ember.median(x)

    with pytest.raises(NotImplementedError, match="graph capture"):
        ember.export.export(Q(), (ember.randn(3, 5),))
