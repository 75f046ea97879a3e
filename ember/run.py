"""``ember-run``: run a PyTorch program on ember, unchanged.

    ember-run script.py [args...]          python -m ember.run script.py [args...]
    ember-run -m package.module [args...]  python -m ember.run -m package.module [args...]

The torch alias (``ember.compat.alias_torch``) is installed before the program's first line,
so ``import torch`` and every library the program imports get ember even where PyTorch is
installed. ``sys.argv``, ``sys.path[0]`` and ``__main__`` are set as ``python script.py`` /
``python -m module`` would set them.
"""

from __future__ import annotations

import os
import runpy
import sys

_USAGE = ("usage: ember-run script.py [args...]\n"
          "       ember-run -m module [args...]\n"
          "Runs a PyTorch program with `import torch` resolving to ember.")


def main(argv=None):
    """Entry point of ``ember-run`` and ``python -m ember.run``; returns an exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    from .compat import alias_torch
    alias_torch()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("ember-run: -m needs a module name\n" + _USAGE, file=sys.stderr)
            return 2
        module, args = argv[1], argv[2:]
        sys.argv = [module] + args  # runpy replaces argv[0] by the module's file
        sys.path.insert(0, os.getcwd())  # as `python -m` does
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    script, args = argv[0], argv[1:]
    if not os.path.exists(script):
        print(f"ember-run: can't open file {script!r}: no such file", file=sys.stderr)
        return 2
    sys.argv = [script] + args
    # `python script.py` puts the script's directory first on the path; ember-run's own
    # directory (the console script's bin/, or the cwd for `-m ember.run`) takes no part.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
