"""The direct convolution kernels (``ember/ops/_conv_small_c.py``) against im2col + GEMM on a
training step, in one process: ``EMBER_CONV_DIRECT`` is read at every call, so the two
paths alternate every few steps and see the same machine noise. Per step: wall time, the
main thread's CPU time (the serial part: what a second core cannot take) and the process's
CPU time (all threads: the work), medians and minima over the rounds.

    python benchmarks/bench_conv_direct.py [--threads 1] [--rounds 30]
        [--workload "LeNet-5 train step"]

A/B of a module constant instead of the switch (``--attr ember.ops.conv:_DIRECT_WGRAD_MAX_TAPS
--a 32 --b 160``) compares two settings of a threshold the same way.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=4, help="steps per timing")
    p.add_argument("--workload", default="LeNet-5 train step")
    p.add_argument("--attr", help="module:name of a constant to compare instead")
    p.add_argument("--a", help="its first value (Python literal)")
    p.add_argument("--b", help="its second value")
    args = p.parse_args(argv)

    import ember
    from benchmarks.run import WORKLOADS
    ember.set_num_threads(args.threads)
    if args.attr:
        mod_name, name = args.attr.split(":")
        mod = importlib.import_module(mod_name)
        settings = {f"{name}={args.a}": eval(args.a), f"{name}={args.b}": eval(args.b)}

        def use(label):
            setattr(mod, name, settings[label])
    else:
        settings = {"im2col (EMBER_CONV_DIRECT=0)": "0", "direct": "1"}

        def use(label):
            os.environ["EMBER_CONV_DIRECT"] = settings[label]
    step, _ = WORKLOADS[args.workload](ember, False)
    for label in settings:  # warm both paths (first calls compile the C kernels)
        use(label)
        for _ in range(5):
            step()
    res = {label: ([], [], []) for label in settings}
    for _ in range(args.rounds):
        for label in settings:
            use(label)
            step()
            t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
            for _ in range(args.steps):
                step()
            k = args.steps / 1e3
            res[label][0].append((time.perf_counter() - t0) / k)
            res[label][1].append((time.thread_time() - c0) / k)
            res[label][2].append((time.process_time() - p0) / k)
    print(f"{args.workload}, {args.threads} thread(s), ms per step, median (min) of "
          f"{args.rounds} rounds of {args.steps} steps")
    for label, (w, c, q) in res.items():
        print(f"  {label:30s} wall {statistics.median(w):6.2f} ({min(w):6.2f})   main-thread "
              f"CPU {statistics.median(c):6.2f} ({min(c):6.2f})   process CPU "
              f"{statistics.median(q):6.2f} ({min(q):6.2f})")


if __name__ == "__main__":
    main()
