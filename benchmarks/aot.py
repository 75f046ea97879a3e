"""The AOT C library (``ember.export.aot_compile``) vs ember eager vs PyTorch eager.

    python benchmarks/aot.py [--threads 1] [--repeat 7] [--quick]

Models: an MLP 784-512-512-10 and LeNet-5, at batch 1 and 64, same weights everywhere. Each
framework runs in its own process (so no library's thread pool or allocator disturbs
another), with ``--threads`` threads (OMP/OpenBLAS/MKL and ``torch.set_num_threads``); the
C library itself is single-threaded. Prints a table of median latencies per call (the AOT
column is the ctypes call from Python, which includes about 10 us of argument marshalling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MODELS = ("MLP", "LeNet-5")
BATCHES = (1, 64)


def define(nn, name):
    """The same architecture in ember or PyTorch (``nn`` is either's ``nn`` module)."""
    if name == "MLP":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def input_shape(name, batch):
    return (batch, 784) if name == "MLP" else (batch, 1, 28, 28)


def _median_time(fn, repeat, min_time=0.05):
    import statistics
    import time
    fn()
    n, t = 1, 0.0
    while True:  # calls per round so that a round lasts at least min_time
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time or n >= 1 << 16:
            break
        n *= 2
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def worker(kind, work_dir, repeat):
    """One framework's timings: {"MLP/1": seconds, ...}."""
    import numpy as np
    out = {}
    for name in MODELS:
        weights = np.load(os.path.join(work_dir, f"{name}.npz"))
        for b in BATCHES:
            x = np.random.default_rng(b).standard_normal(input_shape(name, b)).astype(np.float32)
            if kind == "aot":
                import ember
                from ember.export import aot_load
                lib = aot_load(os.path.join(work_dir, name))
                arrs = [x]

                def fn(lib=lib, arrs=arrs):
                    lib.run_raw(arrs)
            elif kind == "ember":
                import ember
                m = define(ember.nn, name).eval()
                m.load_state_dict({k: ember.from_numpy(v.copy()) for k, v in weights.items()})
                xt = ember.from_numpy(x)

                def fn(m=m, xt=xt):
                    with ember.no_grad():
                        m(xt)
            else:
                import torch
                torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
                m = define(torch.nn, name).eval()
                m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
                xt = torch.from_numpy(x)

                def fn(m=m, xt=xt):
                    with torch.no_grad():
                        m(xt)
            out[f"{name}/{b}"] = _median_time(fn, repeat)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="one repeat (a smoke run)")
    ap.add_argument("--worker", choices=["aot", "ember", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, repeat)))
        return None

    import numpy as np

    import ember
    from ember.export import Dim, aot_compile, export
    work = tempfile.mkdtemp(prefix="ember-bench-aot-")
    for name in MODELS:
        ember.manual_seed(0)
        m = define(ember.nn, name).eval()
        np.savez(os.path.join(work, f"{name}.npz"),
                 **{k: v.detach().numpy() for k, v in m.state_dict().items()})
        x = ember.randn(*input_shape(name, 2))
        ep = export(m, (x,), dynamic_shapes={"input": {0: Dim("batch", min=1, max=1024)}})
        aot_compile(ep, os.path.join(work, name))
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results = {}
    kinds = ["aot", "ember"]
    try:
        import torch  # noqa: F401
        kinds.append("torch")
    except ImportError:
        pass
    for kind in kinds:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind,
                            "--dir", work, "--repeat", str(repeat)],
                           capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"{kind} worker failed:\n{r.stderr[-3000:]}")
        results[kind] = json.loads(r.stdout.strip().splitlines()[-1])
    rows = []
    print(f"threads={args.threads}; median latency per call")
    print("| model | batch | AOT C library | ember eager | PyTorch eager | ember / AOT | "
          "PyTorch / AOT |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in MODELS:
        for b in BATCHES:
            key = f"{name}/{b}"
            a, e = results["aot"][key], results["ember"][key]
            t = results.get("torch", {}).get(key)
            rows.append({"model": name, "batch": b, "aot_s": a, "ember_s": e, "torch_s": t})
            ts = f"{t * 1e6:.1f} us" if t else "-"
            tr = f"{t / a:.2f}x" if t else "-"
            print(f"| {name} | {b} | {a * 1e6:.1f} us | {e * 1e6:.1f} us | {ts} | "
                  f"{e / a:.2f}x | {tr} |")
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
