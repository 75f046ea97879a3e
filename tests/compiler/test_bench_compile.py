"""benchmarks/bench_compile.py: the torch.compile timeout ends its process group, and the
training table prints compile times (wall / CPU) beside ember's."""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks import bench_compile  # noqa: E402


def test_timeout_reports_and_returns_promptly():
    env = dict(os.environ, PYTHONPATH=ROOT)
    t = time.perf_counter()
    r = bench_compile._spawn_soft(["--child", "train:gpt:ember-compiled", "--threads", "1",
                                   "--rounds", "1000"], env, 1)
    assert r == {"error": "timed out after 1 s"}
    assert time.perf_counter() - t < 60


def test_table_prints_torch_compile_beside_ember(capsys):
    ec = {"step": 0.010, "cpu": 0.009, "first_cold": 1.5, "first_cpu_cold": 0.9,
          "first_warm": 0.4, "first_cpu_warm": 0.3}
    res = {"mlp": {"ember-compiled": ec,
                   "torch-eager": {"step": 0.02, "cpu": 0.018, "first_cold": 0.1,
                                   "first_cpu_cold": 0.1, "first_warm": None},
                   "torch-compiled": {"first": 80.0, "first_cpu": 75.0, "step": 0.008,
                                      "cpu": 0.007}},
           "gpt": {"ember-compiled": ec, "torch-compiled": {"error": "timed out after 600 s"}}}
    bench_compile._print_train(res, 1)
    out = capsys.readouterr().out
    assert "torch.compile 80.0 s" in out and "compile time (cold) ember 1.50 s" in out
    assert "warm 0.40 / 0.30 s" in out and "timed out after 600 s" in out


def test_capture_of_a_gelu_step_imports_no_scipy(tmp_path):
    """The capture runs GELU's composed backward, whose erf once imported SciPy (0.3-1.5 s of
    a warm-cache first call); erf now comes from the C library."""
    import subprocess
    code = """
import sys
import ember
from ember import nn
m = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 1))
opt = ember.optim.SGD(m.parameters(), lr=0.1)
x = ember.randn(4, 8)
def step():
    opt.zero_grad()
    loss = m(x).square().mean()
    loss.backward()
    opt.step()
    return loss
c = ember.compile(step)
eager = [step().item()]
c(); c()
print(len(c.graphs), "scipy" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=ROOT, EMBER_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    from ember.ops import _special_c
    import numpy as np
    if _special_c.kernel("erf", np.dtype(np.float64)) is not None:
        assert r.stdout.split() == ["1", "False"], r.stdout


def test_first_call_table_prints_medians(capsys):
    res = {"mlp": {"cold": (1.2, 0.9, [(1.2, 0.9)]), "warm": (0.2, 0.15, [(0.2, 0.15)])}}
    bench_compile._print_first_calls(res, 2, 3)
    out = capsys.readouterr().out
    assert "median of 3 new processes, threads=2" in out
    assert "cold 1.20 / 0.90, warm 0.20 / 0.15" in out
