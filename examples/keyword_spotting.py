"""Keyword spotting: log-mel spectrograms and a small CNN on ember's built-in generated spoken
digits (``ember.audio.datasets.GeneratedKeywords``), or on Speech Commands files when present.

    python examples/keyword_spotting.py [--data DIR] [--epochs 8] [--quick]

With ``--data DIR`` (a folder holding SpeechCommands/speech_commands_v0.02) the ten digit words
of Speech Commands are used instead of the generated ones.
"""

import argparse
import os
import time

import ember as torch
from ember import nn
from ember.audio import datasets, transforms
from ember.utils.data import DataLoader, TensorDataset

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class KeywordNet(nn.Module):
    """A small temporal CNN: mel bins are the channels of 1D convolutions over time (cheap,
    and the usual design for keyword spotting on small devices)."""

    def __init__(self, n_mels=40, frames=51, n_classes=10):
        super().__init__()

        def block(i, o, k):
            return nn.Sequential(nn.Conv1d(i, o, k, padding=k // 2), nn.BatchNorm1d(o),
                                 nn.ReLU(), nn.MaxPool1d(2))
        self.features = nn.Sequential(block(n_mels, 64, 5), block(64, 64, 3))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2),
                                        nn.Linear(64 * (frames // 4), n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def features(dataset, mel, batch=128):
    """Log-mel features (N, n_mels, frames) and integer labels for a whole dataset."""
    xs, ys = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch))]
            waves = []
            for w, sr, label, *_ in items:
                w = w[0, :16000]
                if w.shape[0] < 16000:  # Speech Commands clips can be shorter than 1 s
                    w = nn.functional.pad(w, (0, 16000 - w.shape[0]))
                waves.append(w)
                ys.append(WORDS.index(label))
            xs.append(torch.log(mel(torch.stack(waves)) + 1e-6))
    return torch.cat(xs), torch.tensor(ys)


def load(data, subset, size):
    if data and os.path.isdir(data):
        try:
            ds = datasets.SPEECHCOMMANDS(data, subset=subset)
            keep = [i for i in range(len(ds)) if ds.get_metadata(i)[2] in WORDS]
            return torch.utils.data.Subset(ds, keep[:size] if size else keep)
        except RuntimeError as e:
            print(f"{e}\nfalling back to the built-in generated keywords")
    return datasets.GeneratedKeywords(subset=subset, size=size)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()
    n_train, n_test = (300, 100) if args.quick else (None, None)
    mel = transforms.MelSpectrogram(sample_rate=16000, n_fft=480, hop_length=320,
                                     n_mels=40)
    x_train, y_train = features(load(args.data, "training", n_train), mel)
    x_test, y_test = features(load(args.data, "testing", n_test), mel)
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    print(f"features {tuple(x_train.shape)} train, {tuple(x_test.shape)} test "
          f"in {time.time() - t0:.1f} s")

    model = KeywordNet(frames=x_train.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    epochs = 3 if args.quick else args.epochs
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size,
                        shuffle=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=epochs,
                                                steps_per_epoch=len(loader))
    first = None
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(x_test[i:i + 256]).argmax(1)
                              for i in range(0, len(x_test), 256)])
        acc = (pred == y_test).float().mean().item()
        print(f"epoch {epoch}: loss {loss.item():.4f} test accuracy {acc:.4f} "
              f"({time.time() - t0:.0f} s)")
    print(f"test accuracy {acc:.4f}")
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
