"""Readers for text datasets in their usual on-disk formats. Nothing is downloaded.

Each reader is a map-style dataset (``len``, indexing, iteration) over what torchtext's
iterator yields: ``(label, text)`` for classification, lines for language modelling,
``(source, target)`` pairs for translation. ``split`` may be one name or a tuple of names,
which returns a tuple of datasets, as in torchtext.
"""

from __future__ import annotations

import csv
import os

from ...utils.data import Dataset


def _missing(name, path):
    return RuntimeError(f"{name}: {path!r} not found. ember does not download datasets: put "
                        f"the extracted files there, or use ember.text.datasets.GeneratedText, "
                        f"which needs no files.")


def _splits(cls, split, valid, **kw):
    """A tuple of datasets for a tuple of split names (``__new__`` returns it, and Python then
    skips ``__init__``), None for one valid name."""
    if isinstance(split, (tuple, list)):
        return tuple(cls(split=s, **kw) for s in split)
    if split not in valid:
        raise ValueError(f"{cls.__name__}: split must be one of {valid}, got {split!r}")
    return None


class _ListDataset(Dataset):
    def __getitem__(self, i):
        return self._items[i]

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)


class CSVClassification(_ListDataset):
    """A CSV classification file (the AG_NEWS / DBpedia / Yelp format): a label column, then
    text columns joined by a space. Items are ``(label, text)``; numeric labels become ints."""

    def __init__(self, path, label_column=0, text_columns=None):
        if not os.path.isfile(path):
            raise _missing(type(self).__name__, path)
        items = []
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if not row:
                    continue
                label = row[label_column]
                cols = text_columns if text_columns is not None else \
                    [i for i in range(len(row)) if i != label_column]
                text = " ".join(row[i] for i in cols)
                items.append((int(label) if label.strip().lstrip("-").isdigit() else label,
                              text))
        self._items = items


class _NamedCSV(CSVClassification):
    _folder = ""
    _splits_ = ("train", "test")

    def __new__(cls, root=".data", split=("train", "test")):
        many = _splits(cls, split, cls._splits_, root=root)
        return many if many is not None else super().__new__(cls)

    def __init__(self, root=".data", split=("train", "test")):
        super().__init__(os.path.join(os.fspath(root), self._folder, f"{split}.csv"))


class AG_NEWS(_NamedCSV):
    """AG News: ``root/AG_NEWS/{train,test}.csv`` rows ``"label","title","description"``;
    items ``(label in 1..4, "title description")``."""

    _folder = "AG_NEWS"


class DBpedia(_NamedCSV):
    """DBpedia ontology classification: ``root/DBpedia/dbpedia_csv/{train,test}.csv``."""

    _folder = os.path.join("DBpedia", "dbpedia_csv")


class YelpReviewPolarity(_NamedCSV):
    """Yelp review polarity: ``root/YelpReviewPolarity/yelp_review_polarity_csv/{split}.csv``."""

    _folder = os.path.join("YelpReviewPolarity", "yelp_review_polarity_csv")


class IMDB(_ListDataset):
    """IMDB reviews: ``root/IMDB/aclImdb/{train,test}/{neg,pos}/*.txt``; items ``(label,
    text)`` with label 1 for negative and 2 for positive, as torchtext gives them."""

    def __new__(cls, root=".data", split=("train", "test")):
        many = _splits(cls, split, ("train", "test"), root=root)
        return many if many is not None else super().__new__(cls)

    def __init__(self, root=".data", split=("train", "test")):
        base = os.path.join(os.fspath(root), "IMDB", "aclImdb", split)
        if not os.path.isdir(base):
            raise _missing("IMDB", base)
        items = []
        for label, name in ((1, "neg"), (2, "pos")):
            d = os.path.join(base, name)
            if not os.path.isdir(d):
                continue
            for f in sorted(os.listdir(d)):
                if f.endswith(".txt"):
                    with open(os.path.join(d, f), encoding="utf-8") as fh:
                        items.append((label, fh.read()))
        self._items = items


class _WikiText(_ListDataset):
    _folder = ""

    def __new__(cls, root=".data", split=("train", "valid", "test")):
        many = _splits(cls, split, ("train", "valid", "test"), root=root)
        return many if many is not None else super().__new__(cls)

    def __init__(self, root=".data", split=("train", "valid", "test")):
        path = os.path.join(os.fspath(root), *self._folder, f"wiki.{split}.tokens")
        if not os.path.isfile(path):
            raise _missing(type(self).__name__, path)
        with open(path, encoding="utf-8") as f:
            self._items = f.readlines()


class WikiText2(_WikiText):
    """WikiText-2 token files ``root/WikiText2/wikitext-2/wiki.{train,valid,test}.tokens``;
    items are the lines (with their newline), blank ones included, as torchtext yields."""

    _folder = ("WikiText2", "wikitext-2")


class WikiText103(_WikiText):
    """WikiText-103: ``root/WikiText103/wikitext-103/wiki.{split}.tokens``."""

    _folder = ("WikiText103", "wikitext-103")


class Multi30k(_ListDataset):
    """Multi30k parallel text: ``root/Multi30k/{train,val,test_2016_flickr}.{de,en}`` (one
    sentence a line, aligned). Items ``(source, target)`` in ``language_pair`` order."""

    _files = {"train": ("train",), "valid": ("val",),
              "test": ("test_2016_flickr", "test2016", "test")}

    def __new__(cls, root=".data", split=("train", "valid", "test"), language_pair=("de", "en")):
        many = _splits(cls, split, tuple(cls._files), root=root, language_pair=language_pair)
        return many if many is not None else super().__new__(cls)

    def __init__(self, root=".data", split=("train", "valid", "test"),
                 language_pair=("de", "en")):
        if set(language_pair) != {"de", "en"} or len(language_pair) != 2:
            raise ValueError(f"Multi30k: language_pair must be ('de', 'en') or ('en', 'de'), "
                             f"got {language_pair}")
        base = os.path.join(os.fspath(root), "Multi30k")
        stem = next((s for s in self._files[split]
                     if os.path.isfile(os.path.join(base, f"{s}.{language_pair[0]}"))), None)
        if stem is None:
            raise _missing("Multi30k", os.path.join(base, f"{self._files[split][0]}."
                                                          f"{language_pair[0]}"))
        src_p, tgt_p = (os.path.join(base, f"{stem}.{lang}") for lang in language_pair)
        if not os.path.isfile(tgt_p):
            raise _missing("Multi30k", tgt_p)
        with open(src_p, encoding="utf-8") as f:
            src = [line.rstrip("\n") for line in f]
        with open(tgt_p, encoding="utf-8") as f:
            tgt = [line.rstrip("\n") for line in f]
        if len(src) != len(tgt):
            raise RuntimeError(f"Multi30k: {src_p!r} has {len(src)} lines but {tgt_p!r} has "
                               f"{len(tgt)}; parallel files must align")
        self._items = list(zip(src, tgt))
