"""GEMM-heavy training steps (MLP, GPT block, LSTM of ``benchmarks/run.py``) with issue 25's
multi-core paths on and off, in one process, alternated round by round so that machine
noise hits both alike:

* ``pairs``: a layer backward's independent products side by side on the pool
  (``_parallel.gemms``; off = ``EMBER_GEMM_PAIRS=0``: each product cut over the pool in
  turn);
* ``optim_c``: SGD/Adam/AdamW flat updates as one-pass C kernels (off = ``EMBER_OPTIM_C=0``).

Per step it reports the minimum and median wall time, the process CPU time (all threads),
and the main thread's CPU time outside the pool's splits (the serial part). On a busy
machine, judge 2-thread work by CPU figures and the serial part; wall times there say little.

    python benchmarks/bench_thread_steps.py [--threads 1 2] [--rounds 7] [--steps 10]
        [--only MLP GPT LSTM]

PyTorch's figures for the same rows come from ``python -m benchmarks --only "<row>"``
(each framework in its own process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ember  # noqa: E402
from ember import _parallel as P  # noqa: E402
from ember.optim import _update_c  # noqa: E402

from benchmarks.run import WORKLOADS  # noqa: E402

ROWS = {"MLP": "MLP 784-512-512-10 train step", "GPT": "GPT 2-layer train step",
        "LSTM": "LSTM 2-layer train step"}


class _Switch:
    """Turns the new paths on and off in this process (what the environment switches do
    at import)."""

    def __init__(self):
        _update_c.kernel("sgd", "float32")
        self.lib = dict(_update_c._LIB)

    def __call__(self, on):
        P._GEMM_PAIRS = on
        _update_c._LIB.clear()
        _update_c._LIB.update(self.lib if on else {None: None})


class _SerialClock:
    """The main thread's CPU time inside the pool's splits (the rest of its time is serial)."""

    def __init__(self):
        self.inside = 0.0
        self.real = P.run_split

        def timed(fn, bounds):
            if getattr(P._worker, "in_pool", False):
                return self.real(fn, bounds)
            t0 = time.thread_time()
            try:
                return self.real(fn, bounds)
            finally:
                self.inside += time.thread_time() - t0

        P.run_split = timed

    def close(self):
        P.run_split = self.real


def measure(name, threads, rounds, steps, switch_cls=None):
    """Old and new paths of workload ``name`` alternated round by round (``switch_cls()``
    turns them on and off; this script's ``_Switch`` by default)."""
    ember.set_num_threads(threads)
    step, _ = WORKLOADS[name](ember, False)
    switch = (switch_cls or _Switch)()
    for on in (False, True, False, True):
        switch(on)
        step()
    clock = _SerialClock()
    res = {False: [], True: []}
    try:
        for _ in range(rounds):
            for on in (False, True):
                switch(on)
                step()
                clock.inside = 0.0
                w0, c0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
                for _ in range(steps):
                    step()
                main = time.thread_time() - t0
                res[on].append(((time.perf_counter() - w0) / steps,
                                (time.process_time() - c0) / steps,
                                (main - clock.inside) / steps))
    finally:
        clock.close()
        switch(True)
    out = {}
    for on, rows in res.items():
        wall = [r[0] for r in rows]
        out[on] = dict(wall_min=min(wall), wall_med=statistics.median(wall),
                       cpu_med=statistics.median(r[1] for r in rows),
                       serial_med=statistics.median(r[2] for r in rows))
    return out


def report(rows, only, threads, rounds, steps_of, switch_cls=None):
    """Print the Markdown table of ``measure`` for the ``rows`` keys in ``only``
    (``steps_of(key)``: steps per round)."""
    print("| row | threads | paths | wall min | wall median | CPU median | serial (main "
          "thread outside splits) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for key in only:
        for t in threads:
            r = measure(rows[key], t, rounds, steps_of(key), switch_cls)
            for on in (False, True):
                v = r[on]
                print(f"| {key} | {t} | {'new' if on else 'old'} | {v['wall_min'] * 1e3:.2f} ms "
                      f"| {v['wall_med'] * 1e3:.2f} ms | {v['cpu_med'] * 1e3:.2f} ms | "
                      f"{v['serial_med'] * 1e3:.2f} ms |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = ap.parse_args(argv)
    report(ROWS, args.only, args.threads, args.rounds, lambda key: args.steps)



if __name__ == "__main__":
    main()
