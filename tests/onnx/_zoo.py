"""The model zoo of the ONNX tests: small versions of each model and their example inputs."""

import ember
import ember.nn as nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class LSTMLM(nn.Module):
    def __init__(self, vocab=50, emb=16, hidden=24):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        out, _ = self.lstm(self.emb(tokens))
        return ember.nn.functional.log_softmax(self.head(out), dim=-1)


class Encoder(nn.Module):
    """A transformer encoder over token ids with a key padding mask."""

    def __init__(self, vocab=40, d=32, heads=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=64, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 3)

    def forward(self, tokens, pad_mask):
        h = self.enc(self.emb(tokens), src_key_padding_mask=pad_mask)
        return self.head(h.mean(dim=1))


class GPTBlock(nn.Module):
    """A pre-norm GPT block: causal self-attention (scaled dot product) and an MLP."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


def zoo():
    """(name, model in eval mode, example args, dynamic_axes, other sizes' args)."""
    from ember import demo
    from ember.vision import models
    ember.manual_seed(0)
    r = ember.randn
    toks = lambda b, t, v: ember.randint(0, v, (b, t))  # noqa: E731

    def pad(b, t):
        m = ember.zeros(b, t, dtype=ember.bool)
        m[0, t - 2:] = True
        return m
    return [
        ("mlp", MLP(), (r(4, 16),), {"x": {0: "batch"}}, [(r(1, 16),), (r(7, 16),)]),
        ("lenet", models.LeNet5(), (r(2, 1, 28, 28),), {"x": {0: "batch"}},
         [(r(1, 1, 28, 28),), (r(5, 1, 28, 28),)]),
        ("demo_cnn", demo.build_model(nn), (r(2, 1, 28, 28),), {"input": {0: "batch"}},
         [(r(1, 1, 28, 28),), (r(3, 1, 28, 28),)]),
        ("resnet18", models.resnet18(num_classes=10), (r(2, 3, 32, 32),), {"x": {0: "batch"}},
         [(r(1, 3, 32, 32),), (r(3, 3, 32, 32),)]),
        ("mobilenet_v2", models.mobilenet_v2(num_classes=10), (r(2, 3, 32, 32),),
         {"x": {0: "batch"}}, [(r(1, 3, 32, 32),), (r(3, 3, 32, 32),)]),
        ("lstm_lm", LSTMLM(), (toks(2, 7, 50),), {"tokens": {0: "batch", 1: "seq"}},
         [(toks(1, 3, 50),), (toks(3, 11, 50),)]),
        ("encoder", Encoder(), (toks(2, 6, 40), pad(2, 6)),
         {"tokens": {0: "batch", 1: "seq"}, "pad_mask": {0: "batch", 1: "seq"}},
         [(toks(1, 4, 40), pad(1, 4)), (toks(3, 9, 40), pad(3, 9))]),
        ("gpt_block", GPTBlock(), (r(2, 5, 32),), {"x": {0: "batch", 1: "seq"}},
         [(r(1, 3, 32),), (r(3, 8, 32),)]),
    ]
