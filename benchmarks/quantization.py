"""Dynamic int8 inference: ember int8 vs ember float32 vs PyTorch's quantized (fbgemm) and
float32, side by side.

    python benchmarks/quantization.py [--threads N] [--passes P] [--quick] [--kernels]
                                      [--wall] [--json FILE]

Rows: an MLP 784-512-512-10 and an LSTM language model (embedding 128, 2-layer LSTM 256,
decoder to a 2,000-word vocabulary, 16 tokens) at batch 1 and 64, inference under
``no_grad``. The int8 models are the float ones with every Linear and LSTM swapped for its
dynamically quantized version (``from_float``; weights per-tensor symmetric qint8,
activations quantized per call with reduce_range, as ``quantize_dynamic`` does on fbgemm).

Each (framework, precision) runs in its own process, as ``benchmarks/run.py`` does; the
processes alternate over ``--passes`` rounds so all see the same machine noise; each reports
the median of its repeats, and the table shows the median over passes. ``--kernels`` also
times the int8 GEMM formulations (the C kernels for int16 and for uint8-below-128
activations, float32 BLAS) on the benchmark's GEMM shapes, which is how
``ember.ao._gemm.choose`` was set, and the whole fused dynamic linear of
``ember.ao._qfast`` (what the dynamic modules run) beside float32 sgemm. Asserts nothing: a
measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process: build the model with ``m`` (ember or torch), optionally quantize it, time it.
_CHILD = r"""
import os, sys, time, statistics, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
import numpy as np
fw, prec, work, batch, quick = {fw!r}, {prec!r}, {work!r}, {batch}, {quick}
if fw == "ember":
    import ember as m
else:
    import torch as m
    m.set_num_threads({threads})
    m.backends.quantized.engine = "fbgemm"
nn = m.nn
m.manual_seed(0)
if work == "mlp":
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    x = m.randn(batch, 784)
    run = lambda: model(x)
else:
    V, E, H, T = 2000, 128, 256, 16
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, E)
            self.rnn = nn.LSTM(E, H, num_layers=2)
            self.dec = nn.Linear(H, V)
        def forward(self, tok):
            out, _ = self.rnn(self.emb(tok))
            return self.dec(out)
    model = LM()
    tok = m.randint(0, V, (T, batch))
    run = lambda: model(tok)
model.eval()
if prec == "int8":
    if fw == "ember":
        import ember.ao.nn.quantized.dynamic as qd
    else:
        import torch.ao.nn.quantized.dynamic as qd
        import torch.ao.quantization as tq
    def swap(mod):
        for name, child in list(mod.named_children()):
            if isinstance(child, (nn.Linear, nn.LSTM)):
                if fw == "torch":
                    child.qconfig = tq.default_dynamic_qconfig
                q = (qd.Linear if isinstance(child, nn.Linear) else qd.LSTM).from_float(child)
                setattr(mod, name, q)
            else:
                swap(child)
    swap(model)
with m.no_grad():
    for _ in range(3):
        run()
    n = 3 if quick else (20 if batch == 1 else 6)
    reps, cpu = [], []
    for _ in range(5 if quick else 9):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            run()
        reps.append((time.perf_counter() - t) / n)
        cpu.append((time.process_time() - c) / n)
print("RESULT", statistics.median(reps), statistics.median(cpu))
"""

_KERNELS = r"""
import sys, time
sys.path.insert(0, {root!r})
import numpy as np
import ember
from ember.ao import _gemm, _qfast
from ember.ao.nn.quantized import functional as QF
rng = np.random.default_rng(0)
print("ISA", _gemm.kernel_isa())
shapes = [(1, 512, 784), (1, 512, 512), (1, 10, 512), (64, 512, 784), (64, 512, 512),
          (64, 10, 512), (1, 1024, 128), (1, 1024, 256), (16, 1024, 256), (64, 1024, 256),
          (1, 2000, 256), (16, 2000, 256), (2, 512, 784), (4, 512, 784), (8, 512, 784),
          (16, 512, 784)]
def best(f, n=20):
    f(); b = 1e9
    for _ in range(n):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b * 1e6
for M, N, K in shapes:
    w = rng.integers(-128, 128, (N, K)).astype(np.int8)
    pw = _gemm.PackedWeight(w, 0)
    a = rng.integers(-127, 128, (M, K)).astype(np.int16)
    q = rng.integers(0, 128, (M, K)).astype(np.uint8)
    tc = best(lambda: _gemm.gemm_c(a, pw)) if _gemm._c_kernel() else float("nan")
    tu = best(lambda: _gemm.gemm_u8(q, 60, pw)) if _gemm._c_kernel() else float("nan")
    tb = best(lambda: _gemm.gemm_blas(a, pw, 127))
    # the whole fused dynamic linear (min/max, quantize, panel GEMM, dequantize + bias)
    x = rng.standard_normal((M, K)).astype(np.float32)
    plan = _qfast.Plan(QF.PackedLinearWeight(ember.quantize_per_tensor(
        ember.from_numpy(w.astype(np.float32)), 1.0, 0, ember.qint8), None))
    tf = best(lambda: _qfast.linear(plan, x)) if _qfast.available() else float("nan")
    wt = np.ascontiguousarray(w.T.astype(np.float32))
    ts = best(lambda: x @ wt)
    print(f"KERNEL {{M}}x{{N}}x{{K}} c_int16={{tc:.1f}}us c_u8={{tu:.1f}}us "
          f"blas={{tb:.1f}}us int16-or-blas choice={{_gemm.choose(M, N, K)}} "
          f"fused_dynamic_linear={{tf:.1f}}us float32_sgemm={{ts:.1f}}us")
"""


def _env(threads):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(code, threads, timeout=600):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(threads), timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return proc.stdout


def _torch_available():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True,
                          timeout=120).returncode == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kernels", action="store_true")
    ap.add_argument("--wall", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.kernels:
        print(_run(_KERNELS.format(root=ROOT), args.threads), end="")
    fws = ["ember"] + (["torch"] if _torch_available() else [])
    rows = [("mlp", 1), ("mlp", 64), ("lstm", 1), ("lstm", 64)]
    results = {}
    for _ in range(args.passes):
        for work, batch in rows:
            for fw in fws:
                for prec in ("float32", "int8"):
                    code = _CHILD.format(root=ROOT, fw=fw, prec=prec, work=work, batch=batch,
                                         quick=args.quick, threads=args.threads)
                    out = _run(code, args.threads)
                    wall, cpu = (float(v) for v in out.split("RESULT")[1].split())
                    # on a shared machine the wall clock mostly measures the scheduler: the
                    # table shows process CPU time (--wall for wall-clock time)
                    t = wall if args.wall else cpu
                    results.setdefault((work, batch, fw, prec), []).append(t)
    print(f"dynamic int8 inference, {args.threads} thread(s), "
          f"{'wall-clock' if args.wall else 'process CPU'} time per forward, "
          f"median of {args.passes} passes")
    head = (f"{'workload':<22}{'ember f32':>11}{'ember int8':>12}{'int8/f32':>9}"
            f"{'torch f32':>11}{'torch int8':>12}{'ember/torch int8':>18}")
    print(head)
    table = []
    for work, batch in rows:
        med = {k[2:]: statistics.median(v) for k, v in results.items()
               if k[:2] == (work, batch)}
        ef, ei = med[("ember", "float32")], med[("ember", "int8")]
        tf, ti = med.get(("torch", "float32")), med.get(("torch", "int8"))
        name = f"{'MLP 784-512-512-10' if work == 'mlp' else 'LSTM LM'} b{batch}"
        cells = [f"{name:<22}{ef * 1e3:>9.3f}ms{ei * 1e3:>10.3f}ms{ei / ef:>9.2f}"]
        if ti is not None:
            cells.append(f"{tf * 1e3:>9.3f}ms{ti * 1e3:>10.3f}ms{ei / ti:>18.2f}")
        print("".join(cells))
        table.append({"workload": name, "ember_f32_s": ef, "ember_int8_s": ei,
                      "torch_f32_s": tf, "torch_int8_s": ti})
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(table, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
