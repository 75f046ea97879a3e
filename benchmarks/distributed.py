"""ember.distributed (MPI) beside PyTorch's gloo: all_reduce bandwidth at 2 ranks, DDP scaling
efficiency and the share of gradient communication hidden behind backward.

    python benchmarks/distributed.py            # both frameworks, prints a markdown table
    python benchmarks/distributed.py --quick    # fewer sizes and steps

The driver starts each measurement as a 2-rank job: ``python -m ember.distributed.run`` for
ember, ``torchrun`` (gloo) for PyTorch, and the single-process baseline as a plain process;
every worker runs with one BLAS/OpenMP thread. Results are written by rank 0 as JSON.
Not a test: the figures depend on the machine (and on what else runs on it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = [1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26]


# ----------------------------------------------------------------- workers (inside the job)
def _fw(name):
    torch = importlib.import_module(name)
    return torch, importlib.import_module(name + ".distributed"), \
        importlib.import_module(name + ".nn")


def _allreduce_worker(fw, quick):
    torch, dist, _ = _fw(fw)
    dist.init_process_group("gloo")
    out = []
    for nbytes in SIZES[:6] if quick else SIZES:
        t = torch.ones(nbytes // 4, dtype=torch.float32)
        reps = max(3, min(200, (64 << 20) // nbytes // 4))
        for _ in range(2):
            dist.all_reduce(t)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(t)
        dist.barrier()
        dt = (time.perf_counter() - t0) / reps
        out.append({"bytes": nbytes, "seconds": dt, "GB_per_s": nbytes / dt / 1e9})
    return out


def _mlp(nn):
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


def _cnn(nn):
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def _train_worker(fw, model_name, distributed, quick):
    """Seconds per training step on this rank's share of a fixed global batch; with DDP also
    the backward time without communication (no_sync) and the all-reduce of all gradients
    alone, from which the hidden share of communication follows."""
    torch, dist, nn = _fw(fw)
    torch.manual_seed(0)
    world = 1
    if distributed:
        dist.init_process_group("gloo")
        world = dist.get_world_size()
    global_batch = 256 if model_name == "mlp" else 64
    shape = (784,) if model_name == "mlp" else (3, 32, 32)
    model = _mlp(nn) if model_name == "mlp" else _cnn(nn)
    if distributed:
        from_parallel = importlib.import_module(fw + ".nn.parallel")
        model = from_parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(global_batch // world, *shape)
    y = torch.randint(0, 10, (global_batch // world,))
    loss_fn = nn.CrossEntropyLoss()
    steps = 5 if quick else 20

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    def timed(fn, n):
        for _ in range(2):
            fn()
        if distributed:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if distributed:
            dist.barrier()
        return (time.perf_counter() - t0) / n

    res = {"step_s": timed(step, steps)}
    if distributed:
        def fwd_bwd():
            opt.zero_grad()
            loss_fn(model(x), y).backward()

        def fwd_bwd_nosync():
            with model.no_sync():
                fwd_bwd()
        grads = [p.detach().clone().reshape(-1) for p in model.parameters()]
        flat = torch.cat(grads)

        def comm():
            dist.all_reduce(flat)
        waits = []
        if fw == "ember":
            # measured inside DDP: the time backward's end spends waiting for buckets whose
            # all-reduce has not finished yet (the exposed communication), per step
            launch = model._launch

            def timed_launch(bucket):
                launch(bucket)
                fut, wait = bucket.fut, bucket.fut.wait

                def timed_wait():
                    t = time.perf_counter()
                    out = wait()
                    waits.append(time.perf_counter() - t)
                    return out
                fut.wait = timed_wait
            model._launch = timed_launch
        res["fwd_bwd_s"] = timed(fwd_bwd, steps)
        if waits:
            model._launch = launch
            res["exposed_wait_s"] = sum(waits) / (steps + 2)
        res["fwd_bwd_nosync_s"] = timed(fwd_bwd_nosync, steps)
        res["allreduce_all_grads_s"] = timed(comm, steps)
        exposed = max(0.0, res["fwd_bwd_s"] - res["fwd_bwd_nosync_s"])
        res["hidden_fraction"] = max(0.0, 1 - exposed / res["allreduce_all_grads_s"])
        if "exposed_wait_s" in res:
            res["hidden_fraction_waited"] = max(
                0.0, 1 - res["exposed_wait_s"] / res["allreduce_all_grads_s"])
    return res


def worker(args):
    if args.worker == "allreduce":
        res = _allreduce_worker(args.framework, args.quick)
    else:
        res = _train_worker(args.framework, args.worker, args.distributed, args.quick)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        with open(args.out + ".tmp", "w") as f:
            json.dump(res, f)
        os.replace(args.out + ".tmp", args.out)
    dist = importlib.import_module(args.framework + ".distributed")
    if dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------- the driver
def _launch(fw, worker_args, nproc, timeout=900):
    out = tempfile.mktemp(suffix=".json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep +
           os.environ.get("PYTHONPATH", "")}
    me = [os.path.abspath(__file__), "--framework", fw, "--out", out, *worker_args]
    if nproc == 1:
        cmd = [sys.executable, *me]
    elif fw == "ember":
        cmd = [sys.executable, "-m", "ember.distributed.run", "--nproc-per-node", str(nproc),
               *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), *me]
    proc = subprocess.run(cmd, env=env, timeout=timeout, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if not os.path.exists(out):  # (gloo may abort at exit after the results are written)
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    with open(out) as f:
        res = json.load(f)
    os.unlink(out)
    return res


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--worker", default=None)
    p.add_argument("--framework", default="ember")
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--frameworks", default="ember,torch")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    q = ["--quick"] if args.quick else []
    fws = args.frameworks.split(",")
    results = {fw: {} for fw in fws}
    for fw in fws:
        results[fw]["allreduce"] = _launch(fw, ["--worker", "allreduce", *q], 2)
        for model in ("mlp", "cnn"):
            one = _launch(fw, ["--worker", model, *q], 1)
            two = _launch(fw, ["--worker", model, "--distributed", *q], 2)
            results[fw][model] = {"one": one, "two": two,
                                  "efficiency": one["step_s"] / two["step_s"] / 2}
    print("| all_reduce float32, 2 ranks | " + " | ".join(
        f"{fw} GB/s (time)" for fw in fws) + " |")
    print("|---|" + "---|" * len(fws))
    for i, row in enumerate(results[fws[0]]["allreduce"]):
        cells = []
        for fw in fws:
            r = results[fw]["allreduce"][i]
            cells.append(f"{r['GB_per_s']:.2f} ({r['seconds'] * 1e6:.0f} us)")
        size = row["bytes"]
        label = f"{size >> 20} MB" if size >= 1 << 20 else f"{size >> 10} KB"
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("| DDP, global batch fixed | " + " | ".join(fws) + " |")
    print("|---|" + "---|" * len(fws))
    for model in ("mlp", "cnn"):
        for key, label in (("one", "1 rank step"), ("two", "2 ranks step")):
            print(f"| {model} {label} | " + " | ".join(
                f"{results[fw][model][key]['step_s'] * 1e3:.1f} ms" for fw in fws) + " |")
        print(f"| {model} scaling efficiency | " + " | ".join(
            f"{results[fw][model]['efficiency'] * 100:.0f}%" for fw in fws) + " |")
        print(f"| {model} comm hidden behind backward (step-time difference) | " + " | ".join(
            f"{results[fw][model]['two']['hidden_fraction'] * 100:.0f}%" for fw in fws) + " |")
        print(f"| {model} comm hidden behind backward (waits measured in DDP) | " + " | ".join(
            f"{results[fw][model]['two']['hidden_fraction_waited'] * 100:.0f}%"
            if "hidden_fraction_waited" in results[fw][model]["two"] else "-"
            for fw in fws) + " |")
    with open(os.path.join(HERE, "_distributed_last.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
