"""Text classification with an EmbeddingBag model, on ember's built-in generated news-like
sentences (``ember.text.datasets.GeneratedText``), or on AG_NEWS CSV files when present.

    python examples/text_classification.py [--data DIR] [--epochs 5] [--quick]

``--data DIR`` reads DIR/AG_NEWS/train.csv and test.csv (rows "label","title","description").
"""

import argparse
import os
import time

import ember as torch
from ember import nn
from ember.text.data import get_tokenizer
from ember.text.datasets import AG_NEWS, GeneratedText
from ember.text.vocab import build_vocab_from_iterator
from ember.utils.data import DataLoader


class TextClassifier(nn.Module):
    """Mean of the word embeddings of each text (EmbeddingBag with offsets), then a linear
    layer: the classic fast baseline."""

    def __init__(self, vocab_size, embed_dim, num_class):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean")
        self.fc = nn.Linear(embed_dim, num_class)
        self.embedding.weight.data.uniform_(-0.5, 0.5)
        self.fc.weight.data.uniform_(-0.5, 0.5)
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))


def load(data, quick):
    if data and os.path.isdir(os.path.join(data, "AG_NEWS")):
        train, test = AG_NEWS(data, split=("train", "test"))
        if quick:
            train, test = list(train)[:2000], list(test)[:500]
        return list(train), list(test)
    if data:
        print(f"no AG_NEWS files under {data!r}: using the built-in generated text")
    size = (2000, 500) if quick else (None, None)
    return list(GeneratedText(split="train", size=size[0])), \
        list(GeneratedText(split="test", size=size[1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5.0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()
    train, test = load(args.data, args.quick)
    tokenizer = get_tokenizer("basic_english")
    vocab = build_vocab_from_iterator((tokenizer(t) for _, t in train), specials=["<unk>"])
    vocab.set_default_index(vocab["<unk>"])
    labels = sorted({label for label, _ in train})

    def collate(batch):
        """(label, text) items -> (labels, flat token ids, offsets of each text)."""
        ys, ids, offsets = [], [], [0]
        for label, text in batch:
            ys.append(labels.index(label))
            tok = vocab(tokenizer(text))
            ids.extend(tok)
            offsets.append(offsets[-1] + len(tok))
        return torch.tensor(ys), torch.tensor(ids), torch.tensor(offsets[:-1])

    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                              collate_fn=collate)
    test_loader = DataLoader(test, batch_size=256, collate_fn=collate)
    model = TextClassifier(len(vocab), 64, len(labels))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.1 ** 0.5)
    print(f"{len(train)} train / {len(test)} test texts, vocabulary {len(vocab)}")
    first = None
    for epoch in range(2 if args.quick else args.epochs):
        model.train()
        for y, ids, offsets in train_loader:
            loss = nn.functional.cross_entropy(model(ids, offsets), y)
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            opt.step()
        sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for y, ids, offsets in test_loader:
                correct += (model(ids, offsets).argmax(1) == y).sum().item()
        acc = correct / len(test)
        print(f"epoch {epoch}: loss {loss.item():.4f} test accuracy {acc:.4f} "
              f"({time.time() - t0:.1f} s)")
    print(f"test accuracy {acc:.4f}")
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
