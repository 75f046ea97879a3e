"""nn layers on the meta device: built there, run there (output shapes = eager shapes), and
materialised with ``to_empty`` + ``reset_parameters``."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import nn


def f(*shape):
    return ("f", shape)


def i(high, *shape):
    return ("i", shape, high)


# (id, constructor taking factory kwargs, inputs). A constructor that takes no factory
# kwargs (losses, activations without parameters) is called with none.
CASES = [
    ("Linear", lambda **k: nn.Linear(4, 3, **k), [f(2, 4)]),
    ("Bilinear", lambda **k: nn.Bilinear(4, 5, 3, **k), [f(2, 4), f(2, 5)]),
    ("Identity", lambda **k: nn.Identity(), [f(2, 4)]),
    ("Conv1d", lambda **k: nn.Conv1d(2, 4, 3, padding=1, **k), [f(2, 2, 9)]),
    ("Conv2d", lambda **k: nn.Conv2d(3, 4, 3, stride=2, **k), [f(2, 3, 9, 9)]),
    ("Conv2d-groups", lambda **k: nn.Conv2d(4, 4, 3, groups=2, padding="same", **k),
     [f(1, 4, 6, 6)]),
    ("Conv3d", lambda **k: nn.Conv3d(2, 3, 2, **k), [f(1, 2, 4, 4, 4)]),
    ("ConvTranspose1d", lambda **k: nn.ConvTranspose1d(2, 3, 3, stride=2, **k), [f(2, 2, 5)]),
    ("ConvTranspose2d", lambda **k: nn.ConvTranspose2d(2, 3, 3, stride=2, **k),
     [f(2, 2, 4, 4)]),
    ("ConvTranspose3d", lambda **k: nn.ConvTranspose3d(2, 3, 2, **k), [f(1, 2, 3, 3, 3)]),
    ("MaxPool1d", lambda **k: nn.MaxPool1d(2), [f(2, 3, 8)]),
    ("MaxPool2d", lambda **k: nn.MaxPool2d(3, stride=2, padding=1), [f(2, 3, 8, 8)]),
    ("MaxPool3d", lambda **k: nn.MaxPool3d(2), [f(1, 2, 4, 4, 4)]),
    ("AvgPool1d", lambda **k: nn.AvgPool1d(2), [f(2, 3, 8)]),
    ("AvgPool2d", lambda **k: nn.AvgPool2d(2), [f(2, 3, 8, 8)]),
    ("AvgPool3d", lambda **k: nn.AvgPool3d(2), [f(1, 2, 4, 4, 4)]),
    ("AdaptiveAvgPool2d", lambda **k: nn.AdaptiveAvgPool2d((1, 1)), [f(2, 3, 7, 7)]),
    ("AdaptiveMaxPool2d", lambda **k: nn.AdaptiveMaxPool2d(2), [f(2, 3, 6, 6)]),
    ("BatchNorm1d", lambda **k: nn.BatchNorm1d(3, **k), [f(4, 3)]),
    ("BatchNorm2d", lambda **k: nn.BatchNorm2d(3, **k), [f(2, 3, 4, 4)]),
    ("BatchNorm3d", lambda **k: nn.BatchNorm3d(2, **k), [f(2, 2, 3, 3, 3)]),
    ("InstanceNorm2d", lambda **k: nn.InstanceNorm2d(3, affine=True, **k), [f(2, 3, 4, 4)]),
    ("LayerNorm", lambda **k: nn.LayerNorm(6, **k), [f(2, 5, 6)]),
    ("GroupNorm", lambda **k: nn.GroupNorm(2, 4, **k), [f(2, 4, 3, 3)]),
    ("RMSNorm", lambda **k: nn.RMSNorm(6, **k), [f(2, 5, 6)]),
    ("LocalResponseNorm", lambda **k: nn.LocalResponseNorm(2), [f(2, 4, 5, 5)]),
    ("Dropout", lambda **k: nn.Dropout(0.5), [f(4, 5)]),
    ("Dropout2d", lambda **k: nn.Dropout2d(0.5), [f(2, 3, 4, 4)]),
    ("AlphaDropout", lambda **k: nn.AlphaDropout(0.5), [f(4, 5)]),
    ("ReLU", lambda **k: nn.ReLU(), [f(3, 4)]),
    ("GELU", lambda **k: nn.GELU(approximate="tanh"), [f(3, 4)]),
    ("SiLU", lambda **k: nn.SiLU(), [f(3, 4)]),
    ("ELU", lambda **k: nn.ELU(), [f(3, 4)]),
    ("LeakyReLU", lambda **k: nn.LeakyReLU(0.1), [f(3, 4)]),
    ("Hardswish", lambda **k: nn.Hardswish(), [f(3, 4)]),
    ("Mish", lambda **k: nn.Mish(), [f(3, 4)]),
    ("Softplus", lambda **k: nn.Softplus(), [f(3, 4)]),
    ("Tanh", lambda **k: nn.Tanh(), [f(3, 4)]),
    ("Sigmoid", lambda **k: nn.Sigmoid(), [f(3, 4)]),
    ("PReLU", lambda **k: nn.PReLU(3, **k), [f(2, 3, 4)]),
    ("Softmax", lambda **k: nn.Softmax(dim=-1), [f(3, 4)]),
    ("LogSoftmax", lambda **k: nn.LogSoftmax(dim=1), [f(3, 4)]),
    ("ZeroPad2d", lambda **k: nn.ZeroPad2d((1, 2, 0, 1)), [f(1, 2, 3, 3)]),
    ("ConstantPad1d", lambda **k: nn.ConstantPad1d(2, 0.5), [f(1, 2, 3)]),
    ("ReflectionPad2d", lambda **k: nn.ReflectionPad2d(1), [f(1, 2, 3, 3)]),
    ("ReplicationPad2d", lambda **k: nn.ReplicationPad2d(1), [f(1, 2, 3, 3)]),
    ("Upsample-nearest", lambda **k: nn.Upsample(scale_factor=2), [f(1, 2, 3, 3)]),
    ("Upsample-bilinear", lambda **k: nn.Upsample(scale_factor=2, mode="bilinear"),
     [f(1, 2, 3, 3)]),
    ("PixelShuffle", lambda **k: nn.PixelShuffle(2), [f(1, 8, 3, 3)]),
    ("Flatten", lambda **k: nn.Flatten(), [f(2, 3, 4)]),
    ("Unflatten", lambda **k: nn.Unflatten(1, (2, 3)), [f(2, 6)]),
    ("Unfold", lambda **k: nn.Unfold(2), [f(1, 2, 4, 4)]),
    ("Fold", lambda **k: nn.Fold((4, 4), 2), [f(1, 8, 9)]),
    ("Embedding", lambda **k: nn.Embedding(10, 4, **k), [i(10, 2, 5)]),
    ("EmbeddingBag", lambda **k: nn.EmbeddingBag(10, 4, **k), [i(10, 2, 5)]),
    ("RNN", lambda **k: nn.RNN(4, 5, num_layers=2, **k), [f(6, 2, 4)]),
    ("LSTM", lambda **k: nn.LSTM(4, 5, batch_first=True, **k), [f(2, 6, 4)]),
    ("LSTM-bidir", lambda **k: nn.LSTM(4, 5, bidirectional=True, **k), [f(6, 2, 4)]),
    ("GRU", lambda **k: nn.GRU(4, 5, **k), [f(6, 2, 4)]),
    ("RNNCell", lambda **k: nn.RNNCell(4, 5, **k), [f(2, 4)]),
    ("LSTMCell", lambda **k: nn.LSTMCell(4, 5, **k), [f(2, 4)]),
    ("GRUCell", lambda **k: nn.GRUCell(4, 5, **k), [f(2, 4)]),
    ("MultiheadAttention", lambda **k: nn.MultiheadAttention(8, 2, batch_first=True, **k),
     [f(2, 5, 8), f(2, 5, 8), f(2, 5, 8)]),
    ("TransformerEncoderLayer",
     lambda **k: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, **k), [f(2, 5, 8)]),
    ("TransformerDecoderLayer",
     lambda **k: nn.TransformerDecoderLayer(8, 2, 16, batch_first=True, **k),
     [f(2, 5, 8), f(2, 4, 8)]),
    ("Transformer", lambda **k: nn.Transformer(8, 2, 1, 1, 16, batch_first=True, **k),
     [f(2, 5, 8), f(2, 4, 8)]),
    ("MSELoss", lambda **k: nn.MSELoss(), [f(3, 4), f(3, 4)]),
    ("L1Loss", lambda **k: nn.L1Loss(reduction="none"), [f(3, 4), f(3, 4)]),
    ("SmoothL1Loss", lambda **k: nn.SmoothL1Loss(), [f(3, 4), f(3, 4)]),
    ("HuberLoss", lambda **k: nn.HuberLoss(), [f(3, 4), f(3, 4)]),
    ("CrossEntropyLoss", lambda **k: nn.CrossEntropyLoss(), [f(3, 5), i(5, 3)]),
    ("NLLLoss", lambda **k: nn.NLLLoss(), [f(3, 5), i(5, 3)]),
    ("BCEWithLogitsLoss", lambda **k: nn.BCEWithLogitsLoss(), [f(3, 4), f(3, 4)]),
    ("KLDivLoss", lambda **k: nn.KLDivLoss(reduction="batchmean"), [f(3, 4), f(3, 4)]),
]
IDS = [c[0] for c in CASES]


def make_inputs(specs, device="cpu", dtype=ember.float32):
    rng = np.random.default_rng(0)
    out = []
    for spec in specs:
        if spec[0] == "f":
            arr = rng.uniform(0.05, 0.95, size=spec[1])
            out.append(ember.tensor(arr, dtype=dtype, device=device))
        else:
            out.append(ember.tensor(rng.integers(0, spec[2], size=spec[1]), device=device))
    return out


def build(ctor, **kwargs):
    try:
        return ctor(**kwargs)
    except TypeError:
        return ctor()


def leaves(out):
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in leaves(o)]
    return [out]


def assert_same_meta(meta_out, eager_out):
    m, e = leaves(meta_out), leaves(eager_out)
    assert len(m) == len(e)
    for a, b in zip(m, e):
        if b is None:
            assert a is None
            continue
        assert a.is_meta, a
        assert tuple(a.shape) == tuple(b.shape)
        assert a.dtype == b.dtype


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_layer_runs_on_meta(case, training):
    name, ctor, specs = case
    ember.manual_seed(0)
    eager = build(ctor).train(training)
    m = build(ctor, device="meta").train(training)
    for t in list(m.parameters()) + list(m.buffers()):
        assert t.is_meta
    eager_out = eager(*make_inputs(specs))
    meta_out = m(*make_inputs(specs, "meta"))
    assert_same_meta(meta_out, eager_out)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_float64_on_meta(case):
    name, ctor, specs = case
    m = build(ctor, device="meta", dtype=ember.float64)
    eager = build(ctor, dtype=ember.float64)
    assert_same_meta(m(*make_inputs(specs, "meta", ember.float64)),
                     eager(*make_inputs(specs, dtype=ember.float64)))


def reset_all(module):
    for sub in module.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_materialises(case):
    name, ctor, specs = case
    m = build(ctor, device="meta")
    m.to_empty(device="cpu")
    reset_all(m)
    for t in list(m.parameters()) + list(m.buffers()):
        assert not t.is_meta and np.isfinite(t.detach().numpy().astype(np.float64)).all()
    ember.manual_seed(0)
    eager = build(ctor)
    # same state as an eager-built module: loading its state dict reproduces its output
    m.load_state_dict(eager.state_dict())
    m.eval()
    eager.eval()
    got, want = m(*make_inputs(specs)), eager(*make_inputs(specs))
    # (to float32 rounding, not bit for bit: the materialised parameters live in other
    # memory, and a GEMM cut over the pool may take another kernel path for another address;
    # this failed now and then when other tests ran first in the same process)
    for a, b in zip(leaves(got), leaves(want)):
        if b is not None:
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6,
                                       atol=1e-6)


def test_materialised_values_follow_reset_parameters():
    ember.manual_seed(3)
    eager = nn.Linear(5, 4)
    m = nn.Linear(5, 4, device="meta")
    m.to_empty(device="cpu")
    ember.manual_seed(3)
    m.reset_parameters()
    np.testing.assert_array_equal(m.weight.detach().numpy(), eager.weight.detach().numpy())
    np.testing.assert_array_equal(m.bias.detach().numpy(), eager.bias.detach().numpy())
    bn = nn.BatchNorm1d(3, device="meta").to_empty(device="cpu")
    bn.reset_parameters()
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(3, np.float32))
    assert bn.num_batches_tracked.item() == 0
