"""Trained subword tokenizers (BPE, WordPiece, Unigram): a thin wrapper over Hugging Face
``tokenizers`` (``pip install ember[text]``), imported on first use."""

from __future__ import annotations

import os
import tempfile

from .. import nn

_MODELS = ("bpe", "wordpiece", "unigram")


def _hf():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("subword tokenizers need the optional 'tokenizers' package: "
                          "pip install 'ember[text]' (or pip install tokenizers)") from None
    return tokenizers


class SubwordTokenizer(nn.Module):
    """A trained subword tokenizer as a text transform.

    ``forward(text)`` returns the subword strings (or their ids with ``return_ids=True``);
    ``encode``/``decode`` go between text and ids; ``vocab()`` gives an ``ember.text.Vocab``
    with the same ids. Build one with ``train`` or ``from_file``.
    """

    def __init__(self, tokenizer, return_ids=False, unk_token=None):
        super().__init__()
        self.tokenizer = tokenizer
        self.return_ids = return_ids
        # the Unigram model does not expose its unknown token, so it is kept here
        self.unk_token = unk_token or getattr(tokenizer.model, "unk_token", None)

    @classmethod
    def train(cls, texts, model="bpe", vocab_size=1000, min_frequency=2, specials=("<unk>",),
              unk_token="<unk>", lowercase=True, return_ids=False):
        """Train ``model`` ("bpe", "wordpiece" or "unigram") on an iterable of strings, with
        whitespace/punctuation pre-tokenisation and optional lower-casing."""
        if model not in _MODELS:
            raise ValueError(f"SubwordTokenizer.train: model must be one of {_MODELS}, got "
                             f"{model!r}")
        tk = _hf()
        specials = list(specials)
        if unk_token is not None and unk_token not in specials:
            specials.insert(0, unk_token)
        if model == "bpe":
            # "##" marks a piece that continues a word, so decoding can rejoin words
            tok = tk.Tokenizer(tk.models.BPE(unk_token=unk_token, continuing_subword_prefix="##"))
            trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                             special_tokens=specials, show_progress=False,
                                             continuing_subword_prefix="##")
        elif model == "wordpiece":
            tok = tk.Tokenizer(tk.models.WordPiece(unk_token=unk_token))
            trainer = tk.trainers.WordPieceTrainer(vocab_size=vocab_size,
                                                   min_frequency=min_frequency,
                                                   special_tokens=specials,
                                                   show_progress=False)
        else:
            tok = tk.Tokenizer(tk.models.Unigram())
            trainer = tk.trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                 unk_token=unk_token, show_progress=False)
        if lowercase:
            tok.normalizer = tk.normalizers.Sequence([tk.normalizers.NFD(),
                                                      tk.normalizers.Lowercase()])
        if model == "unigram":  # SentencePiece style: "▁" marks the start of a word
            tok.pre_tokenizer = tk.pre_tokenizers.Metaspace()
            tok.decoder = tk.decoders.Metaspace()
        else:
            tok.pre_tokenizer = tk.pre_tokenizers.Whitespace()
            tok.decoder = tk.decoders.WordPiece(prefix="##")
        tok.train_from_iterator(iter(texts), trainer=trainer)
        return cls(tok, return_ids, unk_token)

    @classmethod
    def from_file(cls, path, return_ids=False, unk_token=None):
        """Load a tokenizer saved by ``save`` (or any Hugging Face ``tokenizer.json``); name
        ``unk_token`` for a Unigram model, whose file does not say which token it is."""
        return cls(_hf().Tokenizer.from_file(os.fspath(path)), return_ids, unk_token)

    def save(self, path):
        """Write the tokenizer as JSON, atomically."""
        path = os.fspath(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".json")
        os.close(fd)
        try:
            self.tokenizer.save(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def encode(self, text):
        return self.tokenizer.encode(text).ids

    def decode(self, ids):
        return self.tokenizer.decode([int(i) for i in ids])

    def tokenize(self, text):
        return self.tokenizer.encode(text).tokens

    def forward(self, input):
        one = isinstance(input, str)
        texts = [input] if one else list(input)
        enc = self.tokenizer.encode_batch(texts)
        out = [e.ids if self.return_ids else e.tokens for e in enc]
        return out[0] if one else out

    def vocab(self):
        """The tokenizer's vocabulary as an ``ember.text.vocab.Vocab`` with the same ids."""
        from .vocab import Vocab
        stoi = self.tokenizer.get_vocab()
        v = Vocab(sorted(stoi, key=stoi.get))
        if self.unk_token is not None and self.unk_token in v:
            v.set_default_index(v[self.unk_token])
        return v

    def __len__(self):
        return self.tokenizer.get_vocab_size()
