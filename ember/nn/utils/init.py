"""``skip_init``: build a module without spending time initialising its parameters."""

from __future__ import annotations

import contextlib
import inspect

__all__ = ["skip_init"]


@contextlib.contextmanager
def _no_init():
    # Every layer initialises through ``ember.nn.init``: with its filling functions made
    # no-ops the parameters keep their freshly allocated (uninitialised) memory, as
    # PyTorch's ``skip_init`` leaves them.
    from .. import init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and
             callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def skip_init(module_cls, *args, **kwargs):
    """``module_cls(*args, **kwargs)`` with its parameters left uninitialised (the class must
    take a ``device`` keyword, as PyTorch requires)."""
    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    with _no_init():
        return module_cls(*args, **kwargs)
