"""ember.text: tokenizers, vocab, transforms, batching helpers."""

import pickle
from collections import Counter, OrderedDict

import numpy as np
import pytest

import ember
from ember import nn
from ember.text import functional as TF
from ember.text import transforms as T
from ember.text.data import BucketBatchSampler, PadCollate, get_tokenizer, ngrams_iterator, pad_batch
from ember.text.vocab import Vocab, build_vocab_from_iterator, vocab


# -- tokenizers ------------------------------------------------------------------------------

@pytest.mark.parametrize("line,tokens", [
    # torchtext's documented example
    ("You can now install TorchText using pip!",
     ["you", "can", "now", "install", "torchtext", "using", "pip", "!"]),
    # apostrophes split off, quotes dropped, ; and : dropped, <br /> removed, punctuation kept
    ("He said \"don't\"; it's (mostly) fine: ok?<br />Yes, 3.5",
     ["he", "said", "don", "'", "t", "it", "'", "s", "(", "mostly", ")", "fine", "ok", "?",
      "yes", ",", "3", ".", "5"]),
    ("  Tabs\tand\nnewlines  ", ["tabs", "and", "newlines"]),
    ("", []),
])
def test_basic_english(line, tokens):
    assert get_tokenizer("basic_english")(line) == tokens


def test_other_tokenizers():
    assert get_tokenizer(None)("a  b\tc") == ["a", "b", "c"]
    assert get_tokenizer("whitespace")("Hi there!") == ["Hi", "there!"]
    assert get_tokenizer("character")("ab c") == ["a", "b", " ", "c"]
    f = str.upper
    assert get_tokenizer(f) is f
    with pytest.raises(ValueError, match="spacy"):
        get_tokenizer("spacy")
    with pytest.raises(ValueError, match="English"):
        get_tokenizer("basic_english", language="de")
    assert list(ngrams_iterator(["a", "b", "c"], 2)) == ["a", "b", "c", "a b", "b c"]
    assert T.Tokenizer()(["A b.", "C"]) == [["a", "b", "."], ["c"]]


# -- vocab -----------------------------------------------------------------------------------

def test_build_vocab_order_min_freq_max_tokens():
    docs = [["b", "a", "c", "a"], ["c", "d", "a", "b"], ["e"]]
    counts = Counter(t for d in docs for t in d)
    v = build_vocab_from_iterator(docs, specials=["<unk>", "<pad>"])
    # specials first, then by decreasing count, ties alphabetical
    expect = ["<unk>", "<pad>"] + sorted(counts, key=lambda t: (-counts[t], t))
    assert v.get_itos() == expect
    assert v.get_stoi() == {t: i for i, t in enumerate(expect)}
    v2 = build_vocab_from_iterator(docs, min_freq=2, specials=["<unk>"], special_first=False)
    assert v2.get_itos() == ["a", "b", "c", "<unk>"]
    v3 = build_vocab_from_iterator(docs, specials=["<unk>"], max_tokens=3)
    assert v3.get_itos() == ["<unk>", "a", "b"]
    with pytest.raises(ValueError, match="max_tokens"):
        build_vocab_from_iterator(docs, specials=["<unk>"], max_tokens=1)


def test_vocab_lookups_and_default_index():
    v = vocab(OrderedDict([("x", 3), ("y", 1), ("<unk>", 5)]), min_freq=2, specials=["<unk>"])
    assert v.get_itos() == ["<unk>", "x"] and len(v) == 2 and "x" in v and "y" not in v
    with pytest.raises(RuntimeError, match="default index is not set"):
        v["zzz"]
    v.set_default_index(v["<unk>"])
    assert v.get_default_index() == 0
    assert v(["x", "zzz"]) == [1, 0] and v.lookup_indices(["x"]) == [1]
    assert v.lookup_tokens([1, 0]) == ["x", "<unk>"] and v.lookup_token(1) == "x"
    with pytest.raises(RuntimeError, match="out of bounds"):
        v.lookup_token(5)
    v.append_token("new")
    v.insert_token("first", 0)
    assert v.get_itos() == ["first", "<unk>", "x", "new"] and v["new"] == 3
    with pytest.raises(RuntimeError, match="already exists"):
        v.append_token("x")
    w = pickle.loads(pickle.dumps(v))
    assert w.get_itos() == v.get_itos() and w["nope"] == 0
    assert Vocab(["a", "b"])["b"] == 1


# -- transforms ------------------------------------------------------------------------------

def test_transforms_pipeline():
    v = build_vocab_from_iterator([["hello", "world"], ["hello"]], specials=["<pad>", "<unk>",
                                                                          "<bos>", "<eos>"])
    v.set_default_index(v["<unk>"])
    pipe = T.Sequential(T.Tokenizer("basic_english"), T.VocabTransform(v), T.Truncate(3),
                        T.AddToken(v["<bos>"], begin=True), T.AddToken(v["<eos>"], begin=False),
                        T.ToTensor(padding_value=v["<pad>"]))
    out = pipe(["Hello world hello world", "Unknown!"])
    assert out.dtype == ember.int64
    h, w, unk = v["hello"], v["world"], v["<unk>"]
    np.testing.assert_array_equal(out.numpy(), [[2, h, w, h, 3], [2, unk, unk, 3, 0]])
    single = pipe("hello")
    np.testing.assert_array_equal(single.numpy(), [2, h, 3])
    padded = T.PadTransform(7, -1)(single)
    np.testing.assert_array_equal(padded.numpy(), [2, h, 3, -1, -1, -1, -1])
    assert T.PadTransform(2, 0)(single) is single
    assert T.StrToIntTransform()(["1", "22"]) == [1, 22]
    assert T.LabelToIndex(["neg", "pos"])(["pos", "neg"]) == [1, 0]
    assert T.LabelToIndex(["b", "a"], sort_names=True)("a") == 0
    with pytest.raises(ValueError, match="padding_value"):
        TF.to_tensor([[1, 2], [3]])
    assert TF.to_tensor([[1, 2], [3, 4]], dtype=ember.int32).dtype == ember.int32
    assert TF.add_token(["a"], "<s>") == ["<s>", "a"]
    assert TF.truncate([[1, 2, 3], [4]], 2) == [[1, 2], [4]]


# -- batching ---------------------------------------------------------------------------------

def test_pad_batch_matches_torch_and_packs():
    torch = pytest.importorskip("torch")
    seqs = [[1, 2, 3], [4], [5, 6]]
    padded, lengths = pad_batch(seqs, padding_value=-1)
    ref = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True,
                                          padding_value=-1)
    np.testing.assert_array_equal(padded.numpy(), ref.numpy())
    np.testing.assert_array_equal(lengths.numpy(), [3, 1, 2])
    tpad, _ = pad_batch(seqs, batch_first=False)
    assert tuple(tpad.shape) == (3, 3)
    # the lengths feed pack_padded_sequence; an RNN over the packed batch equals torch's
    ember.manual_seed(0)
    emb = nn.Embedding(10, 4)
    rnn = nn.GRU(4, 5, batch_first=True)
    temb, trnn = torch.nn.Embedding(10, 4), torch.nn.GRU(4, 5, batch_first=True)
    temb.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in emb.state_dict().items()})
    trnn.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in rnn.state_dict().items()})
    padded, lengths = pad_batch(seqs)
    packed = nn.utils.rnn.pack_padded_sequence(emb(padded), lengths, batch_first=True,
                                               enforce_sorted=False)
    _, h = rnn(packed)
    tpacked = torch.nn.utils.rnn.pack_padded_sequence(temb(ref.clamp(min=0)), torch.tensor(
        [3, 1, 2]), batch_first=True, enforce_sorted=False)
    _, th = trnn(tpacked)
    np.testing.assert_allclose(h.detach().numpy(), th.detach().numpy(), atol=1e-6)
    assert tuple(pad_batch(seqs, max_length=2)[0].shape) == (3, 2)
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])


def test_pad_collate_with_dataloader():
    data = [(1, [4, 5, 6]), (0, [7]), (1, [8, 9])]
    loader = ember.utils.data.DataLoader(data, batch_size=3, collate_fn=PadCollate(0))
    labels, padded, lengths = next(iter(loader))
    np.testing.assert_array_equal(labels.numpy(), [1, 0, 1])
    np.testing.assert_array_equal(padded.numpy(), [[4, 5, 6], [7, 0, 0], [8, 9, 0]])
    np.testing.assert_array_equal(lengths.numpy(), [3, 1, 2])
    padded, lengths = PadCollate()([[1], [2, 3]])
    assert tuple(padded.shape) == (2, 2)


def test_bucket_batch_sampler():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=257).tolist()
    g = ember.Generator().manual_seed(1)
    s = BucketBatchSampler(lengths, batch_size=16, bucket_size_multiplier=4, generator=g)
    batches = list(s)
    assert len(batches) == len(s)
    assert sorted(i for b in batches for i in b) == list(range(257))  # each index once
    # batches hold similar lengths: far less padding than random batches
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    perm = rng.permutation(257)
    rand = [perm[i:i + 16] for i in range(0, 257, 16)]
    waste_rand = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in rand)
    assert waste < 0.5 * waste_rand
    # deterministic under the generator's seed
    again = list(BucketBatchSampler(lengths, 16, 4, generator=ember.Generator().manual_seed(1)))
    assert again == batches
    fixed = list(BucketBatchSampler(lengths, 16, shuffle=False, drop_last=True))
    assert len(fixed) == 257 // 16 == len(BucketBatchSampler(lengths, 16, shuffle=False,
                                                             drop_last=True))
    flat = [lengths[i] for b in fixed for i in b]
    assert flat == sorted(flat)
    dl = list(BucketBatchSampler(lengths, 16, 4, drop_last=True))
    assert all(len(b) == 16 for b in dl) and len(dl) == len(BucketBatchSampler(lengths, 16, 4, drop_last=True))
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler(lengths, 0)


# -- subword tokenizers ----------------------------------------------------------------------

@pytest.mark.parametrize("model", ["bpe", "wordpiece", "unigram"])
def test_subword_tokenizers(model, tmp_path):
    pytest.importorskip("tokenizers")
    from ember.text.datasets import GeneratedText
    from ember.text.tokenizers import SubwordTokenizer
    texts = [t for _, t in GeneratedText(size=300)]
    tok = SubwordTokenizer.train(texts, model, vocab_size=120, min_frequency=1)
    assert len(tok) <= 120
    ids = tok.encode("The government signed the treaty")
    assert tok.decode(ids) == "the government signed the treaty"
    pieces = tok("The government signed the treaty")
    assert tok.vocab().lookup_tokens(ids) == pieces == tok.tokenize(
        "The government signed the treaty")
    assert SubwordTokenizer(tok.tokenizer, return_ids=True)(["a", "b"])[0] == tok.encode("a")
    tok.save(tmp_path / "tok.json")
    again = SubwordTokenizer.from_file(tmp_path / "tok.json")
    assert again.encode("stocks rose") == tok.encode("stocks rose")
    v = tok.vocab()
    assert v["never-seen-token-xyz"] == v["<unk>"]
    with pytest.raises(ValueError, match="model"):
        SubwordTokenizer.train(texts, "char")


def test_subword_missing_names_the_extra(monkeypatch):
    import sys
    from ember.text.tokenizers import SubwordTokenizer
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match=r"ember\[text\]"):
        SubwordTokenizer.train(["a b"], "bpe")
