"""Run a library's own public API on ember, in a fresh process, under the torch alias.

The child installs ``ember.compat.alias_torch()`` and, behind it, a finder that refuses any
``torch``/``torchvision`` module ember does not serve, so the real PyTorch (installed here as
the test oracle) can never load: whatever the library needs must come from ember."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = '''
import importlib.abc, sys
import ember.compat
ember.compat.alias_torch()

class _NoRealTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"{name}: not served by ember (the real PyTorch is "
                                      f"hidden in this test)", name=name)
        return None

sys.meta_path.insert(1, _NoRealTorch())
import torch
assert torch.__file__ == ember.__file__, torch.__file__
'''


def run_under_alias(body, timeout=300):
    """Run ``body`` after the prelude; returns stdout. Raises AssertionError with the
    child's output if it fails."""
    code = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-6000:]}")
    return proc.stdout
