"""Train a small classifier with the training tools: autocast + GradScaler (mixed
precision), activation checkpointing, TensorBoard logging and a profiler trace.

    python examples/amp_profile_tensorboard.py [--epochs 20] [--dtype bfloat16|float16]
        [--logdir runs/amp_demo] [--quick]

Afterwards: ``tensorboard --logdir runs/amp_demo`` shows the loss/accuracy curves, weight
histograms and hyperparameters; ``runs/amp_demo/trace.json`` opens in https://ui.perfetto.dev
or chrome://tracing; the profiler's summary table is printed.
"""

import argparse
import os

import ember as torch
from ember import nn
from ember.profiler import ProfilerActivity, profile, record_function, schedule
from ember.utils.checkpoint import checkpoint
from ember.utils.data import DataLoader, TensorDataset


class Block(nn.Module):
    """A residual MLP block (checkpointed: its activations are recomputed in backward)."""

    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class Net(nn.Module):
    def __init__(self, d_in, d, n_classes, depth):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.out = nn.Linear(d, n_classes)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = checkpoint(b, h, use_reentrant=False)
        return self.out(h)


def make_data(n, d_in, n_classes):
    """Points around one random centre per class."""
    centres = torch.randn(n_classes, d_in) * 2
    y = torch.randint(0, n_classes, (n,))
    x = centres[y] + torch.randn(n, d_in)
    return x, y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    p.add_argument("--logdir", default=os.path.join("runs", "amp_demo"))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    low = getattr(torch, args.dtype)

    torch.manual_seed(0)
    x, y = make_data(256 if args.quick else 4096, 16, 4)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model = Net(16, 64, 4, depth=4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range
    scaler = torch.amp.GradScaler("cpu", enabled=(low is torch.float16))

    try:
        from ember.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(args.logdir)
    except ImportError as e:  # the tensorboard extra is optional
        print(f"(no TensorBoard logging: {e})")
        writer = None

    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True,
                   with_modules=True, schedule=schedule(wait=1, warmup=1, active=3, repeat=1))
    first = last = None
    step = 0
    with prof:
        for epoch in range(epochs):
            total, correct, seen = 0.0, 0, 0
            for xb, yb in loader:
                with record_function("train_step"):
                    with torch.autocast("cpu", dtype=low):
                        logits = model(xb)                              # low precision
                        loss = nn.functional.cross_entropy(logits, yb)  # float32
                    opt.zero_grad()
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                prof.step()
                step += 1
                total += loss.item() * len(yb)
                correct += (logits.argmax(1) == yb).sum().item()
                seen += len(yb)
                if first is None:
                    first = loss.item()
                if writer is not None:
                    writer.add_scalar("loss/train", loss.item(), step)
            last = total / seen
            print(f"epoch {epoch}  loss {last:.4f}  accuracy {correct / seen:.3f}  "
                  f"scale {scaler.get_scale():g}")
            if writer is not None:
                writer.add_scalar("accuracy/train", correct / seen, epoch)
                for name, prm in model.named_parameters():
                    writer.add_histogram(name, prm, epoch)

    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    os.makedirs(args.logdir, exist_ok=True)
    trace = os.path.join(args.logdir, "trace.json")
    prof.export_chrome_trace(trace)
    print(f"profiler trace: {trace}")
    if writer is not None:
        writer.add_hparams({"dtype": args.dtype, "lr": 3e-3, "depth": 4},
                           {"hparam/loss": last}, run_name="hparams")
        writer.close()
        print(f"TensorBoard logs: {args.logdir}")
    print(f"RESULT first_loss={first:.6f} last_loss={last:.6f}")


if __name__ == "__main__":
    main()
