"""Winograd convolutions fused by blocks (``ember/ops/_wino_c.py``) against the three-pass
path they replace, and against PyTorch: per-step wall and CPU time of ``benchmarks/run.py``
workloads, each run in its own process.

    python benchmarks/bench_winograd.py [--threads 1 2] [--rounds 3] [--rows ROW ...]

For each row and thread count, processes alternate (ember fused, ember three-pass with
``EMBER_WINO_FUSED=0``, PyTorch; ``--rounds`` times, so all three see the same noise). A
process warms up, then times 7 rounds of 10 steps and prints per-step medians of wall time,
process CPU time and the calling thread's CPU time (what a step cannot hand to other
threads: the serial part). On a machine shared with other jobs read the CPU columns; on a
quiet machine the wall clock at 2 threads is the figure users see.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ["conv 3x3 64ch 56x56 fwd", "conv 3x3 64ch 56x56 fwd+bwd", "CIFAR CNN train step",
        "ResNet-18 64x64 train step"]
_CHILD = r"""
import sys, time
sys.path.insert(0, {root!r})
fw, name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
if fw == "torch":
    import torch as m
else:
    import ember as m
m.set_num_threads(threads)
from benchmarks.run import WORKLOADS
step, _ = WORKLOADS[name](m, False)
for _ in range(5):
    step()
wall, cpu, main = [], [], []
for _ in range(7):
    t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
    for _ in range(10):
        step()
    wall.append((time.perf_counter() - t0) / 10)
    cpu.append((time.process_time() - c0) / 10)
    main.append((time.thread_time() - m0) / 10)
print(sorted(wall)[3], sorted(cpu)[3], sorted(main)[3])
"""
KINDS = [("ember fused", "ember", "1"), ("ember 3-pass", "ember", "0"), ("torch", "torch", "1")]


def _run(fw, fused, row, threads):
    env = dict(os.environ, EMBER_WINO_FUSED=fused)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT), fw, row,
                          str(threads)], env=env, capture_output=True, text=True, check=True)
    return [float(v) * 1e3 for v in out.stdout.split()]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", nargs="+", default=ROWS)
    args = ap.parse_args()
    print(f"{'row':30s} {'thr':>3s} {'kind':13s} {'wall ms':>8s} {'cpu ms':>8s} "
          f"{'main ms':>8s}")
    for row in args.rows:
        for threads in args.threads:
            got = {k[0]: [] for k in KINDS}
            for _ in range(args.rounds):
                for label, fw, fused in KINDS:
                    got[label].append(_run(fw, fused, row, threads))
            for label, _, _ in KINDS:
                med = [statistics.median(v[i] for v in got[label]) for i in range(3)]
                print(f"{row[:30]:30s} {threads:3d} {label:13s} {med[0]:8.2f} {med[1]:8.2f} "
                      f"{med[2]:8.2f}", flush=True)


if __name__ == "__main__":
    main()
