"""DataLoader throughput, ember vs PyTorch side by side (samples/s; ratio > 1: ember faster).

Each sample costs about 1 ms of CPU time in NumPy (calibrated at start) and is a 3x32x32
float32 array and an int label; batches of 64, shuffled, with 0 and 2 workers. With workers,
one epoch is timed from ``iter(loader)`` to the last batch, worker start-up included, the
loaders alternating epoch by epoch (ABBA); without workers they alternate batch by batch.
Medians of the repeats. CPU ms/batch (main process + workers) does not depend on how busy the
machine is, unlike samples/s.

    python benchmarks/bench_dataloader.py [--quick] [--cost-ms 1.0]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ember.utils.data import DataLoader  # noqa: E402


class CostlyImages:
    """Sample i: a 3x32x32 float32 image built with ``rounds`` passes of elementwise NumPy
    work (single-threaded, so workers scale), and the label ``i % 10``."""

    def __init__(self, n, rounds):
        self.n, self.rounds = n, rounds

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = np.random.default_rng(i).standard_normal((3, 32, 32), dtype=np.float32)
        for _ in range(self.rounds):
            x = np.tanh(x * 1.01 + 0.1)
        return x, i % 10


def calibrate(target_s=1e-3):
    """Rounds of work that make one sample cost about ``target_s`` CPU seconds here (CPU time,
    not wall time: other processes on a shared machine must not shrink the work)."""
    probe = CostlyImages(64, 50)
    t0 = time.process_time()
    for i in range(64):
        probe[i]
    per_round = (time.process_time() - t0) / 64 / 50
    return max(1, round(target_s / per_round))


def cpu_seconds():
    """CPU time of this process plus its finished (joined) children: workers included."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def epoch_seconds(make_loader):
    """Wall seconds, samples, and CPU seconds (main + workers) of one epoch."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    n = 0
    for x, y in make_loader():
        n += len(y)
    return time.perf_counter() - t0, n, cpu_seconds() - c0


def interleaved(makers):
    """One epoch of each loader, taking a batch from each in turn; (seconds, samples) each."""
    iters = [iter(m()) for m in makers]
    spent, seen = [0.0] * len(iters), [0] * len(iters)
    live = set(range(len(iters)))
    while live:
        for i in sorted(live):
            t0 = time.perf_counter()
            batch = next(iters[i], None)
            spent[i] += time.perf_counter() - t0
            if batch is None:
                live.discard(i)
            else:
                seen[i] += len(batch[1])
    return list(zip(spent, seen))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    ap.add_argument("--cost-ms", type=float, default=1.0,
                    help="NumPy work per sample (0: measure the loader's own overhead)")
    args = ap.parse_args()
    n, repeat = (640, 1) if args.quick else (2048, 4)
    rounds = calibrate(args.cost_ms * 1e-3) if args.cost_ms > 0 else 0
    ds = CostlyImages(n, rounds)
    t0 = time.process_time()
    for i in range(64):
        ds[i]
    cost_ms = (time.process_time() - t0) / 64 * 1e3
    try:
        import torch
        import torch.utils.data as tud
    except ImportError:
        torch = None
    print(f"{n} samples/epoch, batch 64, {cost_ms:.2f} CPU ms/sample, {os.cpu_count()} CPUs, "
          f"median of {repeat}")
    print(f"{'workers':<8} {'ember samples/s':>16} {'pytorch samples/s':>18} {'ratio':>7} "
          f"{'CPU ms/batch ember':>19} {'pytorch':>8}")
    for nw in (0, 2):
        def ember_loader():
            return DataLoader(ds, batch_size=64, shuffle=True, num_workers=nw)

        def torch_loader():
            return tud.DataLoader(ds, batch_size=64, shuffle=True, num_workers=nw)

        rates = {"ember": [], "torch": []}
        cpu = {"ember": [], "torch": []}
        makers = {"ember": ember_loader, "torch": torch_loader}
        if torch is None:
            del makers["torch"]
        if nw == 0 and torch is not None:
            # in-process loading: alternate batch by batch, so load drift cancels out
            for _ in range(repeat):
                for name, (sec, k) in zip(makers, interleaved(list(makers.values()))):
                    rates[name].append(k / sec)
        else:
            for r in range(repeat):
                # ABBA order, so a drift in machine load hits both loaders alike
                names = list(makers) if r % 2 == 0 else list(makers)[::-1]
                for name in names:
                    sec, k, c = epoch_seconds(makers[name])
                    rates[name].append(k / sec)
                    cpu[name].append(c / math.ceil(k / 64) * 1e3)
        e = statistics.median(rates["ember"])
        t = statistics.median(rates["torch"]) if rates["torch"] else None
        ratio = f"{e / t:.2f}x" if t else "-"
        ec = f"{statistics.median(cpu['ember']):.1f}" if cpu["ember"] else "-"
        tc = f"{statistics.median(cpu['torch']):.1f}" if cpu["torch"] else "-"
        print(f"{nw:<8} {e:>16.0f} {t if t is None else round(t):>18} {ratio:>7} {ec:>19} "
              f"{tc:>8}")


if __name__ == "__main__":
    main()
