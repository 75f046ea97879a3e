"""The launcher: torchrun's command line and environment, faults within their time limits,
no orphan processes, --max-restarts, and its multi-node command lines."""

import os
import re
import sys
import time

import numpy as np
import pytest

from ._mpi import mpiexec, run


LAUNCH = [sys.executable, "-m", "ember.distributed.run"]

ENV_SCRIPT = """
import os, sys
import ember.distributed as dist
dist.init_process_group("gloo", init_method="env://")
keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
        "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT"]
assert int(os.environ["RANK"]) == dist.get_rank()
with open(os.path.join(os.environ["OUT_DIR"], "env" + os.environ["RANK"]), "w") as f:
    f.write(repr(({k: os.environ[k] for k in keys}, sys.argv[1:], __name__)))
"""

FAULT_SCRIPT = """
import os, sys, time, signal
import ember as torch, ember.distributed as dist
dist.init_process_group("gloo")
with open(os.path.join(os.environ["OUT_DIR"], f"pid{dist.get_rank()}"), "w") as f:
    f.write(str(os.getpid()))
dist.barrier()
if dist.get_rank() == 1:
    time.sleep(0.3)
    print("FAULT_AT", time.time(), flush=True)
    if sys.argv[1] == "raise":
        raise ValueError("boom on rank one")
    os.kill(os.getpid(), signal.SIGKILL)
dist.all_reduce(torch.ones(2))  # rank 0 waits here for a peer that will never come
time.sleep(120)
"""

RESTART_SCRIPT = """
import os, sys
import ember.distributed as dist
dist.init_process_group("gloo")
attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
ckpt = sys.argv[1]
if attempt == 0 and dist.get_rank() == 1:
    raise RuntimeError("first attempt fails")
if dist.get_rank() == 0:
    with open(ckpt, "a") as f:
        f.write(f"attempt {attempt}\\n")
"""


def _pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    continue
        except OSError:
            continue
        alive.append(pid)
    return alive


@pytest.fixture(autouse=True)
def _needs_mpi():
    mpiexec()


def test_torchrun_environment_and_arguments(tmp_path):
    script = tmp_path / "env.py"
    script.write_text(ENV_SCRIPT)
    rc, out, _ = run(LAUNCH + ["--nproc-per-node", "2", "--master-port", "29611",
                               str(script), "--lr", "0.1"], 120, OUT_DIR=tmp_path)
    assert rc == 0, out
    for r in range(2):
        env, argv, name = eval((tmp_path / f"env{r}").read_text())
        assert env == {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                       "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29611", "TORCHELASTIC_RESTART_COUNT": "0"}
        assert (argv, name) == (["--lr", "0.1"], "__main__")


def test_module_and_underscore_options(tmp_path):
    (tmp_path / "envmod.py").write_text(ENV_SCRIPT)
    rc, out, _ = run(LAUNCH + ["--standalone", "--nproc_per_node=2", "-m", "envmod", "x"], 120,
                     cwd=str(tmp_path), OUT_DIR=tmp_path)
    assert rc == 0, out
    for r in range(2):
        env, argv, name = eval((tmp_path / f"env{r}").read_text())
        assert (env["RANK"], argv, name) == (str(r), ["x"], "__main__")


@pytest.mark.parametrize("fault,limit", [("raise", 10), ("kill", 30)])
def test_fault_ends_the_job(tmp_path, fault, limit):
    script = tmp_path / "fault.py"
    script.write_text(FAULT_SCRIPT)
    rc, out, _ = run(LAUNCH + ["--nproc-per-node", "2", str(script), fault], 150,
                     OUT_DIR=tmp_path)
    end = time.time()
    assert rc not in (0, None), out
    fault_at = float(re.search(r"FAULT_AT (\d+\.\d+)", out).group(1))
    assert end - fault_at < limit, f"the job took {end - fault_at:.1f} s to end: {out}"
    if fault == "raise":
        assert "ValueError: boom on rank one" in out and "Traceback" in out
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    assert len(pids) == 2
    time.sleep(0.5)
    assert _pids_alive(pids) == [], "worker processes outlived the job"


def test_plain_mpiexec_exception_aborts(tmp_path):
    script = tmp_path / "fault.py"
    script.write_text(FAULT_SCRIPT)
    rc, out, _ = run([mpiexec(), "-n", "2", sys.executable, str(script), "raise"], 150,
                     OUT_DIR=tmp_path)
    end = time.time()
    assert rc not in (0, None), out
    assert end - float(re.search(r"FAULT_AT (\d+\.\d+)", out).group(1)) < 10
    assert "boom on rank one" in out


def test_max_restarts_reruns_the_group(tmp_path):
    script = tmp_path / "restart.py"
    script.write_text(RESTART_SCRIPT)
    ckpt = tmp_path / "ckpt.txt"
    rc, out, _ = run(LAUNCH + ["--nproc-per-node", "2", "--max-restarts", "1", str(script),
                               str(ckpt)], 150)
    assert rc == 0, out
    assert "attempt 1 of 2" in out
    assert ckpt.read_text().split("\n")[-2] == "attempt 1"
    rc, out, _ = run(LAUNCH + ["--nproc-per-node", "2", str(script), str(ckpt)], 150)
    assert rc != 0 and "first attempt fails" in out


def test_command_lines_single_and_multi_node(tmp_path):
    from ember.distributed.run import _parser, build
    cmd, env = build(_parser().parse_args(["--nproc-per-node", "3", "--mpiexec", "mpiexec",
                                           "train.py", "--epochs", "2"]))
    assert cmd[:3] == ["mpiexec", "-n", "3"]
    assert cmd[-5:] == ["-m", "ember.distributed._bootstrap", "train.py", "--epochs", "2"]
    assert env["WORLD_SIZE"] == "3" and env["MASTER_PORT"] == "29500"
    cmd, env = build(_parser().parse_args(
        ["--nnodes", "2", "--nproc-per-node", "4", "--hostfile", "hosts", "--mpiexec",
         "mpiexec", "--rdzv-endpoint", "node0:29400", "-m", "pkg.train"]))
    assert cmd[:7] == ["mpiexec", "-n", "8", "-f", "hosts", "-ppn", "4"]
    assert cmd[-2:] == ["-m", "pkg.train"]
    assert (env["MASTER_ADDR"], env["MASTER_PORT"], env["WORLD_SIZE"]) == ("node0", "29400",
                                                                            "8")
    with pytest.raises(SystemExit, match="hostfile"):
        build(_parser().parse_args(["--nnodes", "2", "--mpiexec", "m", "t.py"]))
    with pytest.raises(SystemExit, match="first node"):
        build(_parser().parse_args(["--node-rank", "1", "--mpiexec", "m", "t.py"]))
    from ember.distributed._bootstrap import torchrun_env
    e = torchrun_env(5, 8, 4)
    assert (e["RANK"], e["LOCAL_RANK"], e["GROUP_RANK"], e["LOCAL_WORLD_SIZE"]) == ("5", "1",
                                                                                    "1", "4")


def test_torchrun_gloo_script_runs_under_emberrun(tmp_path):
    """The same script runs under `torchrun` with PyTorch (FRAMEWORK=torch; checked by hand and
    by benchmarks/distributed.py) and, unchanged, under ember's launcher."""
    here = os.path.dirname(os.path.abspath(__file__))
    ckpt = tmp_path / "ckpt.pt"
    rc, out, _ = run(LAUNCH + ["--nproc-per-node", "2", os.path.join(here, "_torchrun_script.py"),
                               str(ckpt)], 180)
    assert rc == 0, out
    assert float(re.search(r"FINAL_LOSS (\S+)", out).group(1)) < 0.05
    import ember
    state = ember.load(str(ckpt))
    assert state["epoch"] == 4 and list(state["model"]) == ["weight", "bias"]
    torch = pytest.importorskip("torch")
    theirs = torch.load(str(ckpt))  # rank 0's checkpoint is PyTorch's format
    np.testing.assert_array_equal(theirs["model"]["weight"].numpy(),
                                  state["model"]["weight"].numpy())
