"""Where a compiled step's time goes, node by node: the generated program of
``ember.compile`` (``ember.compiler._program``) is re-made with a clock around every call,
run for a number of steps, and each call's minimum and median time (wall, the calling
thread) are listed by kind, largest first. Minimums hold up on a loaded machine; the sum of
the minimums is a quiet-machine estimate of the step.

    python benchmarks/compiled_nodes.py "GPT 2-layer train step, ember compiled"
        [--threads 1] [--steps 60] [--top 40] [--by kind|line]

A/B of the compiled GPT step's newer lowerings in one checkout (the switches restore the
previous program; alternate the two in separate processes, several rounds):

    EMBER_ATTN_C=0 EMBER_LN_C=0 EMBER_RESIDUAL_ADDS=0 EMBER_SHARE_COPIES=0 \
        python benchmarks/compiled_nodes.py "GPT 2-layer train step, ember compiled"
    python benchmarks/compiled_nodes.py "GPT 2-layer train step, ember compiled"

``--by kind`` adds the nodes of one kind (the function called: ``_LinearC``, ``run_pair``,
``_optimizer_group_step`` ...); ``--by line`` lists each call. Rows are the workload names
of ``benchmarks/run.py``; ember runs from this checkout.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _program_of(step):
    entry = step.entries[0]
    for cell in entry.runner.__closure__ or ():
        v = cell.cell_contents
        if callable(v) and getattr(v, "__name__", "") == "program":
            return entry, v
    raise RuntimeError("no generated program (is the backend 'inductor'?)")


_CALL = re.compile(r"^(\s+)(v\d+) = (_[A-Za-z0-9_]+?)(\d+)?(\(|\.run_arrays\()")


def instrument(step):
    """Replace ``step``'s program by a copy that times every call; returns the table
    ``{line index: (kind, source line, [seconds, ...])}``."""
    entry, program = _program_of(step)
    src = entry.source
    start = src.index("def program(")
    end = src.index("        _GM.enabled = _grad\n", start) + len("        _GM.enabled = _grad\n")
    lines = src[start:end].split("\n")
    table = {}
    out = []
    for i, line in enumerate(lines):
        m = _CALL.match(line)
        if not m:
            out.append(line)
            continue
        ind, kind = m.group(1), m.group(3).strip("_")
        table[i] = (kind, line.strip(), [])
        out.append(f"{ind}_t0 = _pc(); _c0 = _tt()")
        out.append(line)
        out.append(f"{ind}_T[{i}].append((_pc() - _t0, _tt() - _c0))")
    ns = program.__globals__
    ns["_pc"] = time.perf_counter
    ns["_tt"] = time.thread_time
    ns["_T"] = {i: v[2] for i, v in table.items()}
    code = "\n".join(out).replace("def program(", "def program_timed(", 1)
    exec(compile(code, "<ember.compile program, timed>", "exec"), ns)
    timed = ns["program_timed"]
    cells = entry.runner.__closure__
    for cell in cells:
        if cell.cell_contents is program:
            cell.cell_contents = timed
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--by", choices=("kind", "line"), default="kind")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    import ember
    from benchmarks.run import WORKLOADS
    ember.set_num_threads(args.threads)
    step, _ = WORKLOADS[args.row](ember, False)
    for _ in range(5):
        step()
    table = instrument(step)
    for _ in range(5):
        step()
    for v in table.values():
        v[2].clear()
    walls = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t)
    us = 1e6
    total_min = sum(min(w for w, _ in v[2]) for v in table.values() if v[2])
    total_cpu = sum(statistics.median(c for _, c in v[2]) for v in table.values() if v[2])
    print(f"{args.row}, {args.threads} thread(s), {args.steps} steps: step wall min "
          f"{min(walls) * 1e3:.2f} median {statistics.median(walls) * 1e3:.2f} ms; sum of "
          f"per-call minimums {total_min * 1e3:.2f} ms; calling thread's CPU in calls "
          f"{total_cpu * 1e3:.2f} ms (sum of medians)")

    def stats(ts):
        return (min(w for w, _ in ts), statistics.median(w for w, _ in ts),
                statistics.median(c for _, c in ts))
    rows = []
    if args.by == "kind":
        agg = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
        for kind, _, ts in table.values():
            if ts:
                a = agg[kind]
                a[0] += 1
                for j, v in enumerate(stats(ts)):
                    a[1 + j] += v
        rows = sorted(((v[1], v[2], v[3], f"{k} x{v[0]}") for k, v in agg.items()),
                      reverse=True)
    else:
        rows = sorted((stats(ts) + (line[:100],) for _, line, ts in table.values() if ts),
                      reverse=True)
    print(f"{'min us':>9} {'median us':>10} {'CPU us':>8}  call (CPU: the calling thread's, "
          "median)")
    for mn, med, cpu, what in rows[:args.top]:
        print(f"{mn * us:9.1f} {med * us:10.1f} {cpu * us:8.1f}  {what}")


if __name__ == "__main__":
    main()
