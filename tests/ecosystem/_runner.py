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


# a package hidden from the child: None in sys.modules makes its import fail and
# importlib.util.find_spec answer None, as when it is not installed
HIDE = "for _name in {names!r}:\n    sys.modules[_name] = None\n"


def run_under_alias(body, timeout=300, hide=()):
    """Run ``body`` after the prelude; returns stdout. Raises AssertionError with the
    child's output if it fails. ``hide`` names top-level packages the child cannot import."""
    code = PRELUDE + (HIDE.format(names=tuple(hide)) if hide else "") + textwrap.dedent(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-6000:]}")
    return proc.stdout


# In the oracle process, a library that imports torchvision (timm does, for a class reference)
# gets this stand-in when no torchvision matching the installed PyTorch is present: the modules
# resolve and their names are placeholders, which the models under test never call.
ORACLE_PRELUDE = '''
import importlib.abc, importlib.machinery, importlib.util, sys, types
import torch

if importlib.util.find_spec("torchvision") is None:
    class _AnyAttr(type):
        # class-level names (InterpolationMode.NEAREST) resolve to their own dotted name
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return cls.__name__ + "." + name

    class _Placeholder(metaclass=_AnyAttr):
        def __init__(self, *a, **k):
            raise RuntimeError("torchvision stand-in of the oracle process")

    class _StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (_Placeholder,), {})

    class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torchvision":
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            mod = _StubModule(spec.name)
            mod.__path__ = []
            return mod

        def exec_module(self, module):
            pass

    sys.meta_path.append(_StubFinder())
'''


def run_oracle(body, timeout=300, stub_torchvision=False):
    """Run ``body`` with the real PyTorch (the test oracle) in a fresh process; returns stdout.
    ``stub_torchvision`` installs the stand-in above when torchvision is missing."""
    code = (ORACLE_PRELUDE if stub_torchvision else "import torch\n") + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"oracle exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-6000:]}")
    return proc.stdout


def require(*names):
    """Skip the calling test module unless each distribution is installed. Only looked up,
    never imported here: these libraries import torch, which in the pytest process is the real
    one (and timm's import of torchvision fails there)."""
    import importlib.util

    import pytest
    for name in names:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install -e '.[ecosystem]')",
                        allow_module_level=True)
