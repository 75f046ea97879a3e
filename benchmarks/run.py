"""ember vs PyTorch, side by side: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

Every workload is written once against the shared API and built twice, with ``m = ember`` and
``m = torch``. Each framework runs in its own process, as users run it, and the processes
alternate (ember, PyTorch, ember, PyTorch: ``--passes`` pairs), so that both see the same
machine noise and no process-wide setting of one framework (allocator tuning, thread pools,
OpenMP spin waits) touches the other's timing; the NumPy baselines (the same arithmetic in
plain NumPy, ember's floor for the big ops) run in a third process for the same reason (a
threaded OpenBLAS call in ember's process would leave its threads behind there). Thread count:
each framework's default (all cores) unless ``--threads N``. Within a process: warm-up, then
the median of several repeats; across passes, the median of the per-pass medians. The JSON also
has each framework's process CPU time per call (all threads: how busy the cores were). Peak
memory is measured per framework in a fresh process too (peak RSS during the workload minus RSS
after its setup). Prints a table; ``--json FILE`` saves it. Asserts nothing: it is a
measurement, not a test.

    python -m benchmarks [--only NAME] [--quick] [--json FILE] [--threads N] [--passes P]
                         [--no-memory] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

# --------------------------------------------------------------------------- workloads
# Each workload: setup(m, quick) -> (step, units) where ``step()`` runs one iteration and
# ``units`` (optional) is (amount, label) for a throughput column, per step.


def _tiny(op, grad, backward):
    def setup(m, quick):
        rng = np.random.default_rng(0)
        v = rng.standard_normal(16).astype(np.float32)
        w = rng.standard_normal((8, 8)).astype(np.float32)
        a, b = m.tensor(v, requires_grad=grad), m.tensor(v, requires_grad=grad)
        x, y = m.tensor(w, requires_grad=grad), m.tensor(w, requires_grad=grad)
        f = {"add": lambda: a + b, "mul": lambda: a * b, "matmul": lambda: x @ y,
             "sum": lambda: a.sum()}[op]
        if not backward:
            return f, None

        def step():
            a.grad = b.grad = x.grad = y.grad = None
            f().sum().backward()
        return step, None
    return setup


def _matmul_big(m, quick):
    n = 512 if quick else 1024
    rng = np.random.default_rng(0)
    a = m.tensor(rng.standard_normal((n, n)).astype(np.float32))
    b = m.tensor(rng.standard_normal((n, n)).astype(np.float32))
    return (lambda: a @ b), (2 * n ** 3 / 1e9, "GFLOP")


def _add_big(m, quick):
    n = (1 << 22) if quick else (1 << 24)
    a = m.ones(n)
    b = m.ones(n)
    return (lambda: a + b), (3 * 4 * n / 1e9, "GB")


def _gelu_chain(m, quick):
    n = (1 << 20) if quick else (1 << 22)
    x = m.tensor(np.random.default_rng(0).standard_normal(n).astype(np.float32))

    def step():  # 8 elementwise ops: tanh-approximated GELU
        return 0.5 * x * (1.0 + m.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))
    return step, (n / 1e6, "Melem")


def _ember_compiled(workload):
    """The workload with its step under ``ember.compile`` in ember's process (as is in
    PyTorch's): the capture and any C compiles happen in the harness's warm-up call."""
    def setup(m, quick):
        step, units = workload(m, quick)
        if m.__name__ == "ember":
            step = m.compile(step)
            step()  # a stateful optimizer's first step runs eagerly; the second captures
        return step, units
    return setup


def _sum_big(m, quick):
    n = (1 << 22) if quick else (1 << 24)
    a = m.ones(n)
    return (lambda: a.sum()), (4 * n / 1e9, "GB")


def _big_vec(m, quick):
    n = (1 << 22) if quick else (1 << 24)
    return m.tensor(np.random.default_rng(0).standard_normal(n).astype(np.float32))


def _mul_big(m, quick):
    a, b = _big_vec(m, quick), _big_vec(m, quick)
    return (lambda: a * b), (3 * 4 * a.numel() / 1e9, "GB")


def _reduce_big(op):
    def setup(m, quick):
        a = _big_vec(m, quick)
        f = getattr(a, op)
        return (lambda: f()), (4 * a.numel() / 1e9, "GB")
    return setup


def _rows_big(kind):
    """softmax / layer norm over the last dim of a (rows, 4096) float32 matrix (16M items)."""
    def setup(m, quick):
        rows = 1024 if quick else 4096
        x = m.tensor(np.random.default_rng(0).standard_normal((rows, 4096)).astype(np.float32))
        F = m.nn.functional
        if kind == "softmax":
            return (lambda: F.softmax(x, -1)), (2 * 4 * x.numel() / 1e9, "GB")
        w, b = m.ones(4096), m.zeros(4096)
        return (lambda: F.layer_norm(x, (4096,), w, b)), (2 * 4 * x.numel() / 1e9, "GB")
    return setup


def _conv_resnet(backward):
    """A ResNet stage-1 convolution: 3x3, 64 -> 64 channels, 56x56, batch 8."""
    def setup(m, quick):
        rng = np.random.default_rng(0)
        n = 2 if quick else 8
        x = m.tensor(rng.standard_normal((n, 64, 56, 56)).astype(np.float32),
                     requires_grad=backward)
        w = m.tensor(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05,
                     requires_grad=backward)
        F = m.nn.functional
        flops = 2 * n * 64 * 64 * 9 * 56 * 56 / 1e9
        if not backward:
            return (lambda: F.conv2d(x, w, padding=1)), (flops, "GFLOP")

        def step():
            x.grad = w.grad = None
            F.conv2d(x, w, padding=1).sum().backward()
        return step, (3 * flops, "GFLOP")
    return setup


def _train_step(m, model, x, y, opt, loss_fn):
    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return step


def _mlp(m, quick):
    m.manual_seed(0)
    nn = m.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    x = m.randn(128, 784)
    y = m.randint(0, 10, (128,))
    opt = m.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _train_step(m, model, x, y, opt, nn.CrossEntropyLoss()), (128, "samples")


def _lenet(m, quick):
    m.manual_seed(0)
    nn = m.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
    x = m.randn(64, 1, 28, 28)
    y = m.randint(0, 10, (64,))
    opt = m.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _train_step(m, model, x, y, opt, nn.CrossEntropyLoss()), (64, "samples")


def _cifar_cnn(m, quick):
    m.manual_seed(0)
    nn = m.nn
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, 10))
    x = m.randn(32, 3, 32, 32)
    y = m.randint(0, 10, (32,))
    opt = m.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _train_step(m, model, x, y, opt, nn.CrossEntropyLoss()), (32, "samples")


def gpt_model(m, vocab, d, heads, seq):
    """The GPT block of the GPT row: token and position embeddings, 2 pre-norm encoder layers
    (GELU, causal self-attention, batch_first), a final norm and the vocabulary head (the
    tests build a smaller one)."""
    nn = m.nn

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(seq, d)
            layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

        def forward(self, idx):
            pos = m.arange(idx.shape[1])
            h = self.tok(idx) + self.pos(pos)
            h = self.blocks(h, mask=self.mask, is_causal=True)
            return self.head(self.ln(h))
    return GPT()


def _gpt(m, quick):
    m.manual_seed(0)
    nn = m.nn
    vocab, d, heads, seq, batch = 256, 128, 4, 64, 16
    model = gpt_model(m, vocab, d, heads, seq)
    idx = m.randint(0, vocab, (batch, seq))
    tgt = m.randint(0, vocab, (batch, seq))
    opt = m.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(idx).reshape(-1, vocab), tgt.reshape(-1))
        loss.backward()
        opt.step()
    return step, (batch * seq, "tokens")


def _lstm(m, quick):
    m.manual_seed(0)
    nn = m.nn
    model = nn.LSTM(64, 256, num_layers=2, batch_first=True)
    head = nn.Linear(256, 10)
    x = m.randn(32, 64, 64)
    y = m.randint(0, 10, (32,))
    params = list(model.parameters()) + list(head.parameters())
    opt = m.optim.SGD(params, lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        out, _ = model(x)
        loss = loss_fn(head(out[:, -1]), y)
        loss.backward()
        opt.step()
    return step, (32 * 64, "steps")


def _resnet18_train(m, quick):
    """ResNet-18 (torchvision's layout, written here once for both frameworks), batch 16 of
    64x64 images, SGD with momentum."""
    m.manual_seed(0)
    nn = m.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x):
            out = m.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return m.relu(out + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))
    n = 4 if quick else 16
    x = m.randn(n, 3, 64, 64)
    y = m.randint(0, 10, (n,))
    opt = m.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return _train_step(m, model, x, y, opt, nn.CrossEntropyLoss()), (n, "samples")


class _CostlyItems:
    """Items that cost ~1 ms of NumPy work each and return a 3x32x32 array and a label."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        x = rng.standard_normal((3, 32, 32)).astype(np.float32)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.001:
            x = np.tanh(x) * 1.0001
        return x, i % 10


def _make_dataset_cls(m):
    base = m.utils.data.Dataset

    class DS(_CostlyItems, base):
        pass
    return DS


def _dataloader(workers):
    def setup(m, quick):
        n = 256 if quick else 1024
        ds = _make_dataset_cls(m)(n)
        loader = m.utils.data.DataLoader(ds, batch_size=64, num_workers=workers,
                                         persistent_workers=workers > 0)

        def step():
            for _ in loader:
                pass
        return step, (n, "samples")
    return setup


def _resnet18_build(m, quick):
    if m.__name__ == "torch":
        try:
            import torchvision
        except ImportError:
            return None, None
        return (lambda: torchvision.models.resnet18()), None
    from ember.vision import models
    return (lambda: models.resnet18()), None


def _import_time(m, quick):
    name = m.__name__

    def step():
        subprocess.run([sys.executable, "-c", f"import {name}"], check=True, cwd=ROOT)
    return step, None


def _np_matmul(quick):
    n = 512 if quick else 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    return lambda: a @ b


def _np_add(quick):
    n = (1 << 22) if quick else (1 << 24)
    a, b = np.ones(n, np.float32), np.ones(n, np.float32)
    return lambda: a + b


def _np_gelu(quick):
    n = (1 << 20) if quick else (1 << 22)
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    return lambda: 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def _np_sum(quick):
    a = np.ones((1 << 22) if quick else (1 << 24), np.float32)
    return lambda: a.sum()


def _np_mul(quick):
    rng = np.random.default_rng(0)
    n = (1 << 22) if quick else (1 << 24)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    return lambda: a * b


def _np_reduce(op):
    def setup(quick):
        n = (1 << 22) if quick else (1 << 24)
        a = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        return getattr(a, op)
    return setup


# The same arithmetic written directly in NumPy: ember's own floor for the big ops.
NUMPY_BASELINES = {"matmul 1024^3": _np_matmul, "add 16M": _np_add, "mul 16M": _np_mul,
                   "tanh-GELU chain 4M": _np_gelu, "sum 16M": _np_sum,
                   "mean 16M": _np_reduce("mean"), "max 16M": _np_reduce("max")}

WORKLOADS = {
    **{f"{op} {'(16,)' if op != 'matmul' else '(8,8)'}{sfx}": _tiny(op, g, b)
       for op in ("add", "mul", "matmul", "sum")
       for sfx, g, b in (("", False, False), (" requires_grad", True, False),
                         (" fwd+bwd", True, True))},
    "matmul 1024^3": _matmul_big,
    "add 16M": _add_big,
    "tanh-GELU chain 4M": _gelu_chain,
    "mul 16M": _mul_big,
    "sum 16M": _sum_big,
    "mean 16M": _reduce_big("mean"),
    "max 16M": _reduce_big("max"),
    "softmax 4096x4096": _rows_big("softmax"),
    "layer norm 4096x4096": _rows_big("layer_norm"),
    "conv 3x3 64ch 56x56 fwd": _conv_resnet(False),
    "conv 3x3 64ch 56x56 fwd+bwd": _conv_resnet(True),
    "MLP 784-512-512-10 train step": _mlp,
    "LeNet-5 train step": _lenet,
    "CIFAR CNN train step": _cifar_cnn,
    "GPT 2-layer train step": _gpt,
    "LSTM 2-layer train step": _lstm,
    "ResNet-18 64x64 train step": _resnet18_train,
    # ember.compile'd workloads: the ember column is compiled, the PyTorch column is PyTorch
    # *eager* (the targets); torch.compile is measured once, in its own process with
    # a timeout, by benchmarks/bench_compile.py
    "tanh-GELU chain 4M, ember compiled": _ember_compiled(_gelu_chain),
    "MLP train step, ember compiled": _ember_compiled(_mlp),
    "LeNet-5 train step, ember compiled": _ember_compiled(_lenet),
    "CIFAR CNN train step, ember compiled": _ember_compiled(_cifar_cnn),
    "GPT 2-layer train step, ember compiled": _ember_compiled(_gpt),
    "DataLoader 0 workers": _dataloader(0),
    "DataLoader 2 workers": _dataloader(2),
    "build ResNet-18": _resnet18_build,
    "import": _import_time,
}

# calls per timing round, by workload family
_NUMBER = {"tiny": 2000, "big": 3, "train": 3, "other": 1}
_BIG = ("matmul 1024^3", "add 16M", "mul 16M", "tanh-GELU chain 4M", "sum 16M", "mean 16M",
        "tanh-GELU chain 4M, ember compiled",
        "max 16M", "softmax 4096x4096", "layer norm 4096x4096", "conv 3x3 64ch 56x56 fwd",
        "conv 3x3 64ch 56x56 fwd+bwd")


def _family(name):
    if "(16,)" in name or "(8,8)" in name:
        return "tiny"
    if name in _BIG:
        return "big"
    if "train step" in name:
        return "train"
    return "other"


def _time(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _child_env(threads):
    """The environment of a framework's process: the user's, with the thread count pinned
    for BLAS/OpenMP when ``threads`` is given (else each framework's default: all cores)."""
    env = dict(os.environ)
    if threads:
        env.update({v: str(threads) for v in _THREAD_VARS})
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _import_framework(fw, threads):
    if fw == "torch":
        try:
            import torch as m
        except ImportError:
            return None
    else:
        import ember as m
    if threads:
        m.set_num_threads(threads)
    return m


def _time_cpu(fn, number):
    """(wall seconds, process CPU seconds) per call of ``fn``, over ``number`` calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn()
    t, c = time.perf_counter() - t0, time.process_time() - c0
    return t / number, c / number


def _number(name, quick):
    fam = _family(name)
    return _NUMBER[fam] if not quick else max(1, _NUMBER[fam] // 4)


def _time_in_process(fw, names, quick, threads, repeat):
    """Runs in a framework's own process: times each workload there (warm-up, then the median
    of ``repeat`` rounds). ``fw == "numpy"`` times the NumPy baselines of ``names`` instead,
    in a process of their own: a threaded OpenBLAS call there must not touch ember's timing.
    Returns a dict: per workload the median wall time per call ``s`` and the process's CPU
    time per call ``cpu_s`` in that round (all threads; ``cpu_s / s`` near the thread count
    means every core was busy)."""
    if fw == "numpy":
        out = {}
        for name in names:
            if name in NUMPY_BASELINES:
                n_step = NUMPY_BASELINES[name](quick)
                n_step()
                out[name] = {"s": statistics.median(
                    _time(n_step, _number(name, quick)) for _ in range(repeat))}
        return out
    m = _import_framework(fw, threads)
    out = {}
    if m is None:
        return out
    for name in names:
        number = _number(name, quick)
        try:
            step, units = WORKLOADS[name](m, quick)
        except (NotImplementedError, AttributeError, ImportError) as exc:
            out[name] = {"error": f"{fw}: {type(exc).__name__}: {exc}"}
            continue
        if step is None:
            continue
        step()
        times = sorted(_time_cpu(step, number) for _ in range(repeat))
        out[name] = {"s": times[len(times) // 2][0], "cpu_s": times[len(times) // 2][1],
                     "units": units}
    return out


def _run_process(fw, names, quick, threads, repeat):
    code = ("import json, sys\n"
            "from benchmarks.run import _time_in_process\n"
            f"r = _time_in_process({fw!r}, {names!r}, {quick!r}, {threads!r}, {repeat!r})\n"
            "sys.stdout.write('\\n@@' + json.dumps(r))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_child_env(threads), cwd=ROOT, timeout=3600)
    if proc.returncode != 0 or "@@" not in proc.stdout:
        raise RuntimeError(f"the {fw} benchmark process failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.rsplit("@@", 1)[1])


def _measure_memory(fw, name, quick, threads):
    """Peak RSS growth (MiB) of the workload in a fresh process that imports only ``fw``:
    the kernel's peak-RSS mark is reset after setup (``/proc/self/clear_refs``), so the
    figure is the high-water mark of four steps (the first makes gradients and optimizer
    state) above the memory of the built model and data. Measured from before the first step
    because allocators keep freed memory for reuse (ember's settings, see
    ``ember/_allocator.py``, and PyTorch's): growth after a warm-up step would read zero."""
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        f"import {fw} as m\n"
        + (f"m.set_num_threads({threads})\n" if threads else "") +
        "from benchmarks.run import WORKLOADS, _rss_mib, _reset_peak, _peak_mib\n"
        f"step, _ = WORKLOADS[{name!r}](m, {quick})\n"
        "if step is None: print('null'); sys.exit()\n"
        "base = _rss_mib()\n"
        "_reset_peak()\n"
        "for _ in range(4): step()\n"
        "print(json.dumps(max(_peak_mib() - base, 0.0)))\n")
    env = _child_env(threads)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception:
        return None


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / (1 << 20)


def run(only=None, quick=False, threads=None, memory=True, repeat=None, passes=2):
    """Time the selected workloads: ``passes`` rounds of (ember process, PyTorch process)."""
    repeat = repeat or (3 if quick else 7)
    names = [n for n in WORKLOADS
             if not only or any(o.lower() in n.lower() for o in only)]
    per_pass = {"ember": [], "torch": [], "numpy": []}
    fws = ("ember", "torch") + (("numpy",) if any(n in NUMPY_BASELINES for n in names) else ())
    for _ in range(passes):
        for fw in fws:
            per_pass[fw].append(_run_process(fw, names, quick, threads, repeat))
    rows = []
    for name in names:
        e = [p[name] for p in per_pass["ember"] if name in p]
        t = [p[name] for p in per_pass["torch"] if name in p and "error" not in p[name]]
        if not e:
            continue
        if "error" in e[0]:
            rows.append({"workload": name, "error": e[0]["error"]})
            print(f"{name:<36} ember cannot run it yet: {e[0]['error']}", flush=True)
            continue
        e_med = statistics.median(r["s"] for r in e)
        t_med = statistics.median(r["s"] for r in t) if t else None
        row = {"workload": name, "ember_s": e_med, "torch_s": t_med,
               "ratio": (e_med / t_med) if t_med else None,
               "ember_cpu_s": statistics.median(r["cpu_s"] for r in e),
               "torch_cpu_s": statistics.median(r["cpu_s"] for r in t) if t else None}
        nps = [p[name]["s"] for p in per_pass["numpy"] if name in p]
        if nps:
            row["numpy_s"] = statistics.median(nps)
            row["vs_numpy"] = e_med / row["numpy_s"]
        units = e[0]["units"]
        if units:
            row["units"] = units[1]
            row["ember_rate"] = units[0] / e_med
            row["torch_rate"] = units[0] / t_med if t_med else None
        fam = _family(name)
        if memory and fam in ("big", "train", "other") and name != "import":
            row["ember_peak_mib"] = _measure_memory("ember", name, quick, threads)
            if t:
                row["torch_peak_mib"] = _measure_memory("torch", name, quick, threads)
        rows.append(row)
        _print_row(row)
    return rows


def _fmt(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _print_header():
    print(f"{'workload':<36} {'ember':>10} {'pytorch':>10} {'ratio':>7} "
          f"{'ember rate':>16} {'mem e/t MiB':>13} {'vs NumPy':>9}")


def _print_row(r):
    ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
    rate = ""
    if r.get("units"):
        rate = f"{r['ember_rate']:.3g} {r['units']}/s"
    mem = ""
    if "ember_peak_mib" in r:
        e, t = r.get("ember_peak_mib"), r.get("torch_peak_mib")
        mem = f"{e:.0f}/{t:.0f}" if e is not None and t is not None else (
            f"{e:.0f}/-" if e is not None else "")
    vs_np = f"{r['vs_numpy']:.2f}x" if r.get("vs_numpy") else ""
    print(f"{r['workload']:<36} {_fmt(r.get('ember_s')):>10} {_fmt(r.get('torch_s')):>10} "
          f"{ratio:>7} {rate:>16} {mem:>13} {vs_np:>9}", flush=True)


def _blas_kernel():
    """NumPy's BLAS and the kernel family it runs (through threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to report it)"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", "") + \
                lib.get("prefix", ""):
            return f"{lib['internal_api']} {lib.get('version')} {lib.get('architecture')}"
    libs = [f"{i['internal_api']} {i.get('architecture')}" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    return ", ".join(libs) or "unknown"


def markdown(rows):
    """The rows as the README's Markdown table."""
    out = ["| workload | ember | PyTorch | ratio | ember throughput | peak MiB ember / PyTorch "
           "| ember / NumPy |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['workload']} | {r['error']} |  |  |  |  |  |")
            continue
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
        rate = f"{r['ember_rate']:.3g} {r['units']}/s" if r.get("units") else ""
        mem = ""
        if r.get("ember_peak_mib") is not None:
            t = r.get("torch_peak_mib")
            mem = f"{r['ember_peak_mib']:.0f} / " + (f"{t:.0f}" if t is not None else "-")
        vs = f"{r['vs_numpy']:.2f}x" if r.get("vs_numpy") else ""
        out.append(f"| {r['workload']} | {_fmt(r.get('ember_s'))} | {_fmt(r.get('torch_s'))} "
                   f"| {ratio} | {rate} | {mem} | {vs} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", metavar="TEXT",
                   help="run the workloads whose names contain TEXT (repeatable; names "
                        "contain commas, so one TEXT per --only)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both frameworks (default: each framework's default, "
                        "all cores)")
    p.add_argument("--passes", type=int, default=2,
                   help="rounds of (ember process, PyTorch process); medians across them")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = p.parse_args(argv)
    blas = _blas_kernel()
    threads = (f"{args.threads} thread(s)" if args.threads
               else f"default threads ({os.cpu_count()})")
    print(f"ember vs PyTorch, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, {threads}, one process per framework, python "
          f"{platform.python_version()}, NumPy BLAS: {blas}")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} forces OpenBLAS's "
              "kernel choice for NumPy (not for PyTorch); unset it for this command to let "
              "OpenBLAS pick the CPU's own")
    _print_header()
    only = args.only
    rows = run(only, args.quick, args.threads, not args.no_memory, passes=args.passes)
    if args.markdown:
        print()
        print(markdown(rows))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
                       "threads": args.threads, "numpy_blas": blas, "rows": rows}, f,
                      indent=1)
        os.replace(args.json + ".tmp", args.json)
    return rows


if __name__ == "__main__":
    main()
