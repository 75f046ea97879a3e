"""Compiled training-step lowerings that keep eager's results: max pooling that keeps its
argmax indices for the backward (a scatter, as eager's), convolution + ReLU as one node (the
activation in place), and Adam/AdamW updates as one C call per parameter group (bit for bit
eager's ``_adam``, over several steps, at one and two kernel threads)."""

import copy

import numpy as np
import pytest

import ember
from ember.compiler import _codegen, _optim

needs_cc = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")
nn = ember.nn


def _step_of(model, opt, loss_of=lambda out: out.pow(2).mean()):
    def step(x):
        loss = loss_of(model(x))
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    return step


def _compare(make, shape, dtype, tol, steps=20, opt=None):
    ember.manual_seed(0)
    ref = make().to(dtype)
    model = copy.deepcopy(ref)
    opt = opt or (lambda ps: ember.optim.SGD(ps, lr=0.01, momentum=0.9))
    eager = _step_of(ref, opt(ref.parameters()))
    compiled = ember.compile(_step_of(model, opt(model.parameters())))
    for _ in range(steps):
        x = ember.randn(*shape, dtype=dtype)
        a, b = eager(x), compiled(x)
        np.testing.assert_allclose(float(b), float(a), rtol=tol)
    for p, q in zip(ref.parameters(), model.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=tol * 10,
                                   atol=tol)
    assert len(compiled.entries) == 1 and not compiled.breaks
    return compiled


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("pool", [dict(kernel_size=2),                   # disjoint windows
                                  dict(kernel_size=3, stride=2, padding=1),  # overlapping
                                  dict(kernel_size=3, stride=1, dilation=2)])
def test_max_pool_keeps_its_indices_for_the_backward(dtype, pool):
    """Odd sizes, overlapping and dilated windows: the compiled step scatters the gradient
    at the forward's argmax as eager does (ties included: ReLU makes many zeros)."""
    def make():
        return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(**pool),
                             nn.Conv2d(5, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    c = _compare(make, (3, 3, 13, 11), dtype, tol=1e-10 if dtype == ember.float64 else 1e-5)
    assert c.pass_stats["pool_indices"] == 2
    assert c.pass_stats["conv_epilogues"] == 2


def test_max_pool_with_non_contiguous_and_channels_last_input():
    """A transposed input and a channels-last one reach the pass's fallback paths."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            y = self.conv(x.transpose(2, 3))
            y = y.contiguous(memory_format=ember.channels_last)
            return nn.functional.max_pool2d(y, 2, 2) + nn.functional.max_pool2d(
                x.transpose(2, 3), 2, 2).sum()
    _compare(M, (2, 2, 9, 8), ember.float64, 1e-10)


def test_max_pool_empty_batch_and_conv_relu_without_training():
    """An empty batch replays, and a forward-only compiled Conv + ReLU (no columns kept)
    takes the epilogue node."""
    ember.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2)).double().eval()
    cm = ember.compile(m)
    for n in (0, 3, 3):
        x = ember.randn(n, 2, 9, 9, dtype=ember.float64)
        with ember.no_grad():
            np.testing.assert_array_equal(cm(x).numpy(), m(x).numpy())


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
def test_lenet_like_step_bit_equal_at_one_and_two_threads(threads, monkeypatch):
    from ember import _threads
    monkeypatch.setattr(_threads, "get_num_threads", lambda: threads)

    def make():
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 10))
    _compare(make, (8, 1, 28, 28), ember.float32, steps=5, tol=1e-5,
             opt=lambda ps: ember.optim.SGD(ps, lr=0.01, momentum=0.9))


# ---------------------------------------------------------------------- Adam / AdamW in C
@needs_cc
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("cls,options", [
    ("AdamW", dict()),
    ("Adam", dict()),
    ("Adam", dict(weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(weight_decay=0.3, amsgrad=True, maximize=True, betas=(0.8, 0.99),
                   eps=1e-6)),
    ("Adam", dict(lr=ember.tensor(0.01))),
])
def test_adam_group_step_in_c_equals_eager_bit_for_bit(dtype, cls, options):
    """The compiled Adam update (one C call per group) against the optimizer's own code, on
    the same parameters, gradients and state, over several steps; parameters, both moments,
    the AMSGrad maximum and the step counts equal bit for bit."""
    rng = np.random.default_rng(3)
    shapes = [(600, 500), (700,), (5, 3), (1,), (0,)]   # the first runs in parallel
    made = []
    for _ in range(2):
        ps = [ember.tensor(rng.standard_normal(s), dtype=dtype, requires_grad=True)
              for s in shapes]
        made.append((ps, getattr(ember.optim, cls)(ps, **options)))
    (pa, oa), (pb, ob) = made
    for a, b in zip(pa, pb):
        b.data.copy_(a.data)
    for i in range(5):
        for a, b in zip(pa, pb):
            g = rng.standard_normal(a.shape) * (10 if i == 2 else 1)
            a.grad, b.grad = ember.tensor(g, dtype=dtype), ember.tensor(g, dtype=dtype)
        oa.step()                                       # eager
        group = ob.param_groups[0]
        versions = [b._version for b in pb]
        used = _optim.adam_group_step(ob, group)
        if not used:                                    # only the state's first step
            assert i == 0
            ob._step_group(0, group)
        else:
            assert all(b._version > v for b, v in zip(pb, versions))
        for a, b in zip(pa, pb):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
            for k, v in oa.state[a].items():
                np.testing.assert_array_equal(v.numpy(), ob.state[b][k].numpy(), err_msg=k)


@needs_cc
def test_adam_group_step_declines_what_it_does_not_serve():
    p = ember.randn(4, requires_grad=True)
    p.grad = ember.randn(4)
    sgd = ember.optim.SGD([p], lr=0.1)
    assert not _optim.adam_group_step(sgd, sgd.param_groups[0])
    adam = ember.optim.Adam([p])                        # no state yet
    assert not _optim.adam_group_step(adam, adam.param_groups[0])
    q = ember.randn(4, 2, requires_grad=True)
    q.grad = ember.randn(2, 4).t()                      # a non-contiguous gradient
    adam = ember.optim.Adam([q])
    adam.step()
    before = q.detach().numpy().copy()
    assert not _optim.adam_group_step(adam, adam.param_groups[0])
    np.testing.assert_array_equal(q.detach().numpy(), before)
    r, s = ember.randn(3, requires_grad=True), ember.randn(3, requires_grad=True)
    adam = ember.optim.Adam([r, s])
    r.grad, s.grad = ember.randn(3), ember.randn(3)
    adam.step()
    adam.state[s]["step"].fill_(5.0)                    # different step counts
    assert not _optim.adam_group_step(adam, adam.param_groups[0])


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_adamw_training_step_equals_eager(threads, monkeypatch):
    """A GELU MLP trained by AdamW for 20 compiled steps: losses and parameters equal eager's
    (float64, 1e-10) at one and two kernel threads; the update ran in C."""
    from ember import _threads
    monkeypatch.setattr(_threads, "get_num_threads", lambda: threads)
    calls = []
    real = _optim.adam_group_step
    monkeypatch.setattr(_optim, "adam_group_step",
                        lambda o, g, *rest: calls.append(1) or real(o, g, *rest))

    def make():
        return nn.Sequential(nn.Linear(33, 700), nn.GELU(), nn.Linear(700, 5))
    _compare(make, (17, 33), ember.float64, tol=1e-10,
             opt=lambda ps: ember.optim.AdamW(ps, lr=1e-3, weight_decay=0.05))
    assert calls


# ---------------------------------------------------------------------- what a step reaches
class _Caller:
    def __init__(self, f):
        self.f = f

    def __call__(self):
        return self.f()


@pytest.mark.parametrize("wrap", ["compiled", "partial", "callable_object"])
def test_parameters_reached_through_wrappers_are_updated_not_baked_in(wrap):
    """A training step compiled through a wrapper (a compiled function, a partial, a
    callable object) reads and updates the real parameters: before, they were captured as
    constant copies and every replay returned the first loss."""
    import functools

    def make():
        ember.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        x, y = ember.randn(5, 8), ember.randint(0, 3, (5,))
        opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(scale=1.0):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y) * scale
            loss.backward()
            opt.step()
            return loss
        return model, step
    (m1, s1), (m2, s2) = make(), make()
    f = {"compiled": lambda: ember.compile(ember.compile(s2)),
         "partial": lambda: ember.compile(functools.partial(s2, 1.0)),
         "callable_object": lambda: ember.compile(_Caller(s2))}[wrap]()
    for _ in range(5):
        np.testing.assert_allclose(float(f()), float(s1()), rtol=1e-6)
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-5,
                                   atol=1e-7)


# ---------------------------------------------------------------------- broadcast fusion
def _fused(fn):
    return [n.target for g in fn.graphs for n in g.nodes
            if isinstance(n.target, _codegen.FusedKernel)]


def _bcast_fn(x, col, row, s):
    # per-row (col), per-column (row) and one-value (s) leaves in one region
    return ((x - col) * row + s).tanh() * col - (x > 0).to(x.dtype) * row


@pytest.mark.parametrize("backend", [pytest.param("inductor", marks=needs_cc), "numpy"])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("shape", [(7, 13), (3, 5, 33), (1, 1), (2, 0, 4), (6, 1)])
def test_elementwise_regions_fuse_across_broadcasts(backend, dtype, shape):
    """Leaves that broadcast along rows or columns (bias, per-row statistics, scalars) join
    the region: one kernel, eager's values (odd sizes, one row, one column, empty)."""
    f = ember.compile(_bcast_fn, backend=backend)
    for _ in range(2):
        x = ember.randn(*shape, dtype=dtype)
        col = ember.randn(*shape[:-1], 1, dtype=dtype)
        row = ember.randn(shape[-1], dtype=dtype)
        s = ember.randn((), dtype=dtype)
        got, want = f(x, col, row, s), _bcast_fn(x, col, row, s)
        tol = 1e-6 if dtype == ember.float32 else 1e-12
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)
        assert got.shape == want.shape
    ks = _fused(f)
    assert len(ks) == 1 and ks[0].broadcast
    if min(shape) > 1:  # (1, 1) reads every leaf as one value; (6, 1) its row as one
        assert set(ks[0].leaf_kinds) == {"full", "col", "row", "scalar"}


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
def test_broadcast_kernel_non_contiguous_leaves_and_threads(threads, monkeypatch):
    """Transposed and sliced leaves are read right; 1 and 2 threads give the same bits (a
    region large enough to run in parallel)."""
    from ember import _threads
    monkeypatch.setattr(_threads, "get_num_threads", lambda: threads)
    f = ember.compile(_bcast_fn)
    x = ember.randn(700, 600).t()                           # non-contiguous, (600, 700)
    col = ember.randn(600, 2)[:, :1]                        # a sliced column
    row = ember.randn(1400)[::2]                            # a strided row
    s = ember.tensor(0.5)
    f(x, col, row, s)                                       # the capture (runs eagerly)
    got = f(x, col, row, s)
    want = _bcast_fn(x, col, row, s)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    assert _fused(f)[0].broadcast
    monkeypatch.setattr(_threads, "get_num_threads", lambda: 3 - threads)
    np.testing.assert_array_equal(f(x, col, row, s).numpy(), got.numpy())


def test_broadcast_fusion_with_a_dynamic_batch():
    f = ember.compile(_bcast_fn, dynamic=True)
    for n in (4, 9, 2, 0):
        x, col = ember.randn(n, 5), ember.randn(n, 1)
        row, s = ember.randn(5), ember.tensor(2.0)
        np.testing.assert_allclose(f(x, col, row, s).numpy(), _bcast_fn(x, col, row, s).numpy(),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_layer_norm_training_step_with_broadcast_fusion_matches_eager(dtype):
    """A layer norm + GELU MLP trained 20 steps: eager's losses and parameters. With
    ``nn.LayerNorm`` the step takes eager's one-pass layer-norm backward
    (``fuse_normalize_backward``); written out by hand, its captured backward is many
    broadcast elementwise ops around per-row means (broadcast fusion)."""
    class HandNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.w = nn.Parameter(ember.ones(d))

        def forward(self, x):
            xc = x - x.mean(-1, keepdim=True)
            return xc * ((xc * xc).mean(-1, keepdim=True) + 1e-5).rsqrt() * self.w

    tol = 1e-10 if dtype == ember.float64 else 1e-5
    c = _compare(lambda: nn.Sequential(nn.Linear(12, 31), nn.LayerNorm(31), nn.GELU(),
                                       nn.Linear(31, 3)), (9, 12), dtype, tol,
                 opt=lambda ps: ember.optim.AdamW(ps, lr=1e-2))
    assert c.pass_stats["normalize_grads"] == 1
    c = _compare(lambda: nn.Sequential(nn.Linear(12, 31), HandNorm(31), nn.GELU(),
                                       nn.Linear(31, 3)), (9, 12), dtype, tol,
                 opt=lambda ps: ember.optim.AdamW(ps, lr=1e-2))
    assert any(k.broadcast for k in _fused(c))


# ---------------------------------------------------------------------- stacked matmuls
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_stacked_matmuls_split_over_threads_keep_numpys_bits(threads, dtype, monkeypatch):
    """A product of two (B, M, K) x (B, K, N) stacks (attention's scores) runs blocks of the
    batch on ember's threads: the bits of NumPy's matmul, transposed operands and odd
    sizes included; a batch of one and mismatched batches take the plain op."""
    from ember import _parallel, _threads
    monkeypatch.setattr(_threads, "get_num_threads", lambda: threads)
    monkeypatch.setattr(_parallel, "get_num_threads", lambda: threads, raising=False)

    def f(q, k, v):
        return (q @ k.transpose(1, 2)).softmax(-1) @ v
    cf = ember.compile(f)
    for b in (37, 37, 1):
        q = ember.randn(b, 65, 33, dtype=dtype)
        k = ember.randn(b, 33, 65, dtype=dtype).transpose(1, 2)
        v = ember.randn(b, 65, 17, dtype=dtype)
        cf(q, k, v)
        got = cf(q, k, v).numpy()
        s = np.matmul(q.numpy(), np.swapaxes(k.numpy(), 1, 2))
        w = f(q, k, v)  # eager
        np.testing.assert_allclose(got, w.numpy(), rtol=1e-5 if dtype == ember.float32
                                   else 1e-12, atol=1e-6)
        assert s.shape == (b, 65, 65)
    assert any(g for g in cf.graphs)
    from ember.compiler._passes import _StackMatmul
    a = np.random.default_rng(0).standard_normal((9, 170, 31)).astype(dtype.np)
    c = np.random.default_rng(1).standard_normal((9, 140, 31)).astype(a.dtype)
    c = np.swapaxes(c, 1, 2)
    np.testing.assert_array_equal(_StackMatmul.forward(None, a, c), np.matmul(a, c))
    np.testing.assert_array_equal(_StackMatmul.forward(None, a[:1], c[:1]),
                                  np.matmul(a[:1], c[:1]))


def test_gpt_block_training_takes_the_fused_attention():
    """The compiled GPT-style step (attention captured as composed ops) runs eager's fused
    attention forward and backward (``fuse_attention``), no stacked products left."""
    def make():
        return nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    c = _compare(make, (5, 7, 16), ember.float64, 1e-10)
    assert c.pass_stats["attention"] == 1 and c.pass_stats["stacked_matmuls"] == 0


# ---------------------------------------------------------------------- update lanes
def test_lanes_cover_every_element_once_on_aligned_cuts():
    sizes = [300000, 700, 15, 1, 0, 40000]
    for parts in (1, 2, 3, 5):
        runs = _optim.lanes(sizes, parts)
        assert 1 <= len(runs) <= parts
        seen = [np.zeros(n, int) for n in sizes]
        flat = 0
        for k, run in enumerate(runs):
            for i, first, count in run:
                assert count > 0
                seen[i][first:first + count] += 1
                flat += count
            if k < len(runs) - 1:  # every cut but the end on a multiple of 16 elements
                i, first, count = run[-1]
                assert (sum(sizes[:i]) + first + count) % 16 == 0
        assert flat == sum(sizes) and all((s == 1).all() for s in seen)
    lens = [sum(c for _, _, c in run) for run in _optim.lanes(sizes, 2)]
    assert abs(lens[0] - lens[1]) <= 32


@needs_cc
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_group_update_lanes_same_bits_at_any_thread_count(kind, threads, monkeypatch):
    """The group update cut into runs on ember's pool (``_optim._run``: cuts inside
    tensors, several tensors per run) gives the bits of one call and of eager's optimizer,
    float32 and float64, over several steps."""
    monkeypatch.setattr(_optim, "LANE_MIN", 1 << 10)  # small tensors still cut
    prev = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        for dtype in (ember.float32, ember.float64):
            rng = np.random.default_rng(5)
            shapes = [(37, 29), (700,), (5, 3), (1,), (64, 33)]
            made = []
            for _ in range(2):
                ps = [ember.tensor(rng.standard_normal(s), dtype=dtype, requires_grad=True)
                      for s in shapes]
                opt = ember.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3) \
                    if kind == "sgd" else ember.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)
                made.append((ps, opt))
            (pa, oa), (pb, ob) = made
            for a, b in zip(pa, pb):
                b.data.copy_(a.data)
            step = _optim.sgd_group_step if kind == "sgd" else _optim.adam_group_step
            for i in range(4):
                for a, b in zip(pa, pb):
                    g = rng.standard_normal(a.shape)
                    a.grad, b.grad = ember.tensor(g, dtype=dtype), ember.tensor(g, dtype=dtype)
                oa.step()
                if not step(ob, ob.param_groups[0]):
                    assert i == 0
                    ob._step_group(0, ob.param_groups[0])
                for a, b in zip(pa, pb):
                    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
                    for k, v in oa.state[a].items():
                        np.testing.assert_array_equal(v.numpy(), ob.state[b][k].numpy())
    finally:
        ember.set_num_threads(prev)


@needs_cc
def test_group_update_runs_on_the_pool_in_one_hand_off(monkeypatch):
    """At two threads a large group's update is one ``run_split`` of two runs, each a
    one-thread kernel call (no OpenMP region)."""
    from ember import _parallel
    calls = []
    real = _parallel.run_split

    def spy(fn, bounds):
        calls.append(len(bounds))
        return real(fn, bounds)
    monkeypatch.setattr(_parallel, "run_split", spy)
    threads = []
    real_call = _optim._call
    monkeypatch.setattr(_optim, "_call", lambda fn, s, a, *rest: (threads.append(rest[-1]),
                                                                   real_call(fn, s, a, *rest)))
    prev = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        ps = [ember.randn(512, 300, requires_grad=True), ember.randn(300, requires_grad=True)]
        opt = ember.optim.SGD(ps, lr=0.1, momentum=0.9)
        for p in ps:
            p.grad = ember.randn(*p.shape)
        opt.step()  # makes the momentum buffers
        calls.clear()
        assert _optim.sgd_group_step(opt, opt.param_groups[0])
    finally:
        ember.set_num_threads(prev)
    assert calls == [2] and threads == [1, 1]


@needs_cc
def test_group_update_follows_rebound_parameter_and_state_arrays():
    """The addresses of parameters and optimizer state are cached per optimizer; a
    parameter whose array is rebound (``p.data = ...``) or state loaded anew is updated
    where it now lies, as eager updates it, and the cache stays bounded."""
    rng = np.random.default_rng(9)
    shapes = [(40, 30), (30,)]
    made = []
    for _ in range(2):
        ps = [ember.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
        made.append((ps, ember.optim.SGD(ps, lr=0.1, momentum=0.9)))
    (pa, oa), (pb, ob) = made
    for a, b in zip(pa, pb):
        b.data.copy_(a.data)
    for i in range(12):
        if i % 3 == 2:  # new arrays for the parameters, same values
            for a, b in zip(pa, pb):
                a.data = a.data.clone()
                b.data = b.data.clone()
        if i == 7:  # state loaded from a checkpoint: new buffers
            ob.load_state_dict(ob.state_dict())
            oa.load_state_dict(oa.state_dict())
        for a, b in zip(pa, pb):
            g = rng.standard_normal(a.shape)
            a.grad, b.grad = ember.tensor(g), ember.tensor(g)
        oa.step()
        if not _optim.sgd_group_step(ob, ob.param_groups[0]):
            assert i == 0
            ob._step_group(0, ob.param_groups[0])
        for a, b in zip(pa, pb):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
            np.testing.assert_array_equal(oa.state[a]["momentum_buffer"].numpy(),
                                          ob.state[b]["momentum_buffer"].numpy())
    assert len(_optim._ADDRS[ob]) <= 4 * 2 * len(shapes) + 2 * len(shapes)
