"""Train a CNN on MNIST when its files are present (``--data DIR``), otherwise on ember's
built-in generated digits.

    python examples/mnist_cnn.py [--data DIR] [--epochs 2] [--quick]
"""

import argparse
import os

import ember as torch
from ember import nn
from ember.utils.data import DataLoader, Subset
from ember.vision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = nn.functional.max_pool2d(x, 2)
        x = self.dropout(x).flatten(1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def load(data, train, size=None):
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    if data and os.path.isdir(data):
        try:
            return datasets.MNIST(data, train=train, transform=tf)
        except RuntimeError as e:
            print(f"{e}\nfalling back to the built-in digits")
    return datasets.Digits(train=train, transform=tf, size=size)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)

    n_train, n_test = (1024, 512) if args.quick else (None, None)
    train, test = load(args.data, True, n_train), load(args.data, False, n_test)
    if args.quick and len(train) > n_train:  # MNIST files: take a slice
        train, test = Subset(train, range(n_train)), Subset(test, range(n_test))
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test, batch_size=256)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    first = None
    for epoch in range(1 if args.quick else args.epochs):
        model.train()
        for i, (x, y) in enumerate(train_loader):
            loss = nn.functional.cross_entropy(model(x), y)
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 50 == 0:
                print(f"epoch {epoch} batch {i} loss {loss.item():.4f}")
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        print(f"epoch {epoch}: test accuracy {correct / len(test):.4f}")
    print(f"RESULT first_loss={first:.6f} last_loss={loss.item():.6f}")


if __name__ == "__main__":
    main()
