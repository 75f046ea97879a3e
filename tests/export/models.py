"""Small models for the capture tests (also imported by tests/jit and the benchmark)."""

import math

import ember
from ember import nn
from ember.nn import functional as F


class MLP(nn.Module):
    def __init__(self, d=8, h=16, o=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, o)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), \
            nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = ember.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LSTMLM(nn.Module):
    def __init__(self, vocab=20, d=8, h=12):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, h, num_layers=2, batch_first=True)
        self.head = nn.Linear(h, vocab)

    def forward(self, tokens):
        out, (h, c) = self.lstm(self.emb(tokens))
        return self.head(out), (h, c)


class GPTBlock(nn.Module):
    """A pre-norm GPT block: causal self-attention (mask buffer sliced to the length) + MLP."""

    def __init__(self, d=16, heads=4, max_len=32, dropout=0.0):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("mask", ember.tril(ember.ones(max_len, max_len))
                             .view(1, 1, max_len, max_len))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf"))
        att = self.drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


def encoder():
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


def resnet18():
    from ember.vision.models import resnet18
    return resnet18(num_classes=10)


def cases():
    """(name, model factory, example inputs factory)."""
    return [
        ("mlp", MLP, lambda: (ember.randn(4, 8),)),
        ("lenet", LeNet, lambda: (ember.randn(2, 1, 28, 28),)),
        ("resnet18", resnet18, lambda: (ember.randn(1, 3, 32, 32),)),
        ("lstm_lm", LSTMLM, lambda: (ember.randint(0, 20, (2, 7)),)),
        ("encoder", encoder, lambda: (ember.randn(2, 5, 16),)),
        ("gpt_block", GPTBlock, lambda: (ember.randn(2, 6, 16),)),
    ]
