"""Module parity with PyTorch: the same state_dict gives the same outputs and gradients (of
inputs and parameters) in train and eval mode; reprs and state_dict keys match."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ember  # noqa: E402


def _np(t):
    return t.detach().numpy()


def load_from_torch(em, tm):
    sd = {k: ember.tensor(v.numpy()) for k, v in tm.state_dict().items()}
    res = em.load_state_dict(sd, strict=True)
    assert res.missing_keys == [] and res.unexpected_keys == []


def parity(make, shapes, modes=(True, False), int_inputs=None, atol=1e-9, rtol=1e-7, seed=0):
    """Build ``make(torch)`` and ``make(ember)`` in float64, copy torch's weights across and
    compare outputs, input/parameter gradients and buffers in each mode."""
    tm, em = make(torch).double(), make(ember).double()
    load_from_torch(em, tm)
    assert list(tm.state_dict()) == list(em.state_dict())
    assert repr(tm) == repr(em)
    rng = np.random.default_rng(seed)
    for mode in modes:
        tm.train(mode)
        em.train(mode)
        arrays = [rng.standard_normal(s) for s in shapes]
        t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
        e_in = [ember.tensor(a, requires_grad=True) for a in arrays]
        extra = list(int_inputs or [])
        t_out = tm(*t_in, *[torch.tensor(x) for x in extra])
        e_out = em(*e_in, *[ember.tensor(x) for x in extra])
        np.testing.assert_allclose(_np(e_out), _np(t_out), atol=atol, rtol=rtol,
                                   err_msg=f"output (train={mode})")
        g = rng.standard_normal(tuple(t_out.shape))
        t_out.backward(torch.tensor(g))
        e_out.backward(ember.tensor(g))
        for i, (a, b) in enumerate(zip(e_in, t_in)):
            np.testing.assert_allclose(_np(a.grad), _np(b.grad), atol=atol, rtol=rtol,
                                       err_msg=f"grad of input {i} (train={mode})")
        tp = dict(tm.named_parameters())
        for name, p in em.named_parameters():
            np.testing.assert_allclose(_np(p.grad), _np(tp[name].grad), atol=atol, rtol=rtol,
                                       err_msg=f"grad of {name} (train={mode})")
        tb = dict(tm.named_buffers())
        for name, b in em.named_buffers():
            np.testing.assert_allclose(_np(b), _np(tb[name]), atol=atol, rtol=rtol,
                                       err_msg=f"buffer {name} (train={mode})")
        tm.zero_grad()
        em.zero_grad()


CASES = [
    (lambda m: m.nn.Linear(4, 3), [(5, 4)]),
    (lambda m: m.nn.Linear(4, 3, bias=False), [(2, 5, 4)]),
    (lambda m: m.nn.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    (lambda m: m.nn.Sequential(m.nn.Identity(), m.nn.Flatten(), m.nn.Unflatten(1, (2, 6))),
     [(3, 3, 4)]),
    (lambda m: m.nn.BatchNorm1d(3), [(6, 3)]),
    (lambda m: m.nn.BatchNorm1d(3, momentum=None, affine=False), [(6, 3, 4)]),
    (lambda m: m.nn.BatchNorm2d(3, track_running_stats=False), [(4, 3, 2, 2)]),
    (lambda m: m.nn.BatchNorm2d(3, eps=1e-3, momentum=0.5), [(4, 3, 2, 3)]),
    (lambda m: m.nn.BatchNorm3d(2, bias=False), [(2, 2, 2, 2, 3)]),
    (lambda m: m.nn.LayerNorm(4), [(3, 5, 4)]),
    (lambda m: m.nn.LayerNorm([5, 4], elementwise_affine=False), [(3, 5, 4)]),
    (lambda m: m.nn.LayerNorm(4, bias=False), [(3, 4)]),
    (lambda m: m.nn.GroupNorm(2, 4), [(3, 4, 5)]),
    (lambda m: m.nn.GroupNorm(1, 4, affine=False), [(2, 4, 3, 3)]),
    (lambda m: m.nn.InstanceNorm1d(3), [(2, 3, 5)]),
    (lambda m: m.nn.InstanceNorm1d(3, affine=True, track_running_stats=True), [(2, 3, 5)]),
    (lambda m: m.nn.InstanceNorm2d(3, affine=True), [(3, 4, 4)]),
    (lambda m: m.nn.LocalResponseNorm(3), [(2, 5, 3, 3)]),
    (lambda m: m.nn.RMSNorm(4), [(3, 4)]),
    (lambda m: m.nn.RMSNorm([2, 4], eps=1e-4, elementwise_affine=False), [(3, 2, 4)]),
    (lambda m: m.nn.PReLU(), [(3, 4)]),
    (lambda m: m.nn.PReLU(3, init=0.1), [(2, 3, 4)]),
    (lambda m: m.nn.Sequential(m.nn.ReLU(), m.nn.ReLU6(), m.nn.LeakyReLU(0.2), m.nn.ELU(0.7),
                               m.nn.SELU(), m.nn.CELU(1.2)), [(4, 5)]),
    (lambda m: m.nn.Sequential(m.nn.GELU(), m.nn.GELU("tanh"), m.nn.SiLU(), m.nn.Mish(),
                               m.nn.Softplus(2.0, 5.0), m.nn.Softsign()), [(4, 5)]),
    (lambda m: m.nn.Sequential(m.nn.Hardtanh(-2, 2), m.nn.Hardsigmoid(), m.nn.Hardswish(),
                               m.nn.Hardshrink(0.1), m.nn.Softshrink(0.1), m.nn.Tanhshrink()),
     [(4, 5)]),
    (lambda m: m.nn.Sequential(m.nn.Threshold(0.1, 20.0), m.nn.Sigmoid(), m.nn.Tanh(),
                               m.nn.LogSigmoid()), [(4, 5)]),
    (lambda m: m.nn.Sequential(m.nn.Softmax(1), m.nn.LogSoftmax(0), m.nn.Softmin(-1)),
     [(4, 5)]),
    (lambda m: m.nn.Sequential(m.nn.Softmax2d(), m.nn.GLU(1)), [(2, 4, 3, 3)]),
    (lambda m: m.nn.RReLU(), [(4, 5)]),
    (lambda m: m.nn.Sequential(m.nn.Linear(6, 8), m.nn.ReLU(inplace=True), m.nn.Dropout(0.0),
                               m.nn.BatchNorm1d(8), m.nn.Linear(8, 2), m.nn.LogSoftmax(1)),
     [(5, 6)]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_module_parity(case):
    make, shapes = CASES[case]
    # RReLU is random in training mode: compare eval only
    modes = (False,) if "RReLU" in repr(make(ember)) else (True, False)
    parity(make, shapes, modes=modes)


def test_distance_modules():
    parity(lambda m: m.nn.CosineSimilarity(dim=1, eps=1e-6), [(4, 3), (4, 3)])
    parity(lambda m: m.nn.PairwiseDistance(p=3.0, keepdim=True), [(4, 3), (4, 3)])


LOSSES = [
    (lambda m: m.nn.L1Loss(), [(3, 4), (3, 4)], None),
    (lambda m: m.nn.MSELoss(reduction="sum"), [(3, 4), (3, 4)], None),
    (lambda m: m.nn.SmoothL1Loss(beta=0.5), [(3, 4), (3, 4)], None),
    (lambda m: m.nn.HuberLoss(delta=0.5, reduction="none"), [(3, 4), (3, 4)], None),
    (lambda m: m.nn.CrossEntropyLoss(), [(5, 4)], [np.array([0, 3, 1, 1, 2])]),
    (lambda m: m.nn.CrossEntropyLoss(weight=m.tensor([1.0, 2.0, 0.5, 1.0]), ignore_index=1,
                                     label_smoothing=0.1), [(5, 4)],
     [np.array([0, 3, 1, 1, 2])]),
    (lambda m: m.nn.NLLLoss(reduction="sum"), [(5, 4)], [np.array([0, 3, 1, 1, 2])]),
    (lambda m: m.nn.BCEWithLogitsLoss(pos_weight=m.tensor([2.0, 1.0, 0.5])), [(4, 3), (4, 3)],
     None),
    (lambda m: m.nn.KLDivLoss(reduction="batchmean", log_target=True), [(4, 3), (4, 3)], None),
    (lambda m: m.nn.PoissonNLLLoss(), [(4, 3), (4, 3)], None),
    (lambda m: m.nn.GaussianNLLLoss(), [(4, 3), (4, 3)], None),
    (lambda m: m.nn.TripletMarginLoss(margin=0.5), [(4, 3), (4, 3), (4, 3)], None),
    (lambda m: m.nn.TripletMarginWithDistanceLoss(swap=True), [(4, 3), (4, 3), (4, 3)], None),
    (lambda m: m.nn.MultiMarginLoss(p=2), [(4, 5)], [np.array([0, 4, 2, 2])]),
    (lambda m: m.nn.MultiLabelMarginLoss(), [(2, 4)], [np.array([[3, 0, -1, 1],
                                                                  [1, 2, 3, 0]])]),
    (lambda m: m.nn.MarginRankingLoss(0.1), [(4,), (4,)], [np.array([1.0, -1, 1, -1])]),
    (lambda m: m.nn.CosineEmbeddingLoss(0.1), [(4, 3), (4, 3)], [np.array([1.0, -1, 1, -1])]),
    (lambda m: m.nn.HingeEmbeddingLoss(), [(4,)], [np.array([1.0, -1, 1, -1])]),
    (lambda m: m.nn.SoftMarginLoss(), [(4,)], [np.array([1.0, -1, 1, -1])]),
    (lambda m: m.nn.MultiLabelSoftMarginLoss(), [(4, 3)], [np.array([[1.0, 0, 1]] * 4)]),
]


@pytest.mark.parametrize("case", range(len(LOSSES)))
def test_loss_module_parity(case):
    make, shapes, extra = LOSSES[case]
    if case == 9 or case == 10:  # Poisson/Gaussian: the last input is a rate/variance
        tm, em = make(torch), make(ember)
        rng = np.random.default_rng(3)
        a, b = rng.standard_normal((4, 3)), rng.random((4, 3)) + 0.1
        args_t = [torch.tensor(a, requires_grad=True), torch.tensor(b)]
        args_e = [ember.tensor(a, requires_grad=True), ember.tensor(b)]
        if case == 10:
            args_t.append(torch.tensor(b + 0.5))
            args_e.append(ember.tensor(b + 0.5))
        lt, le = tm(*args_t), em(*args_e)
        np.testing.assert_allclose(_np(le), _np(lt), rtol=1e-10)
        lt.backward()
        le.backward()
        np.testing.assert_allclose(_np(args_e[0].grad), _np(args_t[0].grad), rtol=1e-9)
        return
    parity(make, shapes, modes=(True,), int_inputs=extra)


def test_repr_matches_torch():
    def build(m):
        class Block(m.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = m.nn.Linear(4, 4)
                self.norm = m.nn.LayerNorm(4, eps=1e-6)
                self.drop = m.nn.Dropout(0.1, inplace=True)
                self.acts = m.nn.ModuleList([m.nn.GELU(approximate="tanh") for _ in range(3)]
                                            + [m.nn.ReLU()])
                self.heads = m.nn.ModuleDict({"a": m.nn.Linear(4, 2, bias=False),
                                              "b": m.nn.Identity()})
                self.empty = m.nn.Sequential()

            def forward(self, x):
                return x
        return m.nn.Sequential(Block(), m.nn.BatchNorm2d(3, affine=False), m.nn.Softmax(dim=-1),
                               m.nn.LeakyReLU(0.2, inplace=True), m.nn.Hardtanh(-2.0, 2.0),
                               m.nn.GroupNorm(2, 4), m.nn.InstanceNorm1d(3),
                               m.nn.CrossEntropyLoss(), m.nn.Unflatten(1, (2, 3)),
                               m.nn.LocalResponseNorm(2), m.nn.RMSNorm(3), m.nn.Dropout2d(),
                               m.nn.ELU(alpha=0.5), m.nn.Softplus(), m.nn.PReLU(3),
                               m.nn.Bilinear(2, 3, 4), m.nn.Softshrink())
    assert repr(build(ember)) == repr(build(torch))


def test_torch_state_dict_loads_directly_and_outputs_match():
    tm = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.Tanh(),
                             torch.nn.Linear(5, 2))
    em = ember.nn.Sequential(ember.nn.Linear(3, 5), ember.nn.BatchNorm1d(5), ember.nn.Tanh(),
                             ember.nn.Linear(5, 2))
    tm.train()
    tm(torch.randn(8, 3))  # move the running stats away from their initial values
    tm.eval()
    em.eval()
    em.load_state_dict(tm.state_dict(), strict=True)  # torch tensors, through __array__
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(_np(em(ember.tensor(x))), _np(tm(torch.tensor(x))), rtol=1e-5,
                               atol=1e-6)
    assert int(em[1].num_batches_tracked) == 1
    esd, tsd = em.state_dict(), tm.state_dict()
    assert list(esd) == list(tsd)
    assert dict(esd._metadata) == dict(tsd._metadata)


def test_training_steps_stay_in_lockstep_with_torch():
    def build(m):
        return m.nn.Sequential(m.nn.Linear(6, 16), m.nn.LayerNorm(16), m.nn.GELU(),
                               m.nn.Linear(16, 16), m.nn.BatchNorm1d(16), m.nn.SiLU(),
                               m.nn.Dropout(0.0), m.nn.Linear(16, 3)).double()
    tm, em = build(torch), build(ember)
    load_from_torch(em, tm)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)), rng.integers(0, 3, 32)
    for step in range(5):
        losses = []
        for m, net in ((torch, tm), (ember, em)):
            net.zero_grad()
            loss = m.nn.functional.cross_entropy(net(m.tensor(x)), m.tensor(y),
                                                 label_smoothing=0.05)
            loss.backward()
            m.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            with m.no_grad():
                for p in net.parameters():
                    p -= 0.1 * p.grad
            losses.append(float(loss))
        assert losses[0] == pytest.approx(losses[1], rel=1e-10), step
    for (n, a), (_, b) in zip(em.state_dict().items(), tm.state_dict().items()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12, err_msg=n)
