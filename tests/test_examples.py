"""Every example runs in --quick mode and its loss decreases."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))


# examples that need a process group (the `distributed` extra); CI runs them in its MPI step
# (tests/distributed/test_sharding.py runs sharded_training.py under mpiexec with 2 ranks)
NEEDS_MPI = {"sharded_training.py"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_quick(name, tmp_path):
    if name in NEEDS_MPI:
        pytest.importorskip("mpi4py", reason=f"{name} needs the 'distributed' extra")
    env = dict(os.environ, PYTHONPATH=ROOT, EMBER_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--quick"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    m = re.search(r"RESULT first_loss=([-\d.e+]+) last_loss=([-\d.e+]+)", out.stdout)
    assert m, out.stdout[-2000:]
    first, last = float(m.group(1)), float(m.group(2))
    assert last < first, f"{name}: loss did not decrease ({first} -> {last})"
