"""ember.text.datasets: readers on small files written in each layout; GeneratedText."""

import csv

import pytest

from ember.text.data import get_tokenizer
from ember.text.datasets import (AG_NEWS, IMDB, CSVClassification, DBpedia, GeneratedText,
                                 Multi30k, WikiText2, WikiText103)


def test_ag_news_csv(tmp_path):
    d = tmp_path / "AG_NEWS"
    d.mkdir()
    rows = {"train": [["3", "Stocks up", "Shares rose, \"sharply\" today."],
                      ["1", "Talks", "Leaders met."]],
            "test": [["2", "Win", "The team won."]]}
    for split, rs in rows.items():
        with open(d / f"{split}.csv", "w", newline="") as f:
            csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rs)
    train, test = AG_NEWS(tmp_path)
    assert list(train) == [(3, 'Stocks up Shares rose, "sharply" today.'), (1, "Talks Leaders met.")]
    assert len(test) == 1 and test[0] == (2, "Win The team won.")
    assert AG_NEWS(tmp_path, split="test")[0][0] == 2
    with pytest.raises(ValueError, match="split"):
        AG_NEWS(tmp_path, split="dev")
    with pytest.raises(RuntimeError, match="GeneratedText"):
        DBpedia(tmp_path, split="train")
    # a generic CSV with the label elsewhere
    with open(tmp_path / "x.csv", "w", newline="") as f:
        csv.writer(f).writerows([["hello there", "pos"], ["bad", "neg"]])
    assert list(CSVClassification(tmp_path / "x.csv", label_column=1)) == [("pos", "hello there"),
                                                                          ("neg", "bad")]


def test_imdb_folders(tmp_path):
    for split in ("train", "test"):
        for lab, texts in (("neg", ["awful film"]), ("pos", ["great<br />film", "loved it"])):
            d = tmp_path / "IMDB" / "aclImdb" / split / lab
            d.mkdir(parents=True)
            for i, t in enumerate(texts):
                (d / f"{i}_7.txt").write_text(t)
    train = IMDB(tmp_path, split="train")
    assert list(train) == [(1, "awful film"), (2, "great<br />film"), (2, "loved it")]
    assert get_tokenizer("basic_english")(train[1][1]) == ["great", "film"]
    assert len(IMDB(tmp_path)) == 2


def test_wikitext_lines(tmp_path):
    for cls, folder in ((WikiText2, ("WikiText2", "wikitext-2")),
                        (WikiText103, ("WikiText103", "wikitext-103"))):
        d = tmp_path.joinpath(*folder)
        d.mkdir(parents=True)
        for split in ("train", "valid", "test"):
            (d / f"wiki.{split}.tokens").write_text(f" = {split} = \n \n a b <unk> c \n")
        train, valid, test = cls(tmp_path)
        assert list(valid) == [" = valid = \n", " \n", " a b <unk> c \n"]
        assert cls(tmp_path, split="test")[0] == " = test = \n"


def test_multi30k_pairs(tmp_path):
    d = tmp_path / "Multi30k"
    d.mkdir()
    (d / "train.de").write_text("ein Hund .\nzwei Katzen .\n")
    (d / "train.en").write_text("a dog .\ntwo cats .\n")
    (d / "val.de").write_text("hallo\n")
    (d / "val.en").write_text("hello\n")
    (d / "test_2016_flickr.de").write_text("x\n")
    (d / "test_2016_flickr.en").write_text("y\n")
    train = Multi30k(tmp_path, split="train")
    assert list(train) == [("ein Hund .", "a dog ."), ("zwei Katzen .", "two cats .")]
    assert Multi30k(tmp_path, split="train", language_pair=("en", "de"))[1] == ("two cats .",
                                                                              "zwei Katzen .")
    tr, va, te = Multi30k(tmp_path)
    assert va[0] == ("hallo", "hello") and te[0] == ("x", "y")
    (d / "val.en").write_text("hello\nextra\n")
    with pytest.raises(RuntimeError, match="align"):
        Multi30k(tmp_path, split="valid")
    with pytest.raises(ValueError, match="language_pair"):
        Multi30k(tmp_path, split="train", language_pair=("de", "fr"))


def test_generated_text_classification():
    a = GeneratedText(size=400, seed=1)
    assert list(a) == list(GeneratedText(size=400, seed=1))  # deterministic
    assert list(a) != list(GeneratedText(size=400, seed=2))
    assert list(a)[:50] != list(GeneratedText(split="test", size=50, seed=1))
    labels = [y for y, _ in a]
    assert set(labels) == {1, 2, 3, 4} and min(labels.count(k) for k in range(1, 5)) > 60
    assert all(isinstance(t, str) and t[0].isupper() and t.endswith(".") for _, t in a)
    assert len(GeneratedText()) == 8000 and len(GeneratedText(split="test")) == 2000
    # topical words predict the label: naive Bayes fit on train is far above chance (0.25)
    import math
    tok = get_tokenizer("basic_english")
    counts = {k: {} for k in range(1, 5)}
    for y, t in a:
        for w in tok(t):
            counts[y][w] = counts[y].get(w, 0) + 1
    vocab_size = len({w for c in counts.values() for w in c})
    totals = {k: sum(c.values()) for k, c in counts.items()}
    score = lambda k, t: sum(math.log((counts[k].get(w, 0) + 1) / (totals[k] + vocab_size))
                             for w in tok(t))
    test = GeneratedText(split="test", size=200, seed=1)
    hits = sum(max(range(1, 5), key=lambda k: score(k, t)) == y for y, t in test)
    assert hits / 200 > 0.8


def test_generated_text_language_modeling():
    lm = GeneratedText("language_modeling", split="train", size=50)
    assert len(lm) == 50 and all(isinstance(line, str) and line.endswith("\n") for line in lm)
    assert lm[0].startswith(" = ") and lm[1] == " \n"
    with pytest.raises(ValueError, match="task"):
        GeneratedText("translation")
    with pytest.raises(ValueError, match="split"):
        GeneratedText(split="valid")
