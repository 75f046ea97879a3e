"""Helpers for the distributed tests: run a script under mpiexec (or the launcher) with a hard
timeout, in its own session, and kill the whole session afterwards so no process is left."""

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def mpiexec():
    """The mpiexec of the mpich wheel beside this interpreter (skips when absent)."""
    pytest.importorskip("mpi4py")
    path = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(path):
        pytest.skip("mpiexec (the mpich wheel) is not installed")
    return path


def env(**extra):
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run(cmd, timeout, cwd=None, **extra_env):
    """Run ``cmd`` in a new session; on timeout or afterwards, SIGKILL whatever of that session
    is still alive. Returns (returncode or None on timeout, output, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env(**extra_env), cwd=cwd or ROOT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = None
        out = ""
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if rc is None:
            out, _ = p.communicate()
    return rc, out, time.monotonic() - t0


def run_mpi(script, n, timeout=120, args=(), **extra_env):
    return run([mpiexec(), "-n", str(n), sys.executable, os.path.join(HERE, script), *args],
               timeout, **extra_env)


def session_alive(pgid):
    """Whether any process of session/group ``pgid`` is still running."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
