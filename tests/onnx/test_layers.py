"""The common layers beyond the zoo: exported, run by onnxruntime on the example and on fresh
inputs of the same shapes (constants baked in by mistake would show), and imported back."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import ember  # noqa: E402
import ember.nn as nn  # noqa: E402
import ember.nn.functional as F  # noqa: E402
from ember.onnx.verification import verify  # noqa: E402


class _Misc(nn.Module):
    def forward(self, x, idx):
        y = x.masked_fill(x > 0, 0.5).to(ember.float64)
        z = x.index_select(1, idx) + x[:, idx] + ember.gather(x, 1, idx.expand(3, 2))
        return y, z, x.max(dim=1).values, x.mean(), x.var(dim=0), x.flatten()[2:5], x.t()


class _SDPA(nn.Module):
    def forward(self, q, k, v, mask):
        return (F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                F.scaled_dot_product_attention(q, k, v, is_causal=True))


def _cases():
    r = ember.randn
    return {
        "gru_bidirectional_h0": (nn.GRU(4, 6, num_layers=2, bidirectional=True,
                                        batch_first=True), lambda: (r(2, 5, 4), r(4, 2, 6))),
        "rnn_relu": (nn.RNN(4, 6, nonlinearity="relu"), lambda: (r(5, 2, 4),)),
        "lstm_bidirectional_h0_c0": (nn.LSTM(4, 6, bidirectional=True),
                                     lambda: (r(5, 2, 4), (r(2, 2, 6), r(2, 2, 6)))),
        "conv_transpose2d": (nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1,
                                                output_padding=1), lambda: (r(2, 3, 5, 5),)),
        "conv1d_avgpool_bn": (nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.AvgPool1d(2),
                                            nn.BatchNorm1d(4)), lambda: (r(2, 3, 8),)),
        "conv3d_maxpool_transpose": (nn.Sequential(nn.Conv3d(2, 3, 3, padding=1),
                                                   nn.MaxPool3d(2),
                                                   nn.ConvTranspose3d(3, 2, 2, stride=2)),
                                     lambda: (r(1, 2, 4, 4, 4),)),
        "upsample_nearest": (nn.Upsample(scale_factor=2), lambda: (r(1, 2, 3, 3),)),
        "upsample_bilinear": (nn.Upsample(scale_factor=2, mode="bilinear"),
                              lambda: (r(1, 2, 3, 3),)),
        "adaptive_avg_pool": (nn.AdaptiveAvgPool2d((2, 3)), lambda: (r(1, 2, 6, 6),)),
        "group_norm": (nn.GroupNorm(2, 4), lambda: (r(2, 4, 3, 3),)),
        "instance_norm": (nn.InstanceNorm2d(4, affine=True), lambda: (r(2, 4, 3, 3),)),
        "misc_ops": (_Misc(), lambda: (r(3, 4), ember.tensor([2, 0]))),
        "sdpa_masks": (_SDPA(), lambda: (r(2, 2, 4, 8), r(2, 2, 4, 8), r(2, 2, 4, 8),
                                         (r(4, 4) > 0) | ember.eye(4, dtype=ember.bool))),
        "multihead_attention": (nn.MultiheadAttention(8, 2, batch_first=True),
                                lambda: (r(2, 3, 8), r(2, 3, 8), r(2, 3, 8))),
    }


CASES = _cases()
# onnxruntime's CPU kernels for Conv, pooling and the recurrent ops are float32 only
F64 = ["upsample_nearest", "upsample_bilinear", "group_norm", "instance_norm", "misc_ops",
       "sdpa_masks", "multihead_attention"]
PARAMS = [(n, ember.float32) for n in CASES] + [(n, ember.float64) for n in F64]


@pytest.mark.parametrize("name,dtype", PARAMS)
def test_layer_exports_and_round_trips(name, dtype):
    ember.manual_seed(0)
    model, make = CASES[name]
    model = model.to(dtype).eval()

    def cast(t):
        if isinstance(t, tuple):
            return tuple(cast(x) for x in t)
        return t.to(dtype) if t.is_floating_point() else t
    args, fresh = cast(make()), cast(make())
    tol = 1e-5 if dtype == ember.float32 else 1e-10
    res = verify(model, args, test_args=(fresh,), rtol=tol, atol=tol)
    gm = ember.onnx.load(res.model)
    with ember.no_grad():
        want = model(*fresh)
        got = gm(*[t for a in fresh for t in (a if isinstance(a, tuple) else (a,))])
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    flat = [t for w in want for t in (w if isinstance(w, tuple) else (w,))]
    for g, w in zip(got, flat):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=tol, atol=tol)


def test_dynamic_sequence_length_in_recurrent_model():
    model = nn.GRU(3, 5, batch_first=True).eval()
    res = verify(model, (ember.randn(2, 4, 3),), test_args=((ember.randn(3, 9, 3),),),
                 dynamic_axes={"input": {0: "batch", 1: "seq"}}, rtol=1e-5, atol=1e-6)
    assert len(res.errors) == 4
    dims = res.model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "seq"]
