"""What was added at PyTorch's submodule paths (issue 23, layout coverage): behaviour against
PyTorch where PyTorch has it on CPU, PyTorch's errors where it needs CUDA."""

import importlib

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _mod(name):
    # ``import a.b.spectral_norm as m`` would give the function of the same name
    return importlib.import_module(name)


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("n_out", [4, 3])
def test_spectral_norm_module_state_dict_versions(dt, n_out):
    esn, tsn = _mod("ember.nn.utils.spectral_norm"), _mod("torch.nn.utils.spectral_norm")
    torch.manual_seed(0)
    tl = tsn.spectral_norm(torch.nn.Linear(4, n_out).to(getattr(torch, dt)))
    el = esn.spectral_norm(ember.nn.Linear(4, n_out, dtype=getattr(ember, dt)))
    tsd = tl.state_dict()
    el.load_state_dict({k: ember.tensor(_np(v)) for k, v in tsd.items()})
    esd = el.state_dict()
    assert sorted(esd) == sorted(tsd)
    assert esd._metadata[""]["spectral_norm"] == tsd._metadata[""]["spectral_norm"]
    # a version-0 checkpoint (no weight_v): v solved from weight_orig, weight and weight_u
    w = _np(tl.weight_orig)
    old_t = {"weight_orig": torch.tensor(w), "weight": torch.tensor(w / 2.5),
             "weight_u": tsd["weight_u"], "bias": tsd["bias"]}
    old_e = {k: ember.tensor(_np(v)) for k, v in old_t.items()}
    tl2 = tsn.spectral_norm(torch.nn.Linear(4, n_out).to(getattr(torch, dt)))
    el2 = esn.spectral_norm(ember.nn.Linear(4, n_out, dtype=getattr(ember, dt)))
    tl2.load_state_dict(old_t)
    el2.load_state_dict(old_e)
    tol = 1e-4 if dt == "float32" else 1e-9
    if n_out == 4:  # W^T W invertible: v is unique (for 3x4 only u^T W v = sigma is)
        np.testing.assert_allclose(_np(el2.weight_v), _np(tl2.weight_v), rtol=tol, atol=tol)
    tl2.eval()
    el2.eval()
    x = np.linspace(-1, 1, 8).reshape(2, 4)
    np.testing.assert_allclose(_np(el2(ember.tensor(x, dtype=getattr(ember, dt)))),
                               _np(tl2(torch.tensor(x, dtype=getattr(torch, dt)))),
                               rtol=tol, atol=tol)
    esn.remove_spectral_norm(el2)
    tsn.remove_spectral_norm(tl2)
    assert sorted(el2.state_dict()) == sorted(tl2.state_dict()) == ["bias", "weight"]
    assert not hasattr(el2.state_dict()._metadata[""], "spectral_norm")
    assert ember.nn.utils.spectral_norm is esn.spectral_norm  # the function, as PyTorch's


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("out_features,bias", [((), False), ((2,), True)])
def test_linear_cross_entropy_loss_matches_torch(dt, out_features, bias):
    tol = 1e-5 if dt == "float32" else 1e-12
    tm = torch.nn.LinearCrossEntropyLoss(5, 4, out_features=out_features, bias=bias,
                                         dtype=getattr(torch, dt), label_smoothing=0.1)
    em = ember.nn.LinearCrossEntropyLoss(5, 4, out_features=out_features, bias=bias,
                                         dtype=getattr(ember, dt), label_smoothing=0.1)
    em.load_state_dict({k: ember.tensor(_np(v)) for k, v in tm.state_dict().items()})
    assert sorted(em.state_dict()) == sorted(tm.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5))
    y = rng.integers(0, 4, (3,) + out_features)
    xe = ember.tensor(x, dtype=getattr(ember, dt), requires_grad=True)
    xt = torch.tensor(x, dtype=getattr(torch, dt), requires_grad=True)
    le, lt = em(xe, ember.tensor(y)), tm(xt, torch.tensor(y))
    np.testing.assert_allclose(le.item(), lt.item(), rtol=tol)
    le.backward()
    lt.backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(em.linear.weight.grad.numpy(), tm.linear.weight.grad.numpy(),
                               rtol=tol, atol=tol)
    with pytest.raises(RuntimeError, match="weight shape"):
        ember.nn.LinearCrossEntropyLoss(5, 4, weight=ember.ones(3))


def test_linear_cross_entropy_options_validate_as_torch():
    for kw in ({}, {"chunking_method": "aspect_ratio:4"}, {"acc_policy": "compact"},
               {"batch_chunk_size": 8, "chunking_method": None}):
        assert ember.nn.LinearCrossEntropyOptions(**kw) == ember.nn.LinearCrossEntropyOptions(
            **kw)
        torch.nn.LinearCrossEntropyOptions(**kw)
    for kw in ({"acc_policy": "fast"}, {"chunking_method": "rows"}, {"batch_chunk_size": 0},
               {"acc_dtype": "int8"}):
        with pytest.raises(ValueError) as te:
            torch.nn.LinearCrossEntropyOptions(**kw)
        with pytest.raises(ValueError) as ee:
            ember.nn.LinearCrossEntropyOptions(**kw)
        assert str(ee.value).split(":")[0] == str(te.value).split(":")[0]
    m = ember.nn.LinearCrossEntropyLoss(3, 2, options=ember.nn.LinearCrossEntropyOptions())
    assert m(ember.ones(2, 3), ember.tensor([0, 1])).ndim == 0


def test_container_factory_kwargs_syncbn_paths():
    with pytest.warns(UserWarning, match="deprecated"):
        c = ember.nn.Container(a=ember.nn.Linear(2, 2))
    assert [n for n, _ in c.named_children()] == ["a"]
    for kw in ({"dtype": ember.float64}, {"factory_kwargs": {"device": "cpu"}, "dtype": 1}):
        assert ember.nn.factory_kwargs(kw) == torch.nn.factory_kwargs(kw)
    for kw in ({"size": 3}, {"factory_kwargs": {"dtype": 1}, "dtype": 2}):
        with pytest.raises(TypeError):
            torch.nn.factory_kwargs(kw)
        with pytest.raises(TypeError):
            ember.nn.factory_kwargs(kw)
    assert _mod("ember.nn.modules.batchnorm").SyncBatchNorm is ember.nn.SyncBatchNorm
    from ember.nn.parameter import (UninitializedBuffer, UninitializedParameter,
                                    UninitializedTensorMixin)
    assert isinstance(UninitializedParameter(), UninitializedTensorMixin)
    assert isinstance(UninitializedBuffer(), UninitializedTensorMixin)
    assert not isinstance(ember.nn.Parameter(ember.ones(1)), UninitializedTensorMixin)


def test_register_module_backward_hook_runs():
    from ember.nn.modules.module import register_module_backward_hook
    seen = []
    with pytest.warns(FutureWarning):
        h = register_module_backward_hook(lambda m, gi, go: seen.append(type(m).__name__))
    try:
        lin = ember.nn.Linear(2, 2)
        lin(ember.ones(1, 2, requires_grad=True)).sum().backward()
    finally:
        h.remove()
    assert seen == ["Linear"]


def test_invert_permutation_init_aliases_memory_format():
    from ember.nn.utils.rnn import invert_permutation
    p = [3, 0, 2, 1]
    assert invert_permutation(ember.tensor(p)).tolist() == \
        torch.nn.utils.rnn.invert_permutation(torch.tensor(p)).tolist()
    assert invert_permutation(None) is None
    for name in ("eye", "dirac"):
        shape = (2, 2) if name == "eye" else (2, 2, 3)
        with pytest.warns(FutureWarning):
            e = getattr(ember.nn.init, name)(ember.empty(*shape))
        with pytest.warns(FutureWarning):
            t = getattr(torch.nn.init, name)(torch.empty(*shape))
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    for conv, fmt, fn in ((ember.nn.Conv2d, ember.channels_last,
                           ember.nn.utils.convert_conv2d_weight_memory_format),
                          (ember.nn.Conv3d, ember.channels_last_3d,
                           ember.nn.utils.convert_conv3d_weight_memory_format)):
        m = ember.nn.Sequential(conv(2, 3, 1), ember.nn.ReLU())
        before = m[0].weight.detach().numpy().copy()
        w = m[0].weight
        assert fn(m, fmt) is m and m[0].weight is w
        assert m[0].weight.is_contiguous(memory_format=fmt)
        np.testing.assert_array_equal(m[0].weight.detach().numpy(), before)


def test_transfer_parametrizations_and_params():
    P = ember.nn.utils.parametrize

    class Sym(ember.nn.Module):
        def forward(self, X):
            return X.triu() + X.triu(1).transpose(-1, -2)

    a, b = ember.nn.Linear(3, 3), ember.nn.Linear(3, 3)
    P.register_parametrization(a, "weight", Sym())
    P.transfer_parametrizations_and_params(a, b)
    assert P.is_parametrized(b, "weight")
    assert b.parametrizations.weight.original is a.parametrizations.weight.original
    np.testing.assert_array_equal(_np(b.weight), _np(a.weight))
    assert P.transfer_parametrizations_and_params(ember.nn.Linear(2, 2), b) is b


def _same_error(fe, ft):
    """Both raise; same type where PyTorch's is a deliberate check (not an AttributeError
    of its missing CUDA bindings, which ember answers with a RuntimeError naming CUDA)."""
    with pytest.raises(Exception) as te:
        ft()
    with pytest.raises(Exception) as ee:
        fe()
    if te.type is AttributeError:
        assert ee.type is RuntimeError and "CUDA" in str(ee.value), ee.value
    else:
        assert ee.type is te.type and str(ee.value) == str(te.value), (ee.value, te.value)


def test_nn_parallel_paths_on_a_cpu_only_build():
    x = np.arange(6.0).reshape(3, 2)
    E = {n: _mod("ember.nn.parallel." + n) for n in ("comm", "scatter_gather", "replicate",
                                                      "parallel_apply")}
    T = {n: _mod("torch.nn.parallel." + n) for n in E}
    for T_, M, xx in ((torch, T, torch.tensor(x)), (ember, E, ember.tensor(x))):
        # what works without GPUs: non-tensor scatter, get_a_var
        assert M["scatter_gather"].scatter((1, [2, "a"], {"k": 3}), [0, 1]) == \
            [(1, [2, "a"], {"k": 3})] * 2
        assert M["scatter_gather"].scatter_kwargs((1,), {"a": 2, "b": None}, [0, 1]) == \
            (((1,), (1,)), ({"a": 2, "b": None},) * 2)
        assert M["scatter_gather"].gather([None, None], -1) is None
        assert M["parallel_apply"].get_a_var([1, {"k": (xx,)}]) is xx
        assert M["parallel_apply"].get_a_var([1, "a"]) is None
    calls = [
        ("comm", lambda m, T_, xx: m.broadcast(xx, [0])),
        ("comm", lambda m, T_, xx: m.broadcast(xx, ["cpu"])),
        ("comm", lambda m, T_, xx: m.broadcast_coalesced([xx], [0])),
        ("comm", lambda m, T_, xx: m.reduce_add([xx, xx])),
        ("comm", lambda m, T_, xx: m.reduce_add_coalesced([[xx], [xx]])),
        ("comm", lambda m, T_, xx: m.scatter(xx, [0, 1])),
        ("comm", lambda m, T_, xx: m.gather([xx, xx])),
        ("scatter_gather", lambda m, T_, xx: m.scatter(xx, ["cpu"])),
        ("scatter_gather", lambda m, T_, xx: m.scatter((xx, 1), [0])),
        ("scatter_gather", lambda m, T_, xx: m.gather([xx, xx], -1)),
        ("replicate", lambda m, T_, xx: m.replicate(T_.nn.Linear(2, 2), [0])),
        ("replicate", lambda m, T_, xx: m.replicate(T_.nn.Linear(2, 2), ["cpu"])),
        ("parallel_apply", lambda m, T_, xx: m.parallel_apply([T_.nn.Linear(2, 2)] * 2,
                                                              [(xx,)])),
        ("parallel_apply", lambda m, T_, xx: m.parallel_apply([T_.nn.Linear(2, 2)], [(xx,)])),
        ("parallel_apply", lambda m, T_, xx: m.parallel_apply([T_.nn.Linear(2, 2)], [(xx,)],
                                                              devices=["cpu"])),
    ]
    for mod, f in calls:
        _same_error(lambda: f(E[mod], ember, ember.tensor(x)),
                    lambda: f(T[mod], torch, torch.tensor(x)))
    assert ember.nn.parallel.replicate is E["replicate"].replicate  # function, as PyTorch's


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_svd_pca_lowrank_recover_a_low_rank_matrix(dt):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((20, 3)) @ rng.standard_normal((3, 12))).astype(dt)
    tol = 1e-3 if dt == "float32" else 1e-9
    for T in (ember, torch):
        T.manual_seed(0)
    for A in (a, a.T):  # tall and wide
        U, S, V = ember.svd_lowrank(ember.tensor(A), q=5)
        Ut, St, Vt = torch.svd_lowrank(torch.tensor(A), q=5)
        assert U.shape == tuple(Ut.shape) and V.shape == tuple(Vt.shape) and S.dtype == U.dtype
        np.testing.assert_allclose((U @ ember.diag(S) @ V.T).numpy(), A, atol=tol * 10)
        np.testing.assert_allclose(S.numpy()[:3], St.numpy()[:3], rtol=tol)
    U, S, V = ember.pca_lowrank(ember.tensor(a))
    Ut, St, Vt = torch.pca_lowrank(torch.tensor(a))
    assert U.shape == tuple(Ut.shape)
    np.testing.assert_allclose(S.numpy()[:3], St.numpy()[:3], rtol=tol)
    assert _mod("ember.functional").svd_lowrank is ember.svd_lowrank
    with pytest.raises(ValueError, match="q"):
        ember.pca_lowrank(ember.tensor(a), q=50)
    # gradients flow through A
    x = ember.tensor(a, requires_grad=True)
    ember.svd_lowrank(x, q=3)[1].sum().backward()
    assert x.grad.shape == a.shape and np.isfinite(x.grad.numpy()).all()


def test_gradcheck_jacobian_helpers_match_torch():
    ge, gt = _mod("ember.autograd.gradcheck"), _mod("torch.autograd.gradcheck")
    rng = np.random.default_rng(1)
    xa, ya = rng.standard_normal(3), rng.standard_normal(2)
    res = {}
    for T, g in ((ember, ge), (torch, gt)):
        x, y = T.tensor(xa, requires_grad=True), T.tensor(ya, requires_grad=True)
        num = g.get_numerical_jacobian(lambda inp: (inp[0] * inp[1].sum(), inp[0] ** 2),
                                       (x, y), eps=1e-6)
        ana, reentrant, sizes_ok, types_ok = g.get_analytical_jacobian((x, y),
                                                                       x.sin() * y.sum())
        spec = g.get_numerical_jacobian_wrt_specific_input(
            lambda a, b: (a * b.sum(), b.exp()), 1, (x, y), (x * y.sum(), y.exp()), 1e-6)
        res[T.__name__] = [j.detach().numpy() for j in (*num, *ana, *spec)] + \
            [reentrant, sizes_ok, types_ok]
    for a, b in zip(res["ember"], res["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="grad_out"):
        ge.get_numerical_jacobian(lambda i: i[0], (ember.ones(2, requires_grad=True),),
                                  grad_out=2.0)
    with pytest.raises(AssertionError, match="requires_grad"):
        ge.get_numerical_jacobian_wrt_specific_input(lambda a: (a,), 0, (ember.ones(2),),
                                                     (ember.ones(2),), 1e-6)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_mixture_same_family_constraint_matches_torch(dt):
    ce, ct = _mod("ember.distributions.constraints"), _mod("torch.distributions.constraints")
    v = np.array([[0.5, -1.0, 2.0], [1.0, 3.0, 0.1]], dtype=dt)
    for be, bt in ((ce.positive, ct.positive),
                   (ce.independent(ce.positive, 1), ct.independent(ct.positive, 1)),
                   (ce.simplex, ct.simplex)):
        me, mt = ce.MixtureSameFamilyConstraint(be), ct.MixtureSameFamilyConstraint(bt)
        assert me.event_dim == mt.event_dim and me.is_discrete == mt.is_discrete
        assert me.check(ember.tensor(v)).tolist() == mt.check(torch.tensor(v)).tolist()
    with pytest.raises(AssertionError):
        ce.MixtureSameFamilyConstraint(3)


def test_profiler_paths():
    pe, pt = _mod("ember.autograd.profiler"), _mod("torch.autograd.profiler")
    ue = _mod("ember.autograd.profiler_util")
    legacy = _mod("ember.autograd.profiler_legacy")
    with legacy.profile() as prof:
        (ember.ones(3) * 2).sum()
    assert any("mul" in e.key.lower() for e in prof.key_averages())
    assert isinstance(prof.function_events, ue.EventList)
    with pe.emit_itt() as itt:
        with pytest.raises(RuntimeError, match="reentrant"):
            itt.__enter__()
    for P in (pe, pt):
        u = P.EnforceUnique()
        u.see(1, "a")
        with pytest.raises(RuntimeError, match="duplicate key"):
            u.see(1, "a")
    # the step tracker: the global step is the max over requesters, as PyTorch's
    steps = []
    for K in (pe.KinetoStepTracker, pt.KinetoStepTracker):
        base = K.current_step()
        K.init_step_count("emberA")
        K.init_step_count("emberB")
        got = [K.increment_step("emberA") - base, K.increment_step("emberB") - base,
               K.increment_step("emberB") - base]
        assert K.erase_step_count("emberA") and K.erase_step_count("emberB")
        assert not K.erase_step_count("emberA")
        steps.append(got)
    assert steps[0] == steps[1] == [1, 1, 2]
    with pytest.raises(FileNotFoundError, match="trace"):
        pe.load_nvprof("no-such-trace.nvvp")
    assert ue.Interval(2, 7).elapsed_us() == 5 and ue.Kernel("k", 0, 3).duration == 3
    assert ue.EventMetadata().grid is None and ue.StringTable()["f"] == "f"

    class Rec:
        def __init__(self, t):
            self.t = t

        def start_ns(self):
            return self.t

    acc = ue.MemRecordsAcc([(Rec(5),), (Rec(1),), (Rec(9),)])
    assert [r[0].t for r in acc.in_interval(1, 6)] == [1, 5]
    ev = prof.key_averages()[0]
    assert isinstance(ev.cpu_time_total, float) or ev.cpu_time_total >= 0


def test_variable_meta():
    VariableMeta = _mod("ember.autograd.variable").VariableMeta

    class V(metaclass=VariableMeta):
        pass

    assert isinstance(ember.ones(1), V) and not isinstance(np.ones(1), V)


def test_checkpoint_helpers():
    ce, ct = _mod("ember.utils.checkpoint"), _mod("torch.utils.checkpoint")
    for C, T in ((ce, ember), (ct, torch)):
        with pytest.warns(UserWarning, match="requires_grad"):
            C.check_backward_validity([T.ones(2), 3])
        C.check_backward_validity([T.ones(2, requires_grad=True)])
        assert C.get_device_states(T.ones(2), [T.zeros(1)]) == ([], [])
        C.set_device_states([], [])
        assert C.DefaultDeviceType.get_device_type() == "cpu"
        assert [p.name for p in C.CheckpointPolicy] == [p.name for p in ct.CheckpointPolicy]
        assert C.SelectiveCheckpointContext(is_recompute=False).is_recompute is False
        with C.GraphExecGroup():
            with pytest.raises(RuntimeError, match="nested"):
                C.GraphExecGroup().__enter__()
    # checkpoint's gradients under the early-stop switch and a group equal plain ones
    w = ember.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    x = ember.tensor([[0.5, -1.0]], requires_grad=True)
    (x @ w).tanh().sum().backward()
    ref = w.grad.numpy().copy()
    w.grad = None
    with ce.set_checkpoint_early_stop(False), ce.GraphExecGroup():
        ce.checkpoint(lambda a: (a @ w).tanh(), x, use_reentrant=False).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), ref)
    assert issubclass(ce.CheckpointFunction, ember.autograd.Function)
    out = ce.CheckpointFunction.apply(lambda a: (a @ w).tanh(), True, x)
    np.testing.assert_allclose(out.detach().numpy(), (x @ w).tanh().detach().numpy())
    with pytest.raises(TypeError, match="function or a list"):
        ce.create_selective_checkpoint_contexts(3)


def test_autograd_graph_names():
    res = {}
    for T in (ember, torch):
        G = _mod(T.__name__ + ".autograd.graph")
        x = T.tensor([0.5, 1.0, 2.0], requires_grad=True)
        with G.allow_mutation_on_saved_tensors():
            y = x * 1
            z = y.sin()
            y.mul_(2)  # backward still sees y as it was when sin saved it
            z.sum().backward()
        res[T.__name__] = x.grad.numpy().copy()
        x2 = T.tensor([1.0, 2.0], requires_grad=True)
        y2 = x2 * 2
        w = y2.sin()
        G.increment_version(y2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            w.sum().backward()
        e = G.get_gradient_edge(y2)
        assert e.node is y2.grad_fn and e.output_nr == 0 and isinstance(e, G.GradientEdge)
        assert G.get_gradient_edge(x2).node.name().endswith("AccumulateGrad")
        with pytest.raises(RuntimeError, match="does not require gradients"):
            G.get_gradient_edge(T.ones(1))
        with pytest.raises(RuntimeError, match="torch.compile"):
            G.region_activation_memory_budget(0.5)
        with pytest.raises(ValueError, match="must be in"):
            G.region_activation_memory_budget(1.5)
        with pytest.raises(TypeError, match="float"):
            G.region_activation_memory_budget("a")
        G.set_warn_on_accumulate_grad_stream_mismatch(True)
        G.set_override_stale_capture_stream(False)
    np.testing.assert_allclose(res["ember"], res["torch"], rtol=1e-6)


def test_saved_tensors_hooks_skip_the_version_check_as_torch():
    # a pack hook that copies owns the saved value: a later in-place write does not matter
    for T in (ember, torch):
        x = T.tensor([0.5, 1.0], requires_grad=True)
        with T.autograd.graph.saved_tensors_hooks(lambda t: t.detach().clone(), lambda t: t):
            y = x * 1
            z = y.sin()
        y.mul_(2)
        z.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), np.cos([0.5, 1.0]), rtol=1e-6)


def test_serialization_options(tmp_path):
    import mmap
    se = _mod("ember.serialization")
    # a file PyTorch wrote without checksums (CRC 0) loads, and the setting reads back
    st = _mod("torch.serialization")
    st.set_crc32_options(False)
    try:
        torch.save({"w": torch.arange(6.0)}, tmp_path / "nocrc.pt")
    finally:
        st.set_crc32_options(True)
    assert ember.load(tmp_path / "nocrc.pt")["w"].tolist() == list(range(6))
    assert se.get_crc32_options() is True
    se.set_crc32_options(False)
    assert se.get_crc32_options() is False
    se.set_crc32_options(True)
    # skip_data: the space is written, not the bytes; loading leaves the storages unread
    x = ember.arange(1.0, 7.0).reshape(2, 3)
    with se.skip_data():
        ember.save(x, tmp_path / "skip.pt")
    y = torch.load(tmp_path / "skip.pt")
    assert tuple(y.shape) == (2, 3) and y.sum().item() == 0
    ember.save(x, tmp_path / "full.pt")
    with se.skip_data():
        z = ember.load(tmp_path / "full.pt")
    assert z.shape == (2, 3) and z.sum().item() == 0
    assert ember.load(tmp_path / "full.pt").sum().item() == 21
    # mmap flags: MAP_SHARED writes through to the file, MAP_PRIVATE (default) does not
    assert se.get_default_mmap_options() == st.get_default_mmap_options() == mmap.MAP_PRIVATE
    with se.set_default_mmap_options(mmap.MAP_SHARED):
        assert se.get_default_mmap_options() == mmap.MAP_SHARED
        m = ember.load(tmp_path / "full.pt", mmap=True)
        m.add_(1)
        del m
    assert se.get_default_mmap_options() == mmap.MAP_PRIVATE
    # (the record's checksum is stale now: read it mapped, as it was written)
    assert ember.load(tmp_path / "full.pt", mmap=True).sum().item() == 27
    m = ember.load(tmp_path / "full.pt", mmap=True)
    m.add_(1)
    del m
    assert ember.load(tmp_path / "full.pt", mmap=True).sum().item() == 27
    with pytest.raises(ValueError, match="MAP_PRIVATE or mmap.MAP_SHARED"):
        se.set_default_mmap_options(12345)


def test_register_package_tags_and_restores(tmp_path):
    se = _mod("ember.serialization")
    seen = []

    def tagger(storage):
        return "myaccel:0" if seen == [] else None

    def deserializer(storage, location):
        if location.startswith("myaccel"):
            seen.append(location)
            return storage
        return None

    se.register_package(5, tagger, deserializer)
    try:
        ember.save({"a": ember.ones(2)}, tmp_path / "pkg.pt")
        assert se.location_tag(ember.ones(1).untyped_storage()) == "myaccel:0"
        out = ember.load(tmp_path / "pkg.pt")
    finally:
        se._PACKAGES[:] = [p for p in se._PACKAGES if p[1] is not tagger]
    assert seen == ["myaccel:0"] and out["a"].tolist() == [1.0, 1.0]
    assert se.location_tag(ember.ones(1).untyped_storage()) == "cpu"


def test_utils_hooks_and_worker_init_fn():
    he, ht = _mod("ember.utils.hooks"), _mod("torch.utils.hooks")
    for H, T in ((he, ember), (ht, torch)):
        x = T.ones(2, requires_grad=True)
        y = x * 2
        for t in (x, y):
            h = t.register_hook(lambda g: g)
            with pytest.warns(UserWarning, match="will not be serialized"):
                H.warn_if_has_hooks(t)
            h.remove()
            t.register_hook(H.unserializable_hook(lambda g: g))
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                H.warn_if_has_hooks(t)
    bc = _mod("ember.utils.data.backward_compatibility")
    with pytest.warns(FutureWarning, match="deprecated"):
        assert bc.worker_init_fn(0) is None


@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_grouped_mm_matches_torch(dt):
    Fe, Ft = ember.nn.functional, torch.nn.functional
    rng = np.random.default_rng(0)
    K, N = 8, 8  # PyTorch wants 16-byte strides
    cases = [((6, K), (3, K, N), [2, 2, 6]), ((3, 2, K), (3, K, N), None),
             ((2, 16), (16, N), [8, 16]), ((3, 2, K), (K, 24), [8, 16, 24])]
    tol = 1e-5 if dt == "float32" else 2e-2
    for sa, sb, offs in cases:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        ae = ember.tensor(a, dtype=getattr(ember, dt), requires_grad=True)
        be = ember.tensor(b, dtype=getattr(ember, dt), requires_grad=True)
        at = torch.tensor(a, dtype=getattr(torch, dt), requires_grad=True)
        bt = torch.tensor(b, dtype=getattr(torch, dt), requires_grad=True)
        oe = None if offs is None else ember.tensor(offs, dtype=ember.int32)
        ot = None if offs is None else torch.tensor(offs, dtype=torch.int32)
        re, rt = Fe.grouped_mm(ae, be, offs=oe), Ft.grouped_mm(at, bt, offs=ot)
        assert re.shape == tuple(rt.shape) and str(re.dtype)[6:] == str(rt.dtype)[6:]
        np.testing.assert_allclose(re.float().detach().numpy(), rt.float().detach().numpy(),
                                   rtol=tol, atol=tol)
        w = rng.standard_normal(tuple(rt.shape))
        (re.float() * ember.tensor(w, dtype=ember.float32)).sum().backward()
        (rt.float() * torch.tensor(w, dtype=torch.float32)).sum().backward()
        for ge, gt in ((ae.grad, at.grad), (be.grad, bt.grad)):
            np.testing.assert_allclose(ge.float().numpy(), gt.float().numpy(), rtol=tol,
                                       atol=tol)
    a = ember.ones(6, K)
    with pytest.raises(RuntimeError, match="offsets"):
        Fe.grouped_mm(a, ember.ones(3, K, N))
    with pytest.raises(RuntimeError, match="Float32"):
        Fe.grouped_mm(a.double(), ember.ones(3, K, N).double(),
                      offs=ember.tensor([2, 4, 6], dtype=ember.int32))
    assert Fe.grouped_mm(a, ember.ones(3, K, N), offs=ember.tensor([2, 4, 6], dtype=ember.int32),
                         out_dtype=ember.float32).dtype == ember.float32


@pytest.mark.parametrize("recipe", ["TensorWise", "RowWise"])
def test_scaled_mm_matches_torch(recipe):
    Fe, Ft = ember.nn.functional, torch.nn.functional
    assert list(Fe.ScalingType.__members__) == list(Ft.ScalingType.__members__)
    assert list(Fe.SwizzleType.__members__) == list(Ft.SwizzleType.__members__)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((16, 32)), rng.standard_normal((16, 32))
    if recipe == "TensorWise":
        sa, sb = np.array(0.5), np.array(2.0)
    else:
        sa, sb = rng.uniform(0.5, 2, (16, 1)), rng.uniform(0.5, 2, (1, 16))
    at = torch.tensor(a, dtype=torch.float32).to(torch.float8_e4m3fn)
    bt = torch.tensor(b, dtype=torch.float32).to(torch.float8_e4m3fn).t()
    ae = ember.tensor(at.float().numpy()).to(ember.float8_e4m3fn)
    be = ember.tensor(bt.float().numpy()).to(ember.float8_e4m3fn)
    rt = Ft.scaled_mm(at, bt, torch.tensor(sa, dtype=torch.float32),
                      getattr(Ft.ScalingType, recipe), torch.tensor(sb, dtype=torch.float32),
                      getattr(Ft.ScalingType, recipe), output_dtype=torch.float32)
    re = Fe.scaled_mm(ae, be, ember.tensor(sa, dtype=ember.float32),
                      getattr(Fe.ScalingType, recipe), ember.tensor(sb, dtype=ember.float32),
                      getattr(Fe.ScalingType, recipe), output_dtype=ember.float32)
    np.testing.assert_allclose(re.numpy(), rt.numpy(), rtol=1e-5, atol=1e-4)
    assert Fe.scaled_mm(ae, be, ember.tensor(sa, dtype=ember.float32),
                        getattr(Fe.ScalingType, recipe), ember.tensor(sb, dtype=ember.float32),
                        getattr(Fe.ScalingType, recipe)).dtype == ember.bfloat16
    with pytest.raises(NotImplementedError, match="BlockWise"):
        Fe.scaled_mm(ae, be, ember.ones(1), Fe.ScalingType.BlockWise1x32, ember.ones(1),
                     Fe.ScalingType.TensorWise)


@pytest.mark.parametrize("layout", ["2d-3d", "3d-3d", "2d-2d", "3d-2d"])
def test_scaled_grouped_mm_matches_torch_scaled_mm_per_group(layout):
    # PyTorch runs scaled_grouped_mm on CUDA only: the oracle is its scaled_mm on each
    # group (row-wise scales), which runs on the CPU
    Fe, Ft = ember.nn.functional, torch.nn.functional
    rng = np.random.default_rng(4)
    G, M, K, N = 3, 16, 32, 16
    offs = [16, 16, 40] if layout == "2d-3d" else [16, 32, 48] if layout == "3d-2d" else \
        [16, 16, 32]
    shapes = {"2d-3d": ((48, K), (G, K, N), (48,), (G, N)),
              "3d-3d": ((G, M, K), (G, K, N), (G, M), (G, N)),
              "2d-2d": ((M, 32), (32, N), (G * M,), (G * N,)),
              "3d-2d": ((G, M, K), (K, 48), (G, M), (48,))}[layout]
    a8 = torch.tensor(rng.standard_normal(shapes[0]), dtype=torch.float32).to(
        torch.float8_e4m3fn)
    b8 = torch.tensor(rng.standard_normal(shapes[1]), dtype=torch.float32).to(
        torch.float8_e4m3fn)
    sa = torch.tensor(rng.uniform(0.5, 2, shapes[2]), dtype=torch.float32)
    sb = torch.tensor(rng.uniform(0.5, 2, shapes[3]), dtype=torch.float32)
    ends = [0] + offs

    def mm(a, b, s_a, s_b):  # PyTorch's scaled_mm wants a column-major B
        return Ft.scaled_mm(a.contiguous(), b.t().contiguous().t(), s_a.reshape(-1, 1),
                            Ft.ScalingType.RowWise, s_b.reshape(1, -1), Ft.ScalingType.RowWise,
                            output_dtype=torch.float32)
    if layout == "2d-3d":
        want = torch.zeros(48, N)
        for g in range(G):
            s, e = ends[g], ends[g + 1]
            if e > s:
                want[s:e] = mm(a8[s:e], b8[g], sa[s:e], sb[g])
    elif layout == "3d-3d":
        want = torch.stack([mm(a8[g], b8[g], sa[g], sb[g]) for g in range(G)])
    elif layout == "2d-2d":
        want = torch.stack([
            mm(a8[:, ends[g]:ends[g + 1]], b8[ends[g]:ends[g + 1]], sa[g * M:(g + 1) * M],
               sb[g * N:(g + 1) * N]) if ends[g + 1] > ends[g] else torch.zeros(M, N)
            for g in range(G)])
    else:
        want = torch.cat([mm(a8[g], b8[:, ends[g]:ends[g + 1]], sa[g],
                             sb[ends[g]:ends[g + 1]]) for g in range(G)], dim=1)

    def e8(t):
        return ember.tensor(t.float().numpy()).to(ember.float8_e4m3fn)
    got = Fe.scaled_grouped_mm(e8(a8), e8(b8), ember.tensor(sa.numpy()),
                               Fe.ScalingType.RowWise, ember.tensor(sb.numpy()),
                               Fe.ScalingType.RowWise,
                               offs=None if layout == "3d-3d" else
                               ember.tensor(offs, dtype=ember.int32),
                               output_dtype=ember.float32)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)
    assert Fe.scaled_grouped_mm(e8(a8), e8(b8), ember.tensor(sa.numpy()),
                                Fe.ScalingType.RowWise, ember.tensor(sb.numpy()),
                                Fe.ScalingType.RowWise,
                                offs=None if layout == "3d-3d" else
                                ember.tensor(offs, dtype=ember.int32)).dtype == ember.bfloat16
    with pytest.raises(RuntimeError, match="scale_a .* must have shape"):
        Fe.scaled_grouped_mm(e8(a8), e8(b8), ember.ones(7), Fe.ScalingType.RowWise,
                             ember.tensor(sb.numpy()), Fe.ScalingType.RowWise,
                             offs=None if layout == "3d-3d" else
                             ember.tensor(offs, dtype=ember.int32))
    with pytest.raises(NotImplementedError, match="TensorWise"):
        Fe.scaled_grouped_mm(e8(a8), e8(b8), ember.ones(1), Fe.ScalingType.TensorWise,
                             ember.ones(1), Fe.ScalingType.TensorWise)


def test_register_multi_grad_hook_matches_torch():
    out = {}
    for T in (ember, torch):
        r = _mod(T.__name__ + ".autograd.graph").register_multi_grad_hook
        a, b, c = (T.ones(2, requires_grad=True) for _ in range(3))
        with pytest.raises(AssertionError, match="gradient function"):
            r((a, T.ones(2)), lambda gs: None)
        got, got_any = [], []
        h = r((a, b, c), lambda gs: got.append([None if g is None else g.tolist()
                                                   for g in gs]))
        (a * 2 + b * 3).sum().backward()
        (a * 2).sum().backward()
        y = c * 4  # a non-leaf among the tensors of another hook
        h2 = r((a, y), lambda g: got_any.append(g.tolist()), mode="any")
        (a * 5 + y * 3).sum().backward()
        h.remove()
        (a * 2).sum().backward()
        h2.remove()
        (b * 1).sum().backward()
        out[T.__name__] = (got, got_any)
        with pytest.raises(ValueError, match="mode"):
            r((a,), lambda g: None, mode="some")
    assert out["ember"][0] == out["torch"][0] and len(out["ember"][0]) == 3
    # "any": once per pass, with whichever gradient the engine computes first (engines may
    # order independent nodes differently: PyTorch runs AccumulateGrad nodes first)
    assert len(out["ember"][1]) == len(out["torch"][1]) == 2
    assert out["ember"][1][0] in ([5.0, 5.0], [3.0, 3.0])
    assert out["ember"][1][1] == out["torch"][1][1]
    with pytest.raises(RuntimeError, match="during backward"):
        _mod("ember.autograd.engine").queue_callback(lambda: None)
