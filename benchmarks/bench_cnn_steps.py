"""The CNN training steps of ``benchmarks/run.py`` (ResNet-18, CIFAR CNN, LeNet-5) with a
convolution's backward gradients side by side on and off, and ``max``/``min`` over 16M
float32 with the C chunk kernel on and off, in one process, alternated round by round so
that machine noise hits both alike (issue 25):

* ``pairs``: a stride-1 convolution's input and weight gradients computed side by side, one
  core each (``ops/conv.py``'s ``_pair_ok``; off = ``EMBER_CONV_PAIRS=0``: each cut over
  the pool in turn);
* ``reduce_c``: ``x.max()`` / ``x.min()`` of a big contiguous float array by
  ``ops/_reduce_c.py`` (off = ``EMBER_REDUCE_C=0``: NumPy's reduction in fixed chunks).

Per step it reports the minimum and median wall time, the process CPU time (all threads),
and the main thread's CPU time outside the pool's splits (the serial part). On a busy
machine, judge 2-thread work by CPU figures and the serial part; wall times there say little.

    python benchmarks/bench_cnn_steps.py [--threads 1 2] [--rounds 7] [--steps 5]
        [--only ResNet CIFAR LeNet max]

PyTorch's figures for the same rows come from ``python -m benchmarks --only "<row>"``
(each framework in its own process).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ember.ops import _reduce_c, conv  # noqa: E402

from benchmarks import bench_thread_steps as _steps  # noqa: E402

ROWS = {"ResNet": "ResNet-18 64x64 train step", "CIFAR": "CIFAR CNN train step",
        "LeNet": "LeNet-5 train step", "max": "max 16M"}


class _Switch:
    """Turns the new paths on and off in this process (what the environment switches do
    at import)."""

    def __init__(self):
        _reduce_c.available("float32")
        self.lib = dict(_reduce_c._FNS)
        self.pairs = conv._PAIRS

    def __call__(self, on):
        conv._PAIRS = self.pairs and on
        _reduce_c._FNS.clear()
        _reduce_c._FNS.update(self.lib if on else {None: None})


def measure(name, threads, rounds, steps):
    """``bench_thread_steps.measure`` with this script's switches."""
    return _steps.measure(name, threads, rounds, steps, _Switch)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--only", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = ap.parse_args(argv)
    _steps.report(ROWS, args.only, args.threads, args.rounds,
           lambda key: args.steps * (20 if key == "max" else 1), _Switch)



if __name__ == "__main__":
    main()
