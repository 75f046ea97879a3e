"""Same-minute A/B of one training step under environment settings (ember's ``EMBER_...``
switches), each arm in its own process, the arms alternated round by round (A B A B ...) so
that machine noise hits them alike; ``torch`` as an arm runs the same row on PyTorch.

Per process: warm-up, then ``--steps`` steps timed one by one. Per arm it prints, as medians
over the rounds: the per-step wall time (minimum, p10 and median within a round), the CPU
time per step (all threads) and the calling thread's CPU time per step (the serial part plus
its share of the parallel work). On a busy machine judge by the minimum/p10 and the CPU
columns; medians there say more about the neighbours than about the code.

    python benchmarks/ab_env.py "MLP 784-512-512-10 train step" --threads 2 \\
        --arm EMBER_BLAS_BATCH=0 --arm EMBER_BLAS_BATCH=1 [--arm torch] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {root!r})
fw, row, threads, steps = {fw!r}, {row!r}, {threads!r}, {steps!r}
if fw == "torch":
    import torch as m
else:
    import ember as m
m.set_num_threads(threads)
from benchmarks.run import WORKLOADS
step, _ = WORKLOADS[row](m, False)
for _ in range(max(10, steps // 10)):
    step()
walls = []
c0, m0 = time.process_time(), time.thread_time()
for _ in range(steps):
    t = time.perf_counter()
    step()
    walls.append(time.perf_counter() - t)
cpu, main = (time.process_time() - c0) / steps, (time.thread_time() - m0) / steps
walls.sort()
print(json.dumps({{"min": walls[0], "p10": walls[len(walls) // 10],
                  "median": statistics.median(walls), "cpu": cpu, "main": main}}))
"""


def _run(arm, row, threads, steps):
    env = dict(os.environ)
    fw = "ember"
    if arm == "torch":
        fw = "torch"
    elif arm != "-":
        for kv in arm.split(","):
            k, _, v = kv.partition("=")
            env[k] = v
    code = _CHILD.format(root=ROOT, fw=fw, row=row, threads=threads, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arm", action="append", default=[],
                    help="VAR=VALUE[,VAR=VALUE] for ember, '-' for ember as it is, or torch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    arms = args.arm or ["-"]
    res = {a: [] for a in arms}
    for _ in range(args.rounds):
        for a in arms:
            res[a].append(_run(a, args.row, args.threads, args.steps))
    print(f"{args.row}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps "
          "(ms per step; medians over rounds)")
    for a in arms:
        med = {k: statistics.median(r[k] for r in res[a]) * 1e3 for k in res[a][0]}
        print(f"  {a:40s} wall min {med['min']:6.2f} p10 {med['p10']:6.2f} median "
              f"{med['median']:6.2f} | CPU {med['cpu']:6.2f} main thread {med['main']:6.2f}")


if __name__ == "__main__":
    main()
