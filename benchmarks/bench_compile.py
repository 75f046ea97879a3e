"""ember.compile: a tanh-GELU chain over 4M float32 compiled (one fused C kernel) vs ember
eager vs PyTorch eager, each framework in its own process with default threads; and the
compile time (first call) of an MLP training step with an empty kernel cache and, in a new
process, with a warm one. Medians over rounds.

    python benchmarks/bench_compile.py [--n 4194304] [--rounds 10] [--no-torch]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _median(fn, rounds):
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gelu_chain(lib, x):
    return 0.5 * x * (1 + lib.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def child_gelu(which, n, rounds):
    """Seconds per call of the chain for ``which`` in ember-eager, ember-compiled, torch."""
    if which == "torch":
        import torch as lib
    else:
        import ember as lib
    x = lib.randn(n)
    if which == "ember-compiled":
        f = lib.compile(lambda v: gelu_chain(lib, v))
        f(x)
    else:
        def f(v):
            return gelu_chain(lib, v)
    return _median(lambda: f(x), rounds)


def child_compile_time():
    """First-call seconds of a compiled MLP 784-512-512-10 SGD training step (batch 64),
    minus nothing: capture + lowering + any C compiles + the step itself; and the eager step
    for scale."""
    sys.path.insert(0, ROOT)
    import ember
    from ember import nn
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                      nn.Linear(512, 10))
    opt = ember.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = ember.randn(64, 784), ember.randint(0, 10, (64,))

    def step(a, b):
        loss = nn.functional.cross_entropy(m(a), b)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    step(x, y)  # optimizer state exists (momentum buffers), imports done
    t = time.perf_counter()
    step(x, y)
    eager = time.perf_counter() - t
    c = ember.compile(step)
    t = time.perf_counter()
    c(x, y)
    first = time.perf_counter() - t
    t = time.perf_counter()
    c(x, y)
    replay = time.perf_counter() - t
    from ember.compiler import _codegen
    return {"first": first, "eager_step": eager, "replay_step": replay,
            "c_compiles": _codegen.STATS["compiles"]}


def _spawn(args, env=None):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True,
                       text=True, timeout=600, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1 << 22)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--child", default=None)
    a = p.parse_args(argv)
    if a.child == "compile-time":
        print(json.dumps(child_compile_time()))
        return
    if a.child:
        print(json.dumps(child_gelu(a.child, a.n, a.rounds)))
        return
    env = dict(os.environ, PYTHONPATH=ROOT)
    which = ["ember-eager", "ember-compiled"] + ([] if a.no_torch else ["torch"])
    res = {w: _spawn(["--child", w, "--n", str(a.n), "--rounds", str(a.rounds)], env)
           for w in which}
    print(f"tanh-GELU chain over {a.n} float32, ms per call (median of {a.rounds})")
    for w, s in res.items():
        print(f"  {w:16s} {s * 1e3:8.2f}")
    if "torch" in res:
        print(f"  compiled / PyTorch eager: {res['ember-compiled'] / res['torch']:.2f}x")
    with tempfile.TemporaryDirectory() as cache:
        env2 = dict(env, EMBER_CACHE_DIR=cache)
        cold = _spawn(["--child", "compile-time"], env2)
        warm = _spawn(["--child", "compile-time"], env2)
    print("MLP 784-512-512-10 SGD train step, first compiled call (s): "
          f"cold cache {cold['first']:.3f} ({cold['c_compiles']} C compiles), "
          f"warm cache in a new process {warm['first']:.3f} ({warm['c_compiles']} C compiles); "
          f"eager step {cold['eager_step'] * 1e3:.1f} ms, compiled replay "
          f"{cold['replay_step'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
