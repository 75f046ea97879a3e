"""Layer 0: the hook through which autocast reaches functions built from several ops.

Autocast itself (``ember.amp``) is a mode on the one dispatch path: it sees every op class
and casts its inputs by PyTorch's CPU op lists. A few PyTorch ops are composites in ember
(``addmm`` is a product and a sum, ``mse_loss`` a difference, a square and a mean); their
policy belongs to the whole function, not to the ops inside it, so such a function carries
``@autocast_function("lower" | "fp32" | "promote" | "none")`` (or a function of the call's
``(args, kwargs)`` returning one of those). With autocast off this costs one list read per
call.
"""

from __future__ import annotations

import functools

# The active autocast mode (an ``ember.amp.autocast_mode._AutocastMode``) or None.
ACTIVE: list = [None]


def autocast_function(policy):
    """Mark a composite function with its autocast policy (see the module docstring)."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            mode = ACTIVE[0]
            if mode is None:
                return fn(*args, **kwargs)
            return mode.run_function(policy, fn, args, kwargs)

        wrapper.__autocast_policy__ = policy
        return wrapper

    return deco
