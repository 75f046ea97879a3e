"""The ember demo: train a small CNN on the built-in generated digits, no download needed.

    python -m ember.demo [--epochs 3] [--batch-size 64] [--lr 0.002] [--out ember_demo_out]
                         [--seed 0] [--train-size 20000]

Shows a progress bar (loss, accuracy, samples/s), evaluates on the held-out split every
epoch, saves a checkpoint with ``ember.save`` and a PNG of the curves (when matplotlib is
installed), and prints the final test accuracy. Same seed, same result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_model(nn):
    """A LeNet-style CNN: two conv/pool stages and a two-layer classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 12 x 12
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 4 x 4
        nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )


class _Progress:
    """tqdm when installed, otherwise a plain line per epoch."""

    def __init__(self, total, desc):
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="img", leave=True, file=sys.stdout,
                            dynamic_ncols=False, ncols=100)
        except ImportError:
            self.bar = None
        self.desc = desc

    def update(self, n, **stats):
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3f}" if isinstance(v, float) else v
                                  for k, v in stats.items()}, refresh=False)
            self.bar.update(n)

    def close(self, **stats):
        if self.bar is not None:
            self.bar.close()
        else:
            print(self.desc + " " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in stats.items()))


def evaluate(model, x, y, batch_size=1000):
    import ember
    model.eval()
    correct = 0
    with ember.no_grad():
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size])
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    model.train()
    return correct / len(y)


def save_plot(history, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'ember[demo]' for one)")
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.plot(history["step"], history["loss"], lw=0.8)
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    a1.set_yscale("log")
    a2.plot(range(1, len(history["test_acc"]) + 1), history["test_acc"], "o-", label="test")
    a2.plot(range(1, len(history["train_acc"]) + 1), history["train_acc"], "s--", label="train")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="ember-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out", default="ember_demo_out", help="folder for checkpoint and plot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--test-size", type=int, default=4000)
    args = p.parse_args(argv)

    import ember
    from ember import nn
    from ember.vision.datasets import Digits

    ember.manual_seed(args.seed)
    t0 = time.perf_counter()
    train = Digits(train=True, size=args.train_size, seed=args.seed)
    test = Digits(train=False, size=args.test_size, seed=args.seed)
    x_train, y_train = train.tensors()
    x_test, y_test = test.tensors()
    print(f"built-in digits: {len(train)} train / {len(test)} test images "
          f"({time.perf_counter() - t0:.1f} s to prepare)")

    model = build_model(nn)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters")
    opt = ember.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = (len(y_train) + args.batch_size - 1) // args.batch_size
    sched = ember.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr,
                                                total_steps=args.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    gen = ember.Generator().manual_seed(args.seed)
    history = {"step": [], "loss": [], "train_acc": [], "test_acc": []}
    step = 0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        perm = ember.randperm(len(y_train), generator=gen)
        bar = _Progress(len(y_train), f"epoch {epoch}/{args.epochs}")
        seen = correct = 0
        loss_sum = 0.0
        t_epoch = time.perf_counter()
        for i in range(0, len(y_train), args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            lv = loss.item()
            n = len(yb)
            seen += n
            loss_sum += lv * n
            correct += int((logits.argmax(1) == yb).sum())
            history["step"].append(step)
            history["loss"].append(lv)
            bar.update(n, loss=loss_sum / seen, acc=correct / seen,
                       **{"img/s": int(seen / (time.perf_counter() - t_epoch))})
        test_acc = evaluate(model, x_test, y_test)
        history["train_acc"].append(correct / seen)
        history["test_acc"].append(test_acc)
        bar.close(loss=loss_sum / seen, acc=correct / seen)
        print(f"epoch {epoch}: train loss {loss_sum / seen:.4f}, train acc {correct / seen:.4f}, "
              f"test acc {test_acc:.4f}")
    elapsed = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "digits_cnn.pt")
    ember.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "epochs": args.epochs, "test_acc": history["test_acc"][-1]}, ckpt)
    plot = save_plot(history, os.path.join(args.out, "curves.png"))
    print(f"checkpoint: {ckpt}" + (f"\nplot: {plot}" if plot else ""))
    print(f"final test accuracy: {history['test_acc'][-1]:.4f} "
          f"(trained in {elapsed:.1f} s)")
    return history


if __name__ == "__main__":
    main()
