"""ember.compile: a tanh-GELU chain over 4M float32 compiled (one fused C kernel) vs ember
eager vs PyTorch eager, each framework in its own process with default threads; the
compile time (first call) of an MLP training step with an empty kernel cache and, in a new
process, with a warm one; and training steps (the workloads of ``benchmarks/run.py``) as
ember eager, ember compiled, PyTorch eager and ``torch.compile``, each in its own process
(torch.compile under a timeout), with first-call (compile) times cold and warm. Medians.

    python benchmarks/bench_compile.py [--n 4194304] [--rounds 10] [--no-torch]
        [--steps mlp,lenet,cifar,gpt] [--threads N] [--no-torch-compile] [--passes P]
        [--torch-compile-timeout S] [--only-train] [--first-calls P]

torch.compile runs with an empty inductor cache of its own (``TORCHINDUCTOR_CACHE_DIR`` a
fresh directory), so its first call is a cold compile like ember's "cold" column; a run that
passes ``--torch-compile-timeout`` seconds (default 600) is reported as timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


_STEPS = {"mlp": "MLP 784-512-512-10 train step", "lenet": "LeNet-5 train step",
          "cifar": "CIFAR CNN train step", "gpt": "GPT 2-layer train step"}


def _cpu_with_children():
    """CPU seconds of this process and of the children it waited for (the C compiler)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def child_train(name, mode, threads, rounds):
    """A training step of ``benchmarks/run.py`` run as ``mode`` (ember-eager, ember-compiled,
    torch-eager, torch-compiled): seconds of the first call after an eager warm-up step
    (the capture/compile for compiled modes) and median wall and CPU seconds per step."""
    sys.path.insert(0, ROOT)
    fw = mode.split("-")[0]
    if fw == "torch":
        import torch as m
    else:
        import ember as m
    if threads:
        m.set_num_threads(threads)
    from benchmarks.run import WORKLOADS
    step, _ = WORKLOADS[_STEPS[name]](m, False)
    step()  # imports, optimizer state
    if mode.endswith("compiled"):
        step = m.compile(step)
    t, c = time.perf_counter(), _cpu_with_children()
    step()
    first, first_cpu = time.perf_counter() - t, _cpu_with_children() - c
    step()
    walls, cpus = [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    out = {"first": first, "first_cpu": first_cpu, "step": statistics.median(walls),
           "cpu": statistics.median(cpus)}
    if mode == "ember-compiled":
        from ember.compiler import _codegen
        out["c_compiles"] = _codegen.STATS["compiles"]
        out["graphs"] = len(step.entries)
    return out


def _spawn_soft(args, env, timeout):
    """``_spawn`` that reports a failure or a timeout instead of raising."""
    # its own process group, so that a timeout also ends the compile workers torch.compile
    # starts (killing the child alone would leave them running)
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=ROOT, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import signal
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": err.strip().splitlines()[-1][:200] if err.strip() else "failed"}
    return json.loads(out.strip().splitlines()[-1])


def train_table(names, threads, rounds, passes, torch_compile, env, tc_timeout=600):
    """Alternating passes over ember eager, ember compiled and PyTorch eager; torch.compile
    once. Returns {name: {mode: result}} with per-mode medians over passes."""
    modes = ["ember-eager", "ember-compiled", "torch-eager"]
    if threads:
        env = dict(env, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                      "MKL_NUM_THREADS")})
    res = {}
    for name in names:
        runs = {m: [] for m in modes}
        with tempfile.TemporaryDirectory() as cache:
            env2 = dict(env, EMBER_CACHE_DIR=cache)
            for p in range(passes):  # the first ember-compiled run meets an empty cache
                for mode in modes:
                    runs[mode].append(_spawn_soft(["--child", f"train:{name}:{mode}",
                                                   "--threads", str(threads or 0),
                                                   "--rounds", str(rounds)], env2, 900))
        row = {}
        for mode, rs in runs.items():
            ok = [r for r in rs if "error" not in r]
            if not ok:
                row[mode] = rs[0]
                continue
            row[mode] = {k: statistics.median(r[k] for r in ok) for k in ("step", "cpu")}
            for k in ("first", "first_cpu"):  # wall and CPU seconds of the first call
                row[mode][k + "_cold"] = ok[0][k]
                row[mode][k + "_warm"] = statistics.median(r[k] for r in ok[1:]) \
                    if len(ok) > 1 else None
        if torch_compile:
            with tempfile.TemporaryDirectory() as tcache:
                row["torch-compiled"] = _spawn_soft(
                    ["--child", f"train:{name}:torch-compiled", "--threads", str(threads or 0),
                     "--rounds", str(rounds)], dict(env, TORCHINDUCTOR_CACHE_DIR=tcache),
                    tc_timeout)
        res[name] = row
    return res


def _print_train(res, threads):
    print(f"training steps, ms per step (wall / CPU), threads={threads or 'default'}; "
          "first call = capture/compile, wall / CPU s (cold cache, then warm cache in a new "
          "process)")
    for name, row in res.items():
        print(f"  {_STEPS[name]}")
        for mode, r in row.items():
            if "error" in r:
                print(f"    {mode:15s} {r['error']}")
                continue
            cold = "_cold" if "first_cold" in r else ""
            first = f"first call {r['first' + cold]:.2f} / {r['first_cpu' + cold]:.2f} s"
            if r.get("first_warm") is not None:
                first += f", warm {r['first_warm']:.2f} / {r['first_cpu_warm']:.2f} s"
            print(f"    {mode:15s} {r['step'] * 1e3:8.2f} / {r['cpu'] * 1e3:8.2f}   {first}")
        te, ec = row.get("torch-eager", {}), row.get("ember-compiled", {})
        tc = row.get("torch-compiled", {})
        if "cpu" in te and "cpu" in ec:
            print(f"    ember compiled / PyTorch eager: wall {ec['step'] / te['step']:.2f}x, "
                  f"CPU {ec['cpu'] / te['cpu']:.2f}x")
        if "cpu" in tc and "cpu" in ec:
            print(f"    ember compiled / torch.compile: wall {ec['step'] / tc['step']:.2f}x, "
                  f"CPU {ec['cpu'] / tc['cpu']:.2f}x; compile time (cold) ember "
                  f"{ec['first_cold']:.2f} s, torch.compile {tc['first']:.1f} s")


def first_call_table(names, threads, procs, env):
    """First compiled call of each training step, in new processes: ``procs`` with an empty
    kernel cache each (cold), then ``procs`` sharing the cache the last cold one filled
    (warm). Returns {name: {"cold"|"warm": (median wall s, median CPU s incl. the C
    compiler, [per-process (wall, cpu)])}}."""
    if threads:
        env = dict(env, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                      "MKL_NUM_THREADS")})
    out = {}
    for name in names:
        runs = {"cold": [], "warm": []}
        with tempfile.TemporaryDirectory() as root:
            for i in range(procs):
                cache = os.path.join(root, "cache")
                if os.path.isdir(cache):
                    shutil.rmtree(cache)
                r = _spawn(["--child", f"train:{name}:ember-compiled", "--threads",
                            str(threads or 0), "--rounds", "1"], dict(env, EMBER_CACHE_DIR=cache))
                runs["cold"].append((r["first"], r["first_cpu"]))
            for i in range(procs):
                r = _spawn(["--child", f"train:{name}:ember-compiled", "--threads",
                            str(threads or 0), "--rounds", "1"], dict(env, EMBER_CACHE_DIR=cache))
                runs["warm"].append((r["first"], r["first_cpu"]))
        out[name] = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v), v)
                     for k, v in runs.items()}
    return out


def _print_first_calls(res, threads, procs):
    print(f"first compiled call (capture + lowering + C compiles + the step), wall / CPU s, "
          f"median of {procs} new processes, threads={threads or 'default'}")
    for name, row in res.items():
        parts = [f"{k} {w:.2f} / {c:.2f}" for k, (w, c, _) in row.items()]
        print(f"  {_STEPS[name]:32s} " + ", ".join(parts))


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
    p.add_argument("--steps", default="mlp,lenet,cifar,gpt")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--no-torch-compile", action="store_true")
    p.add_argument("--torch-compile-timeout", type=float, default=600)
    p.add_argument("--only-train", action="store_true",
                   help="skip the GELU chain and the MLP compile-time sections")
    p.add_argument("--first-calls", type=int, default=0, metavar="P",
                   help="only the first compiled call of each --steps step: P new processes "
                        "with an empty kernel cache, then P with a warm one (medians)")
    a = p.parse_args(argv)
    if a.child and a.child.startswith("train:"):
        _, name, mode = a.child.split(":")
        print(json.dumps(child_train(name, mode, a.threads, a.rounds)))
        return
    if a.child == "compile-time":
        print(json.dumps(child_compile_time()))
        return
    if a.child:
        print(json.dumps(child_gelu(a.child, a.n, a.rounds)))
        return
    env = dict(os.environ, PYTHONPATH=ROOT)
    names = [n for n in a.steps.split(",") if n]
    if a.first_calls:
        _print_first_calls(first_call_table(names, a.threads, a.first_calls, env), a.threads,
                           a.first_calls)
        return
    if a.only_train:
        res = train_table(names, a.threads, a.rounds, a.passes,
                          not (a.no_torch or a.no_torch_compile), env, a.torch_compile_timeout)
        _print_train(res, a.threads)
        return
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
    if names:
        res = train_table(names, a.threads, a.rounds, a.passes,
                          not (a.no_torch or a.no_torch_compile), env, a.torch_compile_timeout)
        _print_train(res, a.threads)


if __name__ == "__main__":
    main()
