"""BUFFER_MUTATION outputs: ``run_decompositions()`` reports the buffers a program writes
(BatchNorm's running statistics in training mode) as PyTorch's core ATen IR does, and the
program still updates them exactly as eager execution does."""

import io

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _program(lib, bn=True):
    lib.manual_seed(0)
    layers = [lib.nn.Conv2d(3, 4, 3), lib.nn.BatchNorm2d(4), lib.nn.ReLU(), lib.nn.Flatten(),
              lib.nn.Linear(144, 5), lib.nn.BatchNorm1d(5)]
    m = lib.nn.Sequential(*(layers if bn else layers[:1]))
    m.train()
    x = lib.tensor(np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32))
    return m, x


def _sig(ep):
    return [(s.kind.name, s.target) for s in ep.graph_signature.output_specs]


def test_signature_matches_pytorch():
    m, x = _program(ember)
    tm, tx = _program(torch)
    ep = ember.export.export(m, (x,))
    tep = torch.export.export(tm, (tx,))
    assert _sig(ep) == _sig(tep) == [("USER_OUTPUT", None)]  # the training IR writes in place
    dec, tdec = ep.run_decompositions(), tep.run_decompositions()
    assert _sig(dec) == _sig(tdec)
    assert [k for k, _ in _sig(dec)].count("BUFFER_MUTATION") == 6
    assert sorted(dec.graph_signature.buffers_to_mutate.values()) == \
        sorted(tdec.graph_signature.buffers_to_mutate.values())
    out = dec.graph.output_node().args[0]
    assert len(out) == 7 and [n.name for n in out[:6]] == \
        [s.arg.name for s in dec.graph_signature.output_specs[:6]]


def test_no_mutation_no_extra_outputs():
    m, x = _program(ember, bn=False)
    dec = ember.export.export(m, (x,)).run_decompositions()
    assert _sig(dec) == [("USER_OUTPUT", None)]


def test_module_updates_running_stats_like_eager():
    m, x = _program(ember)
    ref, _ = _program(ember)
    dec = ember.export.export(m, (x,)).run_decompositions()
    mod = dec.module()
    for i in range(3):
        xi = x * (i + 1) + i
        got, want = mod(xi), ref(xi)
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    got_state = {k: v.detach().numpy() for k, v in mod.state_dict().items()}
    for k, v in ref.state_dict().items():
        if "running" in k or "num_batches" in k:
            np.testing.assert_allclose(got_state[k], v.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=k)
    assert int(got_state["1.num_batches_tracked"]) == 3


def test_save_load_keeps_buffer_mutation_outputs():
    m, x = _program(ember)
    dec = ember.export.export(m, (x,)).run_decompositions()
    buf = io.BytesIO()
    ember.export.save(dec, buf)
    buf.seek(0)
    back = ember.export.load(buf)
    assert _sig(back) == _sig(dec)
    assert back.graph_signature.buffers_to_mutate == dec.graph_signature.buffers_to_mutate
    np.testing.assert_allclose(back.module()(x).detach().numpy(),
                               dec.module()(x).detach().numpy(), rtol=1e-6)
