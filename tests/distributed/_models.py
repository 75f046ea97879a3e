"""Small models for the sharding tests: an MLP and a GPT (pre-norm transformer blocks with
causal self-attention), both traceable by ``ember.fx`` so that ``pipeline()`` can cut them."""

import ember as torch
import ember.nn as nn
import ember.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d_in=6, hidden=16, d_out=3, depth=3):
        super().__init__()
        dims = [d_in] + [hidden] * (depth - 1)
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:])])
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x)


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head, self.d = n_head, d
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t = x.shape[0], x.shape[1]
        hd = self.d // self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(self.d, dim=2)
        q = q.view(b, t, self.n_head, hd).transpose(1, 2)
        k = k.view(b, t, self.n_head, hd).transpose(1, 2)
        v = v.view(b, t, self.n_head, hd).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, self.d))
        return x + self.fc2(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Float inputs (B, T, d) -> (B, T, d_out): an input projection, blocks, a final norm and
    a head (the token embedding is left out so that every stage passes float activations)."""

    def __init__(self, d=16, n_head=2, n_layer=3, d_in=5, d_out=4):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.layers = nn.ModuleList([Block(d, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, d_out)

    def forward(self, x):
        x = self.inp(x)
        for block in self.layers:
            x = block(x)
        return self.head(self.ln_f(x))


def make(kind, seed=0):
    torch.manual_seed(seed)
    return MLP() if kind == "mlp" else GPT()


def shape_of(kind, batch):
    """(input shape, target shape) of a batch for the model ``kind``."""
    return ((batch, 6), (batch, 3)) if kind == "mlp" else ((batch, 4, 5), (batch, 4, 4))
