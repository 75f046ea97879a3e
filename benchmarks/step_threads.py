"""Where a training step's time goes at several threads: per step wall time (min, p10,
median), process CPU and each thread's CPU (from ``/proc/self/task``), then the hand-offs to
ember's thread pool (``_parallel.run_split`` calls of two parts or more, by the function
that made them) with, per call site, how long the pool thread took to start its part after
the call, the two threads' part times, and how long the caller waited after both parts were
done (the join). A step whose ember part runs only on the calling thread at two threads shows
"(all on caller)": the pool thread was too late to claim a part. C batches of BLAS products
and optimizer updates (``_parallel.run_blas``, marked "(C batch)") are traced from the start
and end times their tasks record; their join column is how long the pool's last task ended
after the caller's.

    python benchmarks/step_threads.py "MLP train step, ember compiled" [--threads 2]
        [--steps 300] [--trace-steps 200]

Rows are the workload names of ``benchmarks/run.py``; ember runs (``import ember``), from
this checkout. Wall-clock figures mean something only on an otherwise idle machine; the CPU
columns (total, and the calling thread's: the serial part) hold up under load. The trace
phase wraps every hand-off and so adds a few microseconds to each: its step times are not
the first phase's.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _thread_cpu():
    """{tid: (name, CPU ticks)} of this process's threads."""
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[tid] = (names.get(tid, f"thread {tid}"), int(fields[11]) + int(fields[12]))
    return out


def _q(values, f):
    values = sorted(values)
    return values[int(f * (len(values) - 1))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--trace-steps", type=int, default=200)
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    import ember
    from benchmarks.run import WORKLOADS
    from ember import _parallel
    ember.set_num_threads(args.threads)
    step, _ = WORKLOADS[args.row](ember, False)
    for _ in range(10):
        step()

    walls, cpus, mains = [], [], []
    before = _thread_cpu()
    for _ in range(args.steps):
        t, c, m = time.perf_counter(), time.process_time(), time.thread_time()
        step()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        mains.append(time.thread_time() - m)
    after = _thread_cpu()
    tick = os.sysconf("SC_CLK_TCK")
    ms = 1e3
    print(f"{args.row}, {args.threads} thread(s), {args.steps} steps: wall min "
          f"{min(walls) * ms:.2f} p10 {_q(walls, .1) * ms:.2f} median "
          f"{statistics.median(walls) * ms:.2f} ms; CPU per step {statistics.median(cpus) * ms:.2f}"
          f" ms, calling thread {statistics.median(mains) * ms:.2f} ms (medians)")
    per = [(name, (ticks - before.get(tid, (None, 0))[1]) / tick / args.steps * ms)
           for tid, (name, ticks) in after.items()]
    print("  CPU per step by thread: " + ", ".join(f"{n} {v:.2f} ms" for n, v in per if v > 0))

    rec = collections.defaultdict(list)
    real = _parallel.run_split
    clock = time.perf_counter

    def traced(fn, bounds):
        if len(bounds) < 2 or getattr(_parallel._worker, "in_pool", False):
            return real(fn, bounds)
        site = traceback.extract_stack(limit=3)[0]
        site = f"{os.path.basename(site.filename)}:{site.name}"
        caller = threading.get_ident()
        marks = []

        def part(s, e):
            t0 = clock()
            r = fn(s, e)
            marks.append((t0, clock(), threading.get_ident() == caller))
            return r
        t = clock()
        out = real(part, bounds)
        end = clock()
        pool = [m for m in marks if not m[2]]
        mine = [m for m in marks if m[2]]
        if pool and mine:
            done = max(m[1] for m in marks)
            rec[site].append((min(m[0] for m in pool) - t, sum(m[1] - m[0] for m in mine),
                              sum(m[1] - m[0] for m in pool), end - done))
        else:
            rec[site + " (all on caller)"].append((0.0, end - t, 0.0, 0.0))
        return out

    def batch(posted, table):
        # a BLAS batch (``_parallel.run_blas``): its tasks' start/end times and runners
        from ember import _pool_c as pc
        stack = traceback.extract_stack(limit=4)
        site = f"{os.path.basename(stack[0].filename)}:{stack[0].name} (C batch)"
        t = table[:, pc.START:pc.POSTER + 1]
        pool = t[t[:, 2] == 0]
        mine = t[t[:, 2] == 1]
        if len(pool) and len(mine):
            rec[site].append(((pool[:, 0].min() - posted) * 1e-9,
                              (mine[:, 1] - mine[:, 0]).sum() * 1e-9,
                              (pool[:, 1] - pool[:, 0]).sum() * 1e-9,
                              max(0, pool[:, 1].max() - mine[:, 1].max()) * 1e-9))
        else:
            rec[site + " (all on caller)"].append((0.0, (t[:, 1] - t[:, 0]).sum() * 1e-9,
                                                   0.0, 0.0))

    _parallel.run_split = traced
    _parallel.blas_trace = batch
    try:
        for _ in range(args.trace_steps):
            step()
    finally:
        _parallel.run_split = real
        _parallel.blas_trace = None
    us = 1e6
    n = max(args.trace_steps, 1)
    print(f"  hand-offs per step: {sum(len(v) for v in rec.values()) / n:.1f} "
          "(us: pool start lag median/min | caller's part | pool's part | join lag, medians;"
          " for a C batch the join lag is how long the pool's last task ended after the "
          "caller's)")
    for site, rows in sorted(rec.items(), key=lambda kv: -len(kv[1])):
        lag, mine, pool, join = zip(*rows)
        print(f"  {len(rows) / n:5.1f}/step {site:38s} {statistics.median(lag) * us:7.1f}/"
              f"{min(lag) * us:6.1f} | {statistics.median(mine) * us:7.1f} | "
              f"{statistics.median(pool) * us:7.1f} | {statistics.median(join) * us:6.1f}")


if __name__ == "__main__":
    main()
