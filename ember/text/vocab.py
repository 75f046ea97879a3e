"""``Vocab``: a token <-> index table (torchtext's), and the two ways to build one."""

from __future__ import annotations

from collections import Counter, OrderedDict

from ..nn import Module


class Vocab(Module):
    """Maps tokens to indices and back. ``vocab[token]`` and ``vocab(tokens)`` look tokens
    up; an unknown token raises ``RuntimeError`` unless ``set_default_index`` gave an index for
    it (usually that of "<unk>")."""

    def __init__(self, itos=()):
        super().__init__()
        self._itos = []
        self._stoi = {}
        self._default = None
        for t in itos:
            self.append_token(t)

    # -- lookups -------------------------------------------------------------------------------
    def __len__(self):
        return len(self._itos)

    def __contains__(self, token):
        return token in self._stoi

    def __getitem__(self, token):
        i = self._stoi.get(token)
        if i is None:
            if self._default is None:
                raise RuntimeError(f"Token {token} not found and default index is not set")
            return self._default
        return i

    def forward(self, tokens):
        """The indices of a list of tokens."""
        return self.lookup_indices(tokens)

    def lookup_indices(self, tokens):
        return [self[t] for t in tokens]

    def lookup_token(self, index):
        if not 0 <= index < len(self._itos):
            raise RuntimeError(f"Specified index {index} is out of bounds of the size of "
                               f"itos dictionary: {len(self._itos)}.")
        return self._itos[index]

    def lookup_tokens(self, indices):
        return [self.lookup_token(int(i)) for i in indices]

    def get_stoi(self):
        return dict(self._stoi)

    def get_itos(self):
        return list(self._itos)

    # -- editing -------------------------------------------------------------------------------
    def set_default_index(self, index):
        """The index returned for unknown tokens (``None`` to raise instead)."""
        self._default = None if index is None else int(index)

    def get_default_index(self):
        return self._default

    def insert_token(self, token, index):
        """Insert ``token`` at ``index``, shifting later tokens up by one."""
        if token in self._stoi:
            raise RuntimeError(f"Token {token} already exists in the Vocab with index: "
                               f"{self._stoi[token]}")
        if not 0 <= index <= len(self._itos):
            raise RuntimeError(f"Specified index {index} is out of bounds of the size of "
                               f"stoi dictionary: {len(self._itos)}.")
        self._itos.insert(index, token)
        self._stoi = {t: i for i, t in enumerate(self._itos)}

    def append_token(self, token):
        if token in self._stoi:
            raise RuntimeError(f"Token {token} already exists in the Vocab with index: "
                               f"{self._stoi[token]}")
        self._stoi[token] = len(self._itos)
        self._itos.append(token)

    def extra_repr(self):
        return f"size={len(self)}, default_index={self._default}"


def vocab(ordered_dict, min_freq=1, specials=None, special_first=True):
    """A ``Vocab`` from an ordered token -> frequency mapping: tokens with at least
    ``min_freq`` occurrences, in the mapping's order, with ``specials`` first (or last)."""
    specials = list(specials or [])
    od = OrderedDict(ordered_dict)
    for t in specials:
        od.pop(t, None)
    tokens = [t for t, f in od.items() if f >= min_freq]
    tokens = specials + tokens if special_first else tokens + specials
    return Vocab(tokens)


def build_vocab_from_iterator(iterator, min_freq=1, specials=None, special_first=True,
                              max_tokens=None):
    """A ``Vocab`` from an iterable of token lists: tokens by decreasing frequency (ties in
    alphabetical order), those seen fewer than ``min_freq`` times dropped, and at most
    ``max_tokens`` entries including ``specials``."""
    counter = Counter()
    for tokens in iterator:
        counter.update(tokens)
    specials = list(specials or [])
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    if max_tokens is not None:
        if max_tokens <= len(specials):
            raise ValueError(f"build_vocab_from_iterator: max_tokens={max_tokens} must exceed "
                             f"the number of special tokens ({len(specials)})")
        ranked = ranked[:max_tokens - len(specials)]  # torchtext's cut, made before specials
    return vocab(OrderedDict(ranked), min_freq=min_freq, specials=specials,
                 special_first=special_first)
