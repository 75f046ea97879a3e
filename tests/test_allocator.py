"""The CPU allocator settings (ember/_allocator.py): applied on glibc, skipped on request."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings")

CODE = "import ember; print(ember._allocator.applied)"


def _run(**env):
    base = {k: v for k, v in os.environ.items()
            if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "EMBER_MALLOC_TUNING"))}
    base.update(env)
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=base,
                         timeout=120, check=True)
    return out.stdout.strip()


def _glibc():
    import ctypes
    return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.skipif(not _glibc(), reason="not glibc")
def test_applied_by_default_on_glibc():
    assert _run() == "True"


def test_user_settings_win():
    assert _run(MALLOC_TRIM_THRESHOLD_="1000000") == "False"
    assert _run(GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000") == "False"


def test_opt_out():
    assert _run(EMBER_MALLOC_TUNING="0") == "False"


@pytest.mark.skipif(not _glibc(), reason="not glibc")
def test_freed_memory_is_reused_without_page_faults():
    code = ("import resource, ember, numpy as np\n"
            "def step():\n"
            "    a = np.empty(2_000_000, np.float32); a.fill(1)\n"
            "    b = np.empty(3_000_000, np.float32); b.fill(2)\n"
            "    del a, b\n"
            "step()\n"
            "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(5): step()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("EMBER_MALLOC_TUNING", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    # 5 steps touching 20 MB of fresh pages each would fault ~24,000 times
    assert int(out.stdout.strip()) < 500
