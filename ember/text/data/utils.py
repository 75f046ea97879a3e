"""Tokenizers by name (torchtext's ``get_tokenizer``) and n-grams."""

from __future__ import annotations

import re

# torchtext's "basic_english" rules, applied in order to the lower-cased line: apostrophes
# are split off, double quotes dropped, the punctuation . , ( ) ! ? kept as tokens, ; and :
# dropped, HTML line breaks removed, then the line is split on whitespace.
_BASIC_ENGLISH = [(re.compile(p), r) for p, r in (
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "),
    (r"\(", " ( "), (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "), (r"\:", " "),
    (r"\s+", " "))]


def _basic_english(line):
    line = line.lower()
    for pattern, repl in _BASIC_ENGLISH:
        line = pattern.sub(repl, line)
    return line.split()


def _whitespace(line):
    return line.split()


def _characters(line):
    return list(line)


def get_tokenizer(tokenizer, language="en"):
    """A function from a string to its list of tokens.

    ``None`` or "whitespace" splits on whitespace; "basic_english" lower-cases and separates
    punctuation exactly as torchtext does; "character" gives the characters; a callable is
    returned as it is. Tokenizers that need other libraries (spacy, moses, ...) are not
    bundled: train a subword tokenizer with ``ember.text.tokenizers`` or pass a callable.
    """
    if callable(tokenizer):
        return tokenizer
    if tokenizer is None or tokenizer == "whitespace":
        return _whitespace
    if tokenizer == "basic_english":
        if language != "en":
            raise ValueError("Basic normalization is only available for English(en)")
        return _basic_english
    if tokenizer in ("character", "char"):
        return _characters
    raise ValueError(f"get_tokenizer: unknown tokenizer {tokenizer!r}; ember provides None/"
                     f"'whitespace', 'basic_english', 'character', a callable, or trained "
                     f"subword tokenizers in ember.text.tokenizers (spacy, moses, toktok and "
                     f"revtok are not bundled)")


def ngrams_iterator(token_list, ngrams):
    """The tokens, then every n-gram up to ``ngrams`` joined by spaces (torchtext's order)."""
    yield from token_list
    for n in range(2, ngrams + 1):
        for i in range(len(token_list) - n + 1):
            yield " ".join(token_list[i:i + n])
