"""ember.func vs torch.func: per-sample gradients and Jacobians, each framework in its own
process (same thread count: one by default).

    python benchmarks/bench_func.py [--threads N] [--repeat R]

Workloads:
* per-sample gradients of a LeNet (1x28x28 inputs, batch 64): ``vmap(grad(loss))`` against
  a Python loop of 64 single-example backward passes, in each framework;
* the Jacobian of a 100->100 MLP (Linear, tanh, Linear) at one input: ``jacfwd`` and
  ``jacrev``.
Prints median process CPU seconds and the ratios (loop / vmap; ember / torch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _workloads(m, fn):
    """name -> a callable doing one timed unit, for the framework module ``m``."""
    import numpy as np
    rng = np.random.default_rng(0)
    F = m.nn.functional

    class LeNet(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = m.nn.Conv2d(1, 6, 5)
            self.conv2 = m.nn.Conv2d(6, 16, 5)
            self.fc1 = m.nn.Linear(16 * 4 * 4, 120)
            self.fc2 = m.nn.Linear(120, 84)
            self.fc3 = m.nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = F.relu(self.fc1(x.flatten(1)))
            return self.fc3(F.relu(self.fc2(x)))
    m.manual_seed(0)
    model = LeNet()
    data = m.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    targets = m.tensor(rng.integers(0, 10, 64))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x, y):
        out = fn.functional_call(model, p, (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))
    per_sample = fn.vmap(fn.grad(loss), in_dims=(None, 0, 0))

    def vmap_grad():
        per_sample(params, data, targets)

    def loop():
        for i in range(64):
            model.zero_grad()
            F.cross_entropy(model(data[i:i + 1]), targets[i:i + 1]).backward()

    mlp = m.nn.Sequential(m.nn.Linear(100, 100), m.nn.Tanh(), m.nn.Linear(100, 100))
    mp = {k: v.detach() for k, v in mlp.named_parameters()}
    x = m.tensor(rng.standard_normal(100).astype(np.float32))

    def f(x):
        return fn.functional_call(mlp, mp, (x,))
    return {
        "per-sample grads, LeNet batch 64: vmap(grad)": vmap_grad,
        "per-sample grads, LeNet batch 64: loop of 64 backward": loop,
        "Jacobian of a 100->100 MLP: jacfwd": lambda: fn.jacfwd(f)(x),
        "Jacobian of a 100->100 MLP: jacrev": lambda: fn.jacrev(f)(x),
    }


def _child(framework, repeat):
    import warnings
    warnings.simplefilter("ignore")
    sys.path.insert(0, ROOT)
    import statistics
    import time
    if framework == "ember":
        import ember as m
        from ember import func as fn
    else:
        import torch as m
        from torch import func as fn
        m.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    res = {}
    for name, work in _workloads(m, fn).items():
        work()  # warm-up
        times = []
        for _ in range(repeat):
            # process CPU time: on a shared machine the wall clock mostly measures the
            # scheduler; with one thread, CPU time is the fair figure (as bench_conv.py)
            t0 = time.process_time()
            work()
            times.append(time.process_time() - t0)
        res[name] = statistics.median(times)
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--child", choices=["ember", "torch"])
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.repeat)
        return
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    results = {}
    for fw in ("ember", "torch"):
        try:
            out = subprocess.run([sys.executable, __file__, "--child", fw, "--repeat",
                                  str(args.repeat)], env=env, capture_output=True, text=True,
                                 timeout=1800, check=True)
            results[fw] = json.loads(out.stdout.strip().splitlines()[-1])
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            print(f"{fw}: failed: {getattr(e, 'stderr', '')[-2000:]}", file=sys.stderr)
            results[fw] = {}
    print(f"| workload ({args.threads} thread, CPU time) | ember | torch | ember / torch |")
    print("| --- | --- | --- | --- |")
    for name in results["ember"]:
        e, t = results["ember"].get(name), results["torch"].get(name)
        ratio = f"{e / t:.2f}x" if e and t else "-"
        ts = f"{t * 1e3:.1f} ms" if t else "-"
        print(f"| {name} | {e * 1e3:.1f} ms | {ts} | {ratio} |")
    for fw in ("ember", "torch"):
        r = results[fw]
        v = r.get("per-sample grads, LeNet batch 64: vmap(grad)")
        lp = r.get("per-sample grads, LeNet batch 64: loop of 64 backward")
        if v and lp:
            print(f"{fw}: vmap(grad) is {lp / v:.1f}x faster than the loop")


if __name__ == "__main__":
    main()
