"""``ember.text.transforms``: torchtext's text transforms as ``nn.Module``s, chained with
``Sequential``."""

from __future__ import annotations

from .. import nn
from . import functional as TF
from .data.utils import get_tokenizer

__all__ = ["Tokenizer", "VocabTransform", "Truncate", "AddToken", "ToTensor", "PadTransform",
           "StrToIntTransform", "LabelToIndex", "Sequential"]


class Tokenizer(nn.Module):
    """A string (or a list of strings) -> its tokens, by ``get_tokenizer(name)``."""

    def __init__(self, tokenizer="basic_english"):
        super().__init__()
        self.fn = get_tokenizer(tokenizer)

    def forward(self, input):
        if isinstance(input, str):
            return self.fn(input)
        return [self.fn(s) for s in input]


class VocabTransform(nn.Module):
    """Tokens -> indices with a ``Vocab`` (a list of tokens, or a batch of such lists)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, input):
        if isinstance(input, (list, tuple)) and input and isinstance(input[0], (list, tuple)):
            return [self.vocab.lookup_indices(x) for x in input]
        return self.vocab.lookup_indices(input)


class Truncate(nn.Module):
    """Cut sequences to ``max_seq_len`` tokens."""

    def __init__(self, max_seq_len):
        super().__init__()
        self.max_seq_len = max_seq_len

    def forward(self, input):
        return TF.truncate(input, self.max_seq_len)


class AddToken(nn.Module):
    """Add a token (e.g. a BOS/EOS id) at the beginning or the end of sequences."""

    def __init__(self, token, begin=True):
        super().__init__()
        self.token, self.begin = token, begin

    def forward(self, input):
        return TF.add_token(input, self.token, self.begin)


class ToTensor(nn.Module):
    """Ids -> a LongTensor, padding a batch with ``padding_value``."""

    def __init__(self, padding_value=None, dtype=None):
        super().__init__()
        self.padding_value, self.dtype = padding_value, dtype

    def forward(self, input):
        return TF.to_tensor(input, self.padding_value, self.dtype)


class PadTransform(nn.Module):
    """Pad a tensor's last dimension to ``max_length`` with ``pad_value`` (longer ones are
    left as they are)."""

    def __init__(self, max_length, pad_value):
        super().__init__()
        self.max_length, self.pad_value = max_length, pad_value

    def forward(self, x):
        n = x.shape[-1]
        if n >= self.max_length:
            return x
        return nn.functional.pad(x, (0, self.max_length - n), value=self.pad_value)


class StrToIntTransform(nn.Module):
    """Strings of digits -> ints."""

    def forward(self, input):
        return TF.str_to_int(input)


class LabelToIndex(nn.Module):
    """Label names -> indices, from ``label_names`` or a file with one label per line."""

    def __init__(self, label_names=None, label_path=None, sort_names=False):
        super().__init__()
        if (label_names is None) == (label_path is None):
            raise ValueError("LabelToIndex: give exactly one of label_names and label_path")
        if label_path is not None:
            with open(label_path) as f:
                label_names = [line.strip() for line in f if line.strip()]
        names = sorted(set(label_names)) if sort_names else list(label_names)
        if len(set(names)) != len(names):
            raise ValueError("LabelToIndex: label names must be unique")
        self.label_names = names
        self._map = {n: i for i, n in enumerate(names)}

    def forward(self, input):
        if isinstance(input, str):
            return self._map[input]
        return [self._map[x] for x in input]


class Sequential(nn.Sequential):
    """Apply transforms one after the other (torchtext's ``Sequential``)."""

    def forward(self, input):
        for module in self:
            input = module(input)
        return input
